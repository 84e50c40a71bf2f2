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

namespace crucible {
namespace {

TEST(StepKey, BuildsAndParsesBranchKeys) {
  StepKey exp = StepKey::root().child("sweep");
  StepKey b = exp.branch("3fa1c0d2");
  EXPECT_EQ(b.str(), "/sweep/branch[3fa1c0d2]");
  auto parts = StepKey::parse_branch(b.str() + "#branch");
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(parts->experiment, "/sweep");
  EXPECT_EQ(parts->config_id, "3fa1c0d2");
  EXPECT_EQ(parts->suffix, "#branch");
  auto nested = StepKey::parse_branch(b.child("train").str());
  ASSERT_TRUE(nested.has_value());
  EXPECT_EQ(nested->suffix, "/train");
  EXPECT_FALSE(StepKey::parse_branch("/train/eval").has_value());
  EXPECT_FALSE(StepKey::parse_branch("/x/branch[]").has_value());
  EXPECT_FALSE(StepKey::parse_branch("/x/branch[open").has_value());
}

}  // namespace
}  // namespace crucible
