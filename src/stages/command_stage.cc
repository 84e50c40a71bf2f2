#include "crucible/stages/command_stage.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>

#include "crucible/core/process_group.h"

extern char** environ;

namespace crucible {
namespace {

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
      Json j = parse_json_or_discarded(partial);
      if (j.is_object()) json_lines->push_back(std::move(j));
    }
    lines.push_back(valid_utf8(partial));  // program output may be binary
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
    return describe_stage(
        "command", "runs a program (argv, no shell); records its exit code and the tail of its output",
        {option_spec("argv", "array", true, "program and arguments, e.g. [python3, train.py, --lr, 0.1]"),
         option_spec("env", "object", false, "environment variables to add"),
         option_spec("cwd", "string", false, "working directory"),
         option_spec("timeout", "duration", false, "kill the process after this long"),
         option_spec("tail_lines", "integer", false, "lines of stdout/stderr to keep", 20),
         option_spec("retryable_exit_codes", "array", false, "exit codes reported as unavailable (retryable)"),
         option_spec("metrics_from_stdout", "boolean", false,
                     "record the numbers of every stdout line that is a JSON object as metrics, e.g. {\"loss\": 0.3}",
                     false)},
        {},
        {"artifact <stage>: {exit_code, stdout_tail, stderr_tail}", "metric <stage>.exit_code",
         "metrics from stdout JSON lines (metrics_from_stdout)"});
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    const Json* argv_json = o.get("argv");
    if (argv_json == nullptr || !argv_json->is_array() || argv_json->empty()) {
      return make_error(ErrorCode::kInvalidArgument, "option 'argv' must be a non-empty list of strings");
    }
    std::vector<std::string> argv;
    for (const Json& a : *argv_json) argv.push_back(a.is_string() ? a.get<std::string>() : json_dump(a));
    if (const Json* env = o.get("env"); env != nullptr) {
      if (!env->is_object()) return make_error(ErrorCode::kInvalidArgument, "option 'env' must be a mapping");
      for (const auto& [k, v] : env->items()) {
        if (k.empty() || k.find('=') != std::string::npos) {
          return make_error(ErrorCode::kInvalidArgument, "option 'env': '" + k + "' is not a variable name");
        }
        if (!v.is_string()) {
          return make_error(ErrorCode::kInvalidArgument, "option 'env." + k + "' must be a string, found " +
                                                             json_type_name(v) + " " + json_dump(v) + " (quote it)");
        }
      }
    }
    std::optional<std::chrono::milliseconds> timeout;
    if (o.has("timeout")) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto d, o.duration("timeout"));
      timeout = d;
    }
    size_t tail_lines = static_cast<size_t>(std::max<int64_t>(1, o.integer_or("tail_lines", 20)));

    if (std::string cwd = o.string_or("cwd", ""); !cwd.empty()) {
      std::error_code ec;
      if (!std::filesystem::is_directory(cwd, ec)) {
        return make_error(ErrorCode::kInvalidArgument, "option 'cwd': '" + cwd + "' is not a directory");
      }
    }
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
      return make_error(ErrorCode::kResourceExhausted, std::string("pipe: ") + std::strerror(errno));
    }
    auto pid = spawn(argv, o.string_or("cwd", ""), environment(o), out_pipe[1], err_pipe[1]);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (!pid) {
      ::close(out_pipe[0]);
      ::close(err_pipe[0]);
      return make_error(pid.error());
    }
    if (Status held = hold(ctx, *pid); !held) {
      ::kill(-*pid, SIGKILL);
      ::close(out_pipe[0]);
      ::close(err_pipe[0]);
      while (::waitpid(*pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return held;
    }
    return wait_child(ctx, o, *pid, out_pipe[0], err_pipe[0], argv, timeout, tail_lines, stop);
  }

 private:
  // This process's environment with the `env` option's variables added or replaced.
  static std::vector<std::string> environment(const StageOptions& o) {
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    if (const Json* env = o.get("env"); env != nullptr && env->is_object()) {
      for (const auto& [k, v] : env->items()) {
        const std::string prefix = k + "=";
        std::string entry = prefix + v.get<std::string>();  // checked by run()
        std::erase_if(env_storage, [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
        env_storage.push_back(entry);
      }
    }
    return env_storage;
  }

  // Starts argv[0] (from the child's PATH) under a supervisor that leads its own process group
  // and kills the group if crucible dies; stdin from /dev/null, stdout and stderr to the pipe ends.
  static Result<pid_t> spawn(std::vector<std::string> argv, const std::string& cwd, std::vector<std::string> env,
                             int out_fd, int err_fd) {
    std::string path_var;
    for (const std::string& e : env) {
      if (e.rfind("PATH=", 0) == 0) path_var = e.substr(5);
    }
    CRUCIBLE_ASSIGN_OR_RETURN(std::string program, resolve_program(argv[0], path_var, cwd));
    return spawn_supervised(ChildSpec{std::move(program), std::move(argv), std::move(env), cwd, out_fd, err_fd});
  }

  // Journals the child's process group in the step's intent, so that a resume after crucible
  // died stops whatever of it is left before running the step again.
  static Status hold(Context& ctx, pid_t pid) {
    StageServices* services = ctx.services();
    if (services == nullptr) return {};
    auto group = describe_process_group(pid);
    if (!group) return {};  // already gone: nothing can be left over
    return services->hold_process_group(group->to_json());
  }

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
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string err_tail = err.text();
    const std::string& stage = ctx.current_stage().empty() ? std::string("command") : ctx.current_stage();
    if (killed && stop.stop_requested()) return make_error(ErrorCode::kCancelled, "'" + argv[0] + "' was stopped");
    if (timed_out) {
      return make_error(ErrorCode::kDeadlineExceeded, "'" + argv[0] + "' ran past its timeout of " +
                                                          std::to_string(timeout->count()) + " ms and was killed");
    }
    ctx.put_artifact(stage, Json{{"argv", argv},
                                 {"exit_code", exit_code},
                                 {"stdout_tail", out.text()},
                                 {"stderr_tail", err_tail},
                                 {"duration_ms", ms}});
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
    // Not a retryable code, but a program may well pass on another run: a stage with `retry:`
    // (and no `retry.on` narrowing it) runs it again.
    return make_error(Error(ErrorCode::kFailedPrecondition, message).with_transient());
  }
};

}  // namespace

std::unique_ptr<Stage> make_command_stage() { return std::make_unique<CommandStage>(); }

Status register_command_stage(StageRegistry& registry) {
  return registry.register_stage("command", [] { return make_command_stage(); });
}

}  // namespace crucible
