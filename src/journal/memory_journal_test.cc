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

}  // namespace
}  // namespace crucible::testing
