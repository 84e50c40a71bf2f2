#include "crucible/core/stage.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

std::unique_ptr<Stage> hello() {
  StageDescription d;
  d.name = "hello";
  d.summary = "says hello";
  d.options.push_back({"who", "string", true, Json(), "whom to greet"});
  return make_function_stage(d, [](Context& ctx, const StageOptions& o, std::stop_token) -> Status {
    auto who = o.string("who");
    if (!who) return make_error(who.error());
    ctx.assign("greeting", "hello " + *who);
    return {};
  });
}

TEST(StageRegistry, CreatesRegisteredStagesAndRejectsDuplicates) {
  StageRegistry registry;
  ASSERT_TRUE(registry.register_stage("hello", hello));
  auto again = registry.register_stage("hello", hello);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  auto stage = registry.create("hello");
  ASSERT_TRUE(stage);
  Context ctx;
  ASSERT_TRUE((*stage)->run(ctx, StageOptions(Json{{"who", "world"}}), {}));
  EXPECT_EQ(*ctx.get("greeting"), "hello world");
}

TEST(StageRegistry, UnknownStageIsNotFoundAndListsKnownNames) {
  StageRegistry registry;
  ASSERT_TRUE(registry.register_stage("hello", hello));
  auto missing = registry.create("helo");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("hello"), std::string::npos);
}

TEST(StageOptions, TypedAccessorsNameTheOption) {
  StageOptions o(Json{{"n", "three"}});
  auto n = o.integer("n");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(n.error().message().find("'n'"), std::string::npos);
  EXPECT_EQ(o.integer_or("m", 4), 4);
  auto missing = o.string("who");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("missing required option 'who'"), std::string::npos);
  StageOptions typed(Json{{"i", 3}, {"x", 0.5}, {"b", true}, {"s", "text"}});
  EXPECT_EQ(*typed.integer("i"), 3);
  EXPECT_EQ(*typed.number("x"), 0.5);
  EXPECT_EQ(*typed.number("i"), 3.0);  // an integer is a number
  EXPECT_TRUE(*typed.boolean("b"));
  EXPECT_FALSE(typed.number("s"));
  EXPECT_FALSE(typed.boolean("i"));
  EXPECT_NE(typed.boolean("i").error().message().find("a boolean"), std::string::npos);
  EXPECT_FALSE(typed.integer("x"));
}

TEST(StageDescription, SerialisesOptions) {
  auto d = hello()->describe();
  Json j = d.to_json();
  EXPECT_EQ(j["name"], "hello");
  EXPECT_EQ(j["options"][0]["name"], "who");
  EXPECT_EQ(j["options"][0]["required"], true);
}

}  // namespace
}  // namespace crucible
