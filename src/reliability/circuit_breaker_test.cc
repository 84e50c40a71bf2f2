#include "crucible/reliability/circuit_breaker.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

using namespace std::chrono_literals;

TEST(CircuitBreaker, OpensAfterThresholdFailuresWithinTheWindow) {
  FakeClock clock;
  CircuitBreaker cb(clock, {.failure_threshold = 3, .window = 60s, .cool_down = 30s});
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(cb.allow());
    cb.record_failure();
  }
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kClosed);
  ASSERT_TRUE(cb.allow());
  cb.record_failure();
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kOpen);
  auto rejected = cb.allow();
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code(), ErrorCode::kUnavailable);
  ASSERT_TRUE(rejected.error().retry_after().has_value());
  EXPECT_EQ(*rejected.error().retry_after(), 30s);
}

TEST(CircuitBreaker, FailuresOutsideTheWindowDoNotCount) {
  FakeClock clock;
  CircuitBreaker cb(clock, {.failure_threshold = 2, .window = 10s});
  cb.record_failure();
  clock.advance(11s);
  cb.record_failure();
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kClosed);
}

TEST(CircuitBreaker, HalfOpenProbeClosesOrReopens) {
  FakeClock clock;
  CircuitBreaker cb(clock, {.failure_threshold = 1, .cool_down = 30s});
  cb.record_failure();
  ASSERT_EQ(cb.state(), CircuitBreaker::State::kOpen);
  clock.advance(30s);
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kHalfOpen);
  ASSERT_TRUE(cb.allow());
  EXPECT_FALSE(cb.allow());  // one probe at a time
  cb.record_failure();
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kOpen);
  clock.advance(30s);
  ASSERT_TRUE(cb.allow());
  cb.record_success();
  EXPECT_EQ(cb.state(), CircuitBreaker::State::kClosed);
  EXPECT_TRUE(cb.allow());
  EXPECT_EQ(cb.stats()["state"], "closed");
}

TEST(CircuitBreaker, NamesItsStates) {
  EXPECT_EQ(CircuitBreaker::state_name(CircuitBreaker::State::kClosed), "closed");
  EXPECT_EQ(CircuitBreaker::state_name(CircuitBreaker::State::kOpen), "open");
  EXPECT_EQ(CircuitBreaker::state_name(CircuitBreaker::State::kHalfOpen), "half_open");
}

}  // namespace
}  // namespace crucible
