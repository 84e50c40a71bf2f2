#include "crucible/core/context.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

Context make() { return Context("exp", *RunId::parse("r1"), Json{{"topic", "cats"}}); }

TEST(Context, MetricsPutGetHasMergeUpdate) {
  Context ctx = make();
  ctx.put_metric("loss", 0.5);
  EXPECT_TRUE(ctx.has_metric("loss"));
  EXPECT_EQ(*ctx.get_metric("loss"), 0.5);
  ASSERT_TRUE(ctx.merge_metrics(Json{{"acc", 0.9}, {"loss", 0.4}}));
  EXPECT_EQ(*ctx.get_metric("loss"), 0.4);
  ASSERT_TRUE(ctx.update_metric("acc", [](const Json& v) { return v.get<double>() + 0.05; }));
  EXPECT_DOUBLE_EQ(ctx.get_metric("acc")->get<double>(), 0.95);
}

TEST(Context, UpdateOfMissingMetricIsNotFound) {
  Context ctx = make();
  auto s = ctx.update_metric("nope", [](const Json& v) { return v; });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
}

TEST(Context, MergeMetricsRejectsNonObject) {
  Context ctx = make();
  auto s = ctx.merge_metrics(Json::array({1, 2}));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Context, CompletedStagesAreOrderedWithoutDuplicates) {
  Context ctx = make();
  ctx.mark_stage_complete("a");
  ctx.mark_stage_complete("b");
  ctx.mark_stage_complete("a");
  EXPECT_EQ(ctx.completed_stages(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ctx.stage_completed("b"));
  EXPECT_FALSE(ctx.stage_completed("c"));
}

TEST(Context, CompletedStagesStayUniqueAcrossTheIndexThreshold) {
  Context ctx = make();
  for (int i = 0; i < 40; ++i) ctx.mark_stage_complete("s" + std::to_string(i % 20));
  EXPECT_EQ(ctx.completed_stages().size(), 20u);
  EXPECT_TRUE(ctx.stage_completed("s19"));
  (void)ctx.take_delta();
  ctx.mark_stage_complete("late");
  ctx.discard_delta();
  EXPECT_FALSE(ctx.stage_completed("late"));
  EXPECT_EQ(ctx.completed_stages().size(), 20u);
  Context replayed = make();
  Delta d;
  for (int i = 0; i < 30; ++i) d.push_back({Mutation::Kind::kComplete, "r" + std::to_string(i % 18), Json()});
  replayed.apply(d);
  EXPECT_EQ(replayed.completed_stages().size(), 18u);
  EXPECT_TRUE(replayed.stage_completed("r17"));
}

TEST(Context, RunIdsCompareByValue) {
  EXPECT_EQ(*RunId::parse("a"), *RunId::parse("a"));
  EXPECT_NE(*RunId::parse("a"), *RunId::parse("b"));
  EXPECT_LT(*RunId::parse("a"), *RunId::parse("b"));
  EXPECT_TRUE(RunId().empty());
}

TEST(Context, EveryMutationIsRecordedInTheDelta) {
  Context ctx = make();
  ctx.put_metric("m", 1);
  ctx.put_artifact("a", "text");
  ctx.assign("s", Json{{"x", 1}});
  ctx.mark_stage_complete("st");
  ctx.add_trace("st");
  Delta delta = ctx.take_delta();
  ASSERT_EQ(delta.size(), 5u);
  EXPECT_EQ(delta[0].kind, Mutation::Kind::kMetric);
  EXPECT_EQ(delta[1].kind, Mutation::Kind::kArtifact);
  EXPECT_EQ(delta[2].kind, Mutation::Kind::kState);
  EXPECT_EQ(delta[3].kind, Mutation::Kind::kComplete);
  EXPECT_EQ(delta[4].kind, Mutation::Kind::kTrace);
  EXPECT_TRUE(ctx.delta().empty());
}

TEST(Context, ApplyingADeltaReproducesTheContext) {
  Context a = make();
  a.put_metric("m", 1);
  a.assign("s", "v");
  a.mark_stage_complete("x");
  a.add_trace("x");
  Delta delta = a.take_delta();
  auto round = delta_from_json(delta_to_json(delta));
  ASSERT_TRUE(round);
  EXPECT_EQ(*round, delta);

  Context b = make();
  b.apply(*round);
  EXPECT_EQ(a.to_json(), b.to_json());
  EXPECT_TRUE(b.delta().empty());
}

TEST(Context, DiscardDeltaRevertsAFailedAttempt) {
  Context ctx = make();
  ctx.put_metric("kept", 1);
  ctx.assign("s", "before");
  (void)ctx.take_delta();
  ctx.put_metric("kept", 2);
  ctx.put_metric("new", 3);
  ctx.assign("s", "after");
  ctx.put_artifact("a", "x");
  ctx.mark_stage_complete("st");
  ctx.add_trace("st");
  ctx.discard_delta();
  EXPECT_EQ(*ctx.get_metric("kept"), 1);
  EXPECT_FALSE(ctx.has_metric("new"));
  EXPECT_EQ(*ctx.get("s"), "before");
  EXPECT_FALSE(ctx.has_artifact("a"));
  EXPECT_FALSE(ctx.stage_completed("st"));
  EXPECT_TRUE(ctx.trace().empty());
  EXPECT_TRUE(ctx.delta().empty());
}

TEST(Context, MalformedDeltaIsDataLoss) {
  auto d = delta_from_json(Json::array({Json{{"op", "bogus"}, {"key", "k"}}}));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kDataLoss);
}

TEST(Context, LoopScopeExposesInnermostItemAndIndex) {
  Context ctx = make();
  EXPECT_EQ(ctx.item(), nullptr);
  ctx.push_loop(Json("outer"), 0);
  ctx.push_loop(Json(7), 2);
  EXPECT_EQ(*ctx.item(), 7);
  EXPECT_EQ(ctx.index(), 2);
  ctx.pop_loop();
  EXPECT_EQ(*ctx.item(), "outer");
}

TEST(Context, CopiesAfterShareHistoryChangeOnlyWhatTheyAdd) {
  Context base("exp", RunId(), Json::object());
  for (int i = 0; i < 100; ++i) {
    base.mark_stage_complete("s" + std::to_string(i));
    base.add_trace("s" + std::to_string(i));
  }
  base.put_metric("m", 1);
  (void)base.take_delta();
  base.share_history();
  Context a = base, b = base;
  a.mark_stage_complete("a");
  a.add_trace("a");
  a.mark_stage_complete("s5");  // already complete in the shared history
  a.put_metric("m", 2);
  b.assign("k", "v");
  EXPECT_EQ(a.changes_since(base), (Delta{{Mutation::Kind::kMetric, "m", 2},
                                          {Mutation::Kind::kComplete, "a", Json()},
                                          {Mutation::Kind::kTrace, "a", Json()}}));
  EXPECT_EQ(b.changes_since(base), (Delta{{Mutation::Kind::kState, "k", "v"}}));
  EXPECT_EQ(*base.get_metric("m"), 1);  // a's write did not reach the shared map
  EXPECT_EQ(base.get("k"), nullptr);
  EXPECT_EQ(a.completed_stages().size(), 101u);
  EXPECT_EQ(base.trace().size(), 100u);
  a.discard_delta();
  EXPECT_EQ(a.completed_stages(), base.completed_stages());
  EXPECT_EQ(a.trace(), base.trace());
  EXPECT_EQ(*a.get_metric("m"), 1);
}

TEST(Context, ConfigIsSharedByCopies) {
  Context a = make();
  Context b = a;
  EXPECT_EQ(&a.config(), &b.config());
  EXPECT_EQ(b.config()["topic"], "cats");
}

}  // namespace
}  // namespace crucible
