// Request hedging policy: strategies that choose when to send a backup request, the extra-load
// budget every strategy respects, and the win-rate gate that stops hedging when it stops helping
// (under load, hedges lose and only add work). All state is per key (a backend or model) and
// thread-safe. Time is passed in (`now_s`), so the same objects run in the live Hedger and in
// the virtual-time benchmark.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/core/random.h"

namespace crucible {

// What a strategy knows about a request when it picks the delay.
struct HedgeRequest {
  std::string_view key;               // backend or model; strategies keep state per key
  double now_s = 0;                   // monotonic seconds (virtual in simulations)
  std::optional<double> size;         // predicted work: prompt tokens, bytes
  std::string_view model_complexity;  // "simple", "medium", "complex" or empty
  std::string_view priority;          // "low", "normal", "high" or empty
  std::string_view time_of_day;       // "peak", "normal", "off_peak" or empty
};

// What happened to a request, fed back to the strategy and the gate.
struct HedgeOutcome {
  std::string_view key;
  double now_s = 0;
  double delay_ms = 0;                      // the delay that was planned (infinity: none)
  bool hedged = false;                      // a backup was started
  bool hedge_won = false;                   // a backup's answer was kept
  bool error = false;                       // every attempt failed
  double latency_ms = 0;                    // time to the kept answer
  bool primary_finished = false;            // false: the primary was cancelled (its latency is censored)
  double primary_latency_ms = 0;            // the primary's time if it finished, else the latency above
  std::optional<double> backup_latency_ms;  // the first backup's own time, if it finished
  std::optional<double> size;
  int backups = 0;  // backups started
};

class HedgeStrategy {
 public:
  virtual ~HedgeStrategy() = default;
  virtual std::string_view name() const = 0;
  // Delay before the first backup in milliseconds; nullopt: do not hedge this request. The
  // decision path: constant time, no allocation once a key has been seen.
  virtual std::optional<double> delay_ms(const HedgeRequest& request) = 0;
  virtual void record(const HedgeOutcome& outcome) = 0;
  virtual Json stats() const { return Json::object(); }
};

struct PercentileOptions {
  double percentile = 95;                        // in (0, 100)
  size_t window = 4096;                          // most recent samples per key
  size_t min_samples = 20;                       // before this many, use initial_delay_ms
  std::optional<double> initial_delay_ms = 100;  // nullopt: no hedging until min_samples
  double min_delay_ms = 1;                       // clamp, as Finagle's 1 ms floor
  std::optional<double> max_delay_ms;
};

struct AdaptiveOptions {
  // Fixed delay candidates in ms: the earliest one no earlier than the quantile is used
  // (crucible_hedging's delay_candidates).
  std::vector<double> delays;
  double budget = 0.05;  // the extra-request fraction the budget allows
  double margin = 0;     // aim this fraction below the budget
  double gain = 0.002;   // the controller's relative step
  double min_p = 0.001, max_p = 0.5;
  size_t window = 1000;
  size_t min_samples = 10;  // no hedging before this many samples
};

struct WorkloadOptions {
  double base_delay_ms = 100;
  double floor_ms = 10;
  // With `size` on requests: delay = p95(latency / size) * size once this many samples exist.
  size_t min_samples = 50;
};

struct BackoffOptions {
  double base_delay_ms = 100, min_delay_ms = 10, max_delay_ms = 5000;
  double increase = 1.5;  // after a wasted hedge (hedged, primary won)
  double decrease = 0.9;  // after a useful or unneeded one
  double error = 2.0;     // after an error
};

std::unique_ptr<HedgeStrategy> make_off_strategy();
std::unique_ptr<HedgeStrategy> make_fixed_strategy(double delay_ms);
std::unique_ptr<HedgeStrategy> make_percentile_strategy(PercentileOptions options = {});
std::unique_ptr<HedgeStrategy> make_adaptive_strategy(AdaptiveOptions options = {});
std::unique_ptr<HedgeStrategy> make_workload_aware_strategy(WorkloadOptions options = {});
std::unique_ptr<HedgeStrategy> make_exponential_backoff_strategy(BackoffOptions options = {});

// The extra-load budget: a token bucket that gains `percent` of a token per request (plus
// `min_per_second` tokens per second, a reserve for low traffic) and spends one per backup,
// holding at most `cap` tokens (Finagle's RetryBudget, brpc's max_backup_ratio).
struct BudgetOptions {
  double percent = 0.05;
  double min_per_second = 0;
  double cap = 20;
};

// Harm protection: over the last `window` hedges, if fewer than `min_win_rate` of them won, stop
// hedging for `cooldown_requests`, doubling each time it trips (up to 64 times). Near saturation
// hedges stop winning, so the gate closes before they make queues longer.
struct GateOptions {
  size_t window = 50;
  size_t min_hedges = 20;
  double min_win_rate = 0.05;
  size_t cooldown_requests = 200;
};

// A strategy with its budget and gate, per key, and a load-harm detector: when the median latency
// while hedging rises 20% above its reference, 250 requests without hedging measure a baseline;
// if hedging's median was more than 8% above it (hedges added load that lengthened queues),
// hedging pauses, twice as long each time; otherwise the baseline becomes the new reference.
// Thread-safe.
struct HedgingConfig;

class HedgePolicy {
 public:
  HedgePolicy(std::unique_ptr<HedgeStrategy> strategy, BudgetOptions budget = {}, GateOptions gate = {});
  ~HedgePolicy();

  // The policy a checked config describes (crucible/reliability/hedging_config.h):
  // kInvalidArgument naming the field when the config breaks a rule.
  [[nodiscard]] static Result<std::unique_ptr<HedgePolicy>> create(const HedgingConfig& config);

  std::string_view strategy_name() const;
  // Called once per request: deposits into the budget and returns the planned delay.
  std::optional<double> plan(const HedgeRequest& request);
  // Called when a backup is due: whether the gate is open and the budget pays for it.
  bool permit_backup(std::string_view key, double now_s);
  void record(const HedgeOutcome& outcome);
  Json stats() const;

 private:
  struct Impl;
  std::unique_ptr<HedgeStrategy> strategy_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crucible
