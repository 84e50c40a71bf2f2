// The basic stage family: noop, sleep, set, assert, metric, write_file and wait_for.
#pragma once

#include "crucible/core/stage.h"

namespace crucible {

// Registers the basic stages. kAlreadyExists if one of the names is taken.
[[nodiscard]] Status register_builtin_stages(StageRegistry& registry);

}  // namespace crucible
