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
      .parallel("fan",
                {{"a", [](SequenceBuilder& s) { s.stage("x", "noop"); }},
                 {"b", [](SequenceBuilder& s) { s.stage("y", "noop"); }}},
                JoinPolicy::kAny);
  auto spec = b.build(registry);
  ASSERT_TRUE(spec) << spec.error().to_string();
  ASSERT_EQ(spec->stages.size(), 3u);
  EXPECT_EQ(spec->stages[0].as<StageNode>().timeout, std::chrono::seconds(5));
  EXPECT_EQ(spec->stages[0].as<StageNode>().retry.max_attempts, 3);
  EXPECT_TRUE(spec->stages[0].as<StageNode>().optional);
  EXPECT_EQ(spec->stages[1].as<LoopNode>().mode, LoopMode::kCount);
  EXPECT_EQ(spec->stages[2].as<ParallelNode>().join, JoinPolicy::kAny);
  EXPECT_FALSE(spec->hash.empty());
}

TEST(WorkflowBuilder, AHedgedStageMatchesTheSameStageInYaml) {
  StageRegistry registry = builtin_registry();
  auto hedging = HedgingConfig::from_json(Json{{"strategy", "fixed"}, {"delay_ms", 20}, {"max_hedges", 2}});
  ASSERT_TRUE(hedging) << hedging.error().to_string();
  WorkflowBuilder b("hedged");
  b.stage("call", "noop").hedging(*hedging);
  auto built = b.build(registry);
  ASSERT_TRUE(built) << built.error().to_string();
  ASSERT_TRUE(built->stages[0].as<StageNode>().hedging.has_value());
  EXPECT_EQ(built->stages[0].as<StageNode>().hedging->max_hedges, 2);
  LoadResult yaml = load_pipeline_text(
      "name: hedged\nstages:\n  - {name: call, uses: noop, hedging: {strategy: fixed, delay_ms: 20, max_hedges: 2}}\n",
      "hedged.yaml", registry);
  ASSERT_TRUE(yaml.ok()) << yaml.report();
  EXPECT_EQ(built->hash, yaml.spec->hash);
}

TEST(WorkflowBuilder, RejectsHedgingANonIdempotentStage) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("hedged");
  b.stage("call", "noop").idempotent(false).hedging(*HedgingConfig::from_json(Json{{"strategy", "off"}}));
  auto built = b.build(registry);
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message().find("only idempotent stages can be hedged"), std::string::npos);
}

TEST(WorkflowBuilder, ExperimentsAndCompletionMatchTheSameNodesInYaml) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("exp");
  b.experiment_sweep(
       "sweep", ExperimentStrategy::kMultiBranch, Json{{"lr", Json::array({0.1, 0.01})}},
       [](SequenceBuilder& body) { body.stage("train", "noop"); }, 4)
      .experiment("pick", ExperimentStrategy::kRoundRobin, {Json{{"model", "a"}}, Json{{"model", "b"}}},
                  [](SequenceBuilder& body) { body.stage("call", "noop"); })
      .stage("soak", "noop")
      .completion(Completion::kDuration, std::chrono::seconds(2));
  auto built = b.build(registry);
  ASSERT_TRUE(built) << built.error().to_string();
  EXPECT_EQ(built->stages[0].as<ExperimentNode>().configs.size(), 2u);
  EXPECT_EQ(built->stages[1].as<ExperimentNode>().strategy, ExperimentStrategy::kRoundRobin);
  LoadResult yaml = load_pipeline_text(R"(name: exp
stages:
  - name: sweep
    experiment:
      sweep: {lr: [0.1, 0.01]}
      max_concurrency: 4
      stages: [{name: train, uses: noop}]
  - name: pick
    experiment:
      strategy: round_robin
      configs: [{model: a}, {model: b}]
      stages: [{name: call, uses: noop}]
  - {name: soak, uses: noop, completion: duration, duration: 2s}
)",
                                       "exp.yaml", registry);
  ASSERT_TRUE(yaml.ok()) << yaml.report();
  EXPECT_EQ(built->hash, yaml.spec->hash);
}

TEST(WorkflowBuilder, AnExperimentNeedsMappingsAsConfigs) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("bad");
  b.experiment("e", ExperimentStrategy::kShadow, {Json(3)}, [](SequenceBuilder& body) { body.stage("s", "noop"); });
  auto built = b.build(registry);
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message().find("a config must be a mapping"), std::string::npos);
}

// The builder and YAML are two spellings of one spec: every node kind and modifier built in C++
// hashes the same as its YAML.
TEST(WorkflowBuilder, EveryNodeKindMatchesItsYaml) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("parity");
  b.description("every node kind")
      .config(Json{{"items", {1, 2}}})
      .stage("s1", "set", Json{{"x", "1"}})
      .sequence("group",
                [](SequenceBuilder& s) { s.stage("b", "noop").order(2).stage("a", "noop").order(1).idempotent(false); })
      .loop_items("over", Json{10, 20},
                  [](SequenceBuilder& s) {
                    s.stage("p", "set", Json{{"last", "item"}});
                  })
      .loop_over("each", "config.items", [](SequenceBuilder& s) { s.stage("q", "noop"); })
      .loop_until("grow", "state.n >= 2", 5,
                  [](SequenceBuilder& s) {
                    s.stage("inc", "set", Json{{"n", "index + 1"}});
                  })
      .conditional(
          "gate", "state.n == 2", [](SequenceBuilder& s) { s.stage("yes", "noop"); },
          [](SequenceBuilder& s) { s.stage("no", "noop"); });
  auto built = b.build(registry);
  ASSERT_TRUE(built) << built.error().to_string();
  LoadResult yaml = load_pipeline_text(R"(name: parity
description: every node kind
config: {items: [1, 2]}
stages:
  - {name: s1, uses: set, with: {x: "1"}}
  - name: group
    sequence:
      - {name: b, uses: noop, order: 2}
      - {name: a, uses: noop, order: 1, idempotent: false}
  - name: over
    loop: {over: [10, 20], stages: [{name: p, uses: set, with: {last: item}}]}
  - name: each
    loop: {over: config.items, stages: [{name: q, uses: noop}]}
  - name: grow
    loop: {until: "state.n >= 2", max: 5, stages: [{name: inc, uses: set, with: {n: "index + 1"}}]}
  - name: gate
    conditional:
      when: "state.n == 2"
      then: [{name: yes, uses: noop}]
      else: [{name: no, uses: noop}]
)",
                                       "parity.yaml", registry);
  ASSERT_TRUE(yaml.ok()) << yaml.report();
  EXPECT_EQ(json_dump(spec_to_json(*built), 2), json_dump(spec_to_json(*yaml.spec), 2));
  EXPECT_EQ(built->hash, yaml.spec->hash);
  EXPECT_EQ(built->description, "every node kind");
  ASSERT_EQ(built->stages[1].kind(), NodeKind::kSequence);
  const std::vector<Node>& group = built->stages[1].as<SequenceNode>().nodes;
  ASSERT_EQ(group.size(), 2u);
  EXPECT_EQ(group[0].as<StageNode>().order, 2);
  EXPECT_FALSE(*group[1].as<StageNode>().idempotent);
  EXPECT_EQ(run_order(group)[0]->name, "a");
}

TEST(WorkflowBuilder, ModifiersNeedAStage) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("mods");
  b.sequence("group", [](SequenceBuilder& s) { s.stage("x", "noop"); }).idempotent(true).order(3);
  auto built = b.build(registry);
  ASSERT_FALSE(built);
  EXPECT_NE(built.error().message().find("idempotent"), std::string::npos) << built.error().message();
}

// Mistakes only C++ can make (an empty name) and the ones YAML shares, reported the same way.
TEST(WorkflowBuilder, ReportsBuilderMistakesLikeYaml) {
  StageRegistry registry = builtin_registry();
  WorkflowBuilder b("mistakes");
  b.stage("", "noop")
      .stage("run", "command", Json{{"argvv", {"true"}}})
      .stage("long", "noop")
      .completion(Completion::kDuration)
      .stage("count", "noop")
      .completion(Completion::kTasksDone)
      .parallel("fan", {{"", [](SequenceBuilder& s) { s.stage("x", "noop"); }},
                        {"twin", [](SequenceBuilder& s) { s.stage("y", "noop"); }},
                        {"twin", [](SequenceBuilder& s) { s.stage("z", "noop"); }}})
      .sequence("group", [](SequenceBuilder& s) { s.stage("a", "noop").order(1).stage("b", "noop"); });
  auto built = b.build(registry);
  ASSERT_FALSE(built);
  const std::string& m = built.error().message();
  for (const char* expected :
       {"stages[0]: a stage needs a name", "stage type 'command' has no option 'argvv'; did you mean 'argv'?",
        "completion duration needs 'duration'", "completion tasks_done needs 'expected_tasks'",
        "parallel.branches[0]: a branch needs a name", "duplicate branch name 'twin'",
        "stage 'b' has no 'order' while its siblings do"}) {
    EXPECT_NE(m.find(expected), std::string::npos) << expected << "\n" << m;
  }
}

}  // namespace
}  // namespace crucible
