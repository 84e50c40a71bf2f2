#include "crucible/engine/runner.h"

#include "runner_fixture.h"

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
using engine_test::RunnerTest;

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

TEST_F(RunnerTest, ACommandThatExitsNonZeroIsRetriedWhenTheStageHasRetry) {
  RunResult r = run(load(R"(
name: retry-command
stages:
  - name: fails
    uses: command
    with: {argv: [sh, -c, "exit 1"]}
    retry: {attempts: 3, backoff: 10ms, jitter: false}
    optional: true
  - name: narrowed
    uses: command
    with: {argv: [sh, -c, "exit 1"]}
    retry: {attempts: 3, backoff: 10ms, on: [unavailable]}
    optional: true
)"));
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].attempts, 3);
  ASSERT_TRUE(r.steps[0].error);
  EXPECT_NE(r.steps[0].error->message().find("gave up after 3 attempts"), std::string::npos)
      << r.steps[0].error->message();
  EXPECT_EQ(r.steps[1].attempts, 1);  // retry.on does not list failed_precondition
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
}  // namespace
}  // namespace crucible
