#include "crucible/workflow/builder.h"

#include <gtest/gtest.h>

#include "crucible/stages/library.h"

namespace crucible {
namespace {

TEST(WorkflowBuilder, ReportsEveryProblemWithTheSameRulesAsYaml) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("bad");
  b.stage("a", "noop").stage("a", "noop").stage("c", "nope").when("metrics.x >");
  auto spec = b.build(registry);
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
  const std::string& m = spec.error().message();
  EXPECT_NE(m.find("duplicate stage name 'a'"), std::string::npos);
  EXPECT_NE(m.find("unknown stage type 'nope'"), std::string::npos);
  EXPECT_NE(m.find("bad expression 'metrics.x >'"), std::string::npos);
}

TEST(WorkflowBuilder, BuildsNestedNodesAndModifiers) {
  StageRegistry registry = builtin_registry();
  RetryPolicy retry;
  retry.max_attempts = 3;
  WorkflowBuilder b("nested");
  b.durability(Durability::kBatched)
      .config(Json{{"n", 2}})
      .stage("prep", "noop")
      .timeout(std::chrono::seconds(5))
      .retry(retry)
      .optional()
      .loop_count("epochs", 2, [](SequenceBuilder& body) { body.stage("train", "noop"); })
      .parallel("fan", {{"a", [](SequenceBuilder& s) { s.stage("x", "noop"); }},
                        {"b", [](SequenceBuilder& s) { s.stage("y", "noop"); }}},
                JoinPolicy::kAny);
  auto spec = b.build(registry);
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->stages.size(), 3u);
  EXPECT_EQ(spec->stages[0].timeout, std::chrono::seconds(5));
  EXPECT_EQ(spec->stages[0].retry.max_attempts, 3);
  EXPECT_TRUE(spec->stages[0].optional);
  EXPECT_EQ(spec->stages[1].loop_mode, LoopMode::kCount);
  EXPECT_EQ(spec->stages[2].join, JoinPolicy::kAny);
  EXPECT_FALSE(spec->hash.empty());
}

}  // namespace
}  // namespace crucible
