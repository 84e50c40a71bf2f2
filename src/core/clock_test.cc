#include "crucible/core/clock.h"

#include <thread>

#include <gtest/gtest.h>

#include "crucible/core/random.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;

TEST(FakeClock, AutoAdvanceMovesTimeByTheSleep) {
  FakeClock clock;
  auto before = clock.now();
  EXPECT_TRUE(clock.sleep_for(5s, {}));
  EXPECT_EQ(clock.now() - before, 5s);
  EXPECT_EQ(clock.sleeps().size(), 1u);
}

TEST(FakeClock, ManualModeWakesWhenAdvanced) {
  FakeClock clock;
  clock.set_auto_advance(false);
  std::jthread sleeper([&] { EXPECT_TRUE(clock.sleep_for(10s, {})); });
  while (clock.sleeps().empty()) std::this_thread::yield();
  clock.advance(10s);
}

TEST(FakeClock, StoppedSleepReturnsFalse) {
  FakeClock clock;
  clock.set_auto_advance(false);
  std::stop_source source;
  std::jthread sleeper([&] { EXPECT_FALSE(clock.sleep_for(10s, source.get_token())); });
  while (clock.sleeps().empty()) std::this_thread::yield();
  source.request_stop();
}

TEST(RealClock, SleepIsCancelledByStopToken) {
  std::stop_source source;
  source.request_stop();
  EXPECT_FALSE(real_clock().sleep_for(10s, source.get_token()));
}

TEST(SeededRandom, IsDeterministicForASeed) {
  SeededRandom a(42), b(42), c(43);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  for (int i = 0; i < 1000; ++i) {
    double u = a.uniform01();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace crucible
