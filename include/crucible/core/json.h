// JSON values used for configs, metrics, artifacts, state and journal payloads.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "crucible/core/error.h"

namespace crucible {

// Objects keep their keys sorted, so dump() of a Json is canonical and hashable.
using Json = nlohmann::json;

// The deepest nesting of arrays and objects that parse_json() accepts. Every JSON that enters
// Crucible (files, command-line values, signals, HTTP and LLM replies, journal records) goes
// through it, so nothing downstream (copies, dumps, comparisons) recurses without bound.
inline constexpr size_t kMaxJsonDepth = 256;

// Parses text as JSON; kInvalidArgument with the byte offset on malformed input, numbers out of
// range and nesting deeper than kMaxJsonDepth are kOutOfRange. Never throws.
[[nodiscard]] Result<Json> parse_json(std::string_view text);
// parse_json(), with a discarded value (is_discarded()) for anything it rejects.
Json parse_json_or_discarded(std::string_view text);

// The member `key` of `object`, or null when `object` is not an object or lacks it. For reading
// JSON that may be damaged (journal payloads) without nlohmann's throwing accessors.
inline const Json* json_member(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}
// The string member `key`, or `fallback` when there is none or it is not a string.
inline std::string json_string(const Json& object, std::string_view key, std::string fallback = {}) {
  const Json* v = json_member(object, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : fallback;
}

// The JSON text of `value`, compact (indent -1) or indented. Never throws: a string that is not
// valid UTF-8 (binary program output, a Latin-1 file) is written with U+FFFD in place of each
// bad sequence. Every dump in Crucible goes through it.
std::string json_dump(const Json& value, int indent = -1);

// The offset of the first byte of `text` that does not begin a valid UTF-8 sequence, or npos.
size_t invalid_utf8_at(std::string_view text);
// `text` with each invalid UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

// Human-readable one-word type name: "null", "boolean", "integer", "number", "string", "array",
// "object".
std::string json_type_name(const Json& value);

}  // namespace crucible
