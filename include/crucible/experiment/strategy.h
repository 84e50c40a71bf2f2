// Experiment strategies: how the configs of an experiment are run against one function.
//   RoundRobin   one config per call, rotating; the position survives restarts.
//   Shadow       the first config is the primary; the others run beside it and never affect
//                the caller; the primary's output returns as soon as it is ready.
//   MultiBranch  every config, concurrently, at most max_concurrency at a time.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/executor.h"
#include "crucible/core/json.h"
#include "crucible/experiment/branch.h"
#include "crucible/experiment/run_logger.h"

namespace crucible {

class Journal;

// The function under experiment: config in, output out. `stop` is requested when the branch
// should give up (a shadow whose strategy is being destroyed).
using BranchFn = std::function<Result<Json>(const Json& config, std::stop_token stop)>;

struct StrategyOptions {
  std::string experiment = "experiment";  // name; keys the round-robin position and logger runs
  Executor* executor = nullptr;           // when null, the strategy starts one of its own
  Clock* clock = nullptr;                 // real_clock() when null
  Journal* journal = nullptr;             // where RoundRobin keeps its position; memory when null
  size_t max_concurrency = 0;             // MultiBranch: 0 runs every branch at once
};

// What Strategy::run returns: the caller's value (the chosen or primary branch's output; for
// MultiBranch the branches as JSON) and the branches that have finished.
struct ExperimentOutcome {
  Json output;
  BranchSet branches;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string_view name() const = 0;
  // kInvalidArgument for an empty config list.
  [[nodiscard]] virtual Result<ExperimentOutcome> run(const BranchFn& fn, const std::vector<Json>& configs,
                                                      RunLogger* logger = nullptr) = 0;
};

// Runs one branch and never raises: an error or exception of `fn` becomes a failed branch. The
// logger (may be null) gets start_run, log_params, log_metrics (numeric members of the output),
// log_branch and end_run.
Branch execute_branch(const BranchFn& fn, const Json& config, const std::string& experiment, Clock& clock,
                      RunLogger* logger, std::stop_token stop = {});

class RoundRobin : public Strategy {
 public:
  explicit RoundRobin(StrategyOptions options = {});
  std::string_view name() const override { return "round_robin"; }
  [[nodiscard]] Result<ExperimentOutcome> run(const BranchFn& fn, const std::vector<Json>& configs,
                                              RunLogger* logger) override;
  // The chosen branch's output; its failure is returned with its original code.
  [[nodiscard]] Result<Json> call(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger = nullptr);
  // The index the next call will use (before taking it modulo the config count).
  [[nodiscard]] Result<int64_t> position();

 private:
  [[nodiscard]] Result<int64_t> take_position();

  StrategyOptions options_;
  std::mutex mu_;
  int64_t memory_position_ = 0;  // guarded by mu_; used without a journal
};

class Shadow : public Strategy {
 public:
  explicit Shadow(StrategyOptions options = {});
  // Requests stop for unfinished shadows and waits for them.
  ~Shadow() override;
  std::string_view name() const override { return "shadow"; }
  [[nodiscard]] Result<ExperimentOutcome> run(const BranchFn& fn, const std::vector<Json>& configs,
                                              RunLogger* logger) override;
  // Starts the shadows (configs[1..]) and the primary (configs[0]) together and returns the
  // primary's output when it finishes; shadow failures are recorded, never returned.
  [[nodiscard]] Result<Json> call(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger = nullptr);
  // Waits for every shadow started so far and returns their branches, in start order.
  BranchSet gather_shadows();

 private:
  StrategyOptions options_;
  std::unique_ptr<Executor> own_executor_;  // when options_ named none
  std::stop_source stop_;
  std::mutex mu_;
  std::vector<std::future<void>> threads_;               // guarded by mu_: the running shadows
  std::vector<std::shared_ptr<Branch>> shadow_results_;  // guarded by mu_; filled by the threads
};

class MultiBranch : public Strategy {
 public:
  explicit MultiBranch(StrategyOptions options = {});
  std::string_view name() const override { return "multi_branch"; }
  [[nodiscard]] Result<ExperimentOutcome> run(const BranchFn& fn, const std::vector<Json>& configs,
                                              RunLogger* logger) override;
  // Every branch, in config order; never fails because a branch failed.
  [[nodiscard]] Result<BranchSet> call(const BranchFn& fn, const std::vector<Json>& configs,
                                       RunLogger* logger = nullptr);

 private:
  StrategyOptions options_;
  std::unique_ptr<Executor> own_executor_;  // when options_ named none
};

using StrategyFactory = std::function<std::unique_ptr<Strategy>(const StrategyOptions&)>;

// The process-wide strategy registry; round_robin, shadow and multi_branch are built in.
// kAlreadyExists for a taken name.
[[nodiscard]] Status register_strategy(const std::string& name, StrategyFactory factory);
// kNotFound naming the known strategies.
[[nodiscard]] Result<std::unique_ptr<Strategy>> get_strategy(const std::string& name,
                                                             const StrategyOptions& options = {});
std::vector<std::string> strategy_names();

namespace experiment_internal {
[[nodiscard]] inline Result<Json> as_result(Result<Json> r) { return r; }
template <typename T>
requires(!std::is_same_v<std::decay_t<T>, Result<Json>>) [[nodiscard]] Result<Json> as_result(T&& value) {
  return Json(std::forward<T>(value));
}
}  // namespace experiment_internal

// The `@experiment` decorator: binds a strategy to a function so that
//   auto run = crucible::experiment(strategy, [](const Json& config, int epochs) { ... });
//   auto outcome = run(configs, 3);
// calls fn(config, args...) for the configs the strategy picks. fn returns Json or Result<Json>.
template <typename Fn>
auto experiment(std::shared_ptr<Strategy> strategy, Fn fn, RunLogger* logger = nullptr) {
  return [strategy = std::move(strategy), fn = std::move(fn), logger](const std::vector<Json>& configs,
                                                                      auto&&... args) -> Result<ExperimentOutcome> {
    BranchFn bound = [&](const Json& config, std::stop_token) -> Result<Json> {
      return experiment_internal::as_result(fn(config, args...));
    };
    return strategy->run(bound, configs, logger);
  };
}

}  // namespace crucible
