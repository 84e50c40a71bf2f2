#include "crucible/testing/matchers.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

using testing::HasCode;
using testing::HasMessage;
using testing::IsOk;
using ::testing::Not;

TEST(Matchers, IsOkMatchesValuesAndSuccessfulStatuses) {
  EXPECT_THAT(Result<int>(3), IsOk());
  EXPECT_THAT(Status(), IsOk());
  EXPECT_THAT(Result<int>(make_error(ErrorCode::kNotFound, "gone")), Not(IsOk()));
}

TEST(Matchers, HasCodeAndHasMessageLookAtTheError) {
  Status s = make_error(ErrorCode::kUnavailable, "server busy");
  EXPECT_THAT(s, HasCode(ErrorCode::kUnavailable));
  EXPECT_THAT(s, Not(HasCode(ErrorCode::kNotFound)));
  EXPECT_THAT(s, HasMessage("busy"));
  EXPECT_THAT(Status(), Not(HasCode(ErrorCode::kUnavailable)));
}

}  // namespace
}  // namespace crucible
