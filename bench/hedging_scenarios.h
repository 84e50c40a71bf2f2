// Hedging benchmark scenarios: latency models given as data, sampled with common random numbers
// so that every policy sees the same draws.
#pragma once

#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::bench {

// One mixture component of an attempt's latency in milliseconds.
struct Component {
  double weight = 1;
  std::string type;  // "lognormal" (median, sigma), "pareto" (xm, alpha), "uniform" (lo, hi)
  double a = 0, b = 0;
  double offset = 0;  // added to the draw
};

struct Scenario {
  std::string id;
  std::string description;
  // "iid": attempts draw independently; "size": a per-request size scales every attempt;
  // "queue": attempts wait in FIFO queues of `servers` servers at offered load `load`.
  std::string kind = "iid";
  std::vector<Component> components;
  double straggler_p = 0, straggler_factor = 1;  // per attempt
  size_t requests = 200'000;
  int max_hedges = 1;
  double drift_at = -1, drift_factor = 1;       // from this fraction of the run, latencies * factor
  double burst_fraction = 0, burst_factor = 1;  // share of 1 s windows where every attempt is slower
  double rate_per_s = 1000;                     // arrivals (for bursts and queues)
  int servers = 10;
  double load = 0;              // queue: offered load without hedging
  bool correlated = false;      // queue: copies share the job's size
  std::string score = "p99.9";  // the percentile that matters here

  Json to_json() const;
};

// The built-in scenarios of reference/hedging.md section 6.2.
std::vector<Scenario> builtin_scenarios(bool quick);

// Parses a scenario file: {"scenarios": [ {...}, ... ]} with the fields of Scenario
// (components as [{"weight", "type", "median"|"xm"|"lo", "sigma"|"alpha"|"hi", "offset"}]).
// kInvalidArgument naming the scenario and field.
Result<std::vector<Scenario>> load_scenarios(const std::string& path);

// The attempt latency for draw `u` (a uniform) and `v` (a second uniform), in ms.
double sample_component(const Scenario& s, double u_pick, double u1, double u2);

}  // namespace crucible::bench
