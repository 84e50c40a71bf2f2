// Child process groups that never outlive the crucible process that started them, and that a
// later resume can find and stop: a group is named by its leader's pid, start time and boot, so a
// recycled pid is never mistaken for it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// A process group as journaled in a step's intent: {pgid, start_ticks, boot_id}.
struct ProcessGroupRef {
  int64_t pgid = 0;
  uint64_t start_ticks = 0;  // the leader's start time, clock ticks since boot (/proc/<pid>/stat)
  std::string boot_id;       // /proc/sys/kernel/random/boot_id: a reboot ends every group

  Json to_json() const;
  [[nodiscard]] static Result<ProcessGroupRef> from_json(const Json& json);
};

// The group led by `leader`, which must be alive. kNotFound when it is not.
[[nodiscard]] Result<ProcessGroupRef> describe_process_group(pid_t leader);

// Kills (SIGKILL) every live process of `group` started no earlier than its leader on the same
// boot, and waits up to `wait` for them to go. Returns how many were killed; a group that is
// already gone is 0. kPermissionDenied when one cannot be killed, kDeadlineExceeded when one
// survives `wait`.
[[nodiscard]] Result<int> stop_process_group(const ProcessGroupRef& group,
                                             std::chrono::milliseconds wait = std::chrono::seconds(5));

// What a supervised child runs: a program resolved by resolve_program, its argv and environment
// ("KEY=value" entries), a working directory (empty: this one), and the descriptors that become
// its stdout and stderr; stdin is /dev/null.
struct ChildSpec {
  std::string path;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  int stdout_fd = 1;
  int stderr_fd = 2;
};

// The program `name` would run as: itself when it names a path (relative to `cwd` when given),
// else the first executable match on `path_var` (a PATH value). kNotFound or kPermissionDenied
// name the program.
[[nodiscard]] Result<std::string> resolve_program(const std::string& name, const std::string& path_var,
                                                  const std::string& cwd);

// Starts `spec` under a supervisor that leads a new process group: when this process dies, even
// by SIGKILL, the supervisor kills the whole group. The supervisor exits as the program does
// (its exit code, or by its signal), so the returned pid is waited for like the program itself,
// and -pid signals the group. The thread that calls this must outlive the child (Linux ties the
// parent-death signal to the thread), as a thread that waits for its child does.
[[nodiscard]] Result<pid_t> spawn_supervised(const ChildSpec& spec);

}  // namespace crucible
