#include "crucible/workflow/config_override.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

#include "crucible/core/suggest.h"

namespace crucible {
namespace {

// One step of a --set path: a key, or a list index.
struct PathPart {
  std::string key;
  std::optional<size_t> index;
};

// "a.b[2].c" -> a, b, [2], c. kInvalidArgument for an empty part or a malformed index.
Result<std::vector<PathPart>> parse_set_path(const std::string& path) {
  std::vector<PathPart> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t end = path.find_first_of(".[", i);
    std::string key = path.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (key.empty() && !(end != std::string::npos && path[end] == '[' && !parts.empty() && i == end)) {
      return make_error(ErrorCode::kInvalidArgument, "--set has an empty key part in '" + path + "'");
    }
    if (!key.empty()) parts.push_back({key, std::nullopt});
    i = end == std::string::npos ? path.size() + 1 : end;
    while (i < path.size() && path[i] == '[') {
      size_t close = path.find(']', i);
      std::string digits = close == std::string::npos ? "" : path.substr(i + 1, close - i - 1);
      if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
        return make_error(ErrorCode::kInvalidArgument, "--set '" + path + "': expected a list index like [0]");
      }
      parts.push_back({"", static_cast<size_t>(std::stoul(digits))});
      i = close + 1;
    }
    if (i < path.size() && path[i] == '.')
      ++i;
    else if (i < path.size())
      return make_error(ErrorCode::kInvalidArgument, "--set '" + path + "': malformed path");
    else
      break;
  }
  return parts;
}

// Whether `value` may replace `existing`: the same JSON type, numbers for numbers, anything for
// a null.
bool fits(const Json& existing, const Json& value) {
  if (existing.is_null()) return true;
  if (existing.is_number() && value.is_number()) return !existing.is_number_integer() || value.is_number_integer();
  return json_type_name(existing) == json_type_name(value);
}

}  // namespace

Status apply_config_override(Json& config, std::string_view assignment_text) {
  const std::string assignment(assignment_text);
  if (size_t bad = invalid_utf8_at(assignment); bad != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--set: byte " + std::to_string(bad + 1) + " of the assignment is not UTF-8 text");
  }
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return make_error(ErrorCode::kInvalidArgument, "--set expects key=value, got '" + assignment + "'");
  }
  const bool add = assignment[0] == '+';
  const std::string path = assignment.substr(add ? 1 : 0, eq - (add ? 1 : 0));
  const std::string text = assignment.substr(eq + 1);
  CRUCIBLE_ASSIGN_OR_RETURN(auto parts, parse_set_path(path));
  auto parsed = parse_json(text);
  if (!parsed && parsed.error().code() == ErrorCode::kOutOfRange) {
    return make_error(ErrorCode::kInvalidArgument, "--set " + path + ": " + parsed.error().message());
  }
  Json value = parsed ? *parsed : Json(text);
  Json* target = &config;
  std::string at = "config";
  for (size_t p = 0; p < parts.size(); ++p) {
    const PathPart& part = parts[p];
    const bool last = p + 1 == parts.size();
    if (part.index) {
      if (!target->is_array() || *part.index >= target->size()) {
        return make_error(ErrorCode::kInvalidArgument,
                          "--set " + path + ": " + at + " has no item [" + std::to_string(*part.index) + "]");
      }
      target = &(*target)[*part.index];
      at += "[" + std::to_string(*part.index) + "]";
      continue;
    }
    if (!target->is_object()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "--set " + path + ": " + at + " is " + json_type_name(*target) + ", not a mapping");
    }
    if (!target->contains(part.key)) {
      if (!(add && last)) {
        std::vector<std::string> keys;
        for (const auto& [k, _] : target->items()) keys.push_back(k);
        std::string hint = closest_match(part.key, keys);
        return make_error(ErrorCode::kInvalidArgument, "--set " + path + ": " + at + " has no key '" + part.key + "'" +
                                                           (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
                                                           (last ? "; write +" + path + "=... to add it" : ""));
      }
      (*target)[part.key] = std::move(value);
      return {};
    }
    if (add && last) {
      return make_error(ErrorCode::kInvalidArgument,
                        "--set +" + path + ": " + at + "." + part.key + " exists; drop the + to replace it");
    }
    target = &(*target)[part.key];
    at += "." + part.key;
  }
  if (target->is_string() && !value.is_string()) value = Json(text);
  if (!fits(*target, value)) {
    return make_error(ErrorCode::kInvalidArgument, "--set " + path + ": " + at + " is " + json_type_name(*target) +
                                                       ", got " + json_type_name(value) + " " + json_dump(value));
  }
  *target = std::move(value);
  return {};
}

}  // namespace crucible
