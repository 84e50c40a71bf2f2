// Random hedging scenarios drawn from the documented families (docs/hedging.md), and the goals
// the adaptive policy is held to on them: within 1.10x of the hindsight oracle's p99 and p99.9
// at no more extra requests, never worse than off, never more than 5% worse than percentile.
#pragma once

#include <cstdint>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "hedging_scenarios.h"

namespace crucible::bench {

// Scenario `index` of the draw seeded by `seed`: the same pair always gives the same scenario.
// `draw` receives the parameters drawn, for replaying a failing one.
Scenario random_scenario(uint64_t seed, uint64_t index, size_t requests, Json* draw);

// Runs `count` random scenarios (`requests` each) under off, percentile and adaptive and checks
// the goals. The `random` object of `crucible bench hedging --random N --seed S`: scenarios,
// goals_met, the worst ratios with the draw of the scenario behind each, and the budget's worst
// window of 1,000 requests against its bound.
Result<Json> run_random_hedging(uint64_t count, uint64_t seed, size_t requests);

}  // namespace crucible::bench
