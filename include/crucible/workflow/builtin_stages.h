// The stages every Crucible build registers: noop, sleep, set, assert, metric, command, compare,
// write_file and wait_for.
#pragma once

#include <memory>

#include "crucible/core/stage.h"

namespace crucible {

// Registers the built-in stages. kAlreadyExists if one of the names is taken.
Status register_builtin_stages(StageRegistry& registry);

// A registry holding just the built-ins.
StageRegistry builtin_registry();

// The `command` stage on its own (custom stages of sai3-bench pipelines run through it).
std::unique_ptr<Stage> make_command_stage();

}  // namespace crucible
