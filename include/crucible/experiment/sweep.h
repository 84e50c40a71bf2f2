// Sweeps: a config whose lists (at any depth) are the values to try, expanded to the full cross
// product or sampled at random. A list inside a sweep list is one literal value: write
// `layers: [[64, 64], [128]]` to try two layer shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// One sweep axis: where it is in the config ("optimizer.lr") and its values.
struct SweepAxis {
  std::vector<std::string> path;
  std::vector<Json> values;
  std::string dotted() const;
};

// The axes of `sweep` in key order (object keys are sorted), the first varying slowest.
// kInvalidArgument naming the field for an empty list.
[[nodiscard]] Result<std::vector<SweepAxis>> sweep_axes(const Json& sweep);

// Every combination, the first axis varying slowest (itertools.product order). A sweep without
// lists is one config. kOutOfRange past `max_configs`.
[[nodiscard]] Result<std::vector<Json>> expand_sweep(const Json& sweep, size_t max_configs = 100'000);

// `count` distinct combinations drawn uniformly with `seed` (the same seed draws the same
// configs); the whole grid, in grid order, when count covers it.
[[nodiscard]] Result<std::vector<Json>> random_search(const Json& sweep, size_t count, uint64_t seed);

}  // namespace crucible
