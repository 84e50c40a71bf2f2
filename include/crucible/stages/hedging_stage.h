// The `hedging` stage (seed 000): runs a request under the experiment's hedging configuration
// (`reliability.hedging`), keeps the first successful answer, and records what happened.
//
// Outputs: artifact `hedging_result` (the answer), metric `hedging` (the metadata and strategy),
// and the stage `hedging` marked complete.
#pragma once

#include <functional>
#include <memory>
#include <stop_token>

#include "crucible/core/stage.h"

namespace crucible {

// A request a C++ pipeline hands to the stage: returns the answer or an error; must stop when
// `stop` is requested, since losing attempts are cancelled.
using HedgedRequestFn = std::function<Result<Json>(std::stop_token stop)>;

// The stage with a C++ request. A null function gives kInvalidArgument ("invalid request") when
// it runs.
std::unique_ptr<Stage> make_hedging_stage(HedgedRequestFn request);

// The stage for YAML: its `request` option names a registered stage type and its options
// ({uses: http.request, with: {...}}), created through `resolve`; the answer is what that stage
// writes as artifacts.
std::unique_ptr<Stage> make_hedging_stage(StageResolver resolve);

// Registers `hedging`, resolving inner stages in `registry` itself. kAlreadyExists if taken.
[[nodiscard]] Status register_hedging_stage(StageRegistry& registry);

}  // namespace crucible
