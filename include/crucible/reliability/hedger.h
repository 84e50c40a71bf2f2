// The Hedger: runs a request, sends backups when the policy's delay passes without an answer,
// keeps the first successful answer and cancels every other attempt through its stop_token.
//
//   Hedger hedger(executor, real_clock(), policy);
//   auto r = hedger.hedge<Completion>([&](int attempt, std::stop_token stop) { return call(stop); },
//                                     {.key = "claude"}, stop);
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/executor.h"
#include "crucible/core/json.h"
#include "crucible/reliability/hedging.h"

namespace crucible {

struct HedgeMetadata {
  bool hedged = false;     // a backup was started
  bool hedge_won = false;  // the kept answer came from a backup
  int attempts = 0;        // attempts started: the cost
  int winner = 0;          // index of the kept attempt (0: the primary)
  double total_latency_ms = 0;
  std::optional<double> primary_latency_ms;  // when the primary finished
  std::optional<double> backup_latency_ms;   // the winning backup's own time, from its start
  std::optional<double> hedge_delay_ms;      // the planned delay; none when not hedging
  bool budget_denied = false;                // a backup was due but the budget or the gate refused it
  std::string strategy;
  // {"hedged","hedge_won","attempts","cost","total_latency","primary_latency","backup_latency",
  //  "hedge_delay","strategy",...} with latencies in milliseconds.
  Json to_json() const;
};

template <typename T>
struct Hedged {
  T value;
  HedgeMetadata meta;
};

struct HedgeCallOptions {
  std::string key = "default";  // policy state key: backend or model
  int max_hedges = 1;           // backups at most (gRPC caps attempts at 5)
  // One deadline over every attempt; none: the attempts' own deadlines are the only ones, as for
  // the same call unhedged.
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<double> size;  // for workload-aware strategies
  std::string model_complexity;
  std::string priority;
  // Return only once every cancelled attempt has returned, for attempts that borrow the caller's
  // state. Otherwise hedge() returns as soon as the winner is known.
  bool wait_for_losers = false;
};

class Hedger {
 public:
  using Attempt = std::function<Status(int attempt, std::stop_token stop)>;

  // All three must outlive the Hedger and any attempt still running after hedge() returned.
  Hedger(Executor& executor, Clock& clock, HedgePolicy& policy);

  // Runs `request` with hedging. The first successful attempt wins at once; the others are asked
  // to stop. A failed attempt with a retryable code starts the next one at once (gRPC's rule);
  // a non-retryable failure is returned when no other attempt is running. kDeadlineExceeded after
  // the timeout (when one is set), kCancelled when `stop` is requested. Attempts run on the executor.
  template <typename T>
  [[nodiscard]] Result<Hedged<T>> hedge(std::function<Result<T>(int attempt, std::stop_token stop)> request,
                                        const HedgeCallOptions& options, std::stop_token stop = {}) {
    auto slots = std::make_shared<std::vector<std::optional<T>>>(static_cast<size_t>(options.max_hedges) + 1);
    auto fn = std::make_shared<std::function<Result<T>(int, std::stop_token)>>(std::move(request));
    auto meta = run(
        [slots, fn](int attempt, std::stop_token s) -> Status {
          Result<T> r = (*fn)(attempt, s);
          if (!r) return make_error(r.error());
          (*slots)[static_cast<size_t>(attempt)] = std::move(*r);
          return {};
        },
        options, stop);
    if (!meta) return make_error(meta.error());
    return Hedged<T>{std::move(*(*slots)[static_cast<size_t>(meta->winner)]), std::move(*meta)};
  }

  HedgePolicy& policy() { return policy_; }

 private:
  [[nodiscard]] Result<HedgeMetadata> run(Attempt attempt, const HedgeCallOptions& options, std::stop_token stop);

  Executor& executor_;
  Clock& clock_;
  HedgePolicy& policy_;
};

}  // namespace crucible
