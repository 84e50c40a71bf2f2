// The HTTP adapters against a real loopback server that checks requests like the real APIs.
#include "crucible/llm/adapters.h"

#include <thread>

#include <gtest/gtest.h>

#include "crucible/llm/decorators.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/testing/llm_test_server.h"

namespace crucible::llm {
namespace {

using namespace std::chrono_literals;
using crucible::testing::LlmTestServer;

CompletionRequest request(const std::string& prompt = "Name a prime.") {
  return *RequestBuilder().model("test-model").system("Be brief.").user(prompt).max_tokens(64).temperature(0.5).build();
}

class Adapters : public ::testing::TestWithParam<bool> {  // true: Anthropic, false: OpenAI
 protected:
  std::unique_ptr<Provider> provider(const std::string& key = "test-key", std::chrono::milliseconds timeout = 10s) {
    if (GetParam()) return make_anthropic_provider({server_.base_url(), key, "2023-06-01", timeout});
    return make_openai_provider({server_.base_url() + "/v1", key, timeout});
  }
  LlmTestServer server_;
};

TEST_P(Adapters, CompletesWithUsageAndTheRequestTheApiExpects) {
  auto p = provider();
  auto r = p->complete(request(), {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->content, "echo: Name a prime.");
  EXPECT_EQ(r->stop_reason, StopReason::kEndTurn);
  EXPECT_EQ(r->model, "test-model");
  EXPECT_GT(r->usage.input_tokens, 0);
  EXPECT_GT(r->usage.output_tokens, 0);
  EXPECT_GT(r->latency.count(), 0);
  Json sent = server_.requests().back();
  EXPECT_EQ(sent["max_tokens"], 64);
  EXPECT_EQ(sent["temperature"], 0.5);
  if (GetParam()) {
    EXPECT_EQ(sent["system"], "Be brief.");
    EXPECT_EQ(sent["messages"][0]["role"], "user");
  } else {
    EXPECT_EQ(sent["messages"][0]["role"], "system");
    EXPECT_EQ(sent["messages"][1]["content"], "Name a prime.");
  }
  EXPECT_EQ(server_.rejected.load(), 0);
}

TEST_P(Adapters, StreamsDeltasAndUsage) {
  auto p = provider();
  server_.push(LlmTestServer::answer("two three five seven"));
  std::vector<std::string> deltas;
  auto r = p->stream(request(), [&](std::string_view t) { deltas.emplace_back(t); }, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->content, "two three five seven");
  EXPECT_EQ(deltas.size(), 4u);
  EXPECT_EQ(deltas[1], "three ");
  EXPECT_GT(r->usage.output_tokens, 0);
  EXPECT_GT(r->usage.input_tokens, 0);
  EXPECT_EQ(server_.requests().back()["stream"], true);
}

// An answer of the wrong shape, or a stream that breaks off or reports an error, is an error
// that says so (retryable: the next answer may be whole), never a crash or an empty success.
TEST_P(Adapters, MalformedAnswersAndBrokenStreamsAreErrors) {
  auto p = provider();
  const bool anthropic = GetParam();
  auto expect_error = [&](LlmTestServer::Behavior b, bool stream, const std::string& fragment) {
    server_.push(std::move(b));
    auto r = stream ? p->stream(request(), nullptr, {}) : p->complete(request(), {});
    ASSERT_FALSE(r) << fragment;
    EXPECT_NE(r.error().message().find(fragment), std::string::npos) << r.error().message();
    EXPECT_TRUE(is_retryable(r.error())) << r.error().to_string();
  };
  expect_error(LlmTestServer::raw("{\"id\": 1}"), false,
               anthropic ? "expected a message with a content list" : "expected a chat completion with choices");
  expect_error(LlmTestServer::raw("not json at all", "text/plain"), false, "malformed response");
  expect_error(LlmTestServer::raw("data: {not json\n\n", "text/event-stream"), true,
               anthropic ? "an event whose data is not JSON" : "a chunk that is not JSON");
  const std::string error_event =
      anthropic ? "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", "
                  "\"message\": \"busy\"}}\n\n"
                : "data: {\"error\": {\"message\": \"busy\", \"type\": \"server_error\"}}\n\n";
  expect_error(LlmTestServer::raw(error_event, "text/event-stream"), true, "busy");
  const std::string cut_short =
      anthropic ? "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"usage\": "
                  "{\"input_tokens\": 3}}}\n\n"
                : "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"par\"}}]}\n\n";
  server_.push(LlmTestServer::raw(cut_short, "text/event-stream"));
  auto cut = p->stream(request(), nullptr, {});
  ASSERT_FALSE(cut);
  EXPECT_TRUE(is_retryable(cut.error())) << cut.error().to_string();
}

TEST_P(Adapters, MapsErrorsToCodesAndRetryability) {
  auto p = provider();
  server_.push(LlmTestServer::status(429, "rate_limit_error", 3));
  auto limited = p->complete(request(), {});
  ASSERT_FALSE(limited);
  EXPECT_EQ(limited.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(limited.error().retry_after(), 3000ms);
  server_.push(LlmTestServer::status(500, "api_error"));
  EXPECT_EQ(p->complete(request(), {}).error().code(), ErrorCode::kUnavailable);
  server_.push(LlmTestServer::status(529, "overloaded_error"));
  auto overloaded = p->complete(request(), {});
  EXPECT_EQ(overloaded.error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(is_retryable(overloaded.error()));
  server_.push(LlmTestServer::status(400, "invalid_request_error"));
  auto invalid = p->complete(request(), {});
  EXPECT_EQ(invalid.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(is_retryable(invalid.error()));
  EXPECT_NE(invalid.error().message().find("HTTP 400"), std::string::npos);
  auto denied = provider("wrong-key")->complete(request(), {});
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_FALSE(is_retryable(denied.error()));
  EXPECT_EQ(denied.error().message().find("wrong-key"), std::string::npos);  // keys never in messages
  server_.push(LlmTestServer::drop());
  auto dropped = p->complete(request(), {});
  ASSERT_FALSE(dropped);
  EXPECT_EQ(dropped.error().code(), ErrorCode::kUnavailable);
  server_.push(LlmTestServer::status(429, "rate_limit_error", 1));
  auto stream_limited = p->stream(request(), nullptr, {});
  EXPECT_EQ(stream_limited.error().code(), ErrorCode::kResourceExhausted);
}

TEST_P(Adapters, NetworkFailuresAndTimeoutsAreRetryable) {
  auto unreachable = GetParam() ? make_anthropic_provider({"http://127.0.0.1:1", "k", "2023-06-01", 2s})
                                : make_openai_provider({"http://127.0.0.1:1", "k", 2s});
  auto r = unreachable->complete(request(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kUnavailable);
  server_.push(LlmTestServer::answer("late", 2000));
  auto slow = provider("test-key", 200ms)->complete(request(), {});
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST_P(Adapters, StopAbortsTheTransferAndTheServerSeesItClosed) {
  auto p = provider();
  server_.push(LlmTestServer::answer("never", 5000));
  std::stop_source stop;
  std::thread t([&] {
    // Stops once the server has the request in hand, so the transfer is in flight.
    for (int i = 0; i < 5000 && server_.calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
    stop.request_stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = p->complete(request(), stop.get_token());
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (int i = 0; i < 200 && server_.aborted.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server_.aborted.load(), 1);
}

TEST_P(Adapters, HedgedCallsCloseTheLosingConnection) {
  std::shared_ptr<Provider> p = provider();
  server_.push(LlmTestServer::answer("slow primary", 3000));
  server_.push(LlmTestServer::answer("fast backup", 10));
  Executor executor(4);
  auto policy =
      std::shared_ptr<HedgePolicy>(std::move(*make_hedge_policy(Json{{"strategy", "fixed"}, {"delay_ms", 50}})));
  HedgedProvider hedged(p, policy, executor, real_clock());
  auto r = hedged.complete(request(), {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->content, "fast backup");
  for (int i = 0; i < 400 && server_.aborted.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server_.aborted.load(), 1);  // the loser's connection was closed mid-answer
  EXPECT_EQ(server_.calls.load(), 2);
  EXPECT_EQ(server_.completed.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Api, Adapters, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Anthropic" : "OpenAI"; });

TEST(HttpError, UsesTheErrorTypeBeforeTheStatus) {
  EXPECT_EQ(http_error("anthropic", 529,
                       R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})", std::nullopt)
                .code(),
            ErrorCode::kUnavailable);
  Error e =
      http_error("openai", 404, R"({"error":{"message":"The model does not exist","type":"invalid_request_error"}})",
                 std::nullopt);
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_NE(e.message().find("The model does not exist"), std::string::npos);
  EXPECT_EQ(http_error("x", 503, "<html>busy</html>", 2000ms).retry_after(), 2000ms);
  EXPECT_EQ(http_error("x", 418, "", std::nullopt).code(), ErrorCode::kUnknown);
  EXPECT_EQ(http_error("openai", 401, R"({"error":{"message":"Incorrect API key","type":"invalid_request_error"}})",
                       std::nullopt)
                .code(),
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(
      http_error("openai", 400, R"({"error":{"message":"bad","type":"invalid_request_error"}})", std::nullopt).code(),
      ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace crucible::llm
