#include "crucible/stages/http_stage.h"

#include <thread>

#include <gtest/gtest.h>

#include "crucible/testing/http_test_server.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;

class HttpStage : public ::testing::Test {
 protected:
  Status run(Json options, std::stop_token stop = {}) {
    ctx_.set_current(&name_, &key_);
    Status s = stage_->run(ctx_, StageOptions(std::move(options)), stop);
    ctx_.set_current(nullptr, nullptr);
    return s;
  }
  testing::HttpTestServer server_;
  std::unique_ptr<Stage> stage_ = make_http_request_stage();
  Context ctx_;
  std::string name_ = "fetch", key_ = "/fetch";
};

TEST_F(HttpStage, GetsJsonAndRecordsStatusAndBody) {
  ASSERT_TRUE(run(Json{{"url", server_.url("/ok")}}));
  const Json& a = *ctx_.get_artifact("fetch");
  EXPECT_EQ(a["status"], 200);
  EXPECT_EQ(a["body"]["answer"], 42);
  EXPECT_EQ(*ctx_.get_metric("fetch.status"), 200);
}

TEST_F(HttpStage, PostsAJsonBodyWithHeaders) {
  ASSERT_TRUE(run(
      Json{{"url", server_.url("/echo")}, {"method", "POST"}, {"body", {{"q", 1}}}, {"headers", {{"X-Test", "yes"}}}}));
  EXPECT_EQ((*ctx_.get_artifact("fetch"))["body"], R"({"q":1})");
}

TEST_F(HttpStage, MapsStatusCodesToCanonicalErrors) {
  Status limited = run(Json{{"url", server_.url("/status/429")}});
  ASSERT_FALSE(limited);
  EXPECT_EQ(limited.error().code(), ErrorCode::kResourceExhausted);
  ASSERT_TRUE(limited.error().retry_after().has_value());
  EXPECT_EQ(*limited.error().retry_after(), 2s);
  EXPECT_EQ(run(Json{{"url", server_.url("/status/503")}}).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(run(Json{{"url", server_.url("/status/404")}}).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(run(Json{{"url", server_.url("/status/401")}}).error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(run(Json{{"url", server_.url("/status/400")}}).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(run(Json{{"url", "http://127.0.0.1:1/nothing"}}).error().code(), ErrorCode::kUnavailable);
}

TEST_F(HttpStage, TimeoutIsDeadlineExceeded) {
  Status s = run(Json{{"url", server_.url("/slow/3000")}, {"timeout", "100ms"}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST_F(HttpStage, CancellationAbortsTheTransferAndTheServerSeesIt) {
  std::stop_source source;
  std::jthread stopper([&] {
    // Stops once the server has the request in hand, so the transfer is in flight.
    for (int i = 0; i < 5000 && server_.calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
    source.request_stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  Status s = run(Json{{"url", server_.url("/slow/5000")}}, source.get_token());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (int i = 0; i < 200 && server_.aborted.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_.aborted.load(), 1);
}

}  // namespace
}  // namespace crucible
