// The `compare` stage: statistical comparison of an experiment's branches on one metric.
#pragma once

#include <memory>

#include "crucible/core/stage.h"

namespace crucible {

// Reads the experiment's branch records from state `<experiment>`, groups the successful
// branches' metric by a config key, runs the tests of compare_groups() and writes
// `<stage>.json`, `<stage>.md` and `<stage>.svg` to the run's artifact directory.
std::unique_ptr<Stage> make_compare_stage();

// Registers `compare`. kAlreadyExists if the name is taken.
[[nodiscard]] Status register_compare_stage(StageRegistry& registry);

}  // namespace crucible
