#include "crucible/engine/runner.h"

#include <atomic>
#include <barrier>
#include <future>
#include <map>

#include <gtest/gtest.h>

#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/testing/fault_injecting_journal.h"
#include "crucible/workflow/builder.h"
#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;

// Counts executions per stage name and can be told to fail.
struct Probe {
  std::mutex mu;
  std::map<std::string, int> runs;
  std::map<std::string, std::vector<ErrorCode>> failures;  // consumed in order, per stage

  int count(const std::string& name) {
    std::lock_guard lock(mu);
    return runs[name];
  }
};

std::shared_ptr<Probe> probe() { return std::make_shared<Probe>(); }

void register_probe(StageRegistry& registry, std::shared_ptr<Probe> p) {
  (void)registry.register_stage("probe", [p] {
    StageDescription d;
    d.name = "probe";
    d.summary = "counts runs";
    d.options.push_back({"*", "any", false, Json(), "anything"});
    return make_function_stage(d, [p](Context& ctx, const StageOptions& o, std::stop_token) -> Status {
      std::string name = ctx.current_stage();
      {
        std::lock_guard lock(p->mu);
        p->runs[name]++;
        auto& f = p->failures[name];
        if (!f.empty()) {
          ErrorCode code = f.front();
          f.erase(f.begin());
          ctx.put_metric(name + ".partial", 1);  // must be rolled back
          return make_error(code, "injected failure");
        }
      }
      if (const Json* v = o.get("metric")) ctx.put_metric(name, *v);
      if (const Json* v = o.get("state")) ctx.assign(o.string_or("key", name), *v);
      return {};
    });
  });
  (void)registry.register_stage("thrower", [] {
    StageDescription d;
    d.name = "thrower";
    d.summary = "throws";
    return make_function_stage(
        d, [](Context&, const StageOptions&, std::stop_token) -> Status { throw std::runtime_error("kaboom"); });
  });
  (void)registry.register_stage("waits_for_stop", [] {
    StageDescription d;
    d.name = "waits_for_stop";
    d.summary = "blocks until stopped";
    return make_function_stage(d, [](Context&, const StageOptions&, std::stop_token stop) -> Status {
      while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);
      return make_error(ErrorCode::kCancelled, "stopped");
    });
  });
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = builtin_registry();
    register_probe(registry_, probe_);
    journal_ = make_memory_journal();
    runner_ = std::make_unique<Runner>(*journal_, executor_, clock_, random_, registry_);
  }

  WorkflowSpec load(const std::string& yaml) {
    LoadResult r = load_pipeline_text(yaml, "test.yaml", registry_);
    EXPECT_TRUE(r.ok()) << r.report();
    return r.ok() ? *r.spec : WorkflowSpec{};
  }

  RunResult run(const WorkflowSpec& spec, StartOptions options = {}) {
    auto r = runner_->start(spec, options);
    EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
  }

  std::vector<Record> records_of(const RunId& id, RecordType type) {
    std::vector<Record> out;
    auto log = journal_->read_run(id);
    for (const Record& r : log->records) {
      if (r.type == type) out.push_back(r);
    }
    return out;
  }

  StageRegistry registry_;
  std::shared_ptr<Probe> probe_ = probe();
  std::unique_ptr<Journal> journal_;
  Executor executor_{4};
  FakeClock clock_;
  SeededRandom random_{42};
  std::unique_ptr<Runner> runner_;
};

const char* kSeed001 = R"(
name: seed001
config: {items: [1, 2, 3], do_final: true}
stages:
  - {name: step1, uses: noop}
  - {name: step2, uses: noop}
  - name: items
    loop:
      over: config.items
      stages:
        - {name: process, uses: noop}
  - name: finish
    conditional:
      when: config.do_final
      then:
        - {name: final, uses: noop}
)";

TEST_F(RunnerTest, Seed001PipelineProducesTheExpectedTrace) {
  RunResult r = run(load(kSeed001));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(r.context.trace(), (std::vector<std::string>{"step1", "step2", "process", "process", "process", "final"}));
  EXPECT_EQ(r.context.completed_stages(), (std::vector<std::string>{"step1", "step2", "process", "final"}));
}

TEST_F(RunnerTest, BuilderAndYamlProduceTheSameTreeAndTrace) {
  WorkflowBuilder b("seed001");
  b.config(Json{{"items", {1, 2, 3}}, {"do_final", true}});
  b.stage("step1", "noop")
      .stage("step2", "noop")
      .loop_over("items", "config.items", [](SequenceBuilder& body) { body.stage("process", "noop"); })
      .conditional("finish", "config.do_final", [](SequenceBuilder& then) { then.stage("final", "noop"); });
  auto built = b.build(registry_);
  ASSERT_TRUE(built) << built.error().to_string();
  WorkflowSpec yaml = load(kSeed001);
  EXPECT_EQ(spec_to_json(*built), spec_to_json(yaml));
  EXPECT_EQ(spec_hash(*built), spec_hash(yaml));
  EXPECT_EQ(run(*built).context.trace(), run(yaml).context.trace());
}

TEST_F(RunnerTest, EveryOutcomeAndDecisionIsJournaled) {
  RunResult r = run(load(kSeed001));
  EXPECT_EQ(records_of(r.run_id, RecordType::kRunStarted).size(), 1u);
  EXPECT_EQ(records_of(r.run_id, RecordType::kStepStarted).size(), 6u);
  auto completed = records_of(r.run_id, RecordType::kStepCompleted);
  ASSERT_EQ(completed.size(), 6u);
  EXPECT_EQ(completed[2].key.str(), "/items[0]/process");
  EXPECT_EQ(completed[5].key.str(), "/finish/final");
  std::map<std::string, Json> decisions;
  for (const Record& d : records_of(r.run_id, RecordType::kDecision)) decisions[d.key.str()] = d.payload;
  EXPECT_EQ(decisions["/items#items"], Json::array({1, 2, 3}));
  EXPECT_EQ(decisions["/finish#branch"], "then");
  EXPECT_EQ(records_of(r.run_id, RecordType::kRunCompleted).size(), 1u);
}

TEST_F(RunnerTest, ResumeReplaysFinishedStagesWithoutRunningThem) {
  WorkflowSpec spec = load(R"(
name: resume
stages:
  - {name: a, uses: probe, with: {metric: 1}}
  - {name: b, uses: probe, with: {state: x}}
  - {name: c, uses: probe}
)");
  probe_->failures["c"] = {ErrorCode::kInternal};
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kFailed);
  EXPECT_EQ(first.error->code(), ErrorCode::kInternal);
  EXPECT_NE(first.error->message().find("stage 'c' (/c)"), std::string::npos);

  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(probe_->count("b"), 1);
  EXPECT_EQ(probe_->count("c"), 2);
  EXPECT_EQ(second->replayed, 2);
  EXPECT_EQ(*second->context.get_metric("a"), 1);
  EXPECT_EQ(*second->context.get("b"), "x");
  EXPECT_FALSE(second->context.has_metric("c.partial"));
}

TEST_F(RunnerTest, SameRunIdResumesInsteadOfStartingTwice) {
  WorkflowSpec spec = load("name: p\nstages: [{name: a, uses: probe}]\n");
  StartOptions o;
  o.run_id = *RunId::parse("fixed-id");
  ASSERT_EQ(run(spec, o).status, RunStatus::kCompleted);
  RunResult again = run(spec, o);
  EXPECT_EQ(again.status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(records_of(again.run_id, RecordType::kRunCompleted).size(), 1u);
}

TEST_F(RunnerTest, DifferentSpecUnderAnExistingIdIsRefusedUnlessNewVersion) {
  StartOptions o;
  o.run_id = *RunId::parse("versioned");
  run(load("name: p\nstages: [{name: a, uses: probe}]\n"), o);
  WorkflowSpec v2 = load("name: p\nstages: [{name: a, uses: probe}, {name: b, uses: probe}]\n");
  auto refused = runner_->start(v2, o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("--new-version"), std::string::npos);
  o.new_version = true;
  RunResult r = run(v2, o);
  EXPECT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(probe_->count("b"), 1);
}

TEST_F(RunnerTest, RetriesRetryableErrorsWithBackoffThroughTheClock) {
  WorkflowSpec spec = load(R"(
name: retry
stages:
  - name: flaky
    uses: probe
    retry: {attempts: 4, backoff: 100ms, jitter: false}
)");
  probe_->failures["flaky"] = {ErrorCode::kUnavailable, ErrorCode::kUnavailable};
  RunResult r = run(spec);
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("flaky"), 3);
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].attempts, 3);
  auto sleeps = clock_.sleeps();
  ASSERT_EQ(sleeps.size(), 2u);
  EXPECT_EQ(sleeps[0], 100ms);
  EXPECT_EQ(sleeps[1], 200ms);
  EXPECT_EQ(records_of(r.run_id, RecordType::kStepStarted).size(), 3u);
  EXPECT_FALSE(r.context.has_metric("flaky.partial"));
}

TEST_F(RunnerTest, DoesNotRetryNonRetryableErrors) {
  WorkflowSpec spec = load("name: r\nstages: [{name: bad, uses: probe, retry: 5}]\n");
  probe_->failures["bad"] = {ErrorCode::kInvalidArgument};
  RunResult r = run(spec);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(probe_->count("bad"), 1);
  EXPECT_EQ(r.error->code(), ErrorCode::kInvalidArgument);
}

TEST_F(RunnerTest, TimeoutCancelsTheStageAndRecordsDeadlineExceeded) {
  WorkflowSpec spec = load("name: t\nstages: [{name: slow, uses: waits_for_stop, timeout: 50ms}]\n");
  RunResult r = run(spec);
  ASSERT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error->code(), ErrorCode::kDeadlineExceeded);
  auto failed = records_of(r.run_id, RecordType::kStepFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].error->code(), ErrorCode::kDeadlineExceeded);
}

TEST_F(RunnerTest, OptionalFailuresAreRecordedAndTheRunContinues) {
  WorkflowSpec spec = load(R"(
name: opt
stages:
  - {name: cleanup, uses: probe, optional: true}
  - {name: after, uses: probe}
)");
  probe_->failures["cleanup"] = {ErrorCode::kInternal};
  RunResult r = run(spec);
  EXPECT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(r.optional_failures, std::vector<std::string>{"/cleanup"});
  EXPECT_EQ(probe_->count("after"), 1);
  // On replay the optional failure is reported again and not re-run.
  auto again = runner_->resume(spec, r.run_id);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->optional_failures, std::vector<std::string>{"/cleanup"});
  EXPECT_EQ(probe_->count("cleanup"), 1);
}

TEST_F(RunnerTest, AThrowingStageIsARecordedFailureNotACrash) {
  RunResult r = run(load("name: t\nstages: [{name: boom, uses: thrower}]\n"));
  ASSERT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error->code(), ErrorCode::kInternal);
  EXPECT_NE(r.error->message().find("kaboom"), std::string::npos);
  EXPECT_NE(r.error->message().find("stage 'boom' (/boom)"), std::string::npos);
}

TEST_F(RunnerTest, ParallelBranchesRunConcurrently) {
  auto meet = std::make_shared<std::barrier<>>(2);
  (void)registry_.register_stage("meet", [meet] {
    StageDescription d;
    d.name = "meet";
    d.summary = "waits for the other branch";
    return make_function_stage(d, [meet](Context&, const StageOptions&, std::stop_token) -> Status {
      meet->arrive_and_wait();  // deadlocks unless both branches run at once
      return {};
    });
  });
  RunResult r = run(load(R"(
name: par
stages:
  - name: fan
    parallel:
      branches:
        - {name: left, stages: [{name: x, uses: meet}]}
        - {name: right, stages: [{name: y, uses: meet}]}
)"));
  EXPECT_EQ(r.status, RunStatus::kCompleted);
}

TEST_F(RunnerTest, ParallelMergeNamespacesMetricsAndKeepsBranchOrder) {
  RunResult r = run(load(R"(
name: par
stages:
  - name: fan
    parallel:
      branches:
        - {name: left, stages: [{name: score, uses: probe, with: {metric: 1, state: l, key: left_done}}]}
        - {name: right, stages: [{name: score, uses: probe, with: {metric: 2, state: r, key: right_done}}]}
  - {name: after, uses: noop}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(*r.context.get_metric("left.score"), 1);
  EXPECT_EQ(*r.context.get_metric("right.score"), 2);
  EXPECT_EQ(*r.context.get("left_done"), "l");
  EXPECT_EQ(*r.context.get("right_done"), "r");
  EXPECT_EQ(r.context.trace(), (std::vector<std::string>{"score", "score", "after"}));
}

TEST_F(RunnerTest, ConflictingParallelWritesFailUnlessTheMergePolicyAllows) {
  const char* yaml = R"(
name: conflict
stages:
  - name: fan
    parallel:
      merge: %s
      branches:
        - {name: a, stages: [{name: w, uses: probe, with: {state: from-a, key: shared}}]}
        - {name: b, stages: [{name: w, uses: probe, with: {state: from-b, key: shared}}]}
)";
  char buf[1024];
  std::snprintf(buf, sizeof(buf), yaml, "error");
  RunResult strict = run(load(buf));
  ASSERT_EQ(strict.status, RunStatus::kFailed);
  EXPECT_EQ(strict.error->code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(strict.error->message().find("'shared'"), std::string::npos);
  std::snprintf(buf, sizeof(buf), yaml, "last_wins");
  EXPECT_EQ(*run(load(buf)).context.get("shared"), "from-b");
  std::snprintf(buf, sizeof(buf), yaml, "first_wins");
  EXPECT_EQ(*run(load(buf)).context.get("shared"), "from-a");
}

TEST_F(RunnerTest, JoinAnyKeepsTheFirstSuccessAndCancelsTheRest) {
  RunResult r = run(load(R"(
name: any
stages:
  - name: race
    parallel:
      join: any
      branches:
        - {name: fast, stages: [{name: win, uses: probe, with: {metric: 1}}]}
        - {name: stuck, stages: [{name: hang, uses: waits_for_stop}]}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(*r.context.get_metric("fast.win"), 1);
  std::map<std::string, Json> decisions;
  for (const Record& d : records_of(r.run_id, RecordType::kDecision)) decisions[d.key.str()] = d.payload;
  EXPECT_EQ(decisions["/race#winner"], "fast");
}

TEST_F(RunnerTest, UntilLoopStopsWhenTrueAndFailsPastMax) {
  RunResult r = run(load(R"(
name: until
stages:
  - name: climb
    loop:
      until: "state.n >= 3"
      max: 10
      stages:
        - {name: inc, uses: set, with: {n: "index + 1"}}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(*r.context.get("n"), 3);
  RunResult capped = run(load(R"(
name: until2
stages:
  - name: climb
    loop:
      until: "state.n >= 30"
      max: 2
      stages:
        - {name: inc, uses: set, with: {n: "index + 1"}}
)"));
  ASSERT_EQ(capped.status, RunStatus::kFailed);
  EXPECT_EQ(capped.error->code(), ErrorCode::kOutOfRange);
  EXPECT_NE(capped.error->message().find("max of 2"), std::string::npos);
}

TEST_F(RunnerTest, StagesInALoopSeeItemAndIndex) {
  RunResult r = run(load(R"(
name: items2
stages:
  - name: each
    loop:
      over: [{lr: 0.1}, {lr: 0.2}]
      stages:
        - {name: rec, uses: metric, with: {name: "lr_${index}", value: "${item.lr}"}}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(*r.context.get_metric("lr_0"), 0.1);
  EXPECT_EQ(*r.context.get_metric("lr_1"), 0.2);
}

TEST_F(RunnerTest, WhenFalseSkipsTheStage) {
  RunResult r = run(load(R"(
name: when
config: {enabled: false}
stages:
  - {name: maybe, uses: probe, when: config.enabled}
  - {name: always, uses: probe}
)"));
  EXPECT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("maybe"), 0);
  EXPECT_EQ(r.steps[0].status, StepStatus::kSkipped);
}

TEST_F(RunnerTest, TasksDoneCompletionCallsTheBodyUntilEnoughTasks) {
  (void)registry_.register_stage("worker", [] {
    StageDescription d;
    d.name = "worker";
    d.summary = "does 3 tasks per call";
    return make_function_stage(d, [](Context& ctx, const StageOptions&, std::stop_token) -> Status {
      ctx.report_tasks(3);
      return {};
    });
  });
  RunResult r = run(load(R"(
name: tasks
stages:
  - {name: fill, uses: worker, completion: tasks_done, expected_tasks: 10}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(*r.context.get_metric("fill.tasks_done"), 12);
}

TEST_F(RunnerTest, DurationCompletionRepeatsUntilTheTimeIsUp) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  FakeClock* clock = &clock_;
  (void)registry_.register_stage("tick", [calls, clock] {
    StageDescription d;
    d.name = "tick";
    d.summary = "one second per call";
    return make_function_stage(d, [calls, clock](Context&, const StageOptions&, std::stop_token) -> Status {
      ++*calls;
      clock->advance(1s);
      return {};
    });
  });
  RunResult r = run(load("name: d\nstages: [{name: run, uses: tick, completion: duration, duration: 5s}]\n"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(calls->load(), 5);
}

// Journals a run by hand, as a crash would have left it.
std::vector<Record> crashed_run(const RunId& id, const WorkflowSpec& spec, std::vector<Record> steps) {
  Record start;
  start.type = RecordType::kRunStarted;
  start.run_id = id;
  start.payload = {{"pipeline", spec.name}, {"spec_hash", spec_hash(spec)}, {"input", Json::object()}};
  std::vector<Record> out{start};
  for (Record& r : steps) {
    r.run_id = id;
    out.push_back(std::move(r));
  }
  return out;
}

Record rec(RecordType type, const char* key, Json payload = Json()) {
  Record r;
  r.type = type;
  r.key = StepKey::from_string(key);
  r.attempts = 1;
  r.payload = std::move(payload);
  return r;
}

TEST_F(RunnerTest, NonIdempotentStageInFlightNeedsAttention) {
  WorkflowSpec spec = load(R"(
name: charge
stages:
  - {name: prep, uses: probe}
  - {name: pay, uses: probe, idempotent: false}
  - {name: done, uses: probe}
)");
  RunId id = *RunId::parse("crashed");
  Record prep = rec(RecordType::kStepCompleted, "/prep");
  prep.delta = {{Mutation::Kind::kComplete, "prep", Json()}, {Mutation::Kind::kTrace, "prep", Json()}};
  ASSERT_TRUE(journal_->append(
      crashed_run(id, spec, {rec(RecordType::kStepStarted, "/prep"), prep, rec(RecordType::kStepStarted, "/pay")}),
      Durability::kStrict));
  auto parked = runner_->resume(spec, id);
  ASSERT_TRUE(parked);
  EXPECT_EQ(parked->status, RunStatus::kNeedsAttention);
  EXPECT_EQ(parked->attention_step, "/pay");
  EXPECT_EQ(probe_->count("pay"), 0);
  EXPECT_EQ(probe_->count("prep"), 0);
  EXPECT_EQ(journal_->read_run(id)->summary.status, RunStatus::kNeedsAttention);

  ResumeOptions skip;
  skip.skip_steps = {"/pay"};
  auto skipped = runner_->resume(spec, id, skip);
  ASSERT_TRUE(skipped);
  EXPECT_EQ(skipped->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("pay"), 0);
  EXPECT_EQ(probe_->count("done"), 1);
  EXPECT_EQ(skipped->context.trace(), (std::vector<std::string>{"prep", "done"}));
}

TEST_F(RunnerTest, RerunStepRunsTheUnknownStepAgain) {
  WorkflowSpec spec = load("name: c\nstages: [{name: pay, uses: probe, idempotent: false}]\n");
  RunId id = *RunId::parse("r-rerun");
  ASSERT_TRUE(journal_->append(crashed_run(id, spec, {rec(RecordType::kStepStarted, "/pay")}), Durability::kStrict));
  ResumeOptions rerun;
  rerun.rerun_steps = {"/pay"};
  auto r = runner_->resume(spec, id, rerun);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("pay"), 1);
}

TEST_F(RunnerTest, IdempotentStageInFlightRunsAgainOnResume) {
  WorkflowSpec spec = load("name: c\nstages: [{name: train, uses: probe}]\n");
  RunId id = *RunId::parse("r-inflight");
  ASSERT_TRUE(journal_->append(crashed_run(id, spec, {rec(RecordType::kStepStarted, "/train")}), Durability::kStrict));
  auto r = runner_->resume(spec, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("train"), 1);
}

TEST_F(RunnerTest, ReplayUsesJournaledDecisionsNotFreshEvaluation) {
  WorkflowSpec spec = load(R"(
name: decide
config: {go: true}
stages:
  - name: gate
    conditional:
      when: config.go
      then: [{name: yes, uses: probe}]
      else: [{name: no, uses: probe}]
)");
  RunId id = *RunId::parse("decided");
  // The journal says the gate took the else branch (say the config was different then).
  ASSERT_TRUE(journal_->append(crashed_run(id, spec, {rec(RecordType::kDecision, "/gate#branch", "else")}),
                               Durability::kStrict));
  auto r = runner_->resume(spec, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(probe_->count("yes"), 0);
  EXPECT_EQ(probe_->count("no"), 1);
}

TEST_F(RunnerTest, WaitForParksTheRunUntilThePromiseResolves) {
  WorkflowSpec spec = load(R"(
name: approval
stages:
  - {name: draft, uses: probe}
  - {name: approve, uses: wait_for, with: {promise: approval, into: verdict}}
  - {name: publish, uses: probe}
)");
  RunResult parked = run(spec);
  ASSERT_EQ(parked.status, RunStatus::kWaiting);
  EXPECT_EQ(parked.waiting_on, "approval");
  EXPECT_EQ(probe_->count("publish"), 0);
  EXPECT_EQ(journal_->read_run(parked.run_id)->summary.status, RunStatus::kWaiting);

  ASSERT_TRUE(journal_->resolve_promise(parked.run_id, "approval", Json{{"ok", true}}));
  auto done = runner_->resume(spec, parked.run_id);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, RunStatus::kCompleted);
  EXPECT_EQ(*done->context.get("verdict"), (Json{{"ok", true}}));
  EXPECT_EQ(probe_->count("draft"), 1);
  EXPECT_EQ(probe_->count("publish"), 1);
}

TEST_F(RunnerTest, WaitAndResumeContinuesWhenSignalled) {
  WorkflowSpec spec = load("name: w\nstages: [{name: gate, uses: wait_for, with: {promise: go}}]\n");
  RunResult parked = run(spec);
  ASSERT_EQ(parked.status, RunStatus::kWaiting);
  ASSERT_TRUE(journal_->resolve_promise(parked.run_id, "go", 7));
  auto done = runner_->wait_and_resume(spec, parked, {});
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, RunStatus::kCompleted);
  EXPECT_EQ(*done->context.get("go"), 7);
}

TEST_F(RunnerTest, WaitForTimesOutWithDeadlineExceeded) {
  WorkflowSpec spec = load("name: w\nstages: [{name: gate, uses: wait_for, with: {promise: go, timeout: 1h}}]\n");
  RunResult parked = run(spec);
  ASSERT_EQ(parked.status, RunStatus::kWaiting);
  ASSERT_TRUE(parked.wake_at_ms.has_value());
  clock_.advance(2h);
  auto timed_out = runner_->resume(spec, parked.run_id);
  ASSERT_TRUE(timed_out);
  EXPECT_EQ(timed_out->status, RunStatus::kFailed);
  EXPECT_EQ(timed_out->error->code(), ErrorCode::kDeadlineExceeded);
}

TEST_F(RunnerTest, SleepWakeTimeIsJournaledSoResumeWaitsOnlyTheRest) {
  WorkflowSpec spec = load("name: nap\nstages: [{name: nap, uses: sleep, with: {duration: 10s}}]\n");
  RunId id = *RunId::parse("napping");
  int64_t wake = clock_.now_ms() + 10'000;
  ASSERT_TRUE(journal_->append(
      crashed_run(id, spec,
                  {rec(RecordType::kDecision, "/nap#memo:wake_at_ms", wake), rec(RecordType::kStepStarted, "/nap")}),
      Durability::kStrict));
  clock_.advance(4s);  // the crash cost four seconds
  auto r = runner_->resume(spec, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  auto sleeps = clock_.sleeps();
  ASSERT_EQ(sleeps.size(), 1u);
  EXPECT_EQ(sleeps[0], 6s);
}

TEST_F(RunnerTest, ForkReusesThePrefixAndReexecutesFromTheStep) {
  WorkflowSpec spec = load(R"(
name: fork
stages:
  - {name: a, uses: probe, with: {metric: 1}}
  - {name: b, uses: probe}
  - {name: c, uses: probe}
)");
  RunResult base = run(spec);
  ASSERT_EQ(base.status, RunStatus::kCompleted);
  auto forked = runner_->fork(base.run_id, StepKey::from_string("/b"));
  ASSERT_TRUE(forked);
  auto r = runner_->resume(spec, *forked);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(probe_->count("b"), 2);
  EXPECT_EQ(probe_->count("c"), 2);
  EXPECT_EQ(*r->context.get_metric("a"), 1);
  EXPECT_EQ(journal_->read_run(*forked)->summary.parent_run, base.run_id.str());
  auto missing = runner_->fork(base.run_id, StepKey::from_string("/nope"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(RunnerTest, LosingTheLeaseStopsTheRun) {
  runner_->set_lease_ttl(30ms);
  runner_->set_owner("worker-a");
  WorkflowSpec spec = load("name: l\nstages: [{name: hang, uses: waits_for_stop}, {name: after, uses: probe}]\n");
  StartOptions o;
  o.run_id = *RunId::parse("leased");
  std::jthread thief([&] {
    for (int i = 0; i < 2000; ++i) {
      auto current = journal_->current_lease(*o.run_id);
      if (current && *current) {
        std::this_thread::sleep_for(50ms);  // let the owner renew a few times first
        ASSERT_TRUE(journal_->acquire_lease(*o.run_id, "worker-b", 1h, (**current).epoch));
        return;
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  auto r = runner_->start(spec, o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_NE(r.error().message().find("lease was lost"), std::string::npos);
  EXPECT_EQ(probe_->count("after"), 0);
}

TEST_F(RunnerTest, ALiveOwnersRunIsNotTakenOver) {
  WorkflowSpec spec = load("name: l\nstages: [{name: a, uses: probe}]\n");
  StartOptions o;
  o.run_id = *RunId::parse("owned");
  run(spec, o);
  ASSERT_TRUE(journal_->acquire_lease(*o.run_id, "someone-else:1", 1h));
  auto r = runner_->resume(spec, *o.run_id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("someone-else"), std::string::npos);
}

TEST_F(RunnerTest, JournalFailureStopsTheRunWithAClearError) {
  testing::FaultInjectingJournal faulty(*journal_);
  Runner runner(faulty, executor_, clock_, random_, registry_);
  WorkflowSpec spec = load(R"(
name: f
stages:
  - {name: a, uses: probe}
  - {name: b, uses: probe}
  - {name: c, uses: probe}
)");
  faulty.fail_sync_after(2, ErrorCode::kResourceExhausted);  // RunStarted and /a commit, then disk full
  auto r = runner.start(spec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(r.error().message().find("disk full"), std::string::npos);
  EXPECT_EQ(probe_->count("c"), 0);
}

TEST_F(RunnerTest, BatchedModeLosesOnlyAnUnsyncedSuffixOnCrash) {
  testing::FaultInjectingJournal faulty(*journal_);
  WorkflowSpec spec = load(R"(
name: b
durability: batched
stages:
  - {name: a, uses: probe}
  - {name: b, uses: probe}
  - {name: c, uses: probe}
)");
  RunId id = *RunId::parse("batched-run");
  auto done = [&](const char* key, const char* name) {
    Record r = rec(RecordType::kStepCompleted, key);
    r.delta = {{Mutation::Kind::kComplete, name, Json()}, {Mutation::Kind::kTrace, name, Json()}};
    return r;
  };
  auto records = crashed_run(id, spec, {done("/a", "a"), done("/b", "b")});
  ASSERT_TRUE(faulty.append(records[0], Durability::kStrict));
  ASSERT_TRUE(faulty.append(records[1], Durability::kBatched));
  ASSERT_TRUE(faulty.flush());                                   // a group commit makes /a durable
  ASSERT_TRUE(faulty.append(records[2], Durability::kBatched));  // /b is still in the volatile buffer
  faulty.drop_unsynced();                                        // power cut

  auto log = journal_->read_run(id);
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 2u);  // an ordered prefix: RunStarted, /a
  auto r = runner_->resume(spec, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 0);
  EXPECT_EQ(probe_->count("b"), 1);
  EXPECT_EQ(probe_->count("c"), 1);
  EXPECT_EQ(r->context.trace(), (std::vector<std::string>{"a", "b", "c"}));
}

// A runner whose executor timers and clock are one FakeClock that moves only when told, so stage
// timeouts and lease renewals happen exactly when the test advances time.
class RunnerOnAFakeClock : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.set_auto_advance(false);
    registry_ = builtin_registry();
    auto started = started_;
    ASSERT_TRUE(registry_.register_stage("waits", [started] {
      return make_function_stage(describe_stage("waits", "runs until stopped", {}),
                                 [started](Context&, const StageOptions&, std::stop_token stop) -> Status {
                                   ++*started;
                                   std::mutex mu;
                                   std::condition_variable_any cv;
                                   std::unique_lock lock(mu);
                                   cv.wait(lock, stop, [] { return false; });
                                   return make_error(ErrorCode::kCancelled, "stopped");
                                 });
    }));
    journal_ = make_memory_journal();
    runner_ = std::make_unique<Runner>(*journal_, executor_, clock_, random_, registry_);
    runner_->set_owner("worker-a");
  }

  std::future<Result<RunResult>> start(const std::string& yaml, const std::string& id) {
    LoadResult loaded = load_pipeline_text(yaml, "fake.yaml", registry_);
    EXPECT_TRUE(loaded.ok()) << loaded.report();
    spec_ = *loaded.spec;
    StartOptions o;
    o.run_id = *RunId::parse(id);
    return std::async(std::launch::async, [this, o] { return runner_->start(spec_, o); });
  }

  // Waits, in real time and bounded, until the stage runs.
  bool stage_running() {
    for (int i = 0; i < 5000 && started_->load() == 0; ++i) std::this_thread::sleep_for(1ms);
    return started_->load() > 0;
  }

  FakeClock clock_;
  Executor executor_{2, clock_};
  SeededRandom random_{7};
  StageRegistry registry_;
  std::shared_ptr<std::atomic<int>> started_ = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<Runner> runner_;
  WorkflowSpec spec_;
};

TEST_F(RunnerOnAFakeClock, AStageTimeoutFiresWhenTheClockPassesIt) {
  runner_->set_lease_ttl(1h);
  auto run = start("name: t\nstages: [{name: slow, uses: waits, timeout: 5s}]\n", "timeout-run");
  ASSERT_TRUE(stage_running());
  clock_.advance(4s);
  EXPECT_EQ(run.wait_for(50ms), std::future_status::timeout) << "the timeout fired early";
  clock_.advance(1s);
  ASSERT_EQ(run.wait_for(10s), std::future_status::ready);
  auto r = run.get();
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->status, RunStatus::kFailed);
  EXPECT_EQ(r->error->code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(r->error->message().find("timed out after 5s"), std::string::npos) << r->error->message();
}

TEST_F(RunnerOnAFakeClock, TheLeaseIsRenewedOnTheClockAndLosingItStopsTheRun) {
  runner_->set_lease_ttl(30s);  // renewed every 10 s
  const RunId id = *RunId::parse("leased-run");
  auto run = start("name: l\nstages: [{name: hang, uses: waits}]\n", id.str());
  ASSERT_TRUE(stage_running());
  auto before = journal_->current_lease(id);
  ASSERT_TRUE(before && *before);
  clock_.advance(10s);  // a renewal: the lease stays ours, with the same epoch
  EXPECT_EQ(run.wait_for(50ms), std::future_status::timeout);
  auto after = journal_->current_lease(id);
  ASSERT_TRUE(after && *after);
  EXPECT_EQ((**after).owner, "worker-a");
  EXPECT_EQ((**after).epoch, (**before).epoch);
  ASSERT_TRUE(journal_->acquire_lease(id, "worker-b", 1h, (**after).epoch));
  clock_.advance(10s);  // the next renewal finds the lease fenced
  ASSERT_EQ(run.wait_for(10s), std::future_status::ready);
  auto r = run.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_NE(r.error().message().find("lease was lost"), std::string::npos);
}

}  // namespace
}  // namespace crucible
