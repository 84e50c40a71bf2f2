#include "crucible/core/executor.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>

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
  std::vector<std::unique_ptr<Background>> background;
  {
    std::lock_guard lock(background_mu_);
    for (auto& b : background_) {
      b->thread.request_stop();
      b->cv.notify_all();
    }
    background.swap(background_);
  }
  background.clear();  // joins: running work finishes first, idle threads leave at once
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

namespace {

// How long a background thread with nothing to do waits for more before it ends.
constexpr auto kBackgroundIdle = std::chrono::seconds(10);

}  // namespace

std::future<void> Executor::run_in_background(std::function<void()> fn) {
  auto task = std::make_shared<std::packaged_task<void()>>(std::move(fn));
  std::future<void> result = task->get_future();
  std::function<void()> work = [task] { (*task)(); };
  std::lock_guard lock(background_mu_);
  // Threads that ended idle are joined here, so a long-lived executor keeps only live ones.
  std::erase_if(background_, [](const std::unique_ptr<Background>& b) { return b->exited; });
  if (!idle_background_.empty()) {
    Background* b = idle_background_.back();
    idle_background_.pop_back();
    b->task = std::move(work);
    b->cv.notify_one();
    return result;
  }
  auto b = std::make_unique<Background>();
  b->task = std::move(work);
  Background* raw = b.get();
  b->thread = std::jthread([this, raw](std::stop_token stop) { background_loop(*raw, stop); });
  background_.push_back(std::move(b));
  return result;
}

void Executor::background_loop(Background& b, std::stop_token stop) {
  std::unique_lock lock(background_mu_);
  while (true) {
    if (b.task) {
      std::function<void()> task = std::exchange(b.task, nullptr);
      lock.unlock();
      task();
      task = nullptr;  // what the work captured is released before the thread idles
      lock.lock();
      continue;
    }
    idle_background_.push_back(&b);
    const bool handed = b.cv.wait_for(lock, stop, kBackgroundIdle, [&] { return static_cast<bool>(b.task); });
    if (!handed) {
      std::erase(idle_background_, &b);
      b.exited = true;
      return;
    }
  }
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
