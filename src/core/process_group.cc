#include "crucible/core/process_group.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

namespace crucible {
namespace {

// The parent-death signal the supervisor waits for; blocked, so it is only ever taken by
// sigwaitinfo.
constexpr int kParentDied = SIGHUP;

struct ProcStat {
  char state = '?';
  int64_t pgrp = 0;
  uint64_t start_ticks = 0;
};

// Fields 3 ("state") onwards of /proc/<pid>/stat come after the command name's closing
// parenthesis; the name itself may hold spaces and parentheses.
std::optional<ProcStat> read_stat(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  if (f.size() < 20) return std::nullopt;
  ProcStat st;
  st.state = f[0].empty() ? '?' : f[0][0];
  st.pgrp = std::strtoll(f[2].c_str(), nullptr, 10);
  st.start_ticks = std::strtoull(f[19].c_str(), nullptr, 10);
  return st;
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// The live members of `group`: same boot, same group, started no earlier than its leader.
std::vector<pid_t> members(const ProcessGroupRef& group) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(e->d_name, e->d_name + std::strlen(e->d_name), pid);
    if (ec != std::errc() || *end != '\0') continue;
    auto st = read_stat(e->d_name);
    if (st && st->state != 'Z' && st->state != 'X' && st->pgrp == group.pgid && st->start_ticks >= group.start_ticks) {
      out.push_back(pid);
    }
  }
  ::closedir(proc);
  return out;
}

// What follows runs only in forked children, which end in exec or _exit: gcov never writes their
// counters, so coverage leaves it out. process_group_test runs all of it.
// GCOVR_EXCL_START
// The program's side of the supervisor's second fork: only async-signal-safe calls from here on.
// Its descriptors are already in place: 0 to 2 and the status pipe, which closes on exec.
[[noreturn]] void exec_child(const ChildSpec& spec, char* const* argv, char* const* envp, pid_t supervisor,
                             int status_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) ::_exit(127);
  for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGCHLD}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (spec.cwd.empty() || ::chdir(spec.cwd.c_str()) == 0) ::execve(spec.path.c_str(), argv, envp);
  int err = errno;
  (void)!::write(status_fd, &err, sizeof(err));
  ::_exit(127);
}

// Puts the child's stdin (/dev/null), stdout and stderr on 0 to 2 and the status pipe on 3, and
// closes everything else this process had open (journal files, other stages' pipes), which the
// supervisor would otherwise hold open. Returns the status descriptor, or -1.
int arrange_descriptors(const ChildSpec& spec, int status_fd) {
  int s = ::fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
  int o = ::fcntl(spec.stdout_fd, F_DUPFD, 10);
  int e = ::fcntl(spec.stderr_fd, F_DUPFD, 10);
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (s < 0 || o < 0 || e < 0 || null_fd < 0) return -1;
  if (::dup2(null_fd, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0 || ::dup2(s, 3) < 0) return -1;
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  if (::close_range(4, ~0U, 0) != 0) {
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  }
  return 3;
}

// The supervisor: leads the group, starts the program, exits as it does, and kills the group
// when crucible dies. Only async-signal-safe calls: this is a child of a threaded process.
[[noreturn]] void supervise(const ChildSpec& spec, char* const* argv, char* const* envp, pid_t crucible,
                            int status_fd) {
  sigset_t waited;
  sigemptyset(&waited);
  for (int sig : {SIGCHLD, kParentDied, SIGINT, SIGTERM}) sigaddset(&waited, sig);
  ::sigprocmask(SIG_SETMASK, &waited, nullptr);
  ::prctl(PR_SET_PDEATHSIG, kParentDied);
  if (::getppid() != crucible) ::_exit(127);  // crucible died before the signal was armed
  if (int arranged = arrange_descriptors(spec, status_fd); arranged >= 0) {
    status_fd = arranged;
  } else {
    int err = errno;
    (void)!::write(status_fd, &err, sizeof(err));
    ::_exit(127);
  }
  pid_t self = ::getpid();
  pid_t program = ::fork();
  if (program == 0) exec_child(spec, argv, envp, self, status_fd);
  ::close(status_fd);
  if (program < 0) ::_exit(127);
  for (;;) {
    siginfo_t info;
    if (::sigwaitinfo(&waited, &info) < 0) continue;
    if (info.si_signo == kParentDied && ::getppid() != crucible) ::kill(0, SIGKILL);
    if (info.si_signo != SIGCHLD) continue;  // SIGINT and SIGTERM are the program's to handle
    int status = 0;
    if (::waitpid(program, &status, WNOHANG) != program) continue;
    if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    ::signal(sig, SIG_DFL);
    sigset_t just;
    sigemptyset(&just);
    sigaddset(&just, sig);
    ::sigprocmask(SIG_UNBLOCK, &just, nullptr);
    ::kill(self, sig);
    ::_exit(128 + sig);
  }
}

// GCOVR_EXCL_STOP

Error spawn_error(int err, const std::string& program) {
  if (err == ENOENT) return Error(ErrorCode::kNotFound, "program '" + program + "' not found");
  if (err == EACCES) return Error(ErrorCode::kPermissionDenied, "program '" + program + "' is not executable");
  return Error(ErrorCode::kInternal, "cannot start '" + program + "': " + std::strerror(err));
}

}  // namespace

Json ProcessGroupRef::to_json() const {
  return Json{{"pgid", pgid}, {"start_ticks", start_ticks}, {"boot_id", boot_id}};
}

Result<ProcessGroupRef> ProcessGroupRef::from_json(const Json& json) {
  const Json* pgid = json_member(json, "pgid");
  const Json* ticks = json_member(json, "start_ticks");
  if (pgid == nullptr || !pgid->is_number_integer() || pgid->get<int64_t>() <= 1 || ticks == nullptr ||
      !ticks->is_number_unsigned()) {
    return make_error(ErrorCode::kDataLoss, "process group: expected {pgid: integer > 1, start_ticks: unsigned}");
  }
  return ProcessGroupRef{pgid->get<int64_t>(), ticks->get<uint64_t>(), json_string(json, "boot_id")};
}

Result<ProcessGroupRef> describe_process_group(pid_t leader) {
  auto st = read_stat(std::to_string(leader));
  if (!st || st->state == 'Z') {
    return make_error(ErrorCode::kNotFound, "process " + std::to_string(leader) + " is not running");
  }
  return ProcessGroupRef{st->pgrp, st->start_ticks, boot_id()};
}

Result<int> stop_process_group(const ProcessGroupRef& group, std::chrono::milliseconds wait) {
  if (group.pgid <= 1 || group.boot_id != boot_id()) return 0;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  int killed = 0;
  for (std::vector<pid_t> live = members(group); !live.empty(); live = members(group)) {
    for (pid_t pid : live) {
      if (::kill(pid, SIGKILL) == 0) {
        ++killed;
      } else if (errno == EPERM) {
        return make_error(ErrorCode::kPermissionDenied,
                          "cannot stop process " + std::to_string(pid) + " of group " + std::to_string(group.pgid));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return make_error(ErrorCode::kDeadlineExceeded, "process group " + std::to_string(group.pgid) + " still has " +
                                                          std::to_string(live.size()) + " processes after SIGKILL");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return killed;
}

Result<std::string> resolve_program(const std::string& name, const std::string& path_var, const std::string& cwd) {
  if (name.empty()) return make_error(ErrorCode::kInvalidArgument, "program name is empty");
  auto usable = [](const std::string& p) -> int {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return ENOENT;
    if (!S_ISREG(st.st_mode) || ::access(p.c_str(), X_OK) != 0) return EACCES;
    return 0;
  };
  if (name.find('/') != std::string::npos) {
    std::string at = name.front() == '/' || cwd.empty() ? name : cwd + "/" + name;
    if (int err = usable(at); err != 0) return make_error(spawn_error(err, name));
    return name;  // the child changes to cwd first
  }
  int first_error = ENOENT;
  std::istringstream dirs(path_var.empty() ? std::string("/usr/local/bin:/usr/bin:/bin") : path_var);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    int err = usable(candidate);
    if (err == 0) return candidate;
    if (err == EACCES) first_error = EACCES;
  }
  Error e = spawn_error(first_error, name);
  return make_error(first_error == ENOENT ? Error(e.code(), e.message() + " on PATH") : e);
}

Result<pid_t> spawn_supervised(const ChildSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorCode::kInvalidArgument, "argv is empty");
  // Everything the children touch is built before fork: after it they may not allocate.
  std::vector<std::string> argv_store = spec.argv, env_store = spec.env;
  std::vector<char*> argv, envp;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return make_error(ErrorCode::kResourceExhausted, std::string("pipe: ") + std::strerror(errno));
  }
  const pid_t crucible = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {  // GCOVR_EXCL_START: the child, see above
    ::close(status_pipe[0]);
    ::setpgid(0, 0);
    supervise(spec, argv.data(), envp.data(), crucible, status_pipe[1]);
  }  // GCOVR_EXCL_STOP
  ::close(status_pipe[1]);
  if (pid < 0) {
    ::close(status_pipe[0]);
    return make_error(ErrorCode::kResourceExhausted, std::string("fork: ") + std::strerror(errno));
  }
  ::setpgid(pid, pid);  // also here, so the group exists before anyone signals it
  int err = 0;
  ssize_t n;
  while ((n = ::read(status_pipe[0], &err, sizeof(err))) < 0 && errno == EINTR) {
  }
  ::close(status_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(err))) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return make_error(spawn_error(err, spec.argv[0]));
  }
  return pid;
}

}  // namespace crucible
