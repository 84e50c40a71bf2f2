// A circuit breaker: closed (calls pass), open (calls fail fast), half-open (a few probes decide).
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string_view>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

struct CircuitBreakerOptions {
  int failure_threshold = 5;  // failures within `window` that open it
  std::chrono::milliseconds window{60'000};
  std::chrono::milliseconds cool_down{30'000};  // open this long before probing
  int half_open_probes = 1;                     // concurrent probes while half-open
  int success_threshold = 1;                    // probe successes that close it
};

// Thread-safe. Time goes through the Clock.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  // `clock` must outlive the breaker.
  CircuitBreaker(Clock& clock, CircuitBreakerOptions options = {});

  // Whether a call may go ahead. kUnavailable with retry_after (the rest of the cool-down) when
  // open, or when half-open and the probes are taken. A permitted call must be followed by
  // record_success() or record_failure().
  [[nodiscard]] Status allow();
  void record_success();
  void record_failure();

  State state();
  static std::string_view state_name(State s);
  Json stats();

 private:
  void open_locked(MonoTime now);

  Clock& clock_;
  const CircuitBreakerOptions options_;
  std::mutex mu_;
  State state_ = State::kClosed;   // guarded by mu_
  std::deque<MonoTime> failures_;  // guarded by mu_: within the window, while closed
  MonoTime opened_at_{};           // guarded by mu_
  int probes_in_flight_ = 0;       // guarded by mu_
  int probe_successes_ = 0;        // guarded by mu_
  int64_t rejected_ = 0;           // guarded by mu_
};

}  // namespace crucible
