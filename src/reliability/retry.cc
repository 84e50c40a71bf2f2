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

Result<RetryPolicy> RetryPolicy::from_json(const Json& j) {
  auto bad = [](const std::string& what) { return make_error(ErrorCode::kInvalidArgument, "retry policy: " + what); };
  if (!j.is_object()) return bad("expected an object");
  RetryPolicy p;
  auto integer = [&](const char* key, int64_t& out) -> Status {
    if (!j.contains(key)) return {};
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      return bad(std::string(key) + " must be a non-negative integer");
    out = j[key].get<int64_t>();
    return {};
  };
  int64_t attempts = p.max_attempts, initial = p.initial_backoff.count(), max = p.max_backoff.count(), elapsed = -1;
  CRUCIBLE_RETURN_IF_ERROR(integer("max_attempts", attempts));
  CRUCIBLE_RETURN_IF_ERROR(integer("initial_backoff_ms", initial));
  CRUCIBLE_RETURN_IF_ERROR(integer("max_backoff_ms", max));
  CRUCIBLE_RETURN_IF_ERROR(integer("max_elapsed_ms", elapsed));
  if (attempts < 1) return bad("max_attempts must be at least 1");
  p.max_attempts = static_cast<int>(attempts);
  p.initial_backoff = std::chrono::milliseconds(initial);
  p.max_backoff = std::chrono::milliseconds(max);
  if (elapsed >= 0) p.max_elapsed = std::chrono::milliseconds(elapsed);
  if (j.contains("multiplier")) {
    if (!j["multiplier"].is_number() || j["multiplier"].get<double>() < 1)
      return bad("multiplier must be a number of at least 1");
    p.multiplier = j["multiplier"].get<double>();
  }
  if (j.contains("jitter")) {
    if (!j["jitter"].is_boolean()) return bad("jitter must be true or false");
    p.jitter = j["jitter"].get<bool>();
  }
  if (j.contains("retry_on")) {
    if (!j["retry_on"].is_array()) return bad("retry_on must be a list of error codes");
    for (const Json& c : j["retry_on"]) {
      auto code = c.is_string() ? parse_error_code(c.get<std::string>()) : std::nullopt;
      if (!code) return bad("unknown error code " + json_dump(c));
      p.retry_on.push_back(*code);
    }
  }
  return p;
}

namespace retry_internal {

std::optional<std::chrono::milliseconds> next_delay(const RetryPolicy& policy, const Error& error, int attempt,
                                                    MonoTime start, Clock& clock, Random& random) {
  if (!policy.should_retry(error, attempt)) return std::nullopt;
  auto delay = policy.backoff(attempt, error, random);
  if (policy.max_elapsed && (clock.monotonic() - start) + delay > *policy.max_elapsed) return std::nullopt;
  return delay;
}

Error interrupted(const Error& last) {
  return Error(ErrorCode::kCancelled, "cancelled during retry backoff after: " + last.to_string());
}

}  // namespace retry_internal

}  // namespace crucible
