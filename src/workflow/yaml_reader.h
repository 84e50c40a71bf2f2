// The YAML reading helpers of the pipeline loader: located diagnostics, typed scalar readers,
// mapping checks with suggestions, and YAML-to-JSON conversion. Private to workflow.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "crucible/core/duration.h"
#include "crucible/core/enum_names.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/workflow/expression.h"
#include "crucible/workflow/loader.h"
#include "validate_internal.h"

namespace crucible::workflow_internal {

inline std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Reads YAML nodes into values, recording a Diagnostic at the node's file:line:column for
// everything that does not fit.
class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

 protected:
  static std::string suggest(const std::string& word, const std::vector<std::string>& candidates) {
    return validate_internal::suggest(word, candidates);
  }

  bool has_errors() const {
    return std::any_of(diags_.begin(), diags_.end(),
                       [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::kError; });
  }

  SourceLocation loc(const YAML::Node& n, size_t extra_columns = 0) const {
    YAML::Mark m = n.Mark();
    if (m.line < 0) return {file_, 0, 0};
    return {file_, m.line + 1, m.column + 1 + static_cast<int>(extra_columns)};
  }

  void error(const YAML::Node& n, const std::string& field, std::string msg, size_t extra = 0) {
    diags_.push_back({Diagnostic::Severity::kError, loc(n, extra), field, std::move(msg)});
  }
  void warning(const YAML::Node& n, const std::string& field, std::string msg) {
    diags_.push_back({Diagnostic::Severity::kWarning, loc(n), field, std::move(msg)});
  }

  static std::string describe(const YAML::Node& n) {
    if (n.IsScalar()) return "'" + n.Scalar() + "'";
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "nothing";
  }

  // Rejects unknown and duplicate keys. Returns false if `n` is not a mapping.
  bool check_map(const YAML::Node& n, const std::string& field, const std::vector<std::string>& allowed) {
    if (!n.IsMap()) {
      error(n, field, "expected a mapping, found " + describe(n));
      return false;
    }
    std::set<std::string> seen;
    for (const auto& kv : n) {
      std::string key = kv.first.Scalar();
      if (!seen.insert(key).second) {
        error(kv.first, field, "duplicate key '" + key + "'");
        continue;
      }
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string hint = suggest(key, allowed);
        error(kv.first, field,
              "unknown key '" + key + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
                  " (expected one of: " + join(allowed) + ")");
      }
    }
    return true;
  }

  static std::string sub(const std::string& field, const std::string& key) {
    return field.empty() ? key : field + "." + key;
  }

  std::optional<std::string> get_string(const YAML::Node& map, const std::string& key, const std::string& field,
                                        bool required = false) {
    YAML::Node n = map[key];
    if (!n) {
      if (required) error(map, field, "missing required key '" + key + "'");
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      error(n, sub(field, key), "expected a string, found " + describe(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<int64_t> get_int(const YAML::Node& map, const std::string& key, const std::string& field,
                                 bool required = false) {
    YAML::Node n = map[key];
    if (!n) {
      if (required) error(map, field, "missing required key '" + key + "'");
      return std::nullopt;
    }
    auto integer_text = [](const std::string& t) {  // -?[0-9][0-9_,]*
      size_t i = !t.empty() && t[0] == '-' ? 1 : 0;
      if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return false;
      return std::all_of(t.begin() + static_cast<std::ptrdiff_t>(i), t.end(),
                         [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == ','; });
    };
    if (!n.IsScalar() || !integer_text(n.Scalar())) {
      error(n, sub(field, key), "expected an integer, found " + describe(n));
      return std::nullopt;
    }
    std::string digits;
    for (char c : n.Scalar()) {
      if (c != '_' && c != ',') digits.push_back(c);
    }
    try {
      return std::stoll(digits);
    } catch (const std::exception&) {
      error(n, sub(field, key), "integer out of range: " + n.Scalar());
      return std::nullopt;
    }
  }

  std::optional<double> get_number(const YAML::Node& map, const std::string& key, const std::string& field) {
    YAML::Node n = map[key];
    if (!n) return std::nullopt;
    if (n.IsScalar()) {
      try {
        size_t used = 0;
        double v = std::stod(n.Scalar(), &used);
        if (used == n.Scalar().size()) return v;
      } catch (const std::exception&) {
      }
    }
    error(n, sub(field, key), "expected a number, found " + describe(n));
    return std::nullopt;
  }

  std::optional<bool> get_bool(const YAML::Node& map, const std::string& key, const std::string& field) {
    YAML::Node n = map[key];
    if (!n) return std::nullopt;
    if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) return n.Scalar() == "true";
    error(n, sub(field, key), "expected true or false, found " + describe(n));
    return std::nullopt;
  }

  std::optional<std::chrono::milliseconds> get_duration(const YAML::Node& map, const std::string& key,
                                                        const std::string& field, bool required = false) {
    YAML::Node n = map[key];
    if (!n) {
      if (required) error(map, field, "missing required key '" + key + "' (a duration such as 30s)");
      return std::nullopt;
    }
    if (n.IsScalar()) {
      if (auto d = parse_duration(n.Scalar())) return d;
    }
    error(n, sub(field, key), "expected a duration such as 500ms, 30s, 5m or 2h, found " + describe(n));
    return std::nullopt;
  }

  template <typename E>
  std::optional<E> get_enum(const YAML::Node& map, const std::string& key, const std::string& field,
                            const EnumNames<E>& table, std::type_identity_t<std::optional<E>> except = std::nullopt,
                            bool required = false) {
    auto s = get_string(map, key, field, required);
    if (!s) return std::nullopt;
    if (auto v = table.parse(*s); v && v != except) return v;
    std::vector<std::string> names = table.names(except);
    std::string hint = suggest(*s, names);
    error(map[key], sub(field, key),
          "unknown value '" + *s + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
              " (expected one of: " + join(names) + ")");
    return std::nullopt;
  }

  // A string from a fixed list of spellings (sections kept as JSON).
  std::optional<std::string> get_choice(const YAML::Node& map, const std::string& key, const std::string& field,
                                        const std::vector<std::string>& choices, bool required = false) {
    auto s = get_string(map, key, field, required);
    if (!s) return std::nullopt;
    if (std::find(choices.begin(), choices.end(), *s) != choices.end()) return s;
    std::string hint = suggest(*s, choices);
    error(map[key], sub(field, key),
          "unknown value '" + *s + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
              " (expected one of: " + join(choices) + ")");
    return std::nullopt;
  }

  std::optional<Expression> get_expression(const YAML::Node& map, const std::string& key, const std::string& field) {
    YAML::Node n = map[key];
    if (!n) return std::nullopt;
    if (!n.IsScalar()) {
      error(n, sub(field, key), "expected an expression, found " + describe(n));
      return std::nullopt;
    }
    auto e = Expression::parse(n.Scalar());
    if (!e) {
      size_t quote = n.Tag() == "!" ? 1 : 0;
      error(n, sub(field, key), "bad expression '" + n.Scalar() + "': " + e.error().to_string(),
            quote + e.error().column - 1);
      return std::nullopt;
    }
    return *e;
  }

  enum class NumberShape { kNone, kInteger, kDecimal };

  // [-+]?digits, or [-+]?(digits.digits?|.digits|digits)([eE][-+]?digits)?; checked by hand, since
  // a backtracking regex over a long scalar runs out of stack.
  static NumberShape number_shape(const std::string& s) {
    size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    auto digits = [&]() {
      size_t start = i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      return i - start;
    };
    size_t whole = digits();
    if (i == s.size()) return whole > 0 ? NumberShape::kInteger : NumberShape::kNone;
    size_t fraction = 0;
    if (s[i] == '.') {
      ++i;
      fraction = digits();
    }
    if (whole == 0 && fraction == 0) return NumberShape::kNone;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
      if (digits() == 0) return NumberShape::kNone;
    }
    return i == s.size() ? NumberShape::kDecimal : NumberShape::kNone;
  }

  // Scalars become typed JSON values unless quoted.
  Json to_json(const YAML::Node& n, const std::string& field) {
    switch (n.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined: return Json();
      case YAML::NodeType::Scalar: {
        const std::string& s = n.Scalar();
        if (n.Tag() == "!") return Json(s);
        if (s == "~" || s == "null") return Json();
        if (s == "true") return Json(true);
        if (s == "false") return Json(false);
        const NumberShape shape = number_shape(s);
        if (shape == NumberShape::kNone) return Json(s);
        errno = 0;
        char* end = nullptr;
        if (shape == NumberShape::kInteger) {
          long long v = std::strtoll(s.c_str(), &end, 10);
          if (errno != ERANGE) return Json(static_cast<int64_t>(v));
        } else {
          double v = std::strtod(s.c_str(), &end);
          if (errno != ERANGE || (v != 0 && std::isfinite(v))) return Json(v);
        }
        error(n, field,
              "number " + s +
                  " is out of range (integers fit in 64 bits, decimals in a double); quote it to keep "
                  "it as text");
        return Json();
      }
      case YAML::NodeType::Sequence: {
        Json out = Json::array();
        size_t i = 0;
        for (const auto& item : n) out.push_back(to_json(item, field + "[" + std::to_string(i++) + "]"));
        return out;
      }
      case YAML::NodeType::Map: {
        Json out = Json::object();
        for (const auto& kv : n) {
          std::string key = kv.first.Scalar();
          if (out.contains(key)) error(kv.first, field, "duplicate key '" + key + "'");
          out[key] = to_json(kv.second, sub(field, key));
        }
        return out;
      }
    }
    return Json();
  }

  // The pipeline's config, once read: templates are checked against its keys.
  const Json* known_config_ = nullptr;

  void check_templates(const YAML::Node& n, const std::string& f) {
    if (n.IsScalar()) {
      if (auto e = check_template(n.Scalar())) {
        size_t quote = n.Tag() == "!" ? 1 : 0;
        error(n, f, "bad template '" + n.Scalar() + "': " + e->message, quote + e->offset);
      } else if (auto missing = known_config_ ? missing_config_key(n.Scalar(), *known_config_) : std::nullopt) {
        error(n, f,
              "template '" + n.Scalar() + "' reads config." + *missing +
                  ", which the config does not have; add it under config:");
      }
    } else if (n.IsSequence()) {
      size_t i = 0;
      for (const auto& item : n) check_templates(item, f + "[" + std::to_string(i++) + "]");
    } else if (n.IsMap()) {
      for (const auto& kv : n) check_templates(kv.second, sub(f, kv.first.Scalar()));
    }
  }

  // A `hedging:` mapping, each field checked by HedgingConfig's rules and located at its value.
  std::optional<HedgingConfig> parse_hedging(const YAML::Node& h, const std::string& f) {
    if (!h.IsMap()) {
      error(h, f, "expected a mapping (" + join(HedgingConfig::keys()) + "), found " + describe(h));
      return std::nullopt;
    }
    HedgingConfig config;
    bool ok = true;
    auto report = [&](const YAML::Node& at, const Status& s) {
      if (s) return;
      error(at, sub(f, s.error().field().value_or("")), s.error().message());
      ok = false;
    };
    for (const auto& kv : h) {
      const std::string key = kv.first.as<std::string>();
      if (key != "options" || !kv.second.IsMap()) {
        report(kv.second, config.set(key, to_json(kv.second, sub(f, key))));
        continue;
      }
      for (const auto& o : kv.second) {
        std::string option = o.first.as<std::string>();
        report(o.second, config.set_option(option, to_json(o.second, f + ".options." + option)));
      }
    }
    report(h, config.check());
    return ok ? std::optional<HedgingConfig>(std::move(config)) : std::nullopt;
  }

  std::string file_;
  std::vector<Diagnostic> diags_;
};

}  // namespace crucible::workflow_internal
