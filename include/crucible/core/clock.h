// The Clock port: wall time, monotonic time and cancellable sleeps. Production code takes a
// Clock& so tests can use FakeClock and never sleep for real.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <vector>

namespace crucible {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual WallTime now() = 0;
  virtual MonoTime monotonic() = 0;
  // Sleeps for `duration` or until `stop` is requested. Returns false if it was stopped.
  virtual bool sleep_for(std::chrono::nanoseconds duration, std::stop_token stop) = 0;

  // Sleeps until the wall time `deadline`. Returns false if it was stopped.
  bool sleep_until(WallTime deadline, std::stop_token stop);
  int64_t now_ms();
};

// The process-wide real clock. Thread-safe.
Clock& real_clock();

// A clock that only moves when told to, or, in auto-advance mode (the default), jumps forward by
// exactly the requested amount on every sleep. Records every sleep. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(WallTime start = WallTime(std::chrono::hours(24 * 365 * 56)));

  WallTime now() override;
  MonoTime monotonic() override;
  bool sleep_for(std::chrono::nanoseconds duration, std::stop_token stop) override;

  void advance(std::chrono::nanoseconds duration);
  // When off, sleep_for blocks until advance() moves time past the deadline or stop is requested.
  void set_auto_advance(bool on);
  std::vector<std::chrono::nanoseconds> sleeps();

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::chrono::nanoseconds elapsed_{0};  // guarded by mu_
  WallTime start_;
  bool auto_advance_ = true;                      // guarded by mu_
  std::vector<std::chrono::nanoseconds> sleeps_;  // guarded by mu_
};

}  // namespace crucible
