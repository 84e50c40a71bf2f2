#include "crucible/experiment/strategy.h"

#include <algorithm>
#include <map>

#include "crucible/journal/journal.h"

namespace crucible {
namespace {

Status check_configs(const std::vector<Json>& configs, std::string_view strategy) {
  if (configs.empty()) {
    return make_error(ErrorCode::kInvalidArgument, std::string(strategy) + ": no configs to run (the list is empty)");
  }
  return {};
}

// The caller's executor, or one the strategy owns when none was given.
Executor& executor_of(StrategyOptions& o, std::unique_ptr<Executor>& own) {
  if (o.executor == nullptr) {
    own = std::make_unique<Executor>(2);
    o.executor = own.get();
  }
  return *o.executor;
}
Clock& clock_of(const StrategyOptions& o) { return o.clock != nullptr ? *o.clock : real_clock(); }

Json numeric_members(const Json& output) {
  Json metrics = Json::object();
  const Json& source =
      output.is_object() && output.contains("metrics") && output["metrics"].is_object() ? output["metrics"] : output;
  if (!source.is_object()) return metrics;
  for (const auto& [k, v] : source.items()) {
    if (v.is_number()) metrics[k] = v;
  }
  return metrics;
}

}  // namespace

Branch execute_branch(const BranchFn& fn, const Json& config, const std::string& experiment, Clock& clock,
                      RunLogger* logger, std::stop_token stop) {
  Branch branch(config, clock);
  std::string run;
  if (logger != nullptr) {
    if (auto r = logger->start_run(experiment, branch.config_id())) {
      run = *r;
      (void)logger->log_params(run, config);
    } else {
      logger = nullptr;
    }
  }
  Result<Json> out = make_error(ErrorCode::kInternal, "not run");
  try {
    out = fn(config, stop);
  } catch (const std::exception& e) {
    out = make_error(ErrorCode::kInternal, std::string("the branch threw an exception: ") + e.what());
  } catch (...) {
    out = make_error(ErrorCode::kInternal, "the branch threw a non-standard exception");
  }
  if (out) {
    (void)branch.mark_success(std::move(*out), clock);
  } else {
    (void)branch.mark_failure(out.error(), clock);
  }
  if (logger != nullptr) {
    Json metrics = numeric_members(branch.output());
    if (!metrics.empty()) (void)logger->log_metrics(run, metrics);
    (void)logger->log_branch(run, branch);
    (void)logger->end_run(run, branch.status());
  }
  return branch;
}

// RoundRobin

RoundRobin::RoundRobin(StrategyOptions options) : options_(std::move(options)) {}

Result<int64_t> RoundRobin::position() {
  std::lock_guard lock(mu_);
  if (options_.journal == nullptr) return memory_position_;
  CRUCIBLE_ASSIGN_OR_RETURN(auto v, options_.journal->get_value("", "round_robin/" + options_.experiment));
  return v && v->is_number_integer() ? v->get<int64_t>() : 0;
}

Result<int64_t> RoundRobin::take_position() {
  std::lock_guard lock(mu_);
  if (options_.journal == nullptr) return memory_position_++;
  const std::string key = "round_robin/" + options_.experiment;
  CRUCIBLE_ASSIGN_OR_RETURN(auto v, options_.journal->get_value("", key));
  int64_t pos = v && v->is_number_integer() ? v->get<int64_t>() : 0;
  // Advanced before the call runs, so a crash mid-call moves on rather than retrying the config.
  CRUCIBLE_RETURN_IF_ERROR(options_.journal->put_value("", key, Json(pos + 1)));
  return pos;
}

Result<Json> RoundRobin::call(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto outcome, run(fn, configs, logger));
  return std::move(outcome.output);
}

Result<ExperimentOutcome> RoundRobin::run(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_RETURN_IF_ERROR(check_configs(configs, name()));
  CRUCIBLE_ASSIGN_OR_RETURN(auto pos, take_position());
  const Json& config = configs[static_cast<size_t>(pos % static_cast<int64_t>(configs.size()))];
  Branch branch = execute_branch(fn, config, options_.experiment, clock_of(options_), logger);
  if (branch.status() == BranchStatus::kFailed) return make_error(*branch.error());
  ExperimentOutcome outcome;
  outcome.output = branch.output();
  outcome.branches.add(std::move(branch));
  return outcome;
}

// Shadow

Shadow::Shadow(StrategyOptions options) : options_(std::move(options)) { executor_of(options_, own_executor_); }

Shadow::~Shadow() {
  stop_.request_stop();
  std::vector<std::future<void>> threads;
  {
    std::lock_guard lock(mu_);
    threads = std::move(threads_);
  }
  for (auto& t : threads) t.wait();
}

Result<Json> Shadow::call(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto outcome, run(fn, configs, logger));
  return std::move(outcome.output);
}

Result<ExperimentOutcome> Shadow::run(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_RETURN_IF_ERROR(check_configs(configs, name()));
  Clock& clock = clock_of(options_);
  {
    std::lock_guard lock(mu_);
    for (size_t i = 1; i < configs.size(); ++i) {
      auto slot = std::make_shared<Branch>();
      shadow_results_.push_back(slot);
      // The shadow owns copies of everything it touches: it may outlive this call.
      threads_.push_back(options_.executor->run_in_background(
          [slot, fn, config = configs[i], experiment = options_.experiment, &clock, logger, stop = stop_.get_token()] {
            Branch b = execute_branch(fn, config, experiment, clock, logger, stop);
            *slot = std::move(b);
          }));
    }
  }
  Branch primary = execute_branch(fn, configs[0], options_.experiment, clock, logger, stop_.get_token());
  if (primary.status() == BranchStatus::kFailed) return make_error(*primary.error());
  ExperimentOutcome outcome;
  outcome.output = primary.output();
  outcome.branches.add(std::move(primary));
  return outcome;
}

BranchSet Shadow::gather_shadows() {
  std::vector<std::future<void>> threads;
  std::vector<std::shared_ptr<Branch>> results;
  {
    std::lock_guard lock(mu_);
    threads = std::move(threads_);
    results = std::move(shadow_results_);
    threads_.clear();
    shadow_results_.clear();
  }
  for (auto& t : threads) t.wait();
  BranchSet set;
  for (auto& r : results) set.add(std::move(*r));
  return set;
}

// MultiBranch

MultiBranch::MultiBranch(StrategyOptions options) : options_(std::move(options)) {
  executor_of(options_, own_executor_);
}

Result<BranchSet> MultiBranch::call(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_RETURN_IF_ERROR(check_configs(configs, name()));
  std::vector<Branch> branches(configs.size());
  Clock& clock = clock_of(options_);
  options_.executor->parallel_for_blocking(
      configs.size(),
      [&](size_t i) { branches[i] = execute_branch(fn, configs[i], options_.experiment, clock, logger); },
      options_.max_concurrency);
  return BranchSet(std::move(branches));
}

Result<ExperimentOutcome> MultiBranch::run(const BranchFn& fn, const std::vector<Json>& configs, RunLogger* logger) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto set, call(fn, configs, logger));
  ExperimentOutcome outcome;
  outcome.output = set.to_json();
  outcome.branches = std::move(set);
  return outcome;
}

// Registry

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, StrategyFactory> factories;
  Registry() {
    factories["round_robin"] = [](const StrategyOptions& o) { return std::make_unique<RoundRobin>(o); };
    factories["shadow"] = [](const StrategyOptions& o) { return std::make_unique<Shadow>(o); };
    factories["multi_branch"] = [](const StrategyOptions& o) { return std::make_unique<MultiBranch>(o); };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Status register_strategy(const std::string& name, StrategyFactory factory) {
  if (name.empty() || !factory)
    return make_error(ErrorCode::kInvalidArgument, "register_strategy: a name and a factory are required");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (!r.factories.emplace(name, std::move(factory)).second) {
    return make_error(ErrorCode::kAlreadyExists, "strategy '" + name + "' is already registered");
  }
  return {};
}

Result<std::unique_ptr<Strategy>> get_strategy(const std::string& name, const StrategyOptions& options) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.factories.find(name);
  if (it == r.factories.end()) {
    std::string known;
    for (const auto& [k, _] : r.factories) known += (known.empty() ? "" : ", ") + k;
    return make_error(ErrorCode::kNotFound, "unknown strategy '" + name + "' (known: " + known + ")");
  }
  return it->second(options);
}

std::vector<std::string> strategy_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [k, _] : r.factories) out.push_back(k);
  return out;
}

}  // namespace crucible
