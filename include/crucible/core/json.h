// JSON values used for configs, metrics, artifacts, state and journal payloads.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "crucible/core/error.h"

namespace crucible {

// Objects keep their keys sorted, so dump() of a Json is canonical and hashable.
using Json = nlohmann::json;

// Parses text as JSON; kInvalidArgument with the byte offset on malformed input.
[[nodiscard]] Result<Json> parse_json(std::string_view text);

// Human-readable one-word type name: "null", "boolean", "integer", "number", "string", "array",
// "object".
std::string json_type_name(const Json& value);

}  // namespace crucible
