#include "crucible/core/executor.h"

#include <atomic>
#include <barrier>
#include <future>

#include <gtest/gtest.h>

namespace crucible {
namespace {

using namespace std::chrono_literals;

TEST(Executor, ParallelForRunsEveryIndexOnce) {
  Executor ex(3);
  std::vector<std::atomic<int>> hits(1000);
  ex.parallel_for(hits.size(), [&](size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(Executor, TasksReallyRunConcurrently) {
  Executor ex(2);
  std::barrier<> meet(3);
  ex.parallel_for(3, [&](size_t) { meet.arrive_and_wait(); });
}

TEST(Executor, NestedParallelForDoesNotDeadlock) {
  Executor ex(2);
  std::atomic<int> total{0};
  ex.parallel_for(8, [&](size_t) { ex.parallel_for(8, [&](size_t) { total++; }); });
  EXPECT_EQ(total.load(), 64);
}

TEST(Executor, MaxConcurrencyIsRespected) {
  Executor ex(4);
  std::atomic<int> running{0}, peak{0};
  ex.parallel_for(
      40,
      [&](size_t) {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(1ms);
        --running;
      },
      2);
  EXPECT_LE(peak.load(), 2);
}

TEST(Executor, TimersFireAndCanBeCancelled) {
  Executor ex(1);
  std::promise<void> fired;
  ex.schedule_after(5ms, [&] { fired.set_value(); });
  EXPECT_EQ(fired.get_future().wait_for(5s), std::future_status::ready);
  std::atomic<bool> ran{false};
  uint64_t id = ex.schedule_after(1h, [&] { ran = true; });
  EXPECT_TRUE(ex.cancel(id));
  EXPECT_FALSE(ex.cancel(id));
  EXPECT_FALSE(ran.load());
}

}  // namespace
}  // namespace crucible
