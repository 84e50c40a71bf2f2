#include "crucible/engine/plan.h"

#include <gtest/gtest.h>

#include "crucible/stages/library.h"
#include "crucible/testing/matchers.h"
#include "crucible/workflow/builder.h"
#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

using testing::HasCode;

Node ordered_stage(const char* name, int64_t order) {
  Node n;
  n.name = name;
  StageNode& s = n.body.emplace<StageNode>();
  s.uses = "noop";
  s.order = order;
  return n;
}

TEST(Plan, ValidationLeavesTheSpecAloneAndBindingDoesTheRest) {
  StageRegistry registry = builtin_registry();
  WorkflowSpec spec;
  spec.name = "ordered";
  spec.stages.push_back(ordered_stage("second", 2));
  spec.stages.push_back(ordered_stage("first", 1));
  auto diagnostics = validate_spec(spec, registry);
  EXPECT_TRUE(diagnostics.empty());
  EXPECT_EQ(spec.stages[0].name, "second");  // validation leaves the order as written
  EXPECT_EQ(spec.stages[0].as<StageNode>().implementation, nullptr);
  EXPECT_TRUE(spec.hash.empty());

  auto plan = bind_plan(spec, registry);
  ASSERT_TRUE(plan) << plan.error().to_string();
  ASSERT_EQ(plan->stages.size(), 2u);
  EXPECT_EQ(plan->stages[0].name(), "first");
  EXPECT_NE(plan->stages[0].stage, nullptr);
  EXPECT_EQ(plan->stages[0].node, &spec.stages[1]);  // the plan points into the unchanged spec
  EXPECT_EQ(spec.stages[0].name, "second");
  EXPECT_EQ(spec.stages[0].as<StageNode>().implementation, nullptr);
}

TEST(Plan, EveryRunGetsItsOwnStageInstances) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("twice");
  b.stage("a", "noop");
  auto spec = b.build(registry);
  ASSERT_TRUE(spec) << spec.error().to_string();
  auto one = bind_plan(*spec, registry);
  auto two = bind_plan(*spec, registry);
  ASSERT_TRUE(one && two);
  EXPECT_NE(one->stages[0].stage, two->stages[0].stage);
}

TEST(Plan, BindsHedgePoliciesAndIdempotence) {
  StageRegistry registry = builtin_registry();
  LoadResult loaded = load_pipeline_text(R"(name: bound
stages:
  - {name: call, uses: noop, hedging: {strategy: fixed, delay_ms: 20, max_hedges: 2}}
  - {name: once, uses: noop, idempotent: false}
  - loop:
      count: 2
      stages: [{name: inner, uses: noop}]
    name: repeat
)",
                                         "bound.yaml", registry);
  ASSERT_TRUE(loaded.ok()) << loaded.report();
  auto plan = bind_plan(*loaded.spec, registry);
  ASSERT_TRUE(plan) << plan.error().to_string();
  ASSERT_NE(plan->stages[0].hedge_policy, nullptr);
  EXPECT_EQ(plan->stages[0].max_hedges, 2);
  EXPECT_TRUE(plan->stages[0].idempotent);
  EXPECT_EQ(plan->stages[1].hedge_policy, nullptr);
  EXPECT_FALSE(plan->stages[1].idempotent);
  ASSERT_EQ(plan->stages[2].lists.size(), 1u);
  EXPECT_EQ(plan->stages[2].body()[0].name(), "inner");
  EXPECT_NE(plan->stages[2].body()[0].stage, nullptr);
}

TEST(Plan, AStageTypeTheRegistryLacksIsNotFound) {
  StageRegistry full = builtin_registry();
  WorkflowBuilder b("missing");
  b.stage("a", "noop");
  auto spec = b.build(full);
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_THAT(bind_plan(*spec, StageRegistry()), HasCode(ErrorCode::kNotFound));
}

}  // namespace
}  // namespace crucible
