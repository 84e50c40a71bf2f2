#include "crucible/reliability/retry.h"

#include <algorithm>
#include <cmath>

namespace crucible {

bool RetryPolicy::should_retry(const Error& error, int attempt) const {
  if (attempt >= max_attempts) return false;
  if (error.code() == ErrorCode::kCancelled) return false;
  if (retry_on.empty()) return is_retryable(error);
  return std::find(retry_on.begin(), retry_on.end(), error.code()) != retry_on.end();
}

std::chrono::milliseconds RetryPolicy::backoff(int attempt, const Error& error, Random& random) const {
  double base = static_cast<double>(initial_backoff.count()) * std::pow(multiplier, attempt - 1);
  double capped = std::min(base, static_cast<double>(max_backoff.count()));
  double delay = jitter ? random.uniform01() * capped : capped;
  auto out = std::chrono::milliseconds(static_cast<int64_t>(delay));
  if (error.retry_after()) out = std::max(out, *error.retry_after());
  return out;
}

Json RetryPolicy::to_json() const {
  Json codes = Json::array();
  for (ErrorCode c : retry_on) codes.push_back(error_code_name(c));
  Json out = {{"max_attempts", max_attempts},
              {"initial_backoff_ms", initial_backoff.count()},
              {"max_backoff_ms", max_backoff.count()},
              {"multiplier", multiplier},
              {"jitter", jitter},
              {"retry_on", codes}};
  if (max_elapsed) out["max_elapsed_ms"] = max_elapsed->count();
  return out;
}

Status retry_call(const RetryPolicy& policy, Clock& clock, Random& random, std::stop_token stop,
                  const std::function<Status(int attempt)>& fn, int* attempts) {
  MonoTime start = clock.monotonic();
  for (int attempt = 1;; ++attempt) {
    if (attempts != nullptr) *attempts = attempt;
    Status status = fn(attempt);
    if (status) return status;
    if (!policy.should_retry(status.error(), attempt)) return status;
    auto delay = policy.backoff(attempt, status.error(), random);
    if (policy.max_elapsed && (clock.monotonic() - start) + delay > *policy.max_elapsed) return status;
    if (!clock.sleep_for(delay, stop)) {
      return make_error(ErrorCode::kCancelled, "cancelled during retry backoff after: " +
                                                   status.error().to_string());
    }
  }
}

}  // namespace crucible
