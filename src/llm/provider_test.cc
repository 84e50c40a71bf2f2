#include "crucible/llm/provider.h"

#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/llm/adapters.h"
#include "crucible/llm/decorators.h"
#include "crucible/llm/sse.h"
#include "crucible/reliability/hedging_config.h"

namespace crucible::llm {
namespace {

using namespace std::chrono_literals;

ScriptedResponse says(std::string text, std::chrono::milliseconds delay = 0ms) {
  ScriptedResponse r;
  r.text = std::move(text);
  r.delay = delay;
  return r;
}

CompletionRequest simple(const std::string& prompt = "hello") {
  return *RequestBuilder().model("m").user(prompt).max_tokens(32).build();
}

TEST(RequestBuilder, BuildsAndValidates) {
  auto r = RequestBuilder()
               .model("claude")
               .system("Be brief.")
               .user("Hi")
               .assistant("Hello")
               .user("Name a prime.")
               .max_tokens(64)
               .temperature(0.2)
               .stop("\n\n")
               .metadata("user_id", "u1")
               .build();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->messages.size(), 3u);
  EXPECT_EQ(r->to_json()["messages"][1]["role"], "assistant");
  EXPECT_EQ(r->hash(), RequestBuilder()
                           .model("claude")
                           .system("Be brief.")
                           .user("Hi")
                           .assistant("Hello")
                           .user("Name a prime.")
                           .max_tokens(64)
                           .temperature(0.2)
                           .stop("\n\n")
                           .metadata("user_id", "u1")
                           .build()
                           ->hash());
  EXPECT_NE(r->hash(), simple().hash());
  auto no_model = RequestBuilder().user("x").build();
  ASSERT_FALSE(no_model);
  EXPECT_NE(no_model.error().message().find("model"), std::string::npos);
  EXPECT_FALSE(RequestBuilder().model("m").build());
  EXPECT_FALSE(RequestBuilder().model("m").assistant("x").build());
  EXPECT_FALSE(RequestBuilder().model("m").user("x").max_tokens(0).build());
  auto hot = RequestBuilder().model("m").user("x").temperature(3).build();
  ASSERT_FALSE(hot);
  EXPECT_NE(hot.error().message().find("temperature"), std::string::npos);
}

TEST(Completion, RoundTripsThroughJson) {
  Completion c;
  c.content = "text";
  c.usage = {10, 3};
  c.stop_reason = StopReason::kMaxTokens;
  c.model = "m";
  auto back = Completion::from_json(c.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->content, "text");
  EXPECT_EQ(back->usage.total(), 13);
  EXPECT_EQ(back->stop_reason, StopReason::kMaxTokens);
  EXPECT_FALSE(Completion::from_json(Json(3)));
}

TEST(SseParser, HandlesFieldsCommentsMultilineDataAndAnyChunking) {
  const std::string stream =
      ": keep-alive\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\n"
      "data: line one\ndata: line two\n\n"
      "event: ping\ndata: {}\n\n"
      "data: [DONE]";
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, stream.size()}) {
    SseParser parser;
    std::vector<SseEvent> events;
    auto handler = [&](const SseEvent& e) {
      events.push_back(e);
      return true;
    };
    for (size_t i = 0; i < stream.size(); i += chunk)
      ASSERT_TRUE(parser.feed(std::string_view(stream).substr(i, chunk), handler));
    ASSERT_TRUE(parser.finish(handler));
    ASSERT_EQ(events.size(), 4u) << chunk;
    EXPECT_EQ(events[0].event, "message_start");
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[1].data, "line one\nline two");
    EXPECT_EQ(events[2].event, "ping");
    EXPECT_EQ(events[3].data, "[DONE]");
  }
  SseParser stopper;
  int seen = 0;
  EXPECT_FALSE(stopper.feed("data: 1\n\ndata: 2\n\n", [&](const SseEvent&) { return ++seen < 1; }));
  EXPECT_EQ(seen, 1);
}

TEST(ScriptedProvider, CyclesMatchesInjectsAndLogs) {
  auto p = ScriptedProvider::from_json(Json::parse(R"([
      "first", {"text": "second", "output_tokens": 7},
      {"match": "CRITIQUE", "text": "{\"decision\": \"pass\"}"},
      {"match": "BROKEN", "error": "unavailable", "message": "down", "retry_after_ms": 250}])"),
                                       "responses");
  ASSERT_TRUE(p) << p.error().to_string();
  ScriptedProvider& s = **p;
  EXPECT_EQ(s.complete(simple("a"), {})->content, "first");
  auto second = s.complete(simple("b"), {});
  EXPECT_EQ(second->content, "second");
  EXPECT_EQ(second->usage.output_tokens, 7);
  EXPECT_EQ(s.complete(simple("c"), {})->content, "first");  // cycles
  EXPECT_EQ(s.complete(simple("please CRITIQUE this"), {})->content, "{\"decision\": \"pass\"}");
  auto broken = s.complete(simple("BROKEN"), {});
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(broken.error().retry_after(), 250ms);
  s.fail_next(ErrorCode::kResourceExhausted, 2);
  EXPECT_EQ(s.complete(simple(), {}).error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(s.complete(simple(), {}).error().code(), ErrorCode::kResourceExhausted);
  EXPECT_TRUE(s.complete(simple(), {}));
  EXPECT_EQ(s.call_count(), 8u);
  EXPECT_EQ(s.calls()[3].messages[0].content, "please CRITIQUE this");
  std::string streamed;
  auto st = s.stream(simple(), [&](std::string_view t) { streamed += t; }, {});
  EXPECT_EQ(streamed, st->content);

  EXPECT_FALSE(ScriptedProvider::from_json(Json::array(), "r"));
  auto bad = ScriptedProvider::from_json(Json::parse(R"([{"txt": "x"}])"), "models.w.responses");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "models.w.responses[0].txt");
  EXPECT_NE(bad.error().to_string().find("models.w.responses[0].txt: unknown key"), std::string::npos);
  EXPECT_FALSE(ScriptedProvider::from_json(Json::parse(R"([{"error": "nope"}])"), "r"));
}

TEST(ScriptedProvider, DelaysAreCancellable) {
  ScriptedProvider s({says("slow", 5000ms)});
  std::stop_source stop;
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    stop.request_stop();
  });
  auto r = s.complete(simple(), stop.get_token());
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
}

TEST(RetryingProvider, RetriesRetryableFailuresOnly) {
  auto inner = std::make_shared<ScriptedProvider>(std::vector<ScriptedResponse>{says("ok")});
  FakeClock clock;
  SeededRandom random(1);
  RetryPolicy policy;
  policy.max_attempts = 4;
  policy.initial_backoff = 100ms;
  RetryingProvider p(inner, policy, clock, random);
  inner->fail_next(ErrorCode::kUnavailable, 2);
  auto r = p.complete(simple(), {});
  ASSERT_TRUE(r);
  EXPECT_EQ(inner->call_count(), 3u);
  EXPECT_EQ(p.retries(), 2);
  inner->fail_next(ErrorCode::kInvalidArgument, 1);
  auto bad = p.complete(simple(), {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(inner->call_count(), 4u);
  inner->fail_next(ErrorCode::kUnavailable, 9);
  EXPECT_EQ(p.complete(simple(), {}).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(inner->call_count(), 8u);  // four attempts
}

TEST(CircuitBreakingProvider, OpensAfterFailuresAndRecovers) {
  auto inner = std::make_shared<ScriptedProvider>(std::vector<ScriptedResponse>{says("ok")});
  FakeClock clock;
  CircuitBreakerOptions o;
  o.failure_threshold = 5;
  o.window = 60s;
  o.cool_down = 30s;
  CircuitBreakingProvider p(inner, clock, o);
  inner->fail_next(ErrorCode::kUnavailable, 5);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(p.complete(simple(), {}));
  auto open = p.complete(simple(), {});
  ASSERT_FALSE(open);
  EXPECT_EQ(open.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(open.error().message().find("circuit"), std::string::npos) << open.error().message();
  EXPECT_EQ(inner->call_count(), 5u);  // the open circuit made no call
  clock.advance(31s);
  EXPECT_TRUE(p.complete(simple(), {}));  // the half-open probe succeeds and closes it
  EXPECT_TRUE(p.complete(simple(), {}));
  // Bad requests are the caller's fault and do not open the circuit.
  inner->fail_next(ErrorCode::kInvalidArgument, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.complete(simple(), {}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p.breaker().state(), CircuitBreaker::State::kClosed);
}

TEST(HedgedProvider, ASlowCallGetsABackupAndTheLoserIsCancelled) {
  auto inner = std::make_shared<ScriptedProvider>(
      std::vector<ScriptedResponse>{says("slow primary", 3000ms), says("fast backup", 5ms)});
  Executor executor(4);
  auto policy =
      std::shared_ptr<HedgePolicy>(std::move(*make_hedge_policy(Json{{"strategy", "fixed"}, {"delay_ms", 30}})));
  HedgedProvider p(inner, policy, executor, real_clock());
  auto t0 = std::chrono::steady_clock::now();
  auto r = p.complete(simple(), {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->content, "fast backup");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  EXPECT_EQ(inner->call_count(), 2u);
  Json s = p.stats();
  EXPECT_EQ(s["hedged"], 1);
  EXPECT_EQ(s["hedge_won"], 1);
}

// Streaming through the stack a models: section builds: retry over the breaker over hedging.
// Each layer hands the text on exactly once, from the attempt that succeeded.
TEST(DecoratedProviders, StreamTheSurvivingAttemptOnce) {
  auto inner = std::make_shared<ScriptedProvider>(std::vector<ScriptedResponse>{says("streamed answer")});
  FakeClock clock;
  SeededRandom random(1);
  Executor executor(2);
  auto policy =
      std::shared_ptr<HedgePolicy>(std::move(*make_hedge_policy(Json{{"strategy", "fixed"}, {"delay_ms", 5000}})));
  auto hedged = std::make_shared<HedgedProvider>(inner, policy, executor, real_clock());
  CircuitBreakerOptions breaker;
  breaker.failure_threshold = 3;
  auto guarded = std::make_shared<CircuitBreakingProvider>(hedged, clock, breaker);
  RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_backoff = 1ms;
  RetryingProvider top(guarded, retry, clock, random);
  EXPECT_EQ(top.name(), "retrying(circuit(hedged(" + inner->name() + ")))");
  inner->fail_next(ErrorCode::kUnavailable, 2);
  std::vector<std::string> pieces;
  auto r = top.stream(simple(), [&](std::string_view t) { pieces.emplace_back(t); }, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->content, "streamed answer");
  EXPECT_EQ(pieces, (std::vector<std::string>{"streamed answer"}));
  // The hedger sends its backup at once when the first attempt fails, so the two failures cost
  // one retry of the whole stack.
  EXPECT_EQ(top.retries(), 1);
  EXPECT_EQ(inner->call_count(), 3u);
  EXPECT_EQ(guarded->breaker().state(), CircuitBreaker::State::kClosed);
  // Without hedging, the adapter's own pieces come through in order.
  RetryingProvider plain(std::make_shared<CircuitBreakingProvider>(inner, clock, breaker), retry, clock, random);
  std::string joined;
  auto s = plain.stream(simple(), [&](std::string_view t) { joined += t; }, {});
  ASSERT_TRUE(s);
  EXPECT_EQ(joined, s->content);
  // A breaker that opened refuses streams too, without calling the model.
  inner->fail_next(ErrorCode::kUnavailable, 10);
  CircuitBreakingProvider tripped(inner, clock, breaker);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(tripped.stream(simple(), nullptr, {}));
  const size_t calls = inner->call_count();
  auto refused = tripped.stream(simple(), nullptr, {});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("circuit"), std::string::npos);
  EXPECT_EQ(inner->call_count(), calls);
}

TEST(CachingProvider, ReusesCompletionsAcrossInstancesThroughTheBlobStore) {
  auto dir = std::filesystem::path(::testing::TempDir()) / ("llm_cache_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto inner = std::make_shared<ScriptedProvider>(std::vector<ScriptedResponse>{says("one"), says("two")});
  {
    CachingProvider p(inner, std::make_shared<BlobCompletionStore>(dir.string()), "scripted/m");
    EXPECT_EQ(p.complete(simple("q1"), {})->content, "one");
    auto again = p.complete(simple("q1"), {});
    EXPECT_EQ(again->content, "one");
    EXPECT_TRUE(again->cached);
    EXPECT_EQ(p.complete(simple("q2"), {})->content, "two");
    EXPECT_EQ(p.hits(), 1);
  }
  EXPECT_EQ(inner->call_count(), 2u);
  // A new provider (a later run) over the same directory hits the cache; another scope does not.
  CachingProvider later(inner, std::make_shared<BlobCompletionStore>(dir.string()), "scripted/m");
  std::string streamed;
  auto r = later.stream(simple("q1"), [&](std::string_view t) { streamed += t; }, {});
  EXPECT_EQ(r->content, "one");
  EXPECT_EQ(streamed, "one");
  EXPECT_EQ(inner->call_count(), 2u);
  CachingProvider other(inner, std::make_shared<BlobCompletionStore>(dir.string()), "other/m");
  EXPECT_FALSE(other.complete(simple("q1"), {})->cached);
  EXPECT_EQ(inner->call_count(), 3u);
  // Failures are not cached.
  inner->fail_next(ErrorCode::kUnavailable);
  EXPECT_FALSE(later.complete(simple("q3"), {}));
  EXPECT_TRUE(later.complete(simple("q3"), {}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace crucible::llm
