#include "crucible/core/duration.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

TEST(ParseDuration, AcceptsUnitsAndPlainSeconds) {
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(parse_duration("5m"), std::chrono::minutes(5));
  EXPECT_EQ(parse_duration("2h"), std::chrono::hours(2));
  EXPECT_EQ(parse_duration("30d"), std::chrono::hours(24 * 30));
  EXPECT_EQ(parse_duration("3"), std::chrono::seconds(3));
  EXPECT_FALSE(parse_duration("soon").has_value());
  EXPECT_FALSE(parse_duration("-1s").has_value());
}

TEST(ParseDuration, RejectsMalformedAndHugeValues) {
  EXPECT_FALSE(parse_duration("").has_value());
  EXPECT_FALSE(parse_duration("1.s").has_value());
  EXPECT_FALSE(parse_duration("5 parsecs").has_value());
  EXPECT_FALSE(parse_duration("99999999999999999999d").has_value());
  EXPECT_EQ(parse_duration(" 2s "), std::chrono::seconds(2));
}

TEST(DurationFromJson, TakesStringsAndSecondsOnly) {
  EXPECT_EQ(duration_from_json(Json("5s")), std::chrono::seconds(5));
  EXPECT_EQ(duration_from_json(Json(0.25)), std::chrono::milliseconds(250));
  EXPECT_EQ(duration_from_json(Json(2)), std::chrono::seconds(2));
  EXPECT_FALSE(duration_from_json(Json(-1)).has_value());
  EXPECT_FALSE(duration_from_json(Json(true)).has_value());
  EXPECT_FALSE(duration_from_json(Json::array()).has_value());
}

TEST(DurationField, NamesTheFieldInItsError) {
  auto bad = duration_field(Json("later"), "timeout");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().field(), "timeout");
  EXPECT_NE(bad.error().to_string().find("timeout: expected a duration"), std::string::npos);
}

TEST(FormatDuration, PrefersWholeSeconds) {
  EXPECT_EQ(format_duration(std::chrono::milliseconds(5000)), "5s");
  EXPECT_EQ(format_duration(std::chrono::milliseconds(300)), "300ms");
}

}  // namespace
}  // namespace crucible
