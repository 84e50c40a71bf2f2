#include "crucible/core/ids.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

TEST(RunId, RejectsBadCharactersAndLength) {
  EXPECT_TRUE(RunId::parse("run-1_a.b:c"));
  auto bad = RunId::parse("run/1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(RunId::parse(""));
  EXPECT_FALSE(RunId::parse(std::string(129, 'a')));
}

TEST(RunId, GeneratedIdsAreValidAndDistinct) {
  FakeClock clock;
  SeededRandom random(1);
  RunId a = RunId::generate(clock, random);
  RunId b = RunId::generate(clock, random);
  EXPECT_NE(a, b);
  EXPECT_TRUE(RunId::parse(a.str()));
}

TEST(StepKey, BuildsPathsFromTheTree) {
  StepKey k = StepKey::root().indexed("train", 2).child("eval");
  EXPECT_EQ(k.str(), "/train[2]/eval");
  EXPECT_TRUE(k.within(StepKey::from_string("/train")));
  EXPECT_TRUE(k.within(StepKey::from_string("/train[2]")));
  EXPECT_FALSE(k.within(StepKey::from_string("/tra")));
  EXPECT_FALSE(StepKey::from_string("/trainer").within(StepKey::from_string("/train")));
}

}  // namespace
}  // namespace crucible
