#include "crucible/core/error.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "crucible/core/enum_names.h"

namespace crucible {
namespace {

const EnumNames<ErrorCode> kNames = {
    {ErrorCode::kCancelled, "cancelled"},
    {ErrorCode::kUnknown, "unknown"},
    {ErrorCode::kInvalidArgument, "invalid_argument"},
    {ErrorCode::kDeadlineExceeded, "deadline_exceeded"},
    {ErrorCode::kNotFound, "not_found"},
    {ErrorCode::kAlreadyExists, "already_exists"},
    {ErrorCode::kPermissionDenied, "permission_denied"},
    {ErrorCode::kResourceExhausted, "resource_exhausted"},
    {ErrorCode::kFailedPrecondition, "failed_precondition"},
    {ErrorCode::kAborted, "aborted"},
    {ErrorCode::kOutOfRange, "out_of_range"},
    {ErrorCode::kUnimplemented, "unimplemented"},
    {ErrorCode::kInternal, "internal"},
    {ErrorCode::kUnavailable, "unavailable"},
    {ErrorCode::kDataLoss, "data_loss"},
    {ErrorCode::kUnauthenticated, "unauthenticated"},
};

std::string normalise(std::string_view name) {
  std::string out;
  if (name.size() > 1 && name[0] == 'k' && name[1] >= 'A' && name[1] <= 'Z') name.remove_prefix(1);
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') {
      bool camel = i > 0 && name[i - 1] >= 'a' && name[i - 1] <= 'z';
      if (camel) out.push_back('_');
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string_view error_code_name(ErrorCode code) {
  std::string_view name = kNames.name(code);
  return name.empty() ? "unknown" : name;
}

std::optional<ErrorCode> parse_error_code(std::string_view name) { return kNames.parse(normalise(name)); }

bool is_retryable_code(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kResourceExhausted:
    case ErrorCode::kAborted: return true;
    default: return false;
  }
}

Error Error::with_context(std::string_view where) const {
  Error copy = *this;
  copy.message_ = std::string(where) + ": " + message_;
  return copy;
}

std::string Error::to_string() const {
  std::string out(error_code_name(code_));
  if (field_ && !field_->empty()) out += ": " + *field_;
  return out + ": " + message_;
}

void check_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "crucible: CHECK failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace crucible
