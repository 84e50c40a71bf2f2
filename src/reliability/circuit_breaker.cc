#include "crucible/reliability/circuit_breaker.h"

namespace crucible {

CircuitBreaker::CircuitBreaker(Clock& clock, CircuitBreakerOptions options) : clock_(clock), options_(options) {}

std::string_view CircuitBreaker::state_name(State s) {
  switch (s) {
    case State::kClosed: return "closed";
    case State::kOpen: return "open";
    case State::kHalfOpen: return "half_open";
  }
  return "closed";
}

Status CircuitBreaker::allow() {
  std::lock_guard lock(mu_);
  MonoTime now = clock_.monotonic();
  if (state_ == State::kOpen && now - opened_at_ >= options_.cool_down) {
    state_ = State::kHalfOpen;
    probes_in_flight_ = 0;
    probe_successes_ = 0;
  }
  switch (state_) {
    case State::kClosed: return {};
    case State::kHalfOpen:
      if (probes_in_flight_ < options_.half_open_probes) {
        ++probes_in_flight_;
        return {};
      }
      ++rejected_;
      return make_error(Error(ErrorCode::kUnavailable, "circuit half-open: waiting for the probe call")
                            .with_retry_after(std::chrono::milliseconds(100)));
    case State::kOpen: {
      ++rejected_;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(options_.cool_down - (now - opened_at_));
      return make_error(
          Error(ErrorCode::kUnavailable, "circuit open after " + std::to_string(options_.failure_threshold) +
                                             " failures; next probe in " + std::to_string(left.count()) + " ms")
              .with_retry_after(left));
    }
  }
  return {};
}

void CircuitBreaker::open_locked(MonoTime now) {
  state_ = State::kOpen;
  opened_at_ = now;
  failures_.clear();
  probes_in_flight_ = 0;
  probe_successes_ = 0;
}

void CircuitBreaker::record_success() {
  std::lock_guard lock(mu_);
  if (state_ != State::kHalfOpen) return;
  if (probes_in_flight_ > 0) --probes_in_flight_;
  if (++probe_successes_ >= options_.success_threshold) {
    state_ = State::kClosed;
    failures_.clear();
  }
}

void CircuitBreaker::record_failure() {
  std::lock_guard lock(mu_);
  MonoTime now = clock_.monotonic();
  if (state_ == State::kHalfOpen) {
    open_locked(now);
    return;
  }
  if (state_ == State::kOpen) return;
  failures_.push_back(now);
  while (!failures_.empty() && now - failures_.front() > options_.window) failures_.pop_front();
  if (static_cast<int>(failures_.size()) >= options_.failure_threshold) open_locked(now);
}

CircuitBreaker::State CircuitBreaker::state() {
  std::lock_guard lock(mu_);
  if (state_ == State::kOpen && clock_.monotonic() - opened_at_ >= options_.cool_down) return State::kHalfOpen;
  return state_;
}

Json CircuitBreaker::stats() {
  State s = state();
  std::lock_guard lock(mu_);
  return Json{{"state", state_name(s)}, {"recent_failures", failures_.size()}, {"rejected", rejected_}};
}

}  // namespace crucible
