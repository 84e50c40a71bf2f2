// Templates: "${expression}" inside strings, rendered against a context.
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "crucible/workflow/expression.h"

namespace crucible {
namespace {

std::string format_value(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  return json_dump(v);
}

// Finds the "}" closing a "${" at `open`, skipping quoted strings; npos if none.
size_t find_close(std::string_view text, size_t open) {
  char quote = 0;
  for (size_t i = open + 2; i < text.size(); ++i) {
    char c = text[i];
    if (quote != 0) {
      if (c == '\\')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '}') {
      return i;
    }
  }
  return std::string_view::npos;
}

}  // namespace

namespace {

// Calls fn(open, close) for every ${...} of `text` ("$${" excepted), `open` at "${" and `close`
// at its "}" (npos when unterminated), until fn returns false.
template <class F>
void each_template(std::string_view text, F&& fn) {
  size_t pos = 0;
  while ((pos = text.find("${", pos)) != std::string_view::npos) {
    if (pos > 0 && text[pos - 1] == '$') {
      pos += 2;
      continue;
    }
    size_t close = find_close(text, pos);
    if (!fn(pos, close) || close == std::string_view::npos) return;
    pos = close + 1;
  }
}

}  // namespace

std::optional<TemplateError> check_template(std::string_view text) {
  std::optional<TemplateError> out;
  each_template(text, [&](size_t open, size_t close) {
    if (close == std::string_view::npos) {
      out = TemplateError{open, "unterminated '${'; expected '}'"};
      return false;
    }
    auto e = Expression::parse(text.substr(open + 2, close - open - 2));
    if (!e) out = TemplateError{open + 2 + e.error().column - 1, e.error().message};
    return !out;
  });
  return out;
}

namespace {

// Whether `config` has the value at `path` (keys of mappings, indices of lists).
bool has_path(const Json& config, const std::vector<std::string>& path) {
  const Json* at = &config;
  for (const std::string& key : path) {
    if (at->is_object()) {
      auto it = at->find(key);
      if (it == at->end()) return false;
      at = &*it;
    } else if (at->is_array() && !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit) && key.size() < 10 &&
               std::stoul(key) < at->size()) {
      at = &(*at)[std::stoul(key)];
    } else {
      return false;
    }
  }
  return true;
}

std::string dotted(const std::vector<std::string>& path) {
  std::string out;
  for (const std::string& p : path) out += (out.empty() ? "" : ".") + p;
  return out;
}

}  // namespace

std::optional<std::string> missing_config_key(std::string_view text, const Json& config) {
  std::optional<std::string> out;
  each_template(text, [&](size_t open, size_t close) {
    if (close == std::string_view::npos) return false;
    if (auto e = Expression::parse(text.substr(open + 2, close - open - 2))) {
      for (const auto& path : e->config_paths()) {
        if (!has_path(config, path)) out = dotted(path);
        if (out) break;
      }
    }
    return !out;
  });
  return out;
}

Result<Json> render_template(std::string_view text, const Context& ctx) {
  if (text.find("${") == std::string_view::npos) return Json(std::string(text));
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("${", pos);
    if (open == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    if (open > 0 && text[open - 1] == '$') {  // "$${" is a literal "${"
      out.append(text.substr(pos, open - 1 - pos));
      out.append("${");
      pos = open + 2;
      continue;
    }
    out.append(text.substr(pos, open - pos));
    size_t close = find_close(text, open);
    if (close == std::string_view::npos) {
      return make_error(ErrorCode::kInvalidArgument, "unterminated '${' in '" + std::string(text) + "'");
    }
    auto e = Expression::parse(text.substr(open + 2, close - open - 2));
    if (!e)
      return make_error(ErrorCode::kInvalidArgument, "template '" + std::string(text) + "': " + e.error().to_string());
    for (const auto& path : e->config_paths()) {
      if (!has_path(ctx.config(), path)) {
        return make_error(ErrorCode::kInvalidArgument,
                          "template '" + std::string(text) + "': the config has no key '" + dotted(path) + "'");
      }
    }
    auto v = e->evaluate(ctx);
    if (!v) return v;
    if (open == 0 && close == text.size() - 1) return *v;  // the whole string: keep the type
    out.append(format_value(*v));
    pos = close + 1;
  }
  return Json(out);
}

Result<Json> render_templates(const Json& value, const Context& ctx) {
  if (value.is_string()) return render_template(value.get_ref<const std::string&>(), ctx);
  if (value.is_array()) {
    Json out = Json::array();
    for (const Json& v : value) {
      auto r = render_templates(v, ctx);
      if (!r) return r;
      out.push_back(std::move(*r));
    }
    return out;
  }
  if (value.is_object()) {
    Json out = Json::object();
    for (const auto& [k, v] : value.items()) {
      auto r = render_templates(v, ctx);
      if (!r) return r;
      out[k] = std::move(*r);
    }
    return out;
  }
  return value;
}

bool has_templates(const Json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>().find("${") != std::string::npos;
  if (value.is_array() || value.is_object()) {
    for (const Json& v : value) {
      if (has_templates(v)) return true;
    }
  }
  return false;
}

}  // namespace crucible
