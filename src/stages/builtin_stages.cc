#include "crucible/stages/builtin_stages.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>

#include "crucible/core/clock.h"
#include "crucible/workflow/expression.h"

namespace crucible {
namespace {

Status stage_noop(Context&, const StageOptions&, std::stop_token) { return {}; }

Status stage_sleep(Context& ctx, const StageOptions& o, std::stop_token stop) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto d, o.duration("duration"));
  Clock& clock = ctx.services() != nullptr ? ctx.services()->clock() : real_clock();
  int64_t wake_at = clock.now_ms() + d.count();
  // The wake-up time is journaled, so a resumed run waits only for what is left.
  if (StageServices* s = ctx.services()) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto memo, s->memo("wake_at_ms", [&] { return Json(wake_at); }));
    wake_at = memo.get<int64_t>();
  }
  auto deadline = WallTime(std::chrono::milliseconds(wake_at));
  if (!clock.sleep_until(deadline, stop)) return make_error(ErrorCode::kCancelled, "sleep was cancelled");
  return {};
}

Status stage_set(Context& ctx, const StageOptions& o, std::stop_token) {
  for (const auto& [key, value] : o.json().items()) {
    if (!value.is_string()) {
      ctx.assign(key, value);
      continue;
    }
    auto e = Expression::parse(value.get<std::string>());
    if (!e) {
      return make_error(ErrorCode::kInvalidArgument, "option '" + key + "': bad expression '" +
                                                         value.get<std::string>() + "': " + e.error().to_string());
    }
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, e->evaluate(ctx));
    ctx.assign(key, std::move(v));
  }
  return {};
}

Status stage_assert(Context& ctx, const StageOptions& o, std::stop_token) {
  const Json* that = o.get("that");
  std::vector<std::string> checks;
  if (that != nullptr && that->is_string())
    checks.push_back(that->get<std::string>());
  else if (that != nullptr && that->is_array()) {
    for (const Json& c : *that) {
      if (!c.is_string()) return make_error(ErrorCode::kInvalidArgument, "option 'that' must hold expression strings");
      checks.push_back(c.get<std::string>());
    }
  } else {
    return make_error(ErrorCode::kInvalidArgument, "option 'that' must be an expression or a list of expressions");
  }
  for (const std::string& check : checks) {
    auto e = Expression::parse(check);
    if (!e) return make_error(ErrorCode::kInvalidArgument, "bad expression '" + check + "': " + e.error().to_string());
    CRUCIBLE_ASSIGN_OR_RETURN(auto ok, e->evaluate_bool(ctx));
    if (!ok) {
      std::string message = o.string_or("message", "");
      return make_error(ErrorCode::kFailedPrecondition,
                        "assertion failed: " + check + (message.empty() ? "" : " (" + message + ")"));
    }
  }
  return {};
}

Status stage_metric(Context& ctx, const StageOptions& o, std::stop_token) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto name, o.string("name"));
  const Json* value = o.get("value");
  if (value == nullptr) return make_error(ErrorCode::kInvalidArgument, "missing required option 'value'");
  if (!value->is_string()) {
    ctx.put_metric(name, *value);
    return {};
  }
  // The same rule as `set`: a string is an expression, other values are literals.
  auto e = Expression::parse(value->get<std::string>());
  if (!e) {
    return make_error(ErrorCode::kInvalidArgument,
                      "option 'value': bad expression '" + value->get<std::string>() + "': " + e.error().to_string());
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto v, e->evaluate(ctx));
  ctx.put_metric(name, std::move(v));
  return {};
}

Status stage_write_file(Context& ctx, const StageOptions& o, std::stop_token) {
  auto path = o.string("path");
  if (!path) return make_error(path.error());
  CRUCIBLE_ASSIGN_OR_RETURN(auto text, o.string("text"));
  bool append = o.boolean_or("append", false);
  int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  if (fd < 0) return make_error(ErrorCode::kUnavailable, "cannot open '" + *path + "': " + std::strerror(errno));
  std::string data = text;
  if (o.boolean_or("newline", true)) data.push_back('\n');
  ssize_t n = ::write(fd, data.data(), data.size());
  bool synced = !o.boolean_or("sync", false) || ::fsync(fd) == 0;
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size()) || !synced) {
    return make_error(ErrorCode::kUnavailable, "cannot write '" + *path + "': " + std::strerror(errno));
  }
  ctx.put_artifact(ctx.current_stage().empty() ? "write_file" : ctx.current_stage(), Json{{"path", *path}});
  return {};
}

Status stage_wait_for(Context& ctx, const StageOptions& o, std::stop_token) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto name, o.string("promise"));
  StageServices* services = ctx.services();
  if (services == nullptr) return make_error(ErrorCode::kFailedPrecondition, "wait_for needs a durable runner");
  std::optional<int64_t> deadline;
  if (o.has("timeout")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto d, o.duration("timeout"));
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto memo, services->memo("deadline_ms", [&] { return Json(services->clock().now_ms() + d.count()); }));
    deadline = memo.get<int64_t>();
  }
  auto value = services->poll_promise(name);
  if (!value) return make_error(value.error());
  if (value->has_value()) {
    ctx.assign(o.string_or("into", name), **value);
    return {};
  }
  if (deadline && services->clock().now_ms() >= *deadline) {
    return make_error(ErrorCode::kDeadlineExceeded, "no value for promise '" + name + "' before its timeout");
  }
  ctx.request_suspend(SuspendRequest{name, deadline});
  return {};
}

// noop, sleep, set, assert: control and state.
Status register_control_stages(StageRegistry& r) {
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r, describe_stage("noop", "does nothing; a placeholder and a benchmark baseline", {}), stage_noop));
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage("sleep", "waits for a duration; durable: after a crash only the rest is waited",
                     {option_spec("duration", "duration", true, "how long, e.g. 250ms, 5s, 1h")}),
      stage_sleep));
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage(
          "set", "assigns state from expressions: each option is key: expression",
          {option_spec("*", "expression", false, "any key; a string value is an expression, others are literals")},
          {"config, metrics, state, artifacts, item, index"}, {"state <key>"}),
      stage_set));
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage(
          "assert", "fails unless every condition holds (the validation kind)",
          {option_spec("that", "expression", true, "an expression or a list of expressions that must be true"),
           option_spec("message", "string", false, "added to the failure message")}),
      stage_assert));
  return {};
}

// metric, write_file, wait_for: what a run records, writes and waits for.
Status register_output_stages(StageRegistry& r) {
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage("metric", "records a metric",
                     {option_spec("name", "string", true, "metric name"),
                      option_spec("value", "expression", true,
                                  "the value: a string is an expression (as in `set`), others literals")},
                     {}, {"metric <name>"}),
      stage_metric));
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage("write_file", "writes or appends a line of text to a file",
                     {option_spec("path", "string", true, "file to write"),
                      option_spec("text", "string", true, "the text; ${...} allowed"),
                      option_spec("append", "boolean", false, "append instead of replacing", false),
                      option_spec("newline", "boolean", false, "end with a newline", true),
                      option_spec("sync", "boolean", false, "fsync before finishing", false)},
                     {}, {"artifact <stage>: {path}"}),
      stage_write_file));
  CRUCIBLE_RETURN_IF_ERROR(register_function_stage(
      r,
      describe_stage("wait_for", "parks the run until a durable promise is resolved (crucible signal)",
                     {option_spec("promise", "string", true, "the promise name"),
                      option_spec("timeout", "duration", false, "fail with deadline_exceeded after this long"),
                      option_spec("into", "string", false, "state key for the value (default: the promise name)")},
                     {}, {"state <into>"}),
      stage_wait_for));
  return {};
}

}  // namespace

Status register_builtin_stages(StageRegistry& r) {
  CRUCIBLE_RETURN_IF_ERROR(register_control_stages(r));
  return register_output_stages(r);
}

}  // namespace crucible
