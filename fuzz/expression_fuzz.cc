// Expressions and templates: parse, then evaluate against a context with metrics, state, config
// and a loop item; also the template checks and rendering. Errors are fine; crashes, hangs and
// deep recursion are not.
#include <string>
#include <string_view>

#include "crucible/core/context.h"
#include "crucible/workflow/expression.h"
#include "fuzz_target.h"

namespace {

crucible::Context make_context() {
  using crucible::Json;
  crucible::Context ctx("fuzz", crucible::RunId(),
                        Json{{"lr", 0.1}, {"n", 3}, {"model", {{"name", "m"}}}, {"items", {1, 2, 3}}});
  ctx.put_metric("accuracy", 0.9);
  ctx.put_metric("loss", Json::array({1, 2}));
  ctx.assign("count", 9223372036854775807LL);
  ctx.assign("text", "hello");
  ctx.push_loop(Json{{"x", -9223372036854775807LL - 1}}, 2);
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const crucible::Context ctx = make_context();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto e = crucible::Expression::parse(text)) {
    (void)e->evaluate(ctx);
    (void)e->config_paths();
  }
  (void)crucible::check_template(text);
  (void)crucible::missing_config_key(text, ctx.config());
  (void)crucible::render_template(text, ctx);
  return 0;
}
