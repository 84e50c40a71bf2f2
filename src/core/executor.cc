#include "crucible/core/executor.h"

#include <algorithm>
#include <atomic>
#include <memory>

namespace crucible {

Executor::Executor(size_t threads, Clock& clock) : clock_(clock) {
  if (threads == 0) threads = std::max<size_t>(4, std::thread::hardware_concurrency());
  for (size_t i = 0; i < threads; ++i) {
    workers_.emplace_back([this](std::stop_token stop) { worker_loop(stop); });
  }
  timer_ = std::jthread([this](std::stop_token stop) { timer_loop(stop); });
}

Executor::~Executor() {
  for (auto& w : workers_) w.request_stop();
  {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
  workers_.clear();
  timer_.request_stop();
  {
    std::lock_guard lock(timer_mu_);
    timer_wake_.request_stop();
    timer_cv_.notify_all();
  }
  timer_ = std::jthread();
  std::lock_guard lock(background_mu_);
  background_.clear();
}

void Executor::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Executor::worker_loop(std::stop_token stop) {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, stop, [&] { return !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

namespace {

// Shared by the helpers of one parallel_for: indexes are claimed, never queued one by one.
struct Job {
  const std::function<void(size_t)>* fn;
  size_t n;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mu;
  std::condition_variable cv;

  void work() {
    while (true) {
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      (*fn)(i);
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard lock(mu);
        cv.notify_all();
      }
    }
  }
};

}  // namespace

void Executor::parallel_for(size_t n, const std::function<void(size_t)>& fn, size_t max_concurrency) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  size_t limit = max_concurrency == 0 ? workers_.size() + 1 : max_concurrency;
  size_t helpers = std::min({n, workers_.size(), limit > 0 ? limit - 1 : 0});
  for (size_t h = 0; h < helpers; ++h) submit([job] { job->work(); });
  job->work();
  std::unique_lock lock(job->mu);
  job->cv.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == n; });
}

void Executor::parallel_for_blocking(size_t n, const std::function<void(size_t)>& fn, size_t max_concurrency) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  size_t limit = max_concurrency == 0 ? size_t{1024} : max_concurrency;
  size_t threads = std::min(n, limit);
  std::atomic<size_t> next{0};
  auto work = [&] {
    while (true) {
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      fn(i);
    }
  };
  {
    std::vector<std::jthread> helpers;
    helpers.reserve(threads - 1);
    for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
    work();
  }
}

std::future<void> Executor::run_in_background(std::function<void()> fn) {
  auto task = std::make_shared<std::packaged_task<void()>>(std::move(fn));
  std::future<void> result = task->get_future();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard lock(background_mu_);
  // Threads whose work has returned are joined here, so a long-lived executor keeps only the
  // running ones.
  std::erase_if(background_, [](const Background& b) { return b.finished->load(); });
  background_.push_back({std::jthread([task, finished] {
                           (*task)();
                           finished->store(true);
                         }),
                         finished});
  return result;
}

uint64_t Executor::schedule_after(std::chrono::nanoseconds delay, std::function<void()> fn) {
  std::lock_guard lock(timer_mu_);
  uint64_t id = next_timer_++;
  MonoTime when = clock_.monotonic() + delay;
  if (timer_order_.empty() || when < timer_order_.begin()->first) timer_wake_.request_stop();
  timer_order_.emplace(when, id);
  timers_.emplace(id, std::move(fn));
  timer_cv_.notify_all();
  return id;
}

bool Executor::cancel(uint64_t id) {
  std::lock_guard lock(timer_mu_);
  return timers_.erase(id) > 0;
}

void Executor::timer_loop(std::stop_token stop) {
  std::unique_lock lock(timer_mu_);
  while (!stop.stop_requested()) {
    if (timer_order_.empty()) {
      timer_cv_.wait(lock, stop, [&] { return !timer_order_.empty(); });
      continue;
    }
    auto [when, id] = *timer_order_.begin();
    MonoTime now = clock_.monotonic();
    if (now < when) {
      // Sleeps on the clock; an earlier timer or the destructor ends the sleep.
      timer_wake_ = std::stop_source();
      std::stop_token wake = timer_wake_.get_token();
      lock.unlock();
      clock_.sleep_for(when - now, wake);
      lock.lock();
      continue;
    }
    timer_order_.erase(timer_order_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    auto fn = std::move(it->second);
    timers_.erase(it);
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace crucible
