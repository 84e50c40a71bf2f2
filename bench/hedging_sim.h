// The hedging benchmark's simulation: common random numbers, the latency world of a scenario,
// per-run statistics, and the two simulators (independent draws, and FIFO servers under load).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "crucible/core/random.h"
#include "crucible/reliability/hedging.h"
#include "hedging_scenarios.h"

namespace crucible::bench {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Common random numbers: the uniform for (seed, request, attempt, slot) is the same for every
// policy.
inline double crn(uint64_t seed, uint64_t i, uint64_t k, uint64_t slot) {
  uint64_t h = splitmix64(seed * 0x9E3779B97F4A7C15ULL ^ splitmix64(i * 4 + slot) ^ (k * 0xC2B2AE3D27D4EB4FULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

class World {
 public:
  World(const Scenario& s, uint64_t seed) : s_(s), seed_(seed) {}

  // Draws every attempt's latency once, so that policies and the oracle sweep reuse them.
  void precompute() {
    cache_.assign(static_cast<size_t>(s_.max_hedges) + 1, std::vector<double>(s_.requests));
    for (uint64_t k = 0; k <= static_cast<uint64_t>(s_.max_hedges); ++k) {
      for (uint64_t i = 0; i < s_.requests; ++i) cache_[k][i] = draw(i, k);
    }
  }

  double latency(uint64_t i, uint64_t k) const {
    if (k < cache_.size()) return cache_[k][i];
    return draw(i, k);
  }

  double size(uint64_t i) const {
    if (s_.kind != "size" && !(s_.kind == "queue" && s_.correlated)) return 1;
    return sample_component(s_, crn(seed_, i, 99, 0), crn(seed_, i, 99, 1), crn(seed_, i, 99, 2));
  }

  // Attempt k of request i, in ms (service time for queue scenarios).
  double draw(uint64_t i, uint64_t k) const {
    double x;
    if (s_.kind == "size") {
      double z = std::sqrt(-2 * std::log(std::max(crn(seed_, i, k, 1), 1e-300))) *
                 std::cos(6.283185307179586 * crn(seed_, i, k, 2));
      x = size(i) * std::exp(0.2 * z);
    } else if (s_.kind == "queue" && s_.correlated) {
      x = size(i) / std::exp(0.5);  // sigma-1 sizes with the same median as the iid copies
    } else {
      x = sample_component(s_, crn(seed_, i, k, 0), crn(seed_, i, k, 1), crn(seed_, i, k, 2));
    }
    if (crn(seed_, i, k, 3) < s_.straggler_p) x *= s_.straggler_factor;
    if (s_.drift_at >= 0 && static_cast<double>(i) >= s_.drift_at * static_cast<double>(s_.requests))
      x *= s_.drift_factor;
    if (s_.burst_fraction > 0) {
      uint64_t window = static_cast<uint64_t>(static_cast<double>(i) / s_.rate_per_s);
      if (crn(seed_, window, 777, 0) < s_.burst_fraction) x *= s_.burst_factor;
    }
    return x;
  }

 private:
  const Scenario& s_;
  uint64_t seed_;
  std::vector<std::vector<double>> cache_;
};

struct RunStats {
  std::vector<double> latency;
  std::vector<uint8_t> extra;  // backups sent, by the request the budget had last seen when each was sent
  double attempts = 0, extra_work = 0, primary_work = 0;
  double late_requests = 0, late_attempts = 0;  // after the first 2,000 requests
  std::vector<double> sorted;
  void finish() {
    sorted = latency;
    std::sort(sorted.begin(), sorted.end());
  }
  double p(double q) const {
    size_t i = static_cast<size_t>(q / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(i, sorted.size() - 1)];
  }
  double extra_pct() const {
    return 100.0 * (attempts - static_cast<double>(latency.size())) / static_cast<double>(latency.size());
  }
  double extra_work_pct() const { return 100.0 * extra_work / primary_work; }
  double late_extra_pct() const {
    return late_requests > 0 ? 100.0 * (late_attempts - late_requests) / late_requests : 0;
  }
};

// The best fixed delays in hindsight on the same draws, without a budget (one hedge): 48
// log-spaced delays from half the unhedged median to its p99.9.
struct Oracle {
  std::vector<double> extra, p99, p999;  // per swept delay
  // The best metric among delays whose extra requests are no higher than `cost` (percent).
  double best(const std::vector<double>& metric, double off_metric, double cost) const;
};
Oracle sweep(const Scenario& s, const World& w, const RunStats& off);

// One policy over one scenario and seed, request by request in virtual time (null: no hedging).
RunStats simulate(const Scenario& s, const World& w, HedgePolicy* policy);
// The queueing model: `servers` FIFO servers at the scenario's load.
RunStats simulate_queue(const Scenario& s, uint64_t seed, const World& w, HedgePolicy* policy, double mean_service);
// A queue scenario's mean service time (from draws of its own), or 0 for the others.
double mean_service(const Scenario& s, uint64_t seed);
// simulate_queue for queue scenarios, simulate for the others.
RunStats simulate_any(const Scenario& s, uint64_t seed, const World& w, HedgePolicy* policy, double mean_service);

}  // namespace crucible::bench
