// Retry with exponential backoff and full jitter, through the Clock so tests never sleep.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/core/random.h"

namespace crucible {

struct RetryPolicy {
  int max_attempts = 1;  // 1 = no retry
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{30'000};
  double multiplier = 2.0;
  bool jitter = true;  // full jitter: uniform in [0, capped exponential]
  // Give up once this much time has passed since the first attempt started.
  std::optional<std::chrono::milliseconds> max_elapsed;
  // Codes worth retrying; empty means the canonical retryable codes (is_retryable_code).
  std::vector<ErrorCode> retry_on;

  // Whether attempt number `attempt` (1-based) that failed with `error` may be retried.
  bool should_retry(const Error& error, int attempt) const;
  // Delay before attempt `attempt + 1`. Honours error.retry_after() as a lower bound.
  std::chrono::milliseconds backoff(int attempt, const Error& error, Random& random) const;

  Json to_json() const;
  // The inverse of to_json(). kInvalidArgument for anything else.
  [[nodiscard]] static Result<RetryPolicy> from_json(const Json& json);
  friend bool operator==(const RetryPolicy&, const RetryPolicy&) = default;
};

namespace retry_internal {

// The delay before attempt `attempt + 1`, or nullopt when the policy gives up: the error is not
// worth retrying, the attempts are spent or the delay would pass max_elapsed.
std::optional<std::chrono::milliseconds> next_delay(const RetryPolicy& policy, const Error& error, int attempt,
                                                    MonoTime start, Clock& clock, Random& random);
// The error of a retry that `stop` interrupted: kCancelled, naming the last attempt's error.
Error interrupted(const Error& last);

}  // namespace retry_internal

// The one retry loop. Calls fn(attempt) (1-based; fn returns a Result<T> or a Status) until it
// succeeds or the policy gives up, and returns its last result. Backoff sleeps go through
// `clock`. When `stop` is requested while another attempt is due, the retry is interrupted: the
// result is kCancelled naming the last error. `attempts`, when given, receives the number made.
// `give_up()` is asked after each failure: true returns that failure at once, whatever the
// policy says (the runner's journal broke, say).
template <typename F, typename G = bool (*)()>
auto retry_call(
    const RetryPolicy& policy, Clock& clock, Random& random, std::stop_token stop, F&& fn, int* attempts = nullptr,
    G give_up = [] { return false; }) -> std::invoke_result_t<F&, int> {
  // Only max_elapsed needs the start; the common path reads no clock.
  const MonoTime start = policy.max_elapsed ? clock.monotonic() : MonoTime{};
  for (int attempt = 1;; ++attempt) {
    if (attempts != nullptr) *attempts = attempt;
    auto result = fn(attempt);
    if (result || give_up()) return result;
    auto delay = retry_internal::next_delay(policy, result.error(), attempt, start, clock, random);
    if (!delay) return result;
    if (stop.stop_requested() || !clock.sleep_for(*delay, stop)) {
      return make_error(retry_internal::interrupted(result.error()));
    }
  }
}

}  // namespace crucible
