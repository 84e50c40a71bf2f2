#include "crucible/stages/library.h"

#include "crucible/stages/builtin_stages.h"
#include "crucible/stages/command_stage.h"
#include "crucible/stages/compare_stage.h"
#include "crucible/stages/hedging_stage.h"
#include "crucible/stages/http_stage.h"
#include "crucible/stages/llm_stages.h"

namespace crucible {

namespace {

// What builtin_registry()'s model registry needs, owned together.
struct OwnedModels {
  Executor executor{32};
  ModelRegistry models{executor, real_clock(), system_random()};
};

}  // namespace

Status register_stage_library(StageRegistry& registry, std::shared_ptr<ModelRegistry> models) {
  CRUCIBLE_RETURN_IF_ERROR(register_builtin_stages(registry));
  CRUCIBLE_RETURN_IF_ERROR(register_command_stage(registry));
  CRUCIBLE_RETURN_IF_ERROR(register_http_stages(registry));
  CRUCIBLE_RETURN_IF_ERROR(register_compare_stage(registry));
  CRUCIBLE_RETURN_IF_ERROR(register_llm_stages(registry, std::move(models)));
  CRUCIBLE_RETURN_IF_ERROR(register_hedging_stage(registry));
  return {};
}

StageRegistry builtin_registry() {
  auto owned = std::make_shared<OwnedModels>();
  StageRegistry r;
  Status s = register_stage_library(r, std::shared_ptr<ModelRegistry>(owned, &owned->models));
  CRUCIBLE_CHECK(s.has_value());
  return r;
}

}  // namespace crucible
