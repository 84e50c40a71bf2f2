#include "crucible/workflow/expression.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

Context ctx() {
  Context c("exp", *RunId::parse("run-1"),
            Json{{"topic", "cats"}, {"n", 3}, {"list", {1, 2, 3}}, {"nested", {{"k", "v"}}}});
  c.put_metric("acc", 0.91);
  c.put_metric("my-metric", 5);
  c.assign("done", false);
  c.put_artifact("report", "text");
  c.push_loop(Json{{"lr", 0.1}}, 2);
  return c;
}

Json eval(const std::string& text) {
  auto e = Expression::parse(text);
  EXPECT_TRUE(e) << text << ": " << (e ? "" : e.error().to_string());
  if (!e) return Json("<parse error>");
  auto v = e->evaluate(ctx());
  EXPECT_TRUE(v) << text << ": " << (v ? "" : v.error().to_string());
  return v ? *v : Json("<eval error>");
}

Error eval_error(const std::string& text) {
  auto e = Expression::parse(text);
  EXPECT_TRUE(e) << text;
  auto v = e->evaluate(ctx());
  EXPECT_FALSE(v) << text << " evaluated to " << (v ? v->dump() : "");
  return v ? Error(ErrorCode::kUnknown, "") : v.error();
}

TEST(Expression, ReadsEveryRoot) {
  EXPECT_EQ(eval("config.topic"), "cats");
  EXPECT_EQ(eval("config.nested.k"), "v");
  EXPECT_EQ(eval("config.list[1]"), 2);
  EXPECT_EQ(eval("config.list[-1]"), 3);
  EXPECT_EQ(eval("metrics.acc"), 0.91);
  EXPECT_EQ(eval("metrics['my-metric']"), 5);
  EXPECT_EQ(eval("state.done"), false);
  EXPECT_EQ(eval("artifacts.report"), "text");
  EXPECT_EQ(eval("item.lr"), 0.1);
  EXPECT_EQ(eval("index"), 2);
  EXPECT_EQ(eval("run.id"), "run-1");
  EXPECT_TRUE(eval("metrics.missing").is_null());
}

TEST(Expression, ArithmeticComparisonAndBooleans) {
  EXPECT_EQ(eval("1 + 2 * 3"), 7);
  EXPECT_EQ(eval("(1 + 2) * 3"), 9);
  EXPECT_EQ(eval("7 / 2"), 3.5);
  EXPECT_EQ(eval("7 % 4"), 3);
  EXPECT_EQ(eval("-config.n + 1"), -2);
  EXPECT_EQ(eval("'a' + 'b'"), "ab");
  EXPECT_EQ(eval("metrics.acc >= 0.9 and not state.done"), true);
  EXPECT_EQ(eval("metrics.acc < 0.5 || config.n == 3"), true);
  EXPECT_EQ(eval("config.n != 3"), false);
  EXPECT_EQ(eval("1 == 1.0"), true);
  EXPECT_EQ(eval("'b' in ['a', 'b']"), true);
  EXPECT_EQ(eval("'at' in config.topic"), true);
  EXPECT_EQ(eval("metrics.missing == null"), true);
  EXPECT_EQ(eval("'apple' < 'banana'"), true);
}

TEST(Expression, Functions) {
  EXPECT_EQ(eval("len(config.list)"), 3);
  EXPECT_EQ(eval("len(config.topic)"), 4);
  EXPECT_EQ(eval("range(3)"), Json::array({0, 1, 2}));
  EXPECT_EQ(eval("range(1, 3)"), Json::array({1, 2}));
  EXPECT_EQ(eval("str(config.n)"), "3");
  EXPECT_EQ(eval("int('42')"), 42);
  EXPECT_EQ(eval("float(2)"), 2.0);
  EXPECT_EQ(eval("max(config.list)"), 3);
  EXPECT_EQ(eval("min(4, 2, 9)"), 2);
  EXPECT_EQ(eval("abs(-2.5)"), 2.5);
}

// Every operator on every kind of operand it takes, and the error for each it does not.
TEST(Expression, EveryOperatorAndItsErrors) {
  const std::pair<const char*, Json> values[] = {
      {"-2.5", -2.5},
      {"-(1 + 1)", -2},
      {"1 <= 1 and 2 >= 3 == false", true},
      {"'b' > 'a'", true},
      {"'a' <= 'a'", true},
      {"'a' != 'b'", true},
      {"2 in config.list", true},
      {"4 in config.list", false},
      {"'at' in 'cats'", true},
      {"'k' in config.nested", true},
      {"[1] + [2, 3]", Json::array({1, 2, 3})},
      {"'a' + 'b'", "ab"},
      {"2.5 - 1", 1.5},
      {"2.5 * 2", 5.0},
      {"7.5 % 2", 1.5},
      {"7 % 3", 1},
      {"abs(-2.5)", 2.5},
      {"float('2.5') * 2", 5.0},
      {"int('7')", 7},
      {"config.nested['k']", "v"},
      {"config.nested['missing']", Json()},
      {"config.missing[0]", Json()},
      {"min(3, 1, 2)", 1},
      {"max([4, 9])", 9},
  };
  for (const auto& [text, expected] : values) EXPECT_EQ(eval(text), expected) << text;
  const std::pair<const char*, const char*> errors[] = {
      {"-'x'", "'-' needs a number, got string"},
      {"1 in 5", "'in' needs a list, string or object on the right, got integer"},
      {"'a' * 2", "arithmetic needs numbers, got string and integer"},
      {"7.5 % 0", "modulo by zero"},
      {"7 % 0", "modulo by zero"},
      {"abs('x')", "abs() needs a number"},
      {"float('x')", "float() cannot convert \"x\""},
      {"float([1])", "float() needs a number or string, got array"},
      {"float('inf')", "is not a finite number"},
      {"len(1, 2)", "len() takes 1 arguments, got 2"},
      {"config.n[0]", "cannot index integer with integer"},
      {"1e308 * 10", "not a finite number"},
  };
  for (const auto& [text, fragment] : errors) {
    Error e = eval_error(text);
    EXPECT_NE(e.message().find(fragment), std::string::npos) << text << ": " << e.message();
  }
}

TEST(Expression, TypeErrorsAreInvalidArgumentNamingTheExpression) {
  Error e = eval_error("config.topic > 3");
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(e.message().find("config.topic > 3"), std::string::npos);
  EXPECT_NE(e.message().find("cannot compare string"), std::string::npos);
  EXPECT_EQ(eval_error("metrics.missing > 1").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(eval_error("config.n and true").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(eval_error("1 / 0").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(eval_error("len(3)").code(), ErrorCode::kInvalidArgument);
}

TEST(Expression, EvaluateBoolRequiresABoolean) {
  auto e = Expression::parse("config.n");
  ASSERT_TRUE(e);
  auto v = e->evaluate_bool(ctx());
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message().find("must be true or false"), std::string::npos);
}

TEST(Expression, ParseErrorsPointAtTheColumn) {
  auto unknown = Expression::parse("metrics.acc > 0.9 and bogus.x");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().column, 23u);
  EXPECT_NE(unknown.error().message.find("unknown name 'bogus'"), std::string::npos);
  auto unclosed = Expression::parse("(1 + 2");
  ASSERT_FALSE(unclosed);
  EXPECT_EQ(unclosed.error().column, 7u);
  auto bad_char = Expression::parse("1 # 2");
  ASSERT_FALSE(bad_char);
  EXPECT_EQ(bad_char.error().column, 3u);
  auto fn = Expression::parse("system('rm -rf /')");
  ASSERT_FALSE(fn);
  EXPECT_NE(fn.error().message.find("unknown function 'system'"), std::string::npos);
  EXPECT_FALSE(Expression::parse("'unterminated"));
  EXPECT_FALSE(Expression::parse(""));
}

TEST(Template, WholeTemplateKeepsTheType) {
  EXPECT_EQ(*render_template("${config.n}", ctx()), 3);
  EXPECT_EQ(*render_template("${config.list}", ctx()), Json::array({1, 2, 3}));
}

TEST(Template, InterpolatesIntoText) {
  EXPECT_EQ(*render_template("topic=${config.topic}, n=${config.n + 1}", ctx()), "topic=cats, n=4");
  EXPECT_EQ(*render_template("cost $${literal}", ctx()), "cost ${literal}");
  EXPECT_EQ(*render_template("no templates", ctx()), "no templates");
}

TEST(Template, RendersNestedValues) {
  Json with = {{"argv", {"echo", "${config.topic}"}}, {"n", "${config.n}"}, {"k", 1}};
  EXPECT_EQ(*render_templates(with, ctx()), (Json{{"argv", {"echo", "cats"}}, {"n", 3}, {"k", 1}}));
  EXPECT_TRUE(has_templates(with));
  EXPECT_FALSE(has_templates(Json{{"a", "b"}}));
}

TEST(Template, QuotesAndIndicesInsideTemplates) {
  EXPECT_EQ(*render_template("${'}' + config.topic}", ctx()), "}cats");
  EXPECT_EQ(*render_template("${\"a\\\"b\"}", ctx()), "a\"b");
  EXPECT_FALSE(missing_config_key("${config.list[1]}", ctx().config()));
  EXPECT_EQ(missing_config_key("${config.list[7]}", ctx().config()), "list.7");
  EXPECT_EQ(missing_config_key("${config.topic.x}", ctx().config()), "topic.x");
  auto unterminated = render_template("a ${config.n", ctx());
  ASSERT_FALSE(unterminated);
  EXPECT_NE(unterminated.error().message().find("unterminated '${'"), std::string::npos);
}

TEST(Template, CheckReportsTheOffsetOfTheError) {
  auto e = check_template("hello ${config.topic + }");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->offset, 23u);  // the "}" where an operand was expected
  auto unterminated = check_template("x ${config.topic");
  ASSERT_TRUE(unterminated.has_value());
  EXPECT_EQ(unterminated->offset, 2u);
  EXPECT_FALSE(check_template("fine ${config.topic}").has_value());
}

}  // namespace
}  // namespace crucible

namespace crucible {
namespace {

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

TEST(ExpressionLimits, DeepNestingIsALocatedParseError) {
  for (const std::string& text :
       {repeat("(", 5000) + "1" + repeat(")", 5000), repeat("not ", 50000) + "true", repeat("-", 10000) + "1",
        repeat("[", 3000) + repeat("]", 3000), "config" + repeat(".a", 10000)}) {
    auto e = Expression::parse(text);
    ASSERT_FALSE(e) << text.substr(0, 40);
    EXPECT_NE(e.error().message.find("nests deeper than 64 levels"), std::string::npos) << e.error().message;
    EXPECT_GT(e.error().column, 0u);
  }
  EXPECT_TRUE(Expression::parse(repeat("(", 60) + "1" + repeat(")", 60)));  // deep but within the limit
}

TEST(ExpressionLimits, LongChainsEvaluateWithoutDeepRecursion) {
  EXPECT_EQ(eval("1" + repeat("+1", 20000)), 20001);
  EXPECT_EQ(eval("10 - 1 - 2 + 3 * 2 * 2 - 4 / 2"), 17.0);
  EXPECT_EQ(eval("true" + repeat(" and true", 20000)), true);
  EXPECT_EQ(eval("false" + repeat(" or false", 20000) + " or true"), true);
  EXPECT_EQ(eval("1 < 2 == true"), true);
  // `and` stops at the first false: the type error after it is never reached.
  EXPECT_EQ(eval("true and false and (1 + 'x')"), false);
}

TEST(ExpressionLimits, IntegerOverflowIsAnError) {
  for (const char* text : {"9223372036854775807 + 1", "-9223372036854775807 - 2", "4611686018427387904 * 2",
                           "abs(-9223372036854775807 - 1)", "-(-9223372036854775807 - 1)", "int(1e300)", "int('1e30')",
                           "range(-9223372036854775807, 9223372036854775807)", "1e308 * 10"}) {
    Error e = eval_error(text);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_TRUE(e.message().find("overflow") != std::string::npos || e.message().find("64 bits") != std::string::npos ||
                e.message().find("finite") != std::string::npos || e.message().find("limited") != std::string::npos)
        << text << ": " << e.message();
  }
  EXPECT_EQ(eval("9223372036854775806 + 1"), INT64_MAX);
  EXPECT_EQ(eval("int(3.9)"), 3);
  EXPECT_EQ(eval("int(9007199254740993)"), 9007199254740993);  // integers stay exact
  auto huge = Expression::parse("1e999");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("out of range"), std::string::npos);
}

}  // namespace
}  // namespace crucible
