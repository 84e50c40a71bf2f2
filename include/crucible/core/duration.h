// Durations as people write them in pipelines and on the command line: "300ms", "1.5s", "5m",
// "2h", "1d", or a plain number of seconds. The one reader every module uses.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// "1.5s", "300ms", "5m", "2h", "1d" or a plain number of seconds; surrounding spaces are
// allowed. nullopt for anything else, including negative values and durations past 100 years.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// A JSON duration: a string that parse_duration() accepts, or a non-negative number of seconds.
std::optional<std::chrono::milliseconds> duration_from_json(const Json& value);

// duration_from_json(), or kInvalidArgument naming `field` and what was found.
[[nodiscard]] Result<std::chrono::milliseconds> duration_field(const Json& value, std::string_view field);

// "5s" for whole seconds, else "300ms".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace crucible
