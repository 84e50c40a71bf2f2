// The LLM stages: llm.complete, llm.critique and llm.revise, calling the models of the
// pipeline's `models:` section. Each call's result is the step's journaled outcome, so a
// resumed run never calls the model again for a finished step.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "crucible/core/json.h"
#include "crucible/core/stage.h"
#include "crucible/llm/models.h"

namespace crucible {

// Registers the llm.* stages; they resolve models through `models`, which every instance shares.
[[nodiscard]] Status register_llm_stages(StageRegistry& registry, std::shared_ptr<ModelRegistry> models);

// The first JSON object in `text` (prose or code fences around it are ignored), or nullopt.
std::optional<Json> first_json_object(std::string_view text);

// Validates a critique reply: {"decision": "pass"|"revise", "critique": text, "feedback": text
// (required for revise)}. kInvalidArgument carrying the raw reply when it is not one.
[[nodiscard]] Result<Json> parse_critique(std::string_view reply);

}  // namespace crucible
