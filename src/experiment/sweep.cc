#include "crucible/experiment/sweep.h"

#include <algorithm>
#include <set>

#include "crucible/core/random.h"

namespace crucible {
namespace {

void collect(const Json& node, std::vector<std::string>& path, std::vector<SweepAxis>& axes) {
  if (node.is_array()) {
    axes.push_back({path, std::vector<Json>(node.begin(), node.end())});
    return;
  }
  if (!node.is_object()) return;
  for (const auto& [k, v] : node.items()) {
    path.push_back(k);
    collect(v, path, axes);
    path.pop_back();
  }
}

Json& at_path(Json& root, const std::vector<std::string>& path) {
  Json* node = &root;
  for (const std::string& k : path) node = &(*node)[k];
  return *node;
}

Result<uint64_t> grid_size(const std::vector<SweepAxis>& axes, size_t max_configs) {
  uint64_t total = 1;
  for (const SweepAxis& a : axes) {
    total *= a.values.size();
    if (total > max_configs) {
      return make_error(ErrorCode::kOutOfRange, "sweep has more than " + std::to_string(max_configs) +
                                                    " combinations; narrow it or use random search");
    }
  }
  return total;
}

Json combination(const Json& sweep, const std::vector<SweepAxis>& axes, uint64_t index) {
  Json config = sweep;
  // Mixed radix, the last axis varying fastest.
  for (size_t a = axes.size(); a-- > 0;) {
    uint64_t n = axes[a].values.size();
    at_path(config, axes[a].path) = axes[a].values[index % n];
    index /= n;
  }
  return config;
}

}  // namespace

std::string SweepAxis::dotted() const {
  std::string out;
  for (const std::string& p : path) out += (out.empty() ? "" : ".") + p;
  return out;
}

Result<std::vector<SweepAxis>> sweep_axes(const Json& sweep) {
  if (!sweep.is_object()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "sweep: expected a mapping of config keys, found " + json_type_name(sweep));
  }
  std::vector<SweepAxis> axes;
  std::vector<std::string> path;
  collect(sweep, path, axes);
  for (const SweepAxis& a : axes) {
    if (a.values.empty()) {
      return make_error(ErrorCode::kInvalidArgument, "sweep." + a.dotted() + ": an empty list gives no configs");
    }
  }
  return axes;
}

Result<std::vector<Json>> expand_sweep(const Json& sweep, size_t max_configs) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto axes, sweep_axes(sweep));
  CRUCIBLE_ASSIGN_OR_RETURN(auto total, grid_size(axes, max_configs));
  std::vector<Json> out;
  out.reserve(total);
  for (uint64_t i = 0; i < total; ++i) out.push_back(combination(sweep, axes, i));
  return out;
}

Result<std::vector<Json>> random_search(const Json& sweep, size_t count, uint64_t seed) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto axes, sweep_axes(sweep));
  CRUCIBLE_ASSIGN_OR_RETURN(auto total, grid_size(axes, std::numeric_limits<uint32_t>::max()));
  if (count == 0) return make_error(ErrorCode::kInvalidArgument, "random search: samples must be at least 1");
  if (count >= total) return expand_sweep(sweep, std::numeric_limits<uint32_t>::max());
  // Floyd's algorithm: `count` distinct indices, then kept in draw order.
  SeededRandom random(seed);
  std::set<uint64_t> chosen;
  std::vector<uint64_t> order;
  for (uint64_t j = total - count; j < total; ++j) {
    uint64_t t = random.uniform(j + 1);
    uint64_t pick = chosen.contains(t) ? j : t;
    chosen.insert(pick);
    order.push_back(pick);
  }
  std::vector<Json> out;
  out.reserve(count);
  for (uint64_t i : order) out.push_back(combination(sweep, axes, i));
  return out;
}

}  // namespace crucible
