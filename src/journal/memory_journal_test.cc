#include "crucible/journal/memory_journal.h"

#include "crucible/testing/journal_conformance.h"

namespace crucible::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(Memory, JournalConformance,
                         ::testing::Values(JournalFactory([] { return make_memory_journal(); })));

TEST(Record, BodyRoundTripsThroughJson) {
  Record r;
  r.type = RecordType::kStepFailed;
  r.attempts = 3;
  r.duration_us = 7;
  r.error = Error(ErrorCode::kDeadlineExceeded, "too slow");
  r.payload = {{"optional", true}};
  Record back;
  ASSERT_TRUE(record_body_from_json(record_body_to_json(r), back));
  EXPECT_EQ(back.attempts, 3);
  EXPECT_EQ(back.duration_us, 7);
  ASSERT_TRUE(back.error);
  EXPECT_EQ(back.error->code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(back.payload["optional"], true);
}

TEST(RecordType, NamesRoundTrip) {
  for (int i = 1; i <= 9; ++i) {
    auto t = static_cast<RecordType>(i);
    EXPECT_EQ(parse_record_type(record_type_name(t)), t);
  }
}

TEST(Placement, RoundTripsAndNamesABadField) {
  Placement p{"gpu", 3, "tenant-a"};
  auto back = Placement::from_json(p.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->queue, "gpu");
  EXPECT_EQ(back->priority, 3);
  EXPECT_EQ(back->partition, "tenant-a");
  for (const Json& bad : {Json{{"queue", ""}}, Json{{"priority", "high"}}, Json{{"partition", 1}}, Json{{"q", "x"}}}) {
    auto r = Placement::from_json(bad);
    ASSERT_FALSE(r) << json_dump(bad);
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(r.error().field().has_value());
  }
  EXPECT_FALSE(Placement::from_json(Json::array()));
}

TEST(QueueLimits, RoundTripsAndRefusesNonsense) {
  QueueLimits q;
  q.concurrency = 2;
  q.rate_limit = 10;
  q.rate_period = std::chrono::seconds(60);
  auto back = QueueLimits::from_json(q.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->concurrency, 2);
  EXPECT_EQ(back->rate_limit, 10);
  EXPECT_EQ(back->rate_period, std::chrono::seconds(60));
  EXPECT_TRUE(QueueLimits::from_json(Json::object())->concurrency == std::nullopt);
  for (const Json& bad : {Json{{"concurrency", 0}}, Json{{"concurrency", "1"}}, Json{{"rate_limit", 5}},
                          Json{{"rate_period_ms", 1000}}}) {
    auto r = QueueLimits::from_json(bad);
    ASSERT_FALSE(r) << json_dump(bad);
    EXPECT_TRUE(r.error().field().has_value()) << json_dump(bad);
  }
  EXPECT_FALSE(QueueLimits::from_json(Json(3)));
}

TEST(PickClaims, KeepsEachQueueWithinItsLimits) {
  std::vector<ClaimCandidate> c = {{*RunId::parse("a"), "q", "", true},
                                   {*RunId::parse("b"), "q", "", false},
                                   {*RunId::parse("c"), "q", "", true},
                                   {*RunId::parse("d"), "free", "", true}};
  QueueLimits rate;
  rate.rate_limit = 1;
  rate.rate_period = std::chrono::seconds(1);
  // One new start a window: a and the resumed b, not c; the unlimited queue takes d.
  EXPECT_EQ(pick_claims(c, {{"q", rate}}, {}, 10), (std::vector<size_t>{0, 1, 3}));
  EXPECT_EQ(pick_claims(c, {{"q", QueueLimits{1, {}, {}}}}, {}, 10), (std::vector<size_t>{0, 3}));
  EXPECT_EQ(pick_claims(c, {}, {}, 2), (std::vector<size_t>{0, 1}));
}

TEST(RunStatus, NamesRoundTrip) {
  for (RunStatus s :
       {RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kWaiting, RunStatus::kNeedsAttention,
        RunStatus::kQueued, RunStatus::kCancelled, RunStatus::kDeadlineExceeded}) {
    EXPECT_EQ(parse_run_status(run_status_name(s)), s);
  }
}

}  // namespace
}  // namespace crucible::testing
