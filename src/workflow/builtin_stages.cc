#include "crucible/workflow/builtin_stages.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>

#include "crucible/core/clock.h"
#include "crucible/workflow/compare_stage.h"
#include "crucible/workflow/expression.h"
#include "crucible/workflow/llm_stages.h"
#include "crucible/workflow/hedging_stage.h"
#include "crucible/workflow/http_stage.h"
#include "crucible/workflow/loader.h"

extern char** environ;

namespace crucible {
namespace {

using Fn = std::function<Status(Context&, const StageOptions&, std::stop_token)>;

StageDescription describe(std::string name, std::string summary, std::vector<OptionSpec> options,
                          std::vector<std::string> inputs = {}, std::vector<std::string> outputs = {},
                          bool idempotent = true) {
  StageDescription d;
  d.name = std::move(name);
  d.summary = std::move(summary);
  d.options = std::move(options);
  d.inputs = std::move(inputs);
  d.outputs = std::move(outputs);
  d.idempotent = idempotent;
  return d;
}

Result<std::chrono::milliseconds> duration_option(const StageOptions& o, std::string_view key) {
  const Json* v = o.get(key);
  if (v == nullptr) return make_error(ErrorCode::kInvalidArgument, "missing required option '" + std::string(key) + "'");
  if (v->is_number()) return std::chrono::milliseconds(static_cast<int64_t>(v->get<double>() * 1000));
  if (v->is_string()) {
    if (auto d = parse_duration(v->get<std::string>())) return *d;
  }
  return make_error(ErrorCode::kInvalidArgument, "option '" + std::string(key) +
                                                     "' must be a duration such as 30s or 5m, got " + v->dump());
}

Status stage_noop(Context&, const StageOptions&, std::stop_token) { return {}; }

Status stage_sleep(Context& ctx, const StageOptions& o, std::stop_token stop) {
  auto d = duration_option(o, "duration");
  if (!d) return tl::unexpected(d.error());
  Clock& clock = ctx.services() != nullptr ? ctx.services()->clock() : real_clock();
  int64_t wake_at = clock.now_ms() + d->count();
  // The wake-up time is journaled, so a resumed run waits only for what is left.
  if (StepServices* s = ctx.services()) {
    auto memo = s->memo("wake_at_ms", [&] { return Json(wake_at); });
    if (!memo) return tl::unexpected(memo.error());
    wake_at = memo->get<int64_t>();
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
    auto v = e->evaluate(ctx);
    if (!v) return tl::unexpected(v.error());
    ctx.assign(key, std::move(*v));
  }
  return {};
}

Status stage_assert(Context& ctx, const StageOptions& o, std::stop_token) {
  const Json* that = o.get("that");
  std::vector<std::string> checks;
  if (that != nullptr && that->is_string()) checks.push_back(that->get<std::string>());
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
    auto ok = e->evaluate_bool(ctx);
    if (!ok) return tl::unexpected(ok.error());
    if (!*ok) {
      std::string message = o.string_or("message", "");
      return make_error(ErrorCode::kFailedPrecondition,
                        "assertion failed: " + check + (message.empty() ? "" : " (" + message + ")"));
    }
  }
  return {};
}

Status stage_metric(Context& ctx, const StageOptions& o, std::stop_token) {
  auto name = o.string("name");
  if (!name) return tl::unexpected(name.error());
  const Json* value = o.get("value");
  if (value == nullptr) return make_error(ErrorCode::kInvalidArgument, "missing required option 'value'");
  ctx.put_metric(*name, *value);
  return {};
}

Status stage_write_file(Context& ctx, const StageOptions& o, std::stop_token) {
  auto path = o.string("path");
  if (!path) return tl::unexpected(path.error());
  auto text = o.string("text");
  if (!text) return tl::unexpected(text.error());
  bool append = o.boolean_or("append", false);
  int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
  if (fd < 0) return make_error(ErrorCode::kUnavailable, "cannot open '" + *path + "': " + std::strerror(errno));
  std::string data = *text;
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
  auto name = o.string("promise");
  if (!name) return tl::unexpected(name.error());
  StepServices* services = ctx.services();
  if (services == nullptr) return make_error(ErrorCode::kFailedPrecondition, "wait_for needs a durable runner");
  std::optional<int64_t> deadline;
  if (o.has("timeout")) {
    auto d = duration_option(o, "timeout");
    if (!d) return tl::unexpected(d.error());
    auto memo = services->memo("deadline_ms", [&] { return Json(services->clock().now_ms() + d->count()); });
    if (!memo) return tl::unexpected(memo.error());
    deadline = memo->get<int64_t>();
  }
  auto value = services->poll_promise(*name);
  if (!value) return tl::unexpected(value.error());
  if (value->has_value()) {
    ctx.assign(o.string_or("into", *name), **value);
    return {};
  }
  if (deadline && services->clock().now_ms() >= *deadline) {
    return make_error(ErrorCode::kDeadlineExceeded, "no value for promise '" + *name + "' before its timeout");
  }
  ctx.request_suspend(SuspendRequest{*name, deadline});
  return {};
}

// command --------------------------------------------------------------------------------------

struct Tail {
  explicit Tail(size_t max_lines) : max(max_lines) {}
  void feed(const char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (data[i] == '\n') {
        push();
      } else {
        partial.push_back(data[i]);
      }
    }
  }
  void push() {
    if (json_lines != nullptr && !partial.empty() && partial.front() == '{') {
      Json j = Json::parse(partial, nullptr, false);
      if (j.is_object()) json_lines->push_back(std::move(j));
    }
    lines.push_back(std::move(partial));
    partial.clear();
    while (lines.size() > max) lines.pop_front();
  }
  std::string text() {
    if (!partial.empty()) push();
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  size_t max;
  std::deque<std::string> lines;
  std::string partial;
  std::vector<Json>* json_lines = nullptr;  // collects every line that is a JSON object
};

class CommandStage : public Stage {
 public:
  StageDescription describe() const override {
    return crucible::describe(
        "command", "runs a program (argv, no shell); records its exit code and the tail of its output",
        {option_spec("argv", "array", true, "program and arguments, e.g. [python3, train.py, --lr, 0.1]"),
         option_spec("env", "object", false, "environment variables to add"),
         option_spec("cwd", "string", false, "working directory"),
         option_spec("timeout", "duration", false, "kill the process after this long"),
         option_spec("tail_lines", "integer", false, "lines of stdout/stderr to keep", 20),
         option_spec("retryable_exit_codes", "array", false, "exit codes reported as unavailable (retryable)"),
         option_spec("metrics_from_stdout", "boolean", false,
             "record the numbers of every stdout line that is a JSON object as metrics, e.g. {\"loss\": 0.3}", false)},
        {}, {"artifact <stage>: {exit_code, stdout_tail, stderr_tail}", "metric <stage>.exit_code",
             "metrics from stdout JSON lines (metrics_from_stdout)"});
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    const Json* argv_json = o.get("argv");
    if (argv_json == nullptr || !argv_json->is_array() || argv_json->empty()) {
      return make_error(ErrorCode::kInvalidArgument, "option 'argv' must be a non-empty list of strings");
    }
    std::vector<std::string> argv;
    for (const Json& a : *argv_json) argv.push_back(a.is_string() ? a.get<std::string>() : a.dump());
    std::optional<std::chrono::milliseconds> timeout;
    if (o.has("timeout")) {
      auto d = duration_option(o, "timeout");
      if (!d) return tl::unexpected(d.error());
      timeout = *d;
    }
    size_t tail_lines = static_cast<size_t>(std::max<int64_t>(1, o.integer_or("tail_lines", 20)));

    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
      return make_error(ErrorCode::kResourceExhausted, std::string("pipe: ") + std::strerror(errno));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    std::string cwd = o.string_or("cwd", "");
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);

    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    if (const Json* env = o.get("env"); env != nullptr && env->is_object()) {
      for (const auto& [k, v] : env->items()) {
        std::string entry = k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
        std::erase_if(env_storage, [&](const std::string& s) { return s.rfind(k + "=", 0) == 0; });
        env_storage.push_back(entry);
      }
    }
    std::vector<char*> envp, args;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);

    pid_t pid = 0;
    int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (rc != 0) {
      ::close(out_pipe[0]);
      ::close(err_pipe[0]);
      if (rc == ENOENT) {
        return make_error(ErrorCode::kNotFound, "program '" + argv[0] + "' not found" +
                                                    (argv[0].find('/') == std::string::npos ? " on PATH" : ""));
      }
      if (rc == EACCES) return make_error(ErrorCode::kPermissionDenied, "program '" + argv[0] + "' is not executable");
      return make_error(ErrorCode::kInternal, "cannot start '" + argv[0] + "': " + std::strerror(rc));
    }
    return wait_child(ctx, o, pid, out_pipe[0], err_pipe[0], argv, timeout, tail_lines, stop);
  }

 private:
  static Status wait_child(Context& ctx, const StageOptions& o, pid_t pid, int out_fd, int err_fd,
                           const std::vector<std::string>& argv, std::optional<std::chrono::milliseconds> timeout,
                           size_t tail_lines, std::stop_token stop) {
    Tail out(tail_lines), err(tail_lines);
    std::vector<Json> json_lines;
    if (o.boolean_or("metrics_from_stdout", false)) out.json_lines = &json_lines;
    auto start = std::chrono::steady_clock::now();
    bool killed = false, timed_out = false;
    std::chrono::steady_clock::time_point term_sent;
    int open_fds = 2;
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    char buf[4096];
    while (open_fds > 0) {
      int ready = ::poll(fds, 2, 50);
      if (ready > 0) {
        for (int i = 0; i < 2; ++i) {
          if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
          if (n > 0) {
            (i == 0 ? out : err).feed(buf, static_cast<size_t>(n));
          } else if (n == 0 || errno != EINTR) {
            ::close(fds[i].fd);
            fds[i].fd = -1;
            --open_fds;
          }
        }
      }
      auto now = std::chrono::steady_clock::now();
      bool expired = timeout && now - start >= *timeout;
      if (!killed && (stop.stop_requested() || expired)) {
        timed_out = expired && !stop.stop_requested();
        ::kill(-pid, SIGTERM);
        killed = true;
        term_sent = now;
      } else if (killed && now - term_sent > std::chrono::seconds(2)) {
        ::kill(-pid, SIGKILL);
      }
    }
    for (int fd : {out_fd, err_fd}) (void)fd;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string err_tail = err.text();
    const std::string& stage = ctx.current_stage().empty() ? std::string("command") : ctx.current_stage();
    if (killed && stop.stop_requested()) return make_error(ErrorCode::kCancelled, "'" + argv[0] + "' was stopped");
    if (timed_out) {
      return make_error(ErrorCode::kDeadlineExceeded, "'" + argv[0] + "' ran past its timeout of " +
                                                          std::to_string(timeout->count()) + " ms and was killed");
    }
    ctx.put_artifact(stage, Json{{"argv", argv}, {"exit_code", exit_code}, {"stdout_tail", out.text()},
                                 {"stderr_tail", err_tail}, {"duration_ms", ms}});
    ctx.put_metric(stage + ".exit_code", exit_code);
    for (const Json& line : json_lines) {
      for (const auto& [k, v] : line.items()) {
        if (v.is_number() || v.is_boolean()) ctx.put_metric(k, v);
      }
    }
    if (exit_code == 0) return {};
    std::string message = "'" + argv[0] + "' exited with code " + std::to_string(exit_code);
    if (!err_tail.empty()) message += "; stderr: " + err_tail.substr(err_tail.size() > 500 ? err_tail.size() - 500 : 0);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (!WIFEXITED(status)) return make_error(ErrorCode::kUnavailable, message);
    if (const Json* codes = o.get("retryable_exit_codes"); codes != nullptr && codes->is_array()) {
      for (const Json& c : *codes) {
        if (c.is_number_integer() && c.get<int>() == exit_code) return make_error(ErrorCode::kUnavailable, message);
      }
    }
    return make_error(ErrorCode::kFailedPrecondition, message);
  }
};

struct Builtin {
  const char* name;
  StageDescription (*describe)();
  Fn fn;
};

std::unique_ptr<Stage> make(StageDescription d, Fn fn) { return make_function_stage(std::move(d), std::move(fn)); }

}  // namespace

std::unique_ptr<Stage> make_command_stage() { return std::make_unique<CommandStage>(); }

Status register_builtin_stages(StageRegistry& r) {
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("noop", [] {
    return make(describe("noop", "does nothing; a placeholder and a benchmark baseline", {}), stage_noop);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("sleep", [] {
    return make(describe("sleep", "waits for a duration; durable: after a crash only the rest is waited",
                         {option_spec("duration", "duration", true, "how long, e.g. 250ms, 5s, 1h")}),
                stage_sleep);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("set", [] {
    return make(describe("set", "assigns state from expressions: each option is key: expression",
                         {option_spec("*", "expression", false, "any key; a string value is an expression, others are literals")},
                         {"config, metrics, state, artifacts, item, index"}, {"state <key>"}),
                stage_set);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("assert", [] {
    return make(describe("assert", "fails unless every condition holds (the validation kind)",
                         {option_spec("that", "expression", true, "an expression or a list of expressions that must be true"),
                          option_spec("message", "string", false, "added to the failure message")}),
                stage_assert);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("metric", [] {
    return make(describe("metric", "records a metric",
                         {option_spec("name", "string", true, "metric name"), option_spec("value", "any", true, "the value; ${...} allowed")},
                         {}, {"metric <name>"}),
                stage_metric);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("write_file", [] {
    return make(describe("write_file", "writes or appends a line of text to a file",
                         {option_spec("path", "string", true, "file to write"), option_spec("text", "string", true, "the text; ${...} allowed"),
                          option_spec("append", "boolean", false, "append instead of replacing", false),
                          option_spec("newline", "boolean", false, "end with a newline", true),
                          option_spec("sync", "boolean", false, "fsync before finishing", false)},
                         {}, {"artifact <stage>: {path}"}),
                stage_write_file);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("wait_for", [] {
    return make(describe("wait_for", "parks the run until a durable promise is resolved (crucible signal)",
                         {option_spec("promise", "string", true, "the promise name"),
                          option_spec("timeout", "duration", false, "fail with deadline_exceeded after this long"),
                          option_spec("into", "string", false, "state key for the value (default: the promise name)")},
                         {}, {"state <into>"}),
                stage_wait_for);
  }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("command", [] { return make_command_stage(); }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("http.request", [] { return make_http_request_stage(); }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("compare", [] { return make_compare_stage(); }));
  CRUCIBLE_RETURN_IF_ERROR(register_llm_stages(r));
  StageResolver resolve = r.resolver();
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("hedging", [resolve] { return make_hedging_stage(resolve); }));
  return {};
}

StageRegistry builtin_registry() {
  StageRegistry r;
  Status s = register_builtin_stages(r);
  CRUCIBLE_CHECK(s.has_value());
  return r;
}

}  // namespace crucible
