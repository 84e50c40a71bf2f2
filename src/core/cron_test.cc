#include "crucible/core/cron.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

// 2026-12-01 00:00:00 UTC, a Tuesday.
constexpr int64_t kDec1 = 1'796'083'200'000;
constexpr int64_t kMin = 60'000;

int64_t next(const char* expr, int64_t after) {
  auto e = CronExpr::parse(expr);
  EXPECT_TRUE(e) << expr << ": " << e.error().to_string();
  auto t = e->next_after(after);
  EXPECT_TRUE(t.has_value()) << expr;
  return t.value_or(-1);
}

TEST(Cron, StepsRangesListsAndNames) {
  EXPECT_EQ(next("* * * * *", kDec1), kDec1 + kMin);
  EXPECT_EQ(next("*/5 * * * *", kDec1 + 1), kDec1 + 5 * kMin);
  EXPECT_EQ(next("*/5 * * * *", kDec1 + 5 * kMin), kDec1 + 10 * kMin);  // strictly after
  EXPECT_EQ(next("30 2 * * *", kDec1), kDec1 + (2 * 60 + 30) * kMin);
  EXPECT_EQ(next("0 9-17/4 * * *", kDec1), kDec1 + 9 * 60 * kMin);
  EXPECT_EQ(next("0 9-17/4 * * *", kDec1 + 9 * 60 * kMin), kDec1 + 13 * 60 * kMin);
  EXPECT_EQ(next("15,45 0 * * *", kDec1 + 16 * kMin), kDec1 + 45 * kMin);
  EXPECT_EQ(next("0 0 * * fri", kDec1), kDec1 + 3 * 24 * 60 * kMin);  // Friday 4 December
  EXPECT_EQ(next("0 0 * * 0", kDec1), next("0 0 * * 7", kDec1));      // Sunday either way
  EXPECT_EQ(next("0 0 1 jan *", kDec1), 1'798'761'600'000);           // 2027-01-01
  EXPECT_EQ(next("0 12 25 DEC *", kDec1), kDec1 + (24 * 24 * 60 + 12 * 60) * kMin);
}

TEST(Cron, BothDayFieldsRestrictedMatchEither) {
  // The 15th, or any Friday: Friday 4 December comes first.
  EXPECT_EQ(next("0 0 15 * fri", kDec1), kDec1 + 3 * 24 * 60 * kMin);
}

TEST(Cron, AnImpossibleDateHasNoTick) {
  auto e = CronExpr::parse("0 0 30 feb *");
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->next_after(kDec1).has_value());
}

TEST(Cron, BadExpressionsNameTheField) {
  struct Case {
    const char* expr;
    const char* field;
    const char* says;
  };
  for (const Case& c : {Case{"* * * *", "cron", "expected 5"}, Case{"60 * * * *", "minute", "out of range"},
                        Case{"* 24 * * *", "hour", "out of range"}, Case{"* * 0 * *", "day-of-month", "out of range"},
                        Case{"* * * 13 *", "month", "out of range"}, Case{"* * * * 8", "day-of-week", "out of range"},
                        Case{"*/0 * * * *", "minute", "bad step"}, Case{"5-1 * * * *", "minute", "ends before"},
                        Case{"* * * foo *", "month", "name"}, Case{"a * * * *", "minute", "not a number"},
                        Case{"1,,2 * * * *", "minute", "empty"}}) {
    auto e = CronExpr::parse(c.expr);
    ASSERT_FALSE(e) << c.expr;
    EXPECT_EQ(e.error().field(), c.field) << c.expr;
    EXPECT_NE(e.error().message().find(c.says), std::string::npos) << c.expr << ": " << e.error().message();
  }
}

}  // namespace
}  // namespace crucible
