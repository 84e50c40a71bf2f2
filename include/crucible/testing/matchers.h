// gMock matchers for Result and Status:
//   EXPECT_THAT(runner.start(spec), IsOk());
//   EXPECT_THAT(load(path), HasCode(ErrorCode::kNotFound));
#pragma once

#include <gmock/gmock.h>

#include <string>

#include "crucible/core/error.h"

namespace crucible::testing {

// Matches a Result<T> or Status that holds a value; on failure prints the error.
MATCHER(IsOk, "is ok") {
  if (arg) return true;
  *result_listener << "which failed with " << arg.error().to_string();
  return false;
}

// Matches a Result<T> or Status that failed with `code`.
MATCHER_P(HasCode, code, "failed with " + std::string(error_code_name(code))) {
  if (arg) {
    *result_listener << "which succeeded";
    return false;
  }
  *result_listener << "which failed with " << arg.error().to_string();
  return arg.error().code() == code;
}

// Matches a failed Result<T> or Status whose message contains `text`.
MATCHER_P(HasMessage, text, "failed with a message containing '" + std::string(text) + "'") {
  if (arg) {
    *result_listener << "which succeeded";
    return false;
  }
  *result_listener << "which failed with " << arg.error().to_string();
  return arg.error().message().find(text) != std::string::npos;
}

}  // namespace crucible::testing
