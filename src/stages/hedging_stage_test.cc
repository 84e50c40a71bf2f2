// The test list of seed 000 (crucible_hedging's CrucibleStage), ported to GoogleTest.
#include "crucible/stages/hedging_stage.h"

#include <chrono>
#include <condition_variable>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;

Context context_with(Json hedging) {
  Context ctx("test-exp-1", *RunId::parse("run-1"), Json::object());
  Json reliability = Json::object();
  if (!hedging.is_null()) reliability["hedging"] = std::move(hedging);
  ctx.set_experiment(std::make_shared<const Json>(Json{{"name", "test-exp-1"}, {"reliability", reliability}}));
  return ctx;
}

// The services a runner hands a stage, on the real clock.
class RealServices : public StageServices {
 public:
  explicit RealServices(const Context& ctx) : reliability_(ctx.experiment().value("reliability", Json::object())) {}
  const Json& reliability() override { return reliability_; }
  Result<Json> memo(std::string_view, const std::function<Json()>& compute) override { return compute(); }
  Result<std::optional<Json>> poll_promise(std::string_view) override { return std::optional<Json>(); }
  Clock& clock() override { return real_clock(); }
  Executor& executor() override { return executor_; }

 private:
  Json reliability_;
  Executor executor_{4};
};

Status run(Stage& stage, Context& ctx, Json options = Json()) {
  RealServices services(ctx);
  ctx.set_services(&services);
  Status s = stage.run(ctx, StageOptions(std::move(options)), {});
  ctx.set_services(nullptr);
  return s;
}

// Durable helpers on a FakeClock, for driving a stage's timers by hand.
class FakeServices : public StageServices {
 public:
  FakeServices(Executor& executor, Json reliability) : reliability_(std::move(reliability)), executor_(executor) {
    clock_.set_auto_advance(false);
  }
  const Json& reliability() override { return reliability_; }
  Result<Json> memo(std::string_view, const std::function<Json()>& compute) override { return compute(); }
  Result<std::optional<Json>> poll_promise(std::string_view) override { return std::optional<Json>(); }
  Clock& clock() override { return clock_; }
  Executor& executor() override { return executor_; }
  FakeClock& fake() { return clock_; }

 private:
  Json reliability_;
  FakeClock clock_;
  Executor& executor_;
};

// Blocks until released or stopped; counts how often each ended.
struct Gate {
  std::mutex mu;
  std::condition_variable_any cv;
  bool open = false;
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};

  Status wait(std::stop_token stop) {
    ++started;
    std::unique_lock lock(mu);
    if (!cv.wait(lock, stop, [&] { return open; })) {
      ++stopped;
      return make_error(ErrorCode::kCancelled, "stopped");
    }
    return {};
  }
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

// Waits (in real time, bounded) until `done` holds.
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 5000 && !done(); ++i) std::this_thread::sleep_for(1ms);
  return done();
}

HedgedRequestFn returns(Json value, std::chrono::milliseconds delay = 0ms) {
  return [value, delay](std::stop_token stop) -> Result<Json> {
    if (delay > 0ms && !real_clock().sleep_for(delay, stop)) return make_error(ErrorCode::kCancelled, "stopped");
    return value;
  };
}

TEST(HedgingStage, OffExecutesTheRequestWithoutHedging) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage(returns("test_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "test_result");
  ASSERT_TRUE(ctx.has_metric("hedging"));
  EXPECT_EQ((*ctx.get_metric("hedging"))["hedged"], false);
  EXPECT_EQ((*ctx.get_metric("hedging"))["strategy"], "off");
  EXPECT_TRUE(ctx.stage_completed("hedging"));
}

TEST(HedgingStage, OffCapturesLatencyInMetrics) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage(returns("result", 10ms));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_GE((*ctx.get_metric("hedging"))["total_latency"].get<double>(), 10.0);
}

TEST(HedgingStage, FixedExecutesWithFixedDelayHedging) {
  Context ctx = context_with(Json{{"strategy", "fixed"}, {"delay_ms", 100}});
  auto stage = make_hedging_stage(returns("hedged_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "hedged_result");
  EXPECT_EQ((*ctx.get_metric("hedging"))["strategy"], "fixed");
}

TEST(HedgingStage, FixedFiresAHedgeForSlowRequests) {
  Context ctx = context_with(Json{{"strategy", "fixed"}, {"delay_ms", 50}});
  auto stage = make_hedging_stage(returns("slow", 200ms));
  ASSERT_TRUE(run(*stage, ctx));
  const Json& m = *ctx.get_metric("hedging");
  EXPECT_EQ(m["hedged"], true);
  EXPECT_EQ(m["attempts"], 2);
  EXPECT_EQ(m["hedge_delay"], 50.0);
}

TEST(HedgingStage, PercentileExecutes) {
  Context ctx = context_with(Json{{"strategy", "percentile"}, {"percentile", 95}});
  auto stage = make_hedging_stage(returns("percentile_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "percentile_result");
}

TEST(HedgingStage, AdaptiveExecutesWithDelayCandidates) {
  Context ctx = context_with(Json{{"strategy", "adaptive"}, {"options", {{"delay_candidates", {50, 100, 200}}}}});
  auto stage = make_hedging_stage(returns("adaptive_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "adaptive_result");
}

TEST(HedgingStage, WorkloadAwareExecutes) {
  Context ctx = context_with(Json{{"strategy", "workload_aware"}, {"options", {{"base_delay", 100}}}});
  auto stage = make_hedging_stage(returns("workload_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "workload_result");
}

TEST(HedgingStage, ExponentialBackoffExecutes) {
  Context ctx = context_with(Json{
      {"strategy", "exponential_backoff"},
      {"options", {{"exponential_base_delay", 100}, {"exponential_min_delay", 10}, {"exponential_max_delay", 1000}}}});
  auto stage = make_hedging_stage(returns("backoff_result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_artifact("hedging_result"), "backoff_result");
}

TEST(HedgingStage, MissingRequestIsAnError) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage(StageRegistry().resolver());
  Status s = run(*stage, ctx);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.error().message().find("missing request"), std::string::npos);
}

TEST(HedgingStage, InvalidRequestIsAnError) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage(HedgedRequestFn());
  Status s = run(*stage, ctx);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.error().message().find("invalid request"), std::string::npos);
  auto yaml_stage = make_hedging_stage(builtin_registry().resolver());
  Status bad = yaml_stage->run(ctx, StageOptions(Json{{"request", "not a stage"}}), {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("invalid request"), std::string::npos);
}

TEST(HedgingStage, MissingHedgingConfigIsAnError) {
  Context ctx = context_with(Json());
  auto stage = make_hedging_stage(returns("result"));
  Status s = run(*stage, ctx);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(s.error().message().find("missing hedging config"), std::string::npos);
}

TEST(HedgingStage, UnknownStrategyIsAnError) {
  Context ctx = context_with(Json{{"strategy", "invalid"}});
  auto stage = make_hedging_stage(returns("result"));
  Status s = run(*stage, ctx);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.error().message().find("unknown hedging strategy 'invalid'"), std::string::npos);
}

TEST(HedgingStage, RequestFailuresCarryTheCause) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage([](std::stop_token) -> Result<Json> { throw std::runtime_error("boom"); });
  Status s = run(*stage, ctx);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("request failed"), std::string::npos);
  EXPECT_NE(s.error().message().find("boom"), std::string::npos);
  auto failing = make_hedging_stage(
      [](std::stop_token) -> Result<Json> { return make_error(ErrorCode::kPermissionDenied, "no key"); });
  Status denied = run(*failing, ctx);
  EXPECT_EQ(denied.error().code(), ErrorCode::kPermissionDenied);
}

TEST(HedgingStage, PreservesExistingMetricsArtifactsAndState) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  ctx.put_metric("existing", "value");
  ctx.put_artifact("existing", "artifact");
  ctx.assign("custom", "value");
  auto stage = make_hedging_stage(returns("result"));
  ASSERT_TRUE(run(*stage, ctx));
  EXPECT_EQ(*ctx.get_metric("existing"), "value");
  EXPECT_EQ(*ctx.get_artifact("existing"), "artifact");
  EXPECT_EQ(*ctx.get("custom"), "value");
}

TEST(HedgingStage, DescribesItself) {
  StageDescription d = make_hedging_stage(returns(1))->describe();
  EXPECT_EQ(d.name, "hedging");
  EXPECT_FALSE(d.summary.empty());
  EXPECT_FALSE(d.inputs.empty());
  EXPECT_FALSE(d.outputs.empty());
}

TEST(HedgingStage, RunsARequestStageFromYaml) {
  StageRegistry registry = builtin_registry();
  auto journal = make_memory_journal();
  Executor executor(4);
  SeededRandom random(1);
  Runner runner(*journal, executor, real_clock(), random, registry);
  LoadResult loaded = load_pipeline_text(R"(
name: hedged
reliability:
  hedging: {strategy: fixed, delay_ms: 20}
stages:
  - name: ask
    uses: hedging
    with:
      request: {uses: command, with: {argv: [sh, -c, "echo answer"]}}
)",
                                         "hedged.yaml", registry);
  ASSERT_TRUE(loaded.ok()) << loaded.report();
  auto r = runner.start(*loaded.spec);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, RunStatus::kCompleted) << (r->error ? r->error->to_string() : "");
  EXPECT_EQ((*r->context.get_artifact("hedging_result"))["stdout_tail"], "answer\n");
  EXPECT_TRUE(r->context.stage_completed("hedging"));
}

TEST(HedgingStage, HonoursATimeoutWrittenAsADurationString) {
  Executor executor(2);
  Context ctx = context_with(Json{{"strategy", "off"}});
  FakeServices services(executor, ctx.experiment()["reliability"]);
  ctx.set_services(&services);
  auto gate = std::make_shared<Gate>();
  auto stage = make_hedging_stage([gate](std::stop_token stop) -> Result<Json> {
    CRUCIBLE_RETURN_IF_ERROR(gate->wait(stop));
    return Json("late");
  });
  auto result = std::async(std::launch::async, [&] {
    return stage->run(ctx, StageOptions(Json{{"timeout", "50ms"}}), {});
  });
  ASSERT_TRUE(eventually([&] { return gate->started.load() == 1 && !services.fake().sleeps().empty(); }));
  services.fake().advance(100ms);
  ASSERT_EQ(result.wait_for(5s), std::future_status::ready) << "the 50ms deadline did not fire";
  Status s = result.get();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(s.error().message().find("50 ms"), std::string::npos) << s.error().message();
  EXPECT_TRUE(eventually([&] { return gate->stopped.load() == 1; }));
  ctx.set_services(nullptr);
}

TEST(HedgingStage, RejectsATimeoutThatIsNotADuration) {
  Context ctx = context_with(Json{{"strategy", "off"}});
  auto stage = make_hedging_stage(returns("result"));
  Status s = run(*stage, ctx, Json{{"timeout", "soon"}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.error().message().find("timeout"), std::string::npos);
}

TEST(HedgingOnAStage, AStageWithoutTimeoutHasNoHiddenDeadline) {
  StageRegistry registry = builtin_registry();
  auto gate = std::make_shared<Gate>();
  ASSERT_TRUE(registry.register_stage("gated", [gate] {
    return make_function_stage(
        describe_stage("gated", "waits for the test", {}),
        [gate](Context&, const StageOptions&, std::stop_token stop) { return gate->wait(stop); });
  }));
  LoadResult loaded = load_pipeline_text(R"(
name: hedged-no-timeout
stages:
  - {name: call, uses: gated, hedging: {strategy: "off"}}
)",
                                         "hedged.yaml", registry);
  ASSERT_TRUE(loaded.ok()) << loaded.report();
  auto journal = make_memory_journal();
  Executor executor(4);
  FakeClock clock;
  clock.set_auto_advance(false);
  SeededRandom random(1);
  Runner runner(*journal, executor, clock, random, registry);
  auto run = std::async(std::launch::async, [&] { return runner.start(*loaded.spec); });
  ASSERT_TRUE(eventually([&] { return gate->started.load() == 1 && !clock.sleeps().empty(); }));
  clock.advance(45s);  // past the 30 s the Hedger used to impose
  EXPECT_EQ(run.wait_for(200ms), std::future_status::timeout) << "the hedged stage was stopped by a deadline";
  gate->release();
  auto r = run.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, RunStatus::kCompleted) << (r->error ? r->error->to_string() : "");
  EXPECT_EQ(gate->stopped.load(), 0);
}

TEST(HedgingOnAStage, KeepsOneResultAndJournalsItOnce) {
  StageRegistry registry = builtin_registry();
  auto calls = std::make_shared<std::atomic<int>>(0);
  ASSERT_TRUE(registry.register_stage("flaky_latency", [calls] {
    StageDescription d;
    d.name = "flaky_latency";
    d.summary = "the first call is slow";
    return make_function_stage(d, [calls](Context& ctx, const StageOptions&, std::stop_token stop) -> Status {
      int n = (*calls)++;
      if (n == 0 && !real_clock().sleep_for(5s, stop)) return make_error(ErrorCode::kCancelled, "stopped");
      ctx.put_metric("answer", n);
      return {};
    });
  }));
  LoadResult loaded = load_pipeline_text(R"(
name: hedged-stage
reliability:
  hedging: {strategy: percentile, budget_percent: 100}
stages:
  - name: call
    uses: flaky_latency
    hedging: {strategy: fixed, delay_ms: 20}
)",
                                         "hedged.yaml", registry);
  ASSERT_TRUE(loaded.ok()) << loaded.report();
  EXPECT_EQ(loaded.spec->stages[0].as<StageNode>().hedging->budget_percent, 100);  // the experiment's default
  auto journal = make_memory_journal();
  Executor executor(4);
  SeededRandom random(1);
  Runner runner(*journal, executor, real_clock(), random, registry);
  auto t0 = std::chrono::steady_clock::now();
  auto r = runner.start(*loaded.spec);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, RunStatus::kCompleted);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(*r->context.get_metric("answer"), 1);
  EXPECT_EQ((*r->context.get_metric("call.hedging"))["hedge_won"], true);
  int completed = 0;
  auto log = journal->read_run(r->run_id);
  for (const Record& rec : log->records) completed += rec.type == RecordType::kStepCompleted ? 1 : 0;
  EXPECT_EQ(completed, 1);
}

TEST(HedgingOnAStage, ValidationRejectsBadConfigAndNonIdempotentStages) {
  StageRegistry registry = builtin_registry();
  LoadResult bad = load_pipeline_text(R"(name: h
stages:
  - {name: a, uses: noop, hedging: {strategy: psychic}}
  - {name: b, uses: noop, idempotent: false, hedging: {strategy: fixed, delay_ms: 5}}
)",
                                      "h.yaml", registry);
  ASSERT_FALSE(bad.ok());
  // Located at the bad field's value, named by its path.
  EXPECT_NE(bad.report().find("h.yaml:3:47: error: stages[0] 'a'.hedging.strategy: unknown hedging strategy 'psychic'"),
            std::string::npos)
      << bad.report();
  EXPECT_NE(bad.report().find("only idempotent stages can be hedged"), std::string::npos);
}

}  // namespace
}  // namespace crucible
