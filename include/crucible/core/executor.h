// The executor: the only owner of threads. A fixed pool of std::jthreads runs parallel branches
// and hedged attempts; a timer thread fires stage timeouts and lease renewals on the executor's
// Clock, so tests drive them with a FakeClock; dedicated threads run blocking background work.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "crucible/core/clock.h"

namespace crucible {

class Executor {
 public:
  // threads == 0 picks max(4, hardware concurrency). Timers run on `clock`, which must outlive
  // the executor.
  explicit Executor(size_t threads = 0, Clock& clock = real_clock());
  // Finishes queued tasks, then joins every thread, background ones included.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  size_t size() const { return workers_.size(); }

  // Runs fn(0) .. fn(n-1) concurrently, at most `max_concurrency` at a time (0: no limit beyond
  // the pool), and returns when all are done. The calling thread takes part, so nested calls
  // from inside a task cannot deadlock.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn, size_t max_concurrency = 0);

  // Like parallel_for, for work that blocks on I/O (sleeps, child processes, network waits):
  // runs on up to `max_concurrency` dedicated threads started for the call (0: one per item, at
  // most 1024), so a few pool threads do not cap how many waits overlap. Returns when all are done.
  void parallel_for_blocking(size_t n, const std::function<void(size_t)>& fn, size_t max_concurrency = 0);

  // Runs `fn` on a dedicated thread the executor owns, for background work that blocks (shadow
  // branches, a worker's runs): one left idle by earlier work, or a new one. The future is ready
  // when fn has returned.
  std::future<void> run_in_background(std::function<void()> fn);

  // Queues a task for the pool. Tasks must not block forever: they hold a pool thread.
  void submit(std::function<void()> task);

  // Runs fn on the timer thread once `delay` has passed on the executor's clock, unless cancelled
  // first. Returns an id for cancel.
  uint64_t schedule_after(std::chrono::nanoseconds delay, std::function<void()> fn);
  // Cancels a pending timer; returns false if it already ran or never existed.
  bool cancel(uint64_t id);

 private:
  void worker_loop(std::stop_token stop);
  void timer_loop(std::stop_token stop);

  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_

  Clock& clock_;
  std::mutex timer_mu_;
  std::condition_variable_any timer_cv_;
  std::multimap<MonoTime, uint64_t> timer_order_;     // guarded by timer_mu_
  std::map<uint64_t, std::function<void()>> timers_;  // guarded by timer_mu_
  uint64_t next_timer_ = 1;                           // guarded by timer_mu_
  std::stop_source timer_wake_;                       // guarded by timer_mu_: ends the timer's sleep

  // A dedicated thread for background work. After a task it waits a while for another before it
  // ends, so that work started task after task (a worker's runs) does not start a thread each.
  struct Background {
    std::function<void()> task;  // guarded by background_mu_: handed work
    bool exited = false;         // guarded by background_mu_
    std::condition_variable_any cv;
    std::jthread thread;
  };
  void background_loop(Background& b, std::stop_token stop);
  std::mutex background_mu_;
  std::vector<std::unique_ptr<Background>> background_;  // guarded by background_mu_
  std::vector<Background*> idle_background_;             // guarded by background_mu_: waiting for work

  std::vector<std::jthread> workers_;
  std::jthread timer_;
};

}  // namespace crucible
