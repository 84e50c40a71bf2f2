#include "crucible/engine/worker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "crucible/engine/schedule.h"
#include "runner_fixture.h"

namespace crucible::engine_test {
namespace {

// Workers on the fixture's in-memory journal, on the real clock (leases expire in real time).
class WorkerTest : public RunnerTest {
 protected:
  struct Running {
    std::unique_ptr<Runner> runner;
    std::unique_ptr<Worker> worker;
    std::stop_source drain;
    std::jthread thread;
  };

  Running& start_worker(WorkerOptions options, RunListener listener = nullptr, SpecLoader loader = nullptr) {
    auto w = std::make_unique<Running>();
    w->runner = std::make_unique<Runner>(*journal_, executor_, real_clock(), random_, registry_);
    if (!loader) {
      loader = [this](const Json& spec) -> Result<WorkflowSpec> {
        LoadResult r = load_pipeline_text(json_string(spec, "text"), "test.yaml", registry_);
        if (!r.ok()) return make_error(ErrorCode::kInvalidArgument, r.report());
        return std::move(*r.spec);
      };
    }
    w->worker = std::make_unique<Worker>(*journal_, *w->runner, executor_, real_clock(), loader, std::move(options),
                                         std::move(listener));
    w->thread = std::jthread([raw = w.get()] { raw->worker->run(raw->drain.get_token()); });
    workers_.push_back(std::move(w));
    return *workers_.back();
  }

  RunId submit(const WorkflowSpec& spec, const char* id = nullptr, Placement placement = {}) {
    StartOptions options;
    if (id != nullptr) options.run_id = *RunId::parse(id);
    auto s = runner_->submit(spec, options, placement);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? s->run_id : RunId();
  }

  // Waits (up to 20 s) until the run has this status.
  bool reaches(const RunId& id, RunStatus status) {
    for (int i = 0; i < 2000; ++i) {
      auto log = journal_->read_run(id);
      if (log && log->summary.status == status) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  void TearDown() override {
    for (auto& w : workers_) w->drain.request_stop();
    workers_.clear();
  }

  static WorkerOptions fast(size_t concurrency = 4) {
    WorkerOptions o;
    o.concurrency = concurrency;
    o.poll = 5ms;
    o.lease_ttl = 300ms;
    o.grace = 100ms;
    return o;
  }

  std::vector<std::unique_ptr<Running>> workers_;
};

constexpr const char* kTwoSteps = "name: two\nstages: [{name: a, uses: probe}, {name: b, uses: probe}]\n";

TEST_F(WorkerTest, SubmittedRunsAreQueuedUntilAWorkerRunsThem) {
  WorkflowSpec spec = load(kTwoSteps);
  RunId id = submit(spec, "sub-1");
  EXPECT_EQ(journal_->read_run(id)->summary.status, RunStatus::kQueued);
  EXPECT_EQ(probe_->count("a"), 0);
  Running& w = start_worker(fast());
  ASSERT_TRUE(reaches(id, RunStatus::kCompleted));
  EXPECT_EQ(probe_->count("a"), 1);
  EXPECT_EQ(probe_->count("b"), 1);
  w.drain.request_stop();
  w.thread.join();
  EXPECT_EQ(w.worker->stats().completed, 1u);
  EXPECT_EQ(journal_->read_run(id)->summary.claims, 1);
}

TEST_F(WorkerTest, SubmittingAnIdAgainIsOneRunAndOtherInputsAreRefused) {
  WorkflowSpec spec = load(kTwoSteps);
  StartOptions options;
  options.run_id = *RunId::parse("dedup");
  auto first = runner_->submit(spec, options, {});
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->existed);
  auto again = runner_->submit(spec, options, {});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->existed);
  options.overrides = Json{{"lr", 0.1}};
  auto other = runner_->submit(spec, options, {});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(other.error().message(), ::testing::HasSubstr("config.lr"));
  auto empty_queue = runner_->submit(spec, {}, Placement{"", 0, ""});
  ASSERT_FALSE(empty_queue);
  EXPECT_EQ(empty_queue.error().field(), "queue");
}

TEST_F(WorkerTest, TwoWorkersShareAQueueAndRunEveryStepOnce) {
  WorkflowSpec spec = load(kTwoSteps);
  std::vector<RunId> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(submit(spec));
  start_worker(fast(3));
  start_worker(fast(3));
  for (const RunId& id : ids) ASSERT_TRUE(reaches(id, RunStatus::kCompleted)) << id.str();
  EXPECT_EQ(probe_->count("a"), 30);
  EXPECT_EQ(probe_->count("b"), 30);
}

TEST_F(WorkerTest, AParkedRunHoldsNoSlotAndASignalWakesIt) {
  WorkflowSpec gate =
      load("name: gate\nstages: [{name: g, uses: wait_for, with: {promise: go}}, {name: after, uses: probe}]\n");
  WorkflowSpec plain = load(kTwoSteps);
  RunId parked = submit(gate, "parked");
  start_worker(fast(1));
  ASSERT_TRUE(reaches(parked, RunStatus::kWaiting));
  RunId next = submit(plain, "next");
  ASSERT_TRUE(reaches(next, RunStatus::kCompleted));  // the only slot was free
  ASSERT_TRUE(journal_->resolve_promise(parked, "go", true));
  ASSERT_TRUE(reaches(parked, RunStatus::kCompleted));
  EXPECT_EQ(probe_->count("after"), 1);
}

TEST_F(WorkerTest, CancelStopsTheRunningStageAndEndsTheRunCancelled) {
  WorkflowSpec spec = load("name: slow\nstages: [{name: s, uses: waits_for_stop}, {name: never, uses: probe}]\n");
  RunId id = submit(spec, "to-cancel");
  start_worker(fast());
  ASSERT_TRUE(reaches(id, RunStatus::kRunning));
  auto outcome = journal_->cancel_run(id, "cancelled by test", real_clock().now_ms());
  ASSERT_TRUE(outcome);
  EXPECT_EQ(*outcome, CancelOutcome::kRequested);
  ASSERT_TRUE(reaches(id, RunStatus::kCancelled));
  EXPECT_EQ(probe_->count("never"), 0);
  auto log = journal_->read_run(id);
  EXPECT_EQ(log->records.back().type, RecordType::kRunFailed);
  EXPECT_EQ(log->records.back().error->code(), ErrorCode::kCancelled);
}

TEST_F(WorkerTest, ARunDeadlineEndsItDeadlineExceeded) {
  WorkflowSpec spec = load("name: late\ntimeout: 200ms\nstages: [{name: s, uses: waits_for_stop}]\n");
  RunId id = submit(spec, "late");
  start_worker(fast());
  ASSERT_TRUE(reaches(id, RunStatus::kDeadlineExceeded));
  auto log = journal_->read_run(id);
  EXPECT_EQ(log->records.back().error->code(), ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(log->records.back().error->message(), ::testing::HasSubstr("deadline"));
}

TEST_F(WorkerTest, DrainHandsBackWhatOutlivesTheGracePeriodAndAnotherWorkerResumesIt) {
  WorkflowSpec spec = load("name: slow\nstages: [{name: first, uses: probe}, {name: s, uses: waits_for_stop}]\n");
  RunId id = submit(spec, "handed");
  Running& a = start_worker(fast());
  ASSERT_TRUE(reaches(id, RunStatus::kRunning));
  std::this_thread::sleep_for(50ms);
  a.drain.request_stop();
  a.thread.join();
  EXPECT_EQ(a.worker->stats().handed_back, 1u);
  EXPECT_FALSE(journal_->current_lease(id)->has_value());  // released, not left to expire
  start_worker(fast());
  std::this_thread::sleep_for(100ms);
  auto log = journal_->read_run(id);
  EXPECT_EQ(log->summary.claims, 2);
  EXPECT_EQ(probe_->count("first"), 1);  // completed before the hand-back: not run again
  ASSERT_TRUE(journal_->cancel_run(id, "", real_clock().now_ms()));
  ASSERT_TRUE(reaches(id, RunStatus::kCancelled));
}

TEST_F(WorkerTest, AWorkerRecordsItselfAndTheRunsItHoldsAndRemovesItselfWhenItStops) {
  WorkflowSpec spec = load("name: slow\nstages: [{name: s, uses: waits_for_stop}]\n");
  RunId id = submit(spec, "held");
  WorkerOptions o = fast(2);
  o.id = "w-registry";
  o.heartbeat = 20ms;
  o.queues = {"default", "gpu"};
  Running& w = start_worker(o);
  ASSERT_TRUE(reaches(id, RunStatus::kRunning));
  std::vector<WorkerInfo> seen;
  for (int i = 0; i < 500; ++i) {
    auto listed = list_workers(*journal_, real_clock().now_ms(), 0ms);
    ASSERT_TRUE(listed) << listed.error().to_string();
    seen = *listed;
    if (seen.size() == 1 && seen[0].runs.size() == 1) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].id, "w-registry");
  EXPECT_EQ(seen[0].state, "serving");
  EXPECT_EQ(seen[0].concurrency, 2u);
  EXPECT_EQ(seen[0].queues, (std::vector<std::string>{"default", "gpu"}));
  EXPECT_EQ(seen[0].runs, std::vector<std::string>{"held"});
  EXPECT_EQ(seen[0].stats.claimed, 1u);
  EXPECT_TRUE(seen[0].live(real_clock().now_ms()));
  // Listed runs name their worker.
  EXPECT_EQ(journal_->read_run(id)->summary.lease_owner, "w-registry");
  // Heartbeats stopped long ago: lost, listed only when asked for.
  EXPECT_FALSE(seen[0].live(seen[0].heartbeat_ms + 61));
  auto later = list_workers(*journal_, seen[0].heartbeat_ms + 10'000, 0ms);
  ASSERT_TRUE(later);
  EXPECT_TRUE(later->empty());
  auto lost = list_workers(*journal_, seen[0].heartbeat_ms + 10'000, 1min);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->size(), 1u);
  w.drain.request_stop();
  w.thread.join();
  auto after = list_workers(*journal_, real_clock().now_ms(), 1min);
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->empty());
}

// No worker can run a spec that no longer loads (a stage type that is gone): the run fails with
// the loader's error instead of going back to the queue for ever.
TEST_F(WorkerTest, ARunWhoseSpecNoLongerLoadsFailsWithTheLoadersError) {
  RunId id = submit(load(kTwoSteps), "unloadable");
  Running& w = start_worker(fast(), nullptr, [](const Json&) -> Result<WorkflowSpec> {
    return make_error(ErrorCode::kInvalidArgument, "unknown stage type 'gone'");
  });
  ASSERT_TRUE(reaches(id, RunStatus::kFailed));
  EXPECT_THAT(journal_->read_run(id)->summary.error, ::testing::HasSubstr("unknown stage type 'gone'"));
  EXPECT_EQ(probe_->count("a"), 0);
  w.drain.request_stop();
  w.thread.join();
  EXPECT_EQ(w.worker->stats().failed, 1u);
}

// A run cancelled while a worker that has since died held it: the next claimer ends it.
TEST_F(WorkerTest, ARunCancelledUnderADeadWorkersLeaseEndsCancelledWhenClaimed) {
  RunId id = submit(load(kTwoSteps), "orphan");
  ClaimRequest ghost;
  ghost.owner = "ghost";
  ghost.ttl = 100ms;
  ghost.now_ms = real_clock().now_ms();
  auto claimed = journal_->claim_runs(ghost);
  ASSERT_TRUE(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  auto outcome = journal_->cancel_run(id, "stop it", real_clock().now_ms());
  ASSERT_TRUE(outcome);
  EXPECT_EQ(*outcome, CancelOutcome::kRequested);
  std::this_thread::sleep_for(150ms);
  start_worker(fast());
  ASSERT_TRUE(reaches(id, RunStatus::kCancelled));
  EXPECT_EQ(probe_->count("a"), 0);
}

// Missed ticks and schedules that cannot fire reach the worker's listener.
TEST_F(WorkerTest, MissedTicksAndBrokenSchedulesAreReportedToTheListener) {
  const int64_t now = real_clock().now_ms();
  Schedule ok;
  ok.name = "minutely";
  ok.cron = "* * * * *";
  ok.spec = {{"format", "yaml"}, {"text", kTwoSteps}};
  ok.placement = Placement{"nightly", 0, ""};
  ok.created_ms = now - 10 * 60'000;
  ok.last_tick_ms = now - 5 * 60'000;
  ASSERT_TRUE(journal_->put_value("", schedule_key(ok.name), ok.to_json()));
  Schedule broken = ok;
  broken.name = "broken";
  broken.spec = {{"format", "yaml"}, {"text", "name: [unclosed"}};
  ASSERT_TRUE(journal_->put_value("", schedule_key(broken.name), broken.to_json()));
  std::mutex mu;
  std::vector<std::string> heard;
  WorkerOptions o = fast();
  o.schedule_interval = 10ms;
  o.queues = {"elsewhere"};  // the started runs stay queued
  Running& w = start_worker(o, [&](const RunId& run, const Result<RunResult>& outcome) {
    if (!run.str().empty() || outcome) return;
    std::lock_guard lock(mu);
    heard.push_back(outcome.error().message());
  });
  auto heard_all = [&] {
    std::lock_guard lock(mu);
    bool missed = false, bad = false;
    for (const std::string& m : heard) {
      missed = missed || m.find("was missed") != std::string::npos;
      bad = bad || m.find("schedule 'broken'") != std::string::npos;
    }
    return missed && bad;
  };
  for (int i = 0; i < 500 && !heard_all(); ++i) std::this_thread::sleep_for(10ms);
  w.drain.request_stop();
  w.thread.join();
  EXPECT_TRUE(heard_all()) << ::testing::PrintToString(heard);
}

TEST(WorkerInfo, RoundTripsAndAMalformedRecordIsDataLoss) {
  WorkerInfo w;
  w.id = "a";
  w.queues = {"q"};
  w.concurrency = 3;
  w.runs = {"r1", "r2"};
  w.state = "draining";
  w.started_ms = 5;
  w.heartbeat_ms = 9;
  w.heartbeat_every_ms = 1000;
  w.stats.completed = 4;
  auto back = WorkerInfo::from_json(w.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->to_json(), w.to_json());
  Json broken = w.to_json();
  broken["runs"] = "r1";
  auto bad = WorkerInfo::from_json(broken);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kDataLoss);
}

// The deadline is journaled at the run's first execution, so it holds across a restart: a run
// resumed after it passed ends at once, and a parked run wakes by it.
TEST_F(RunnerTest, ARunDeadlineIsDurableAcrossRestarts) {
  WorkflowSpec spec = load(
      "name: d\ntimeout: 10s\nstages: [{name: g, uses: wait_for, with: {promise: go}}, {name: after, uses: probe}]\n");
  RunResult parked = run(spec);
  ASSERT_EQ(parked.status, RunStatus::kWaiting);
  ASSERT_TRUE(parked.wake_at_ms);
  EXPECT_EQ(*parked.wake_at_ms, clock_.now_ms() + 10'000);
  auto decided = records_of(parked.run_id, RecordType::kDecision);
  ASSERT_EQ(decided.size(), 1u);
  EXPECT_EQ(decided[0].key.str(), "#deadline");
  clock_.advance(11s);
  ASSERT_TRUE(journal_->resolve_promise(parked.run_id, "go", true));
  auto resumed = runner_->resume(spec, parked.run_id);
  ASSERT_TRUE(resumed) << resumed.error().to_string();
  EXPECT_EQ(resumed->status, RunStatus::kDeadlineExceeded);
  EXPECT_EQ(probe_->count("after"), 0);
  EXPECT_EQ(journal_->read_run(parked.run_id)->summary.status, RunStatus::kDeadlineExceeded);
  EXPECT_EQ(records_of(parked.run_id, RecordType::kDecision).size(), 1u);  // the deadline is never moved
}

TEST_F(RunnerTest, ATimeoutGivenAtStartOverridesThePipelines) {
  WorkflowSpec spec = load("name: d\ntimeout: 1h\nstages: [{name: g, uses: wait_for, with: {promise: go}}]\n");
  StartOptions options;
  options.timeout = 5s;
  RunResult parked = run(spec, options);
  ASSERT_TRUE(parked.wake_at_ms);
  EXPECT_EQ(*parked.wake_at_ms, clock_.now_ms() + 5'000);
}

}  // namespace
}  // namespace crucible::engine_test
