// Config overrides from the command line (`--set`), in the Hydra convention.
#pragma once

#include <string_view>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// `key=value` replaces an existing value of `config` (dotted keys and list indices such as
// `model.layers[2].width` address nested ones, and the type must fit); `+key=value` adds a new
// key. The value is JSON when it parses, else a string; for a string key it is always the text.
// kInvalidArgument names the path and what was wrong (a missing key with the nearest one, a type
// that does not fit, a number out of range); `config` is unchanged then.
[[nodiscard]] Status apply_config_override(Json& config, std::string_view assignment);

}  // namespace crucible
