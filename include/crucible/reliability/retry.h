// Retry with exponential backoff and full jitter, through the Clock so tests never sleep.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
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
  static Result<RetryPolicy> from_json(const Json& json);
  friend bool operator==(const RetryPolicy&, const RetryPolicy&) = default;
};

struct RetryOutcome {
  int attempts = 0;
};

// Calls fn(attempt) until it succeeds, the policy gives up, or `stop` is requested (kCancelled).
// `attempts` receives the number of attempts made.
Status retry_call(const RetryPolicy& policy, Clock& clock, Random& random, std::stop_token stop,
                  const std::function<Status(int attempt)>& fn, int* attempts = nullptr);

}  // namespace crucible
