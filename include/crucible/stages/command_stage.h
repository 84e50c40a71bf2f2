// The `command` stage: runs a program (argv, no shell) in its own process group, records its
// exit code and output tail, and kills the group when the stage is cancelled. The custom stages
// of sai3-bench pipelines (`type: custom`) run through it.
#pragma once

#include <memory>

#include "crucible/core/stage.h"

namespace crucible {

std::unique_ptr<Stage> make_command_stage();

// Registers `command`. kAlreadyExists if the name is taken.
[[nodiscard]] Status register_command_stage(StageRegistry& registry);

}  // namespace crucible
