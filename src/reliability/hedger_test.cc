#include "crucible/reliability/hedger.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

namespace crucible {
namespace {

using namespace std::chrono_literals;

// Sleeps for `d` unless stopped; reports whether it was stopped.
bool nap(std::chrono::milliseconds d, std::stop_token stop) { return !real_clock().sleep_for(d, stop); }

class HedgerTest : public ::testing::Test {
 protected:
  std::unique_ptr<HedgePolicy> policy(double delay_ms, double budget = 1.0) {
    return std::make_unique<HedgePolicy>(make_fixed_strategy(delay_ms), BudgetOptions{.percent = budget, .cap = 100},
                                         GateOptions{.min_hedges = 1'000'000});
  }
  Executor executor_{4};
};

TEST_F(HedgerTest, FastPrimaryIsNotHedged) {
  auto p = policy(200);
  Hedger h(executor_, real_clock(), *p);
  auto r = h.hedge<int>([](int attempt, std::stop_token) -> Result<int> { return attempt + 40; }, {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, 40);
  EXPECT_FALSE(r->meta.hedged);
  EXPECT_EQ(r->meta.attempts, 1);
  EXPECT_EQ(r->meta.strategy, "fixed");
}

TEST_F(HedgerTest, SlowPrimaryGetsABackupThatWinsAndTheLoserIsCancelled) {
  auto p = policy(20);
  Hedger h(executor_, real_clock(), *p);
  std::atomic<bool> primary_stopped{false};
  auto t0 = std::chrono::steady_clock::now();
  auto r = h.hedge<std::string>(
      [&](int attempt, std::stop_token stop) -> Result<std::string> {
        if (attempt == 0) {
          if (nap(2s, stop)) primary_stopped = true;
          return make_error(ErrorCode::kCancelled, "primary stopped");
        }
        return std::string("backup");
      },
      {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // returned at once, did not wait for the loser
  EXPECT_EQ(r->value, "backup");
  EXPECT_TRUE(r->meta.hedged);
  EXPECT_TRUE(r->meta.hedge_won);
  EXPECT_EQ(r->meta.attempts, 2);
  EXPECT_EQ(r->meta.to_json()["cost"], 2);
  for (int i = 0; i < 200 && !primary_stopped; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(primary_stopped.load());
}

TEST_F(HedgerTest, RetryableFailureFiresTheNextAttemptAtOnce) {
  auto p = policy(5000);
  Hedger h(executor_, real_clock(), *p);
  auto t0 = std::chrono::steady_clock::now();
  auto r = h.hedge<int>(
      [](int attempt, std::stop_token) -> Result<int> {
        if (attempt == 0) return make_error(ErrorCode::kUnavailable, "503");
        return 7;
      },
      {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, 7);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(HedgerTest, NonRetryableFailureIsReturned) {
  auto p = policy(5000);
  Hedger h(executor_, real_clock(), *p);
  auto r = h.hedge<int>(
      [](int, std::stop_token) -> Result<int> { return make_error(ErrorCode::kInvalidArgument, "bad request"); }, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(HedgerTest, SeveralBackupsAreStaggeredUpToMaxHedges) {
  auto p = policy(10);
  Hedger h(executor_, real_clock(), *p);
  HedgeCallOptions o;
  o.max_hedges = 2;
  auto r = h.hedge<int>(
      [](int attempt, std::stop_token stop) -> Result<int> {
        if (attempt < 2) {
          nap(2s, stop);
          return make_error(ErrorCode::kCancelled, "stopped");
        }
        return attempt;
      },
      o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, 2);
  EXPECT_EQ(r->meta.attempts, 3);
}

TEST_F(HedgerTest, BudgetRefusalIsReported) {
  auto p = std::make_unique<HedgePolicy>(make_fixed_strategy(5), BudgetOptions{.percent = 0, .cap = 0},
                                         GateOptions{.min_hedges = 1'000'000});
  Hedger h(executor_, real_clock(), *p);
  auto r = h.hedge<int>(
      [](int, std::stop_token stop) -> Result<int> {
        nap(50ms, stop);
        return 1;
      },
      {});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->meta.hedged);
  EXPECT_TRUE(r->meta.budget_denied);
}

TEST_F(HedgerTest, TimeoutCoversEveryAttempt) {
  auto p = policy(5);
  Hedger h(executor_, real_clock(), *p);
  HedgeCallOptions o;
  o.timeout = 60ms;
  auto r = h.hedge<int>(
      [](int, std::stop_token stop) -> Result<int> {
        nap(5s, stop);
        return make_error(ErrorCode::kCancelled, "stopped");
      },
      o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST_F(HedgerTest, CallerStopCancelsEverything) {
  auto p = policy(5);
  Hedger h(executor_, real_clock(), *p);
  std::stop_source source;
  std::jthread stopper([&] {
    std::this_thread::sleep_for(30ms);
    source.request_stop();
  });
  auto r = h.hedge<int>(
      [](int, std::stop_token stop) -> Result<int> {
        nap(5s, stop);
        return make_error(ErrorCode::kCancelled, "stopped");
      },
      {}, source.get_token());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCancelled);
}

}  // namespace
}  // namespace crucible
