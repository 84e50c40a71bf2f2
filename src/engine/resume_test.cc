// Resume, promises, forks, leases and journal failures: what the runner does with a journal that
// already holds part of a run.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>

#include <gtest/gtest.h>

#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/testing/fault_injecting_journal.h"
#include "crucible/workflow/loader.h"
#include "runner_fixture.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;
using engine_test::RunnerTest;

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

// A run resumes only with the spec it was started with: another version is refused, by id and by
// the log a worker read.
TEST_F(RunnerTest, ResumingWithAnotherVersionOfThePipelineIsRefused) {
  WorkflowSpec spec = load("name: v\nstages: [{name: a, uses: wait_for, with: {promise: go}}]\n");
  WorkflowSpec other =
      load("name: v\nstages: [{name: a, uses: wait_for, with: {promise: go}}, {name: b, uses: probe}]\n");
  RunResult parked = run(spec);
  ASSERT_EQ(parked.status, RunStatus::kWaiting);
  auto by_id = runner_->resume(other, parked.run_id);
  ASSERT_FALSE(by_id);
  EXPECT_EQ(by_id.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(by_id.error().message().find("another version of the pipeline"), std::string::npos);
  auto log = journal_->read_run(parked.run_id);
  ASSERT_TRUE(log);
  auto by_log = runner_->resume(other, *log, ResumeOptions{});
  ASSERT_FALSE(by_log);
  EXPECT_EQ(by_log.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(probe_->count("b"), 0);
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

// A worker that was paused past its lease (SIGSTOP, a long GC, a network partition) comes back
// before its renewal notices: the journal fences its next record, and the run stops there.
TEST_F(RunnerTest, AWriterWhoseLeaseWasTakenOverIsFencedAtItsNextRecord) {
  runner_->set_lease_ttl(1h);  // no renewal comes in time: the fence alone stops it
  runner_->set_owner("worker-a");
  const RunId id = *RunId::parse("fenced");
  Journal& journal = *journal_;
  (void)registry_.register_stage("taken_over", [&journal, id] {
    StageDescription d;
    d.name = "taken_over";
    d.summary = "another worker takes the run over while this stage runs";
    return make_function_stage(d, [&journal, id](Context&, const StageOptions&, std::stop_token) -> Status {
      auto current = journal.current_lease(id);
      if (!current || !*current) return make_error(ErrorCode::kInternal, "no lease");
      return journal.acquire_lease(id, "worker-b", 1h, (**current).epoch).has_value()
                 ? Status()
                 : make_error(ErrorCode::kInternal, "cannot take over");
    });
  });
  WorkflowSpec spec = load("name: f\nstages: [{name: pause, uses: taken_over}, {name: after, uses: probe}]\n");
  StartOptions o;
  o.run_id = id;
  auto r = runner_->start(spec, o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_NE(r.error().message().find("taken over"), std::string::npos) << r.error().message();
  EXPECT_EQ(probe_->count("after"), 0);
  EXPECT_TRUE(records_of(id, RecordType::kStepCompleted).empty());  // not even the stage it was in
  EXPECT_TRUE(records_of(id, RecordType::kRunFailed).empty());      // the run is worker-b's now
  EXPECT_EQ((*journal_->current_lease(id))->owner, "worker-b");
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

TEST_F(RunnerTest, ARefusedNewVersionWritesNothing) {
  StartOptions o;
  o.run_id = *RunId::parse("held");
  run(load("name: p\nstages: [{name: a, uses: probe}]\n"), o);
  ASSERT_TRUE(journal_->acquire_lease(*o.run_id, "someone-else:1", 1h));
  const size_t before = journal_->read_run(*o.run_id)->records.size();
  o.new_version = true;
  auto refused = runner_->start(load("name: p\nstages: [{name: a, uses: probe}, {name: b, uses: probe}]\n"), o);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("someone-else"), std::string::npos) << refused.error().message();
  EXPECT_EQ(journal_->read_run(*o.run_id)->records.size(), before);  // no #spec record
}

TEST_F(RunnerTest, TheSameRunIdWithOtherInputsIsRefusedNamingTheChange) {
  WorkflowSpec spec = load("name: p\nconfig: {lr: 0.1, epochs: 3}\nstages: [{name: a, uses: probe}]\n");
  StartOptions o;
  o.run_id = *RunId::parse("inputs");
  run(spec, o);
  o.overrides = Json{{"lr", 0.2}};
  auto refused = runner_->start(spec, o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("config.lr was 0.1, now 0.2"), std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find("another --run-id"), std::string::npos);
  o.overrides = Json{{"lr", 0.1}};  // the same inputs continue the run
  EXPECT_EQ(run(spec, o).status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
}

TEST_F(RunnerTest, ARunningRunWhoseOwnerIsGoneIsInterrupted) {
  const RunId id = *RunId::parse("orphan");
  Record started;
  started.type = RecordType::kRunStarted;
  started.run_id = id;
  started.at_ms = clock_.now_ms();
  started.payload = {{"pipeline", "p"}, {"spec_hash", "h"}, {"input", Json::object()}};
  ASSERT_TRUE(journal_->append(started, Durability::kStrict));
  auto summary = [&] { return journal_->read_run(id)->summary; };
  EXPECT_EQ(interrupted_because(*journal_, summary(), clock_.now_ms()), "no process holds the run");
  char host[256] = {0};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  auto lease = journal_->acquire_lease(id, std::string(host) + ":" + std::to_string(getpid()), 1min);
  ASSERT_TRUE(lease);
  EXPECT_EQ(interrupted_because(*journal_, summary(), lease->expires_ms - 1), std::nullopt);  // alive and current
  EXPECT_NE(interrupted_because(*journal_, summary(), lease->expires_ms + 1).value_or("").find("expired"),
            std::string::npos);
  ASSERT_TRUE(journal_->release_lease(*lease));
  auto dead = journal_->acquire_lease(id, std::string(host) + ":999999999", 1min);
  ASSERT_TRUE(dead);
  EXPECT_NE(interrupted_because(*journal_, summary(), dead->expires_ms - 1).value_or("").find("is gone"),
            std::string::npos);
}

TEST_F(RunnerTest, AnInterruptedRunStaysResumableWithNothingJournaledAsFailed) {
  std::stop_source interrupt;
  runner_->set_interrupt(interrupt.get_token());
  std::atomic<bool> started{false};
  ASSERT_TRUE(registry_.register_stage("blocks", [&started] {
    StageDescription d;
    d.name = "blocks";
    d.summary = "runs until stopped";
    return make_function_stage(d, [&started](Context&, const StageOptions&, std::stop_token stop) -> Status {
      started = true;
      while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);
      return make_error(ErrorCode::kCancelled, "stopped");
    });
  }));
  WorkflowSpec spec =
      load("name: i\nstages: [{name: a, uses: probe}, {name: b, uses: blocks}, {name: c, uses: probe}]\n");
  StartOptions o;
  o.run_id = *RunId::parse("interrupted");
  auto running = std::async(std::launch::async, [&] { return runner_->start(spec, o); });
  while (!started) std::this_thread::sleep_for(1ms);
  interrupt.request_stop();
  auto r = running.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
  EXPECT_NE(r.error().message().find("crucible resume interrupted"), std::string::npos) << r.error().message();
  auto log = journal_->read_run(*o.run_id);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->summary.status, RunStatus::kRunning);  // neither failed nor finished
  for (const Record& rec : log->records) EXPECT_NE(rec.type, RecordType::kStepFailed);
  EXPECT_EQ(interrupted_because(*journal_, log->summary, clock_.now_ms()), "no process holds the run");
}

// An interrupt reaches a stage however it is wrapped: under a timeout (through the timer's own
// stop source) and in every branch of a parallel group; nothing is journaled as failed.
TEST_F(RunnerTest, AnInterruptReachesTimedStagesAndParallelBranches) {
  std::stop_source interrupt;
  runner_->set_interrupt(interrupt.get_token());
  std::atomic<int> running{0}, stopped{0};
  ASSERT_TRUE(registry_.register_stage("counts_stops", [&] {
    StageDescription d;
    d.name = "counts_stops";
    d.summary = "runs until stopped, counting";
    return make_function_stage(d, [&](Context&, const StageOptions&, std::stop_token stop) -> Status {
      ++running;
      while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);
      ++stopped;
      return make_error(ErrorCode::kCancelled, "stopped");
    });
  }));
  WorkflowSpec spec = load(R"(
name: wrapped
stages:
  - name: fan
    parallel:
      branches:
        - {name: timed, stages: [{name: t, uses: counts_stops, timeout: 1h}]}
        - {name: plain, stages: [{name: p, uses: counts_stops}]}
        - name: nested
          stages:
            - name: group
              sequence: [{name: s, uses: counts_stops, timeout: 1h, retry: 3}]
)");
  StartOptions o;
  o.run_id = *RunId::parse("wrapped");
  auto run = std::async(std::launch::async, [&] { return runner_->start(spec, o); });
  while (running < 3) std::this_thread::sleep_for(1ms);
  interrupt.request_stop();
  auto r = run.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
  EXPECT_EQ(stopped.load(), 3);
  EXPECT_EQ(running.load(), 3);  // the retry policy did not start another attempt
  auto log = journal_->read_run(*o.run_id);
  ASSERT_TRUE(log);
  for (const Record& rec : log->records) EXPECT_NE(rec.type, RecordType::kStepFailed) << rec.key.str();
  EXPECT_EQ(log->summary.status, RunStatus::kRunning);
}

// Sequences group stages at every layer: top level, in a loop, in a parallel branch; a resume
// re-runs only what failed inside one.
TEST_F(RunnerTest, SequencesRunInOrderAndResumeInside) {
  WorkflowSpec spec = load(R"(
name: seq
stages:
  - name: setup
    sequence:
      - {name: a, uses: probe, with: {metric: 1}}
      - {name: b, uses: probe}
  - name: epochs
    loop:
      count: 2
      stages:
        - name: step
          sequence: [{name: train, uses: probe}, {name: eval, uses: probe}]
  - name: fan
    parallel:
      branches:
        - name: left
          stages: [{name: inner, sequence: [{name: x, uses: probe}, {name: y, uses: probe}]}]
)");
  probe_->failures["eval"] = {ErrorCode::kInternal};
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kFailed);
  EXPECT_NE(first.error->message().find("/epochs[0]/step/eval"), std::string::npos) << first.error->message();
  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(second->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(probe_->count("train"), 2);
  EXPECT_EQ(probe_->count("eval"), 3);  // failed once, then once per epoch
  EXPECT_EQ(probe_->count("y"), 1);
  EXPECT_EQ(second->context.trace(), (std::vector<std::string>{"a", "b", "train", "eval", "train", "eval", "x", "y"}));
}

// `type: custom` runs its command and args (templates rendered, no shell) through `command`.
TEST_F(RunnerTest, ACustomStageRunsItsCommandAndArgs) {
  RunResult r = run(load(R"yaml(
name: custom
config: {greeting: hello}
stages:
  - {name: say, type: custom, command: echo, args: ["${config.greeting}", "$(not a shell)"]}
  - {name: fails, type: custom, command: sh, args: [-c, "exit 3"], optional: true}
)yaml"));
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  const Json* say = r.context.get_artifact("say");
  ASSERT_NE(say, nullptr);
  EXPECT_EQ((*say)["stdout_tail"], "hello $(not a shell)\n");
  ASSERT_NE(r.context.get_metric("say.exit_code"), nullptr);
  EXPECT_EQ(*r.context.get_metric("say.exit_code"), 0);
  auto failed = records_of(r.run_id, RecordType::kStepFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_NE(failed[0].error->message().find("'sh' exited with code 3"), std::string::npos);
}

// A join:any decided before a failure replays the same winner on resume, and only the winner.
TEST_F(RunnerTest, AParallelWinnerIsReplayedOnResume) {
  WorkflowSpec spec = load(R"(
name: race
stages:
  - name: fan
    parallel:
      join: any
      branches:
        - {name: fast, stages: [{name: win, uses: probe, with: {metric: 1}}]}
        - {name: stuck, stages: [{name: hang, uses: waits_for_stop}]}
  - {name: after, uses: probe}
)");
  probe_->failures["after"] = {ErrorCode::kInternal};
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kFailed);
  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second) << second.error().to_string();
  ASSERT_EQ(second->status, RunStatus::kCompleted);
  EXPECT_EQ(probe_->count("win"), 1);  // replayed from the journal
  EXPECT_EQ(*second->context.get_metric("fast.win"), 1);
}

TEST_F(RunnerTest, AJoinAnyWhoseBranchesAllFailFails) {
  probe_->failures["a"] = {ErrorCode::kInvalidArgument};
  probe_->failures["b"] = {ErrorCode::kInvalidArgument};
  RunResult r = run(load(R"(
name: none
stages:
  - name: fan
    parallel:
      join: any
      branches:
        - {name: left, stages: [{name: a, uses: probe}]}
        - {name: right, stages: [{name: b, uses: probe}]}
)"));
  ASSERT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error->code(), ErrorCode::kInvalidArgument);
}

// An experiment branch that failed is an outcome: a resume reports it again and does not run it.
TEST_F(RunnerTest, AFailedExperimentBranchIsNotRunAgain) {
  WorkflowSpec spec = load(R"(
name: exp
stages:
  - name: sweep
    experiment:
      strategy: multi_branch
      configs: [{lr: 1}, {lr: 2}]
      stages: [{name: train, uses: probe, with: {metric: "${branch.config.lr}"}}]
  - {name: after, uses: probe}
)");
  probe_->failures["train"] = {ErrorCode::kInvalidArgument};  // the first branch to run fails
  probe_->failures["after"] = {ErrorCode::kInternal};
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kFailed);
  const int trained = probe_->count("train");
  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(second->status, RunStatus::kCompleted) << (second->error ? second->error->to_string() : "");
  // Neither branch runs its body again: the failure is an outcome, the success replays.
  EXPECT_EQ(probe_->count("train"), trained);
  EXPECT_EQ(trained, 2);
}

// A round-robin pick made before a failure is replayed on resume: the same branch, not the next.
TEST_F(RunnerTest, ARoundRobinPickIsReplayedOnResume) {
  WorkflowSpec spec = load(R"(
name: rr
stages:
  - name: pick
    experiment:
      strategy: round_robin
      configs: [{v: 1}, {v: 2}, {v: 3}]
      stages: [{name: use, uses: probe, with: {metric: "${branch.config.v}"}}]
  - {name: after, uses: probe}
)");
  probe_->failures["after"] = {ErrorCode::kInternal};
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kFailed);
  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second) << second.error().to_string();
  ASSERT_EQ(second->status, RunStatus::kCompleted) << (second->error ? second->error->to_string() : "");
  EXPECT_EQ(probe_->count("use"), 1);
}

// A branch that waits on a promise parks the whole run; the signal resumes it.
TEST_F(RunnerTest, AnExperimentBranchCanWaitForAPromise) {
  WorkflowSpec spec = load(R"(
name: ask
stages:
  - name: sweep
    experiment:
      strategy: multi_branch
      configs: [{v: 1}]
      stages: [{name: ask, uses: wait_for, with: {promise: go, into: answer}}]
)");
  RunResult first = run(spec);
  ASSERT_EQ(first.status, RunStatus::kWaiting) << (first.error ? first.error->to_string() : "");
  ASSERT_TRUE(journal_->resolve_promise(first.run_id, "go", Json(true)));
  auto second = runner_->resume(spec, first.run_id);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(second->status, RunStatus::kCompleted) << (second->error ? second->error->to_string() : "");
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
  // The executor's timer thread sleeps for a span measured from the time it last read; an advance
  // that lands between that read and its sleep moves the wake-up later by as much. So time moves
  // on in bounded steps until the run ends; the check at 4 s above shows it did not fire early.
  for (int i = 0; i < 100 && run.wait_for(50ms) != std::future_status::ready; ++i) clock_.advance(1s);
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
  for (int i = 0; i < 100 && run.wait_for(50ms) != std::future_status::ready; ++i) clock_.advance(10s);
  ASSERT_EQ(run.wait_for(10s), std::future_status::ready);
  auto r = run.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_NE(r.error().message().find("lease was lost"), std::string::npos);
}

// What the journal holds while a stage runs: a non-idempotent step's intent is durable before it
// acts; an idempotent one's intent (deferred in strict mode) is appended with its outcome.
TEST_F(RunnerTest, AStepsIntentIsJournaledBeforeItActsOnlyWhenItMustBe) {
  std::map<std::string, size_t> started_while_running;
  Journal* journal = journal_.get();
  ASSERT_TRUE(registry_.register_stage("looks", [&started_while_running, journal] {
    StageDescription d;
    d.name = "looks";
    d.summary = "counts the step_started records of its run";
    d.idempotent = true;
    return make_function_stage(
        d, [&started_while_running, journal](Context& ctx, const StageOptions&, std::stop_token) -> Status {
          auto log = journal->read_run(ctx.run_id());
          if (!log) return make_error(log.error());
          size_t n = 0;
          for (const Record& r : log->records) n += r.type == RecordType::kStepStarted ? 1 : 0;
          started_while_running[ctx.current_stage()] = n;
          return {};
        });
  }));
  RunResult r = run(load(R"(
name: intents
stages:
  - {name: once, uses: looks, idempotent: false}
  - {name: again, uses: looks}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted);
  EXPECT_EQ(started_while_running["once"], 1u);   // its own intent, before it ran
  EXPECT_EQ(started_while_running["again"], 1u);  // still only the first one's
  auto log = journal_->read_run(r.run_id);
  ASSERT_TRUE(log);
  std::vector<std::string> order;
  for (const Record& rec : log->records) {
    if (rec.type == RecordType::kStepStarted || rec.type == RecordType::kStepCompleted) {
      order.push_back(std::string(record_type_name(rec.type)) + " " + rec.key.str());
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"step_started /once", "step_completed /once", "step_started /again",
                                             "step_completed /again"}));
}

}  // namespace
}  // namespace crucible
