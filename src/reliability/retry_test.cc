#include "crucible/reliability/retry.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

using namespace std::chrono_literals;

TEST(RetryPolicy, GivesUpAfterMaxAttempts) {
  RetryPolicy p;
  p.max_attempts = 3;
  FakeClock clock;
  SeededRandom random(1);
  int calls = 0, attempts = 0;
  Status s = retry_call(
      p, clock, random, {},
      [&](int) -> Status {
        ++calls;
        return make_error(ErrorCode::kUnavailable, "down");
      },
      &attempts);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(clock.sleeps().size(), 2u);
}

TEST(RetryPolicy, DoesNotRetryNonRetryableCodes) {
  RetryPolicy p;
  p.max_attempts = 5;
  FakeClock clock;
  SeededRandom random(1);
  int calls = 0;
  Status s = retry_call(p, clock, random, {}, [&](int) -> Status {
    ++calls;
    return make_error(ErrorCode::kInvalidArgument, "bad");
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST(RetryPolicy, RetryOnListOverridesTheDefaultClassification) {
  RetryPolicy p;
  p.max_attempts = 2;
  p.retry_on = {ErrorCode::kFailedPrecondition};
  Error e(ErrorCode::kFailedPrecondition, "x");
  EXPECT_TRUE(p.should_retry(e, 1));
  EXPECT_FALSE(p.should_retry(Error(ErrorCode::kUnavailable, "x"), 1));
}

TEST(RetryPolicy, BackoffIsExponentialCappedAndJittered) {
  RetryPolicy p;
  p.initial_backoff = 100ms;
  p.max_backoff = 1000ms;
  p.jitter = false;
  SeededRandom random(7);
  Error e(ErrorCode::kUnavailable, "x");
  EXPECT_EQ(p.backoff(1, e, random), 100ms);
  EXPECT_EQ(p.backoff(2, e, random), 200ms);
  EXPECT_EQ(p.backoff(3, e, random), 400ms);
  EXPECT_EQ(p.backoff(10, e, random), 1000ms);
  p.jitter = true;
  for (int i = 0; i < 100; ++i) {
    auto d = p.backoff(3, e, random);
    EXPECT_GE(d, 0ms);
    EXPECT_LE(d, 400ms);
  }
}

TEST(RetryPolicy, HonoursRetryAfter) {
  RetryPolicy p;
  p.initial_backoff = 10ms;
  SeededRandom random(7);
  Error e(ErrorCode::kResourceExhausted, "429");
  e.with_retry_after(2s);
  EXPECT_GE(p.backoff(1, e, random), 2s);
}

TEST(RetryPolicy, SucceedsOnALaterAttempt) {
  RetryPolicy p;
  p.max_attempts = 4;
  FakeClock clock;
  SeededRandom random(3);
  int attempts = 0;
  Status s = retry_call(
      p, clock, random, {},
      [&](int attempt) -> Status {
        if (attempt < 3) return make_error(ErrorCode::kUnavailable, "flaky");
        return {};
      },
      &attempts);
  EXPECT_TRUE(s);
  EXPECT_EQ(attempts, 3);
}

TEST(RetryPolicy, MaxElapsedStopsRetrying) {
  RetryPolicy p;
  p.max_attempts = 100;
  p.initial_backoff = 1000ms;
  p.jitter = false;
  p.max_elapsed = 2500ms;
  FakeClock clock;
  SeededRandom random(3);
  int calls = 0;
  (void)retry_call(p, clock, random, {}, [&](int) -> Status {
    ++calls;
    return make_error(ErrorCode::kUnavailable, "x");
  });
  EXPECT_EQ(calls, 2);  // 1s, then 2s would pass 2.5s
}

TEST(RetryPolicy, StopDuringBackoffIsCancelled) {
  RetryPolicy p;
  p.max_attempts = 3;
  FakeClock clock;
  SeededRandom random(3);
  std::stop_source source;
  source.request_stop();
  Status s = retry_call(p, clock, random, source.get_token(),
                        [&](int) -> Status { return make_error(ErrorCode::kUnavailable, "x"); });
  EXPECT_EQ(s.error().code(), ErrorCode::kCancelled);
}

TEST(RetryPolicy, GiveUpEndsTheRetriesAtOnce) {
  RetryPolicy p;
  p.max_attempts = 5;
  FakeClock clock;
  SeededRandom random(3);
  int calls = 0, attempts = 0;
  Status s = retry_call(
      p, clock, random, {},
      [&](int) -> Status {
        ++calls;
        return make_error(ErrorCode::kUnavailable, "journal down");
      },
      &attempts, [&] { return calls == 2; });
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(attempts, 2);
}

TEST(RetryPolicy, RoundTripsThroughJson) {
  RetryPolicy p;
  p.max_attempts = 4;
  p.initial_backoff = std::chrono::milliseconds(250);
  p.max_backoff = std::chrono::milliseconds(9000);
  p.multiplier = 3;
  p.jitter = false;
  p.max_elapsed = std::chrono::milliseconds(60'000);
  p.retry_on = {ErrorCode::kUnavailable, ErrorCode::kInvalidArgument};
  auto back = RetryPolicy::from_json(p.to_json());
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(*RetryPolicy::from_json(RetryPolicy{}.to_json()), RetryPolicy{});
  EXPECT_FALSE(RetryPolicy::from_json(Json{{"max_attempts", 0}}));
  EXPECT_FALSE(RetryPolicy::from_json(Json{{"retry_on", Json::array({"sometimes"})}}));
  EXPECT_FALSE(RetryPolicy::from_json(Json(3)));
}

TEST(RetryPolicy, FromJsonNamesWhatIsWrong) {
  for (const auto& [json, fragment] : std::vector<std::pair<Json, std::string>>{
           {Json{{"max_attempts", -1}}, "max_attempts must be a non-negative integer"},
           {Json{{"max_attempts", 0}}, "max_attempts must be at least 1"},
           {Json{{"initial_backoff_ms", "soon"}}, "initial_backoff_ms must be a non-negative integer"},
           {Json{{"multiplier", 0.5}}, "multiplier must be a number of at least 1"}}) {
    auto p = RetryPolicy::from_json(json);
    ASSERT_FALSE(p) << json.dump();
    EXPECT_NE(p.error().message().find(fragment), std::string::npos) << p.error().message();
  }
  auto elapsed = RetryPolicy::from_json(Json{{"max_elapsed_ms", 2000}});
  ASSERT_TRUE(elapsed);
  EXPECT_EQ(elapsed->max_elapsed, std::chrono::milliseconds(2000));
}

}  // namespace
}  // namespace crucible
