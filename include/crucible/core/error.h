// Canonical error codes, the Error value and Result<T> / Status, the return types of every
// fallible Crucible function. Callers branch on the code, never on the message.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>
#include <utility>

namespace crucible {

// Canonical codes, after absl::StatusCode. Adapters translate driver errors into these at the edge.
enum class ErrorCode {
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "invalid_argument", "deadline_exceeded", ...
std::string_view error_code_name(ErrorCode code);
// Inverse of error_code_name; also accepts "kInvalidArgument" and upper-case "INVALID_ARGUMENT".
std::optional<ErrorCode> parse_error_code(std::string_view name);
// True for the codes a retry may cure: unavailable, deadline_exceeded, resource_exhausted, aborted.
bool is_retryable_code(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Set by adapters from an HTTP Retry-After or a gRPC pushback; retry policies honour it.
  const std::optional<std::chrono::milliseconds>& retry_after() const { return retry_after_; }

  Error& with_retry_after(std::chrono::milliseconds delay) {
    retry_after_ = delay;
    return *this;
  }
  // A failure that may pass on another try although its code is not a retryable one (a program
  // that exited non-zero): a retry policy without `on` retries it.
  bool transient() const { return transient_; }
  Error& with_transient(bool transient = true) {
    transient_ = transient;
    return *this;
  }
  // The input field the error is about ("percentile", "stages[2].retry"), for callers that
  // locate it; the message does not repeat it (to_string() shows both).
  const std::optional<std::string>& field() const { return field_; }
  Error& with_field(std::string field) {
    field_ = std::move(field);
    return *this;
  }
  // Returns a copy whose message starts with `where: `, e.g. the stage name and step key.
  Error with_context(std::string_view where) const;
  // "deadline_exceeded: stage 'train' timed out after 5s"; with a field,
  // "invalid_argument: retry.attempts: must be between 1 and 1000".
  std::string to_string() const;

 private:
  ErrorCode code_;
  std::string message_;
  std::optional<std::chrono::milliseconds> retry_after_;
  bool transient_ = false;
  std::optional<std::string> field_;
};

inline bool is_retryable(const Error& error) { return error.transient() || is_retryable_code(error.code()); }

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

// The error side of a Result, as make_error() returns it.
using Unexpected = tl::unexpected<Error>;

// The only way errors are built: make_error(code, message), make_error(error) to pass one on, or
// field_error(field, message) for bad input.
inline tl::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}
inline tl::unexpected<Error> make_error(Error error) { return tl::unexpected<Error>(std::move(error)); }
// kInvalidArgument about input `field`; the message says what was expected and found.
inline tl::unexpected<Error> field_error(std::string field, std::string message) {
  return make_error(Error(ErrorCode::kInvalidArgument, std::move(message)).with_field(std::move(field)));
}
[[nodiscard]] inline Status ok_status() { return {}; }

// Aborts the process with a message when a broken invariant is detected. Not for user input.
[[noreturn]] void check_failed(const char* condition, const char* file, int line);

}  // namespace crucible

#define CRUCIBLE_CHECK(condition)                               \
  do {                                                          \
    if (!(condition)) {                                         \
      ::crucible::check_failed(#condition, __FILE__, __LINE__); \
    }                                                           \
  } while (false)

// Evaluates a Status (or Result) expression and returns its error from the enclosing function.
#define CRUCIBLE_RETURN_IF_ERROR(expr)                         \
  do {                                                         \
    auto crucible_status_ = (expr);                            \
    if (!crucible_status_) {                                   \
      return ::crucible::make_error(crucible_status_.error()); \
    }                                                          \
  } while (false)

#define CRUCIBLE_CONCAT_INNER_(a, b) a##b
#define CRUCIBLE_CONCAT_(a, b) CRUCIBLE_CONCAT_INNER_(a, b)
#define CRUCIBLE_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr)    \
  auto result = (expr);                                       \
  if (!result) return ::crucible::make_error(result.error()); \
  lhs = std::move(*result)

// Evaluates a Result<T> expression; on success assigns its value to `lhs` (a declaration such as
// `auto x` or an existing variable), otherwise returns its error from the enclosing function.
//   CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(options));
#define CRUCIBLE_ASSIGN_OR_RETURN(lhs, expr) \
  CRUCIBLE_ASSIGN_OR_RETURN_IMPL_(CRUCIBLE_CONCAT_(crucible_result_, __LINE__), lhs, expr)
