// The whole stage library in one registry, for tests, benchmarks and embedders that want every
// family. The CLI registers the families one by one (apps/crucible).
#pragma once

#include <memory>

#include "crucible/core/stage.h"
#include "crucible/llm/models.h"

namespace crucible {

// Registers every family: basic, command, http, compare, hedging and llm (calling models
// through `models`).
[[nodiscard]] Status register_stage_library(StageRegistry& registry, std::shared_ptr<ModelRegistry> models);

// A registry holding the whole library, with a model registry of its own (its executor runs
// hedged model calls) that lives as long as the returned registry's stages.
StageRegistry builtin_registry();

}  // namespace crucible
