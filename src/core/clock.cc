#include "crucible/core/clock.h"

#include <thread>

namespace crucible {
namespace {

class RealClock : public Clock {
 public:
  WallTime now() override { return std::chrono::system_clock::now(); }
  MonoTime monotonic() override { return std::chrono::steady_clock::now(); }
  bool sleep_for(std::chrono::nanoseconds duration, std::stop_token stop) override {
    if (duration <= std::chrono::nanoseconds::zero()) return !stop.stop_requested();
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait_for(lock, stop, duration, [] { return false; });
    return !stop.stop_requested();
  }
};

}  // namespace

bool Clock::sleep_until(WallTime deadline, std::stop_token stop) {
  auto remaining = deadline - now();
  if (remaining <= std::chrono::nanoseconds::zero()) return !stop.stop_requested();
  return sleep_for(std::chrono::duration_cast<std::chrono::nanoseconds>(remaining), stop);
}

int64_t Clock::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch()).count();
}

Clock& real_clock() {
  static RealClock clock;
  return clock;
}

FakeClock::FakeClock(WallTime start) : start_(start) {}

WallTime FakeClock::now() {
  std::lock_guard lock(mu_);
  return start_ + std::chrono::duration_cast<WallTime::duration>(elapsed_);
}

MonoTime FakeClock::monotonic() {
  std::lock_guard lock(mu_);
  return MonoTime(std::chrono::duration_cast<MonoTime::duration>(elapsed_));
}

bool FakeClock::sleep_for(std::chrono::nanoseconds duration, std::stop_token stop) {
  std::unique_lock lock(mu_);
  sleeps_.push_back(duration);
  if (stop.stop_requested()) return false;
  if (auto_advance_) {
    if (duration > std::chrono::nanoseconds::zero()) elapsed_ += duration;
    cv_.notify_all();
    return true;
  }
  auto deadline = elapsed_ + duration;
  return cv_.wait(lock, stop, [&] { return elapsed_ >= deadline; });
}

void FakeClock::advance(std::chrono::nanoseconds duration) {
  std::lock_guard lock(mu_);
  elapsed_ += duration;
  cv_.notify_all();
}

void FakeClock::set_auto_advance(bool on) {
  std::lock_guard lock(mu_);
  auto_advance_ = on;
}

std::vector<std::chrono::nanoseconds> FakeClock::sleeps() {
  std::lock_guard lock(mu_);
  return sleeps_;
}

}  // namespace crucible
