#include "crucible/http/client.h"

#include <thread>

#include <gtest/gtest.h>

#include "crucible/testing/http_test_server.h"

namespace crucible::http {
namespace {

using namespace std::chrono_literals;

class HttpClient : public ::testing::Test {
 protected:
  Request get(const std::string& path) {
    Request r;
    r.url = server_.url(path);
    return r;
  }
  testing::HttpTestServer server_;
  Client client_;
};

TEST_F(HttpClient, GetsABodyAndItsContentType) {
  auto reply = client_.send(get("/ok"), {});
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, R"({"answer": 42})");
  EXPECT_NE(reply->content_type.find("application/json"), std::string::npos);
}

TEST_F(HttpClient, ReusesItsConnectionsAcrossRequests) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client_.send(get("/ok"), {}));
  EXPECT_EQ(server_.calls.load(), 5);
}

TEST_F(HttpClient, PostsTheBody) {
  Request r = get("/echo");
  r.method = "POST";
  r.body = "hello";
  auto reply = client_.send(r, {});
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "hello");
}

TEST_F(HttpClient, ErrorStatusesComeBackAsRepliesWithRetryAfter) {
  auto reply = client_.send(get("/status/429"), {});
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 429);
  ASSERT_TRUE(reply->retry_after.has_value());
  EXPECT_EQ(*reply->retry_after, 2s);
  Error e = status_error(get("/status/429"), *reply);
  EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(e.retry_after(), 2s);
}

TEST_F(HttpClient, StreamsTheBodyAndStopsWhenTheReaderSaysSo) {
  std::string seen;
  auto all = client_.send(get("/ok"),
                          [&](std::string_view chunk) {
                            seen.append(chunk);
                            return true;
                          },
                          {});
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->body.empty());
  EXPECT_EQ(seen, R"({"answer": 42})");
  auto abandoned = client_.send(get("/slow/2000"), [](std::string_view) { return false; }, {});
  ASSERT_FALSE(abandoned);
  EXPECT_EQ(abandoned.error().code(), ErrorCode::kAborted);
}

TEST_F(HttpClient, AStopRequestAbortsTheTransferAtOnce) {
  std::stop_source source;
  std::jthread stopper([&] {
    // Stops once the server has the request in hand, so the transfer is in flight.
    for (int i = 0; i < 5000 && server_.calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
    source.request_stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  auto reply = client_.send(get("/slow/5000"), source.get_token());
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (int i = 0; i < 200 && server_.aborted.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_.aborted.load(), 1);
}

TEST_F(HttpClient, TimeoutIsDeadlineExceededAndRefusedIsUnavailable) {
  Request slow = get("/slow/3000");
  slow.timeout = 100ms;
  auto late = client_.send(slow, {});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), ErrorCode::kDeadlineExceeded);
  Request nowhere;
  nowhere.url = "http://127.0.0.1:1/nothing";
  auto refused = client_.send(nowhere, {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
}

TEST_F(HttpClient, OnlyHttpAndHttpsAreFetched) {
  for (const char* url : {"file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x", "dict://127.0.0.1/x"}) {
    Request r;
    r.url = url;
    auto reply = client_.send(r, {});
    ASSERT_FALSE(reply) << url;
    EXPECT_EQ(reply.error().code(), ErrorCode::kInvalidArgument) << url;
    EXPECT_NE(reply.error().message().find("only http:// and https://"), std::string::npos) << reply.error().message();
  }
}

TEST(HttpStatusCode, ClassifiesByStatus) {
  EXPECT_FALSE(error_code_for_status(200).has_value());
  EXPECT_FALSE(error_code_for_status(302).has_value());
  EXPECT_EQ(error_code_for_status(529), ErrorCode::kUnavailable);
  EXPECT_EQ(error_code_for_status(403), ErrorCode::kPermissionDenied);
  EXPECT_EQ(error_code_for_status(408), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(error_code_for_status(422), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_for_status(418), ErrorCode::kUnknown);
}

TEST(RetryAfter, ReadsSecondsAndHttpDates) {
  EXPECT_EQ(parse_retry_after("2"), 2s);
  EXPECT_EQ(parse_retry_after(" 1.5 "), 1500ms);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0ms);  // in the past: now
  EXPECT_FALSE(parse_retry_after("soon").has_value());
  EXPECT_FALSE(parse_retry_after("-3").has_value());
}

}  // namespace
}  // namespace crucible::http
