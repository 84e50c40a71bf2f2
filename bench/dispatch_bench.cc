#include <chrono>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/clock.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/builder.h"

namespace crucible::bench {

namespace {

constexpr int kStages = 10'000;

// 10,000 noop stages in a row, and a parallel node of 10,000 one-stage branches.
struct DispatchSpecs {
  WorkflowSpec sequence;
  WorkflowSpec parallel;
  WorkflowSpec history;          // kStages stages
  WorkflowSpec history_fan_out;  // the same, then kHistoryBranches one-stage branches
};

// A fan-out after a long history: what a branch costs must not grow with the stages before it.
constexpr int kHistoryBranches = 1'000;

WorkflowBuilder with_history(const std::string& name) {
  WorkflowBuilder b(name);
  for (int i = 0; i < kStages; ++i) b.stage("h" + std::to_string(i), "noop");
  return b;
}

Result<DispatchSpecs> dispatch_specs(const StageRegistry& registry) {
  WorkflowBuilder seq("dispatch-sequence");
  for (int i = 0; i < kStages; ++i) seq.stage("s" + std::to_string(i), "noop");
  CRUCIBLE_ASSIGN_OR_RETURN(auto seq_spec, seq.build(registry));
  std::vector<std::pair<std::string, SequenceBuilder::Body>> branches;
  for (int i = 0; i < kStages; ++i) {
    branches.emplace_back("b" + std::to_string(i), [](SequenceBuilder& b) { b.stage("work", "noop"); });
  }
  WorkflowBuilder par("dispatch-parallel");
  par.parallel("fan", std::move(branches), JoinPolicy::kAll, MergePolicy::kLastWins);
  CRUCIBLE_ASSIGN_OR_RETURN(auto par_spec, par.build(registry));
  WorkflowBuilder history = with_history("dispatch-history");
  CRUCIBLE_ASSIGN_OR_RETURN(auto history_spec, history.build(registry));
  std::vector<std::pair<std::string, SequenceBuilder::Body>> late;
  for (int i = 0; i < kHistoryBranches; ++i) {
    late.emplace_back("b" + std::to_string(i), [](SequenceBuilder& b) { b.stage("work", "noop"); });
  }
  WorkflowBuilder fan_out = with_history("dispatch-history-fan-out");
  fan_out.parallel("fan", std::move(late), JoinPolicy::kAll, MergePolicy::kLastWins);
  CRUCIBLE_ASSIGN_OR_RETURN(auto fan_out_spec, fan_out.build(registry));
  return DispatchSpecs{std::move(seq_spec), std::move(par_spec), std::move(history_spec), std::move(fan_out_spec)};
}

// The raw baseline: a noop stage called directly, ns per call.
Result<std::vector<double>> raw_calls(const StageRegistry& registry, int reps) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto noop, registry.create("noop"));
  Context ctx;
  StageOptions no_options;
  std::vector<double> out;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kStages; ++i) (void)noop->run(ctx, no_options, {});
    out.push_back(since_us(t0) * 1000.0 / kStages);
  }
  return out;
}

// ns per stage (per `per` units) of `reps` runs of `spec`, each on a fresh in-memory journal.
Result<std::vector<double>> time_runs(const WorkflowSpec& spec, const StageRegistry& registry, Executor& executor,
                                      int reps, int per = kStages) {
  SeededRandom random(1);
  std::vector<double> out;
  for (int r = 0; r < reps; ++r) {
    auto journal = make_memory_journal();
    Runner runner(*journal, executor, real_clock(), random, registry);
    auto t0 = std::chrono::steady_clock::now();
    auto res = runner.start(spec);
    double us = since_us(t0);
    if (!res || res->status != RunStatus::kCompleted) {
      return make_error(ErrorCode::kInternal, spec.name + ": the run did not complete");
    }
    out.push_back(us * 1000.0 / per);
  }
  return out;
}

// ns per branch of a fan-out after kStages stages: the run with the fan-out minus the run
// without it, repetition by repetition.
Result<std::vector<double>> time_late_fan_out(const DispatchSpecs& specs, const StageRegistry& registry,
                                              Executor& executor, int reps) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto with, time_runs(specs.history_fan_out, registry, executor, reps, kHistoryBranches));
  CRUCIBLE_ASSIGN_OR_RETURN(auto without, time_runs(specs.history, registry, executor, reps, kHistoryBranches));
  std::vector<double> out;
  for (size_t i = 0; i < with.size(); ++i) out.push_back(std::max(0.0, with[i] - without[i]));
  return out;
}

}  // namespace

Result<Json> run_dispatch(bool quick) {
  const int reps = quick ? 3 : 7;
  StageRegistry registry = builtin_registry();
  CRUCIBLE_ASSIGN_OR_RETURN(DispatchSpecs specs, dispatch_specs(registry));
  Executor executor(2);
  // Each workload runs its repetitions back to back, so one's memory churn (10,000 branch
  // contexts freed) is not charged to the other.
  CRUCIBLE_ASSIGN_OR_RETURN(auto raw_ns, raw_calls(registry, reps));
  CRUCIBLE_ASSIGN_OR_RETURN(auto seq_ns, time_runs(specs.sequence, registry, executor, reps));
  CRUCIBLE_ASSIGN_OR_RETURN(auto par_ns, time_runs(specs.parallel, registry, executor, reps));
  CRUCIBLE_ASSIGN_OR_RETURN(auto late_ns, time_late_fan_out(specs, registry, executor, reps));
  double seq_median = median(seq_ns), par_median = median(par_ns);
  return Json{{"benchmark", "dispatch"},
              {"stages", kStages},
              {"branches", kStages},
              {"repetitions", reps},
              {"executor_threads", executor.size()},
              {"journal", "memory"},
              {"raw_stage_call_ns", median(raw_ns)},
              {"sequence_ns_per_stage", seq_median},
              {"sequence_ns_per_stage_min", *std::min_element(seq_ns.begin(), seq_ns.end())},
              {"parallel_ns_per_branch", par_median},
              {"parallel_ns_per_branch_min", *std::min_element(par_ns.begin(), par_ns.end())},
              {"history_stages", kStages},
              {"branches_after_history", kHistoryBranches},
              {"parallel_after_history_ns_per_branch", median(late_ns)},
              {"goal_ns_per_stage", 600},
              {"goal_ns_per_branch", 1000},
              {"sequence_pass", seq_median <= 600},
              {"parallel_pass", par_median <= 1000},
              {"reference", "Taskflow measures 30-80 ns per task on this machine kind"}};
}

}  // namespace crucible::bench
