#include "crucible/core/json.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

TEST(Json, DumpNeverThrowsOnBytesThatAreNotUtf8) {
  Json v = {{"tail", std::string("ok \xB8\xFF end")}};
  EXPECT_EQ(json_dump(v), "{\"tail\":\"ok \xEF\xBF\xBD\xEF\xBF\xBD end\"}");
  EXPECT_EQ(json_dump(Json{{"a", 1}}, 2), "{\n  \"a\": 1\n}");
}

TEST(Json, FindsAndReplacesInvalidUtf8) {
  EXPECT_EQ(invalid_utf8_at("plain ascii"), std::string_view::npos);
  EXPECT_EQ(invalid_utf8_at("caf\xC3\xA9 \xF0\x9F\x98\x80"), std::string_view::npos);  // é and an emoji
  EXPECT_EQ(invalid_utf8_at("caf\xE9"), 3u);                                           // Latin-1 é
  EXPECT_EQ(invalid_utf8_at("\xC0\xAF"), 0u);                                          // overlong '/'
  EXPECT_EQ(invalid_utf8_at("\xED\xA0\x80"), 0u);                                      // a surrogate
  EXPECT_EQ(invalid_utf8_at("\xF4\x90\x80\x80"), 0u);                                  // above U+10FFFF
  EXPECT_EQ(invalid_utf8_at("ab\xE2\x82"), 2u);                                        // cut short
  EXPECT_EQ(valid_utf8("caf\xE9!"), "caf\xEF\xBF\xBD!");
  EXPECT_EQ(valid_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(Json, ParseLimitsDepthAndRange) {
  EXPECT_TRUE(parse_json("[[[1]]]"));
  auto deep = parse_json(std::string(300, '[') + std::string(300, ']'));
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().code(), ErrorCode::kOutOfRange);
  auto huge = parse_json("1e999");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::kOutOfRange);
  auto bad = parse_json("{\"a\": ");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(parse_json_or_discarded("nope").is_discarded());
  EXPECT_FALSE(parse_json("\"\xE9\""));  // a JSON string must be UTF-8
}

TEST(Json, MembersOfDamagedValues) {
  Json j = {{"s", "x"}, {"n", 1}};
  EXPECT_EQ(json_string(j, "s"), "x");
  EXPECT_EQ(json_string(j, "n", "fallback"), "fallback");
  EXPECT_EQ(json_member(Json::array(), "s"), nullptr);
  EXPECT_EQ(json_type_name(Json(1.5)), "number");
  EXPECT_EQ(json_type_name(Json(2u)), "integer");
}

}  // namespace
}  // namespace crucible
