// Child processes for tests and benchmarks: start a program with its output in files, wait for
// it, and read what it wrote.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace crucible::testing {

struct Child {
  pid_t pid = -1;  // -1: it could not be started
  std::string out_path;
  std::string err_path;
};

// Starts `program` with `args`, stdin from /dev/null, stdout and stderr into the two files, in
// `cwd` when it is not empty.
inline Child spawn_program(const std::string& program, const std::vector<std::string>& args,
                           const std::string& out_path, const std::string& err_path, const std::string& cwd = "") {
  std::vector<std::string> argv = {program};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  Child c;
  c.out_path = out_path;
  c.err_path = err_path;
  if (posix_spawn(&c.pid, cargs[0], &actions, nullptr, cargs.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return c;
}

// Waits for the child; returns its exit code, or 128 + signal.
inline int wait_child(const Child& c) {
  int status = 0;
  while (waitpid(c.pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Whether `pid` is a live process (not gone, not a zombie).
inline bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  return line.find(") Z ") == std::string::npos;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// The non-empty lines of a file (an oracle the stages append to).
inline std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace crucible::testing
