#include "crucible/core/process_group.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace crucible {
namespace {

namespace fs = std::filesystem;

bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  return line.find(") Z ") == std::string::npos;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

int exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

ChildSpec shell(const std::string& script) {
  auto sh = resolve_program("sh", std::getenv("PATH") ? std::getenv("PATH") : "", "");
  EXPECT_TRUE(sh);
  return ChildSpec{*sh, {"sh", "-c", script}, {"PATH=/usr/bin:/bin"}, "", 1, 2};
}

class ProcessGroup : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("crucible-pgroup-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  pid_t read_pid(const std::string& name) {
    pid_t pid = 0;
    EXPECT_TRUE(wait_until([&] {
      std::ifstream in(dir_ / name);
      return static_cast<bool>(in >> pid);
    }));
    return pid;
  }
  fs::path dir_;
};

TEST_F(ProcessGroup, TheSupervisorExitsAsTheProgramDoes) {
  auto ok = spawn_supervised(shell("exit 0"));
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(exit_code(*ok), 0);
  auto three = spawn_supervised(shell("exit 3"));
  ASSERT_TRUE(three);
  EXPECT_EQ(exit_code(*three), 3);
  auto killed = spawn_supervised(shell("kill -TERM $$"));
  ASSERT_TRUE(killed);
  EXPECT_EQ(exit_code(*killed), 128 + SIGTERM);
}

TEST_F(ProcessGroup, ResolvesProgramsAndNamesTheMissingOnes) {
  auto sh = resolve_program("sh", "/nonexistent:/usr/bin:/bin", "");
  ASSERT_TRUE(sh);
  EXPECT_TRUE(sh->ends_with("/sh"));
  auto missing = resolve_program("no-such-program-xyz", "/usr/bin:/bin", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("'no-such-program-xyz' not found on PATH"), std::string::npos);
  std::ofstream(dir_ / "script.sh") << "#!/bin/sh\n";
  auto not_exec = resolve_program("./script.sh", "", dir_.string());
  ASSERT_FALSE(not_exec);
  EXPECT_EQ(not_exec.error().code(), ErrorCode::kPermissionDenied);
  fs::permissions(dir_ / "script.sh", fs::perms::owner_all);
  EXPECT_TRUE(resolve_program("./script.sh", "", dir_.string()));
  EXPECT_FALSE(resolve_program("", "/bin", ""));
}

TEST_F(ProcessGroup, AFailedExecIsReportedNotRun) {
  ChildSpec spec = shell("true");
  spec.cwd = (dir_ / "missing").string();
  auto pid = spawn_supervised(spec);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code(), ErrorCode::kNotFound);
}

TEST_F(ProcessGroup, TheChildKeepsNoOtherDescriptors) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // inheritable on purpose
  auto pid = spawn_supervised(shell("ls /proc/self/fd > " + (dir_ / "fds").string()));
  ASSERT_TRUE(pid);
  EXPECT_EQ(exit_code(*pid), 0);
  std::ifstream in(dir_ / "fds");
  int count = 0;
  for (std::string fd; in >> fd;) ++count;
  EXPECT_EQ(count, 4);  // 0, 1, 2 and the directory ls reads
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_F(ProcessGroup, StopsEveryMemberOfTheGroupAndOnlyThem) {
  auto pid = spawn_supervised(shell("sleep 60 & echo $! > " + (dir_ / "bg").string() + "; sleep 60"));
  ASSERT_TRUE(pid);
  pid_t background = read_pid("bg");
  auto group = describe_process_group(*pid);
  ASSERT_TRUE(group) << group.error().to_string();
  EXPECT_EQ(group->pgid, *pid);
  auto round = ProcessGroupRef::from_json(group->to_json());
  ASSERT_TRUE(round);
  EXPECT_EQ(round->start_ticks, group->start_ticks);
  // A group whose leader started later is another group that reuses the id: left alone.
  ProcessGroupRef reused = *group;
  reused.start_ticks += 1'000'000'000;
  EXPECT_EQ(*stop_process_group(reused), 0);
  ProcessGroupRef other_boot = *group;
  other_boot.boot_id = "another boot";
  EXPECT_EQ(*stop_process_group(other_boot), 0);
  EXPECT_TRUE(alive(background));
  auto stopped = stop_process_group(*group);
  ASSERT_TRUE(stopped) << stopped.error().to_string();
  EXPECT_GE(*stopped, 3);  // the supervisor, sh and both sleeps
  EXPECT_FALSE(alive(background));
  EXPECT_EQ(exit_code(*pid), 128 + SIGKILL);
  EXPECT_EQ(*stop_process_group(*group), 0);
  EXPECT_FALSE(ProcessGroupRef::from_json(Json{{"pgid", 1}, {"start_ticks", 5}}));
  EXPECT_FALSE(ProcessGroupRef::from_json(Json("x")));
  EXPECT_FALSE(describe_process_group(*pid));
}

// The supervisor's reason to be: when the process that started it dies, even by SIGKILL, the
// whole group goes with it.
TEST_F(ProcessGroup, TheGroupDiesWithTheProcessThatStartedIt) {
  std::string bg = (dir_ / "bg").string(), fg = (dir_ / "fg").string();
  pid_t middle = ::fork();
  if (middle == 0) {
    auto pid = spawn_supervised(shell("sleep 60 & echo $! > " + bg + "; echo $$ > " + fg + "; sleep 60"));
    if (!pid) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(middle, 0);
  pid_t background = read_pid("bg"), program = read_pid("fg");
  EXPECT_TRUE(alive(background));
  ::kill(middle, SIGKILL);
  EXPECT_EQ(exit_code(middle), 128 + SIGKILL);
  EXPECT_TRUE(wait_until([&] { return !alive(background) && !alive(program); }));
}

}  // namespace
}  // namespace crucible
