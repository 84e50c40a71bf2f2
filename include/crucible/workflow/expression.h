// A small, safe expression language for `when`, `until`, `over` and `${...}` option templates.
// It reads config, metrics, state, artifacts, item, index and run; it has literals, arithmetic,
// comparison and boolean operators and a few pure functions. It never executes code.
//
//   metrics.accuracy >= 0.9 and not state.done
//   item.lr * 2        len(config.topics) > 0        'b' in ['a', 'b']        range(3)
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/context.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// A parse error with the 1-based column inside the expression text.
struct ExprError {
  size_t column = 1;
  std::string message;
  std::string to_string() const { return "column " + std::to_string(column) + ": " + message; }
};

namespace expr_internal {
struct Node;
}

// A parsed expression. Cheap to copy; immutable and thread-safe.
class Expression {
 public:
  [[nodiscard]] static tl::expected<Expression, ExprError> parse(std::string_view text);
  // An expression that evaluates to `value` (a literal list from YAML, say). Its text is the
  // value's JSON.
  static Expression from_value(Json value);

  // Evaluates against a context. kInvalidArgument for type errors (comparing a string with a
  // number, `and` on a non-boolean, division by zero), naming the expression. A missing metric,
  // state key or field reads as null.
  [[nodiscard]] Result<Json> evaluate(const Context& ctx) const;
  // As evaluate, but the result must be a boolean.
  [[nodiscard]] Result<bool> evaluate_bool(const Context& ctx) const;

  const std::string& text() const { return text_; }

  // The config keys the expression reads by name: `config.model.name` gives {"model", "name"}
  // (literal indices too: `config.items[0]` gives {"items", "0"}). For checking them against a
  // known config.
  std::vector<std::vector<std::string>> config_paths() const;

 private:
  std::string text_;
  std::shared_ptr<const expr_internal::Node> root_;
};

// Where a parse error sits inside a larger string (an option value with several ${...}).
struct TemplateError {
  size_t offset = 0;  // 0-based byte offset into the string
  std::string message;
};

// Checks every ${...} in `text`; the first error with its offset.
std::optional<TemplateError> check_template(std::string_view text);
// The first config path a ${...} in `text` names that `config` lacks, as "model.nmae", or
// nullopt. A template that reads a missing key would pass null on; this names it instead.
std::optional<std::string> missing_config_key(std::string_view text, const Json& config);
// Expands ${...} in a string. A string that is exactly one ${expr} keeps the value's JSON type;
// otherwise values are formatted into the text. "$${" escapes a literal "${".
[[nodiscard]] Result<Json> render_template(std::string_view text, const Context& ctx);
// Renders every string inside a JSON value (objects and arrays recursively).
[[nodiscard]] Result<Json> render_templates(const Json& value, const Context& ctx);
// Whether any string inside the value contains "${".
bool has_templates(const Json& value);

}  // namespace crucible
