#include "crucible/core/json.h"

namespace crucible {

namespace {

// The byte at which nesting first passes `limit`, or npos. Brackets inside strings do not count.
size_t too_deep_at(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

}  // namespace

Result<Json> parse_json(std::string_view text) {
  if (size_t at = too_deep_at(text, kMaxJsonDepth); at != std::string_view::npos) {
    return make_error(ErrorCode::kOutOfRange, "JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                                                  " levels at byte " + std::to_string(at + 1));
  }
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return make_error(ErrorCode::kInvalidArgument,
                      "malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const Json::out_of_range& e) {
    return make_error(ErrorCode::kOutOfRange, std::string("number out of range in JSON: ") + e.what());
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInvalidArgument, std::string("invalid JSON: ") + e.what());
  }
}

Json parse_json_or_discarded(std::string_view text) {
  auto v = parse_json(text);
  return v ? std::move(*v) : Json(Json::value_t::discarded);
}

std::string json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "array";
    case Json::value_t::object: return "object";
    default: return "binary";
  }
}

}  // namespace crucible
