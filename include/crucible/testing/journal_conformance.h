// Conformance tests every Journal adapter must pass. Include from exactly one test file of a
// module and instantiate with INSTANTIATE_TEST_SUITE_P(Name, JournalConformance, Values(factory)).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "crucible/journal/journal.h"

namespace crucible::testing {

using JournalFactory = std::function<std::unique_ptr<Journal>()>;

inline Record started(const char* run, int64_t at_ms = 1000, const char* pipeline = "p") {
  Record r;
  r.type = RecordType::kRunStarted;
  r.run_id = *RunId::parse(run);
  r.at_ms = at_ms;
  r.payload = {{"pipeline", pipeline}, {"spec_hash", "abc"}, {"input", Json::object()}};
  return r;
}

inline Record step(const char* run, RecordType type, const char* key, int64_t at_ms = 1001) {
  Record r;
  r.type = type;
  r.run_id = *RunId::parse(run);
  r.key = StepKey::from_string(key);
  r.at_ms = at_ms;
  return r;
}

class JournalConformance : public ::testing::TestWithParam<JournalFactory> {
 protected:
  void SetUp() override { journal_ = GetParam()(); }
  std::unique_ptr<Journal> journal_;
};

TEST_P(JournalConformance, AppendsAndReadsBackInOrder) {
  ASSERT_TRUE(journal_->append(started("r1"), Durability::kStrict));
  Record done = step("r1", RecordType::kStepCompleted, "/a");
  done.attempts = 2;
  done.duration_us = 42;
  done.delta = {Mutation{Mutation::Kind::kMetric, "loss", Json(0.25)}, Mutation{Mutation::Kind::kTrace, "a", Json()}};
  ASSERT_TRUE(journal_->append(step("r1", RecordType::kStepStarted, "/a"), Durability::kBatched));
  ASSERT_TRUE(journal_->append(done, Durability::kStrict));
  auto log = journal_->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log) << log.error().to_string();
  ASSERT_EQ(log->records.size(), 3u);
  EXPECT_EQ(log->records[0].type, RecordType::kRunStarted);
  EXPECT_EQ(log->records[2].type, RecordType::kStepCompleted);
  EXPECT_EQ(log->records[2].key.str(), "/a");
  EXPECT_EQ(log->records[2].attempts, 2);
  EXPECT_EQ(log->records[2].duration_us, 42);
  EXPECT_EQ(log->records[2].delta, done.delta);
  EXPECT_LT(log->records[0].seq, log->records[1].seq);
  EXPECT_LT(log->records[1].seq, log->records[2].seq);
  EXPECT_EQ(log->summary.status, RunStatus::kRunning);
  EXPECT_EQ(log->summary.pipeline, "p");
}

TEST_P(JournalConformance, StartingARunTwiceIsAlreadyExists) {
  ASSERT_TRUE(journal_->append(started("r1"), Durability::kStrict));
  auto again = journal_->append(started("r1"), Durability::kStrict);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
}

TEST_P(JournalConformance, RecordsForAnUnknownRunAreNotFound) {
  auto s = journal_->append(step("ghost", RecordType::kStepStarted, "/a"), Durability::kStrict);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  auto log = journal_->read_run(*RunId::parse("ghost"));
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), ErrorCode::kNotFound);
}

TEST_P(JournalConformance, StatusFollowsTerminalRecords) {
  ASSERT_TRUE(journal_->append(started("ok", 1000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("bad", 2000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("park", 3000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("ok", RecordType::kRunCompleted, ""), Durability::kStrict));
  Record failed = step("bad", RecordType::kRunFailed, "");
  failed.error = Error(ErrorCode::kInternal, "boom");
  ASSERT_TRUE(journal_->append(failed, Durability::kStrict));
  Record parked = step("park", RecordType::kRunSuspended, "");
  parked.payload = {{"status", "waiting"}, {"promise", "approval"}};
  ASSERT_TRUE(journal_->append(parked, Durability::kStrict));

  auto all = journal_->list_runs(RunFilter{});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].run_id.str(), "park");  // newest first

  RunFilter only_failed;
  only_failed.status = RunStatus::kFailed;
  auto failed_runs = journal_->list_runs(only_failed);
  ASSERT_TRUE(failed_runs);
  ASSERT_EQ(failed_runs->size(), 1u);
  EXPECT_EQ((*failed_runs)[0].error, "boom");

  auto bad = journal_->read_run(*RunId::parse("bad"));
  ASSERT_TRUE(bad);
  ASSERT_TRUE(bad->records.back().error.has_value());
  EXPECT_EQ(bad->records.back().error->code(), ErrorCode::kInternal);

  auto unfinished = journal_->read_unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_TRUE(unfinished->empty());
}

TEST_P(JournalConformance, ListFiltersByPipelineAndTime) {
  ASSERT_TRUE(journal_->append(started("a", 1000, "train"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("b", 2000, "eval"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("c", 3000, "train"), Durability::kStrict));
  RunFilter f;
  f.pipeline = "train";
  f.created_after_ms = 2000;
  auto runs = journal_->list_runs(f);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].run_id.str(), "c");
  f = RunFilter{};
  f.limit = 2;
  EXPECT_EQ(journal_->list_runs(f)->size(), 2u);
}

TEST_P(JournalConformance, UnfinishedRunsComeWithTheirRecords) {
  ASSERT_TRUE(journal_->append(started("live"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("live", RecordType::kStepCompleted, "/a"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("done"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("done", RecordType::kRunCompleted, ""), Durability::kStrict));
  auto unfinished = journal_->read_unfinished();
  ASSERT_TRUE(unfinished);
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].summary.run_id.str(), "live");
  EXPECT_EQ((*unfinished)[0].records.size(), 2u);
}

TEST_P(JournalConformance, LeasesFenceStaleOwners) {
  RunId run = *RunId::parse("r1");
  ASSERT_TRUE(journal_->append(started("r1"), Durability::kStrict));
  auto a = journal_->acquire_lease(run, "worker-a", std::chrono::seconds(30));
  ASSERT_TRUE(a);
  auto b = journal_->acquire_lease(run, "worker-b", std::chrono::seconds(30));
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::kFailedPrecondition);
  auto stolen = journal_->acquire_lease(run, "worker-b", std::chrono::seconds(30), a->epoch);
  ASSERT_TRUE(stolen);
  EXPECT_GT(stolen->epoch, a->epoch);
  auto renew = journal_->renew_lease(*a, std::chrono::seconds(30));
  ASSERT_FALSE(renew);
  EXPECT_EQ(renew.error().code(), ErrorCode::kAborted);
  EXPECT_TRUE(journal_->renew_lease(*stolen, std::chrono::seconds(30)));
  EXPECT_TRUE(journal_->release_lease(*stolen));
  auto again = journal_->acquire_lease(run, "worker-a", std::chrono::seconds(30));
  ASSERT_TRUE(again);
  EXPECT_GT(again->epoch, stolen->epoch);
}

TEST_P(JournalConformance, StartRunCreatesTheRunAndTakesItsLease) {
  auto lease = journal_->start_run(started("r1"), "worker-a", std::chrono::seconds(30));
  ASSERT_TRUE(lease) << lease.error().to_string();
  EXPECT_EQ(lease->owner, "worker-a");
  EXPECT_TRUE(journal_->read_run(*RunId::parse("r1")));
  auto other = journal_->acquire_lease(*RunId::parse("r1"), "worker-b", std::chrono::seconds(30));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kFailedPrecondition);
  auto again = journal_->start_run(started("r1"), "worker-b", std::chrono::seconds(30));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
}

TEST_P(JournalConformance, FinishingOrParkingARunReleasesItsLease) {
  RunId run = *RunId::parse("r1");
  ASSERT_TRUE(journal_->start_run(started("r1"), "worker-a", std::chrono::seconds(30)));
  Record parked = step("r1", RecordType::kRunSuspended, "");
  parked.payload = {{"status", "waiting"}};
  ASSERT_TRUE(journal_->append(parked, Durability::kStrict));
  EXPECT_FALSE(journal_->current_lease(run)->has_value());
  auto b = journal_->acquire_lease(run, "worker-b", std::chrono::seconds(30));
  ASSERT_TRUE(b);
  ASSERT_TRUE(journal_->append(step("r1", RecordType::kRunCompleted, ""), Durability::kStrict));
  EXPECT_FALSE(journal_->current_lease(run)->has_value());
}

TEST_P(JournalConformance, AWriterWhoseLeaseWasTakenOverWritesNothingMore) {
  RunId run = *RunId::parse("r1");
  auto a = journal_->start_run(started("r1"), "worker-a", std::chrono::seconds(30));
  ASSERT_TRUE(a);
  auto fenced = [](Record r, uint64_t epoch) {
    r.fence_epoch = epoch;
    return r;
  };
  ASSERT_TRUE(journal_->append(fenced(step("r1", RecordType::kStepCompleted, "/a"), a->epoch), Durability::kStrict));
  auto b = journal_->acquire_lease(run, "worker-b", std::chrono::seconds(30), a->epoch);
  ASSERT_TRUE(b);
  for (RecordType type : {RecordType::kStepCompleted, RecordType::kRunCompleted}) {
    auto stale = journal_->append(fenced(step("r1", type, "/b"), a->epoch), Durability::kStrict);
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code(), ErrorCode::kAborted);
    EXPECT_NE(stale.error().message().find("taken over"), std::string::npos) << stale.error().message();
  }
  ASSERT_TRUE(journal_->append(fenced(step("r1", RecordType::kStepCompleted, "/b"), b->epoch), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("r1", RecordType::kDecision, "/c"), Durability::kStrict));  // unfenced
  auto log = journal_->read_run(run);
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 4u);
  EXPECT_EQ(log->summary.status, RunStatus::kRunning);
  EXPECT_EQ((*journal_->current_lease(run))->owner, "worker-b");
}

TEST_P(JournalConformance, ExpiredLeaseCanBeTaken) {
  RunId run = *RunId::parse("r1");
  ASSERT_TRUE(journal_->append(started("r1"), Durability::kStrict));
  ASSERT_TRUE(journal_->acquire_lease(run, "a", std::chrono::milliseconds(-1)));
  EXPECT_TRUE(journal_->acquire_lease(run, "b", std::chrono::seconds(30)));
}

TEST_P(JournalConformance, PromisesResolveOnceAndAreJournaled) {
  RunId run = *RunId::parse("r1");
  ASSERT_TRUE(journal_->append(started("r1"), Durability::kStrict));
  EXPECT_FALSE(journal_->get_promise(run, "approval")->has_value());
  auto first = journal_->resolve_promise(run, "approval", Json{{"ok", true}});
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first);
  auto second = journal_->resolve_promise(run, "approval", Json{{"ok", false}});
  ASSERT_TRUE(second);
  EXPECT_FALSE(*second);
  EXPECT_EQ(**journal_->get_promise(run, "approval"), (Json{{"ok", true}}));
  auto log = journal_->read_run(run);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->records.back().type, RecordType::kPromiseResolved);
  auto missing = journal_->resolve_promise(*RunId::parse("nope"), "x", 1);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_P(JournalConformance, KeyValueStateIsScoped) {
  ASSERT_TRUE(journal_->put_value("r1", "k", 1));
  ASSERT_TRUE(journal_->put_value("r2", "k", 2));
  ASSERT_TRUE(journal_->put_value("r1", "k", 3));
  EXPECT_EQ(**journal_->get_value("r1", "k"), 3);
  EXPECT_EQ(**journal_->get_value("r2", "k"), 2);
  EXPECT_FALSE(journal_->get_value("r3", "k")->has_value());
}

TEST_P(JournalConformance, ValuesAreListedByPrefixInKeyOrder) {
  ASSERT_TRUE(journal_->put_value("", "schedule/b", 2));
  ASSERT_TRUE(journal_->put_value("", "schedule/a", 1));
  ASSERT_TRUE(journal_->put_value("", "scheduler", 3));
  ASSERT_TRUE(journal_->put_value("r1", "schedule/c", 4));
  auto listed = journal_->list_values("", "schedule/");
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].first, "schedule/a");
  EXPECT_EQ((*listed)[0].second, 1);
  EXPECT_EQ((*listed)[1].first, "schedule/b");
  EXPECT_EQ(journal_->list_values("", "")->size(), 3u);
  EXPECT_TRUE(journal_->list_values("", "nothing/")->empty());
}

TEST_P(JournalConformance, PruneRemovesOnlyOldFinishedRuns) {
  ASSERT_TRUE(journal_->append(started("old-done", 1000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("old-done", RecordType::kRunCompleted, "", 1000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("old-running", 1000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("new-done", 5000), Durability::kStrict));
  ASSERT_TRUE(journal_->append(step("new-done", RecordType::kRunCompleted, "", 5000), Durability::kStrict));
  auto removed = journal_->prune(PruneOptions{2000});
  ASSERT_TRUE(removed);
  ASSERT_EQ(removed->runs.size(), 1u);
  EXPECT_EQ(removed->runs[0].str(), "old-done");
  EXPECT_FALSE(journal_->read_run(*RunId::parse("old-done")));
  EXPECT_TRUE(journal_->read_run(*RunId::parse("old-running")));
  EXPECT_TRUE(journal_->read_run(*RunId::parse("new-done")));
}

// A run submitted to `queue` (a kRunStarted record with a placement).
inline Record submitted(const char* run, const char* queue = "default", int priority = 0, const char* partition = "") {
  Record r = started(run);
  r.payload["placement"] = Placement{queue, priority, partition}.to_json();
  return r;
}

inline ClaimRequest claim(const char* owner, size_t max_runs, int64_t now_ms,
                          std::vector<std::string> queues = {"default"}) {
  ClaimRequest c;
  c.owner = owner;
  c.queues = std::move(queues);
  c.max_runs = max_runs;
  c.ttl = std::chrono::seconds(30);
  c.now_ms = now_ms;
  return c;
}

inline std::vector<std::string> claimed_ids(const Result<std::vector<Lease>>& leases) {
  std::vector<std::string> out;
  if (!leases) return {"error: " + leases.error().to_string()};
  for (const Lease& l : *leases) out.push_back(l.run_id.str());
  return out;
}

inline int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_P(JournalConformance, SubmittedRunsWaitQueuedUntilAWorkerClaimsThem) {
  ASSERT_TRUE(journal_->append(submitted("q1"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(submitted("other", "gpu"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(started("plain"), Durability::kStrict));  // `crucible run`: never claimed
  auto log = journal_->read_run(*RunId::parse("q1"));
  ASSERT_TRUE(log);
  EXPECT_EQ(log->summary.status, RunStatus::kQueued);
  EXPECT_EQ(log->summary.queue, "default");
  const int64_t now = wall_now();
  auto a = journal_->claim_runs(claim("worker-a", 10, now));
  EXPECT_EQ(claimed_ids(a), std::vector<std::string>{"q1"});
  EXPECT_EQ((*a)[0].owner, "worker-a");
  EXPECT_FALSE((*a)[0].cancel_requested);
  log = journal_->read_run(*RunId::parse("q1"));
  EXPECT_EQ(log->summary.status, RunStatus::kRunning);
  EXPECT_EQ(log->summary.claims, 1);
  EXPECT_EQ((*journal_->current_lease(*RunId::parse("q1")))->owner, "worker-a");
  EXPECT_TRUE(claimed_ids(journal_->claim_runs(claim("worker-b", 10, now))).empty());
  // worker-a dies: once its lease expires another worker claims the run, and worker-a is fenced.
  auto b = journal_->claim_runs(claim("worker-b", 10, now + 60'000));
  EXPECT_EQ(claimed_ids(b), std::vector<std::string>{"q1"});
  EXPECT_GT((*b)[0].epoch, (*a)[0].epoch);
  auto stale = journal_->renew_lease((*a)[0], std::chrono::seconds(30));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), ErrorCode::kAborted);
  EXPECT_EQ(journal_->read_run(*RunId::parse("q1"))->summary.claims, 2);
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("worker-c", 10, now, {"gpu"}))), std::vector<std::string>{"other"});
}

TEST_P(JournalConformance, ClaimsTakeSmallerPriorityFirstThenSubmissionOrder) {
  ASSERT_TRUE(journal_->append(submitted("late", "default", 5), Durability::kStrict));
  ASSERT_TRUE(journal_->append(submitted("first", "default", 0), Durability::kStrict));
  ASSERT_TRUE(journal_->append(submitted("second", "default", 0), Durability::kStrict));
  const int64_t now = wall_now();
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 2, now))), (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 2, now))), std::vector<std::string>{"late"});
}

TEST_P(JournalConformance, QueueConcurrencyHoldsAcrossWorkersAndPerPartition) {
  ASSERT_TRUE(journal_->put_value("", queue_limits_key("default"), QueueLimits{1, {}, {}}.to_json()));
  for (const char* id : {"a1", "a2", "a3"}) ASSERT_TRUE(journal_->append(submitted(id), Durability::kStrict));
  const int64_t now = wall_now();
  auto first = journal_->claim_runs(claim("w1", 3, now));
  EXPECT_EQ(claimed_ids(first), std::vector<std::string>{"a1"});
  EXPECT_TRUE(claimed_ids(journal_->claim_runs(claim("w2", 3, now))).empty());
  Record done = step("a1", RecordType::kRunCompleted, "");
  done.fence_epoch = (*first)[0].epoch;
  ASSERT_TRUE(journal_->append(done, Durability::kStrict));
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w2", 3, now))), std::vector<std::string>{"a2"});

  ASSERT_TRUE(journal_->put_value("", queue_limits_key("keyed"), QueueLimits{1, {}, {}}.to_json()));
  for (auto [id, key] : {std::pair{"k1", "tenant-a"}, {"k2", "tenant-a"}, {"k3", "tenant-b"}}) {
    ASSERT_TRUE(journal_->append(submitted(id, "keyed", 0, key), Durability::kStrict));
  }
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w1", 3, now, {"keyed"}))), (std::vector<std::string>{"k1", "k3"}));
}

TEST_P(JournalConformance, RateLimitCountsFirstStartsInTheWindow) {
  QueueLimits limits;
  limits.rate_limit = 2;
  limits.rate_period = std::chrono::seconds(60);
  ASSERT_TRUE(journal_->put_value("", queue_limits_key("default"), limits.to_json()));
  for (const char* id : {"r1", "r2", "r3"}) ASSERT_TRUE(journal_->append(submitted(id), Durability::kStrict));
  const int64_t now = wall_now();
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 3, now))), (std::vector<std::string>{"r1", "r2"}));
  // Their leases expired: r1 and r2 are resumed, which is no new start, and r3 still waits.
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 3, now + 59'000))), (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 3, now + 61'000))), std::vector<std::string>{"r3"});
}

TEST_P(JournalConformance, AParkedRunIsClaimableOnceSignalledOrDue) {
  ASSERT_TRUE(journal_->append(submitted("sig"), Durability::kStrict));
  ASSERT_TRUE(journal_->append(submitted("timer"), Durability::kStrict));
  const int64_t now = wall_now();
  auto leases = journal_->claim_runs(claim("w", 2, now));
  ASSERT_EQ(claimed_ids(leases).size(), 2u);
  for (const Lease& l : *leases) {
    Record park = step(l.run_id.str().c_str(), RecordType::kRunSuspended, "/wait");
    park.payload = {{"status", "waiting"}, {"promise", "approval"}};
    if (l.run_id.str() == "timer") park.payload["deadline_ms"] = now + 10'000;
    park.fence_epoch = l.epoch;
    ASSERT_TRUE(journal_->append(park, Durability::kStrict));
  }
  EXPECT_EQ(journal_->read_run(*RunId::parse("sig"))->summary.status, RunStatus::kWaiting);
  EXPECT_TRUE(claimed_ids(journal_->claim_runs(claim("w", 2, now))).empty());
  ASSERT_TRUE(journal_->resolve_promise(*RunId::parse("sig"), "other", 1));  // not the one it waits for
  EXPECT_TRUE(claimed_ids(journal_->claim_runs(claim("w", 2, now))).empty());
  ASSERT_TRUE(journal_->resolve_promise(*RunId::parse("sig"), "approval", 1));
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 2, now))), std::vector<std::string>{"sig"});
  EXPECT_EQ(claimed_ids(journal_->claim_runs(claim("w", 2, now + 10'000))), std::vector<std::string>{"timer"});
}

TEST_P(JournalConformance, CancelEndsAnIdleRunAndAsksTheWorkerHoldingOne) {
  ASSERT_TRUE(journal_->append(submitted("idle"), Durability::kStrict));
  auto outcome = journal_->cancel_run(*RunId::parse("idle"), "cancelled by test", wall_now());
  ASSERT_TRUE(outcome) << outcome.error().to_string();
  EXPECT_EQ(*outcome, CancelOutcome::kCancelled);
  auto log = journal_->read_run(*RunId::parse("idle"));
  EXPECT_EQ(log->summary.status, RunStatus::kCancelled);
  EXPECT_EQ(log->records.back().type, RecordType::kRunFailed);
  EXPECT_EQ(log->records.back().error->code(), ErrorCode::kCancelled);
  EXPECT_EQ(*journal_->cancel_run(*RunId::parse("idle"), "", wall_now()), CancelOutcome::kAlreadyFinished);

  ASSERT_TRUE(journal_->append(submitted("busy"), Durability::kStrict));
  auto held = journal_->claim_runs(claim("w", 1, wall_now()));
  ASSERT_EQ(claimed_ids(held), std::vector<std::string>{"busy"});
  EXPECT_EQ(*journal_->cancel_run(*RunId::parse("busy"), "", wall_now()), CancelOutcome::kRequested);
  EXPECT_EQ(journal_->read_run(*RunId::parse("busy"))->summary.status, RunStatus::kRunning);
  auto renew = journal_->renew_lease((*held)[0], std::chrono::seconds(30));
  ASSERT_FALSE(renew);
  EXPECT_EQ(renew.error().code(), ErrorCode::kCancelled);
  // The holder died before it noticed: whoever claims the run next is told to end it.
  auto next = journal_->claim_runs(claim("w2", 1, wall_now() + 60'000));
  ASSERT_EQ(claimed_ids(next), std::vector<std::string>{"busy"});
  EXPECT_TRUE((*next)[0].cancel_requested);
  auto missing = journal_->cancel_run(*RunId::parse("nope"), "", wall_now());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_P(JournalConformance, ARunEndedByCancelOrDeadlineHasThatStatusAndIsFinished) {
  for (RunStatus how : {RunStatus::kCancelled, RunStatus::kDeadlineExceeded}) {
    const std::string id(run_status_name(how));
    ASSERT_TRUE(journal_->append(started(id.c_str()), Durability::kStrict));
    ASSERT_TRUE(journal_->append(ended_record(*RunId::parse(id), how, "why", 2000), Durability::kStrict));
    auto log = journal_->read_run(*RunId::parse(id));
    ASSERT_TRUE(log);
    EXPECT_EQ(log->summary.status, how) << run_status_name(log->summary.status);
    EXPECT_EQ(log->summary.error, "why");
  }
  auto pruned = journal_->prune(PruneOptions{3000});
  ASSERT_TRUE(pruned);
  EXPECT_EQ(pruned->runs.size(), 2u);
}

TEST_P(JournalConformance, ConcurrentAppendersKeepPerRunOrder) {
  constexpr int kRuns = 8;
  constexpr int kSteps = 50;
  for (int r = 0; r < kRuns; ++r) {
    std::string id = "run" + std::to_string(r);
    ASSERT_TRUE(journal_->append(started(id.c_str()), Durability::kStrict));
  }
  std::vector<std::jthread> threads;
  for (int r = 0; r < kRuns; ++r) {
    threads.emplace_back([&, r] {
      std::string id = "run" + std::to_string(r);
      for (int s = 0; s < kSteps; ++s) {
        std::string key = "/s" + std::to_string(s);
        auto d = s % 2 == 0 ? Durability::kBatched : Durability::kStrict;
        EXPECT_TRUE(journal_->append(step(id.c_str(), RecordType::kStepCompleted, key.c_str()), d));
      }
    });
  }
  threads.clear();
  ASSERT_TRUE(journal_->flush());
  for (int r = 0; r < kRuns; ++r) {
    auto log = journal_->read_run(*RunId::parse("run" + std::to_string(r)));
    ASSERT_TRUE(log);
    ASSERT_EQ(log->records.size(), static_cast<size_t>(kSteps + 1));
    for (int s = 0; s < kSteps; ++s) {
      EXPECT_EQ(log->records[s + 1].key.str(), "/s" + std::to_string(s));
    }
  }
}

}  // namespace crucible::testing
