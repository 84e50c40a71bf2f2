#include "crucible/core/error.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

TEST(ErrorCode, NamesRoundTrip) {
  for (int i = 1; i <= 16; ++i) {
    auto code = static_cast<ErrorCode>(i);
    auto parsed = parse_error_code(error_code_name(code));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, code);
  }
}

TEST(ErrorCode, ParsesConstantAndUpperCaseSpellings) {
  EXPECT_EQ(parse_error_code("kDeadlineExceeded"), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(parse_error_code("resource_exhausted"), ErrorCode::kResourceExhausted);
  EXPECT_FALSE(parse_error_code("nonsense").has_value());
}

TEST(ErrorCode, ClassifiesRetryableByCode) {
  EXPECT_TRUE(is_retryable_code(ErrorCode::kUnavailable));
  EXPECT_TRUE(is_retryable_code(ErrorCode::kResourceExhausted));
  EXPECT_TRUE(is_retryable_code(ErrorCode::kDeadlineExceeded));
  EXPECT_FALSE(is_retryable_code(ErrorCode::kInvalidArgument));
  EXPECT_FALSE(is_retryable_code(ErrorCode::kInternal));
}

TEST(Error, ContextPrefixesMessageAndKeepsCode) {
  Error e(ErrorCode::kNotFound, "no such file");
  e.with_retry_after(std::chrono::milliseconds(250));
  Error wrapped = e.with_context("stage 'load' (/load)");
  EXPECT_EQ(wrapped.code(), ErrorCode::kNotFound);
  EXPECT_EQ(wrapped.message(), "stage 'load' (/load): no such file");
  EXPECT_EQ(wrapped.retry_after(), std::chrono::milliseconds(250));
  EXPECT_EQ(wrapped.to_string(), "not_found: stage 'load' (/load): no such file");
}

Status fails() { return make_error(ErrorCode::kAborted, "x"); }
Status forwards() {
  CRUCIBLE_RETURN_IF_ERROR(fails());
  return {};
}

TEST(Error, ReturnIfErrorForwardsTheError) {
  Status s = forwards();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kAborted);
}

}  // namespace
}  // namespace crucible
