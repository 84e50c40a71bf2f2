#include "crucible/workflow/config_override.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

Json config() {
  return Json::parse(R"({"lr": 0.1, "epochs": 3, "model": {"name": "m", "layers": [1, 2]}, "x": null})");
}

std::string error_of(std::string_view assignment) {
  Json c = config();
  Status s = apply_config_override(c, assignment);
  EXPECT_FALSE(s) << assignment;
  EXPECT_EQ(c, config()) << "a refused override changed the config: " << assignment;
  return s ? "" : s.error().message();
}

TEST(ConfigOverride, ReplacesExistingValuesOfTheSameType) {
  Json c = config();
  ASSERT_TRUE(apply_config_override(c, "lr=0.5"));
  ASSERT_TRUE(apply_config_override(c, "lr=1"));           // an integer fits a float
  ASSERT_TRUE(apply_config_override(c, "model.name=42"));  // a string key keeps the text
  ASSERT_TRUE(apply_config_override(c, "model.layers[1]=7"));
  ASSERT_TRUE(apply_config_override(c, "x={\"any\": true}"));  // anything replaces a null
  ASSERT_TRUE(apply_config_override(c, "+model.dropout=0.2"));
  EXPECT_EQ(c["lr"], 1);
  EXPECT_EQ(c["model"]["name"], "42");
  EXPECT_EQ(c["model"]["layers"][1], 7);
  EXPECT_EQ(c["x"]["any"], true);
  EXPECT_EQ(c["model"]["dropout"], 0.2);
}

TEST(ConfigOverride, RefusesWhatDoesNotFitAndSaysWhy) {
  EXPECT_NE(error_of("lrr=0.5").find("config has no key 'lrr'; did you mean 'lr'?; write +lrr=... to add it"),
            std::string::npos);
  EXPECT_NE(error_of("epochs=0.5").find("config.epochs is integer, got number 0.5"), std::string::npos);
  EXPECT_NE(error_of("model=x").find("config.model is object, got string"), std::string::npos);
  EXPECT_NE(error_of("model.layers[5]=1").find("config.model.layers has no item [5]"), std::string::npos);
  EXPECT_NE(error_of("lr.x=1").find("config.lr is number, not a mapping"), std::string::npos);
  EXPECT_NE(error_of("+lr=1").find("exists; drop the + to replace it"), std::string::npos);
  EXPECT_NE(error_of("lr=1e999").find("--set lr:"), std::string::npos);
  EXPECT_NE(error_of("novalue").find("expects key=value"), std::string::npos);
  EXPECT_NE(error_of("=1").find("expects key=value"), std::string::npos);
  EXPECT_NE(error_of("a..b=1").find("empty key part"), std::string::npos);
  EXPECT_NE(error_of("model.layers[x]=1").find("expected a list index like [0]"), std::string::npos);
  EXPECT_NE(error_of("model.layers[1]x=1").find("malformed path"), std::string::npos);
}

}  // namespace
}  // namespace crucible
