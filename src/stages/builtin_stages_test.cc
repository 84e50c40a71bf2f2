#include "crucible/stages/library.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace crucible {
namespace {

using namespace std::chrono_literals;

class BuiltinStages : public ::testing::Test {
 protected:
  Status run(const std::string& type, Json options, std::stop_token stop = {}) {
    auto stage = registry_.create(type);
    EXPECT_TRUE(stage);
    ctx_.set_current(&name_, &key_);
    Status s = (*stage)->run(ctx_, StageOptions(std::move(options)), stop);
    ctx_.set_current(nullptr, nullptr);
    return s;
  }

  StageRegistry registry_ = builtin_registry();
  Context ctx_{"exp", *RunId::parse("r"), Json{{"n", 2}}};
  std::string name_ = "step";
  std::string key_ = "/step";
};

TEST_F(BuiltinStages, RegistersTheDocumentedSet) {
  EXPECT_EQ(registry_.names(), (std::vector<std::string>{"assert", "command", "compare", "hedging", "http.request",
                                                         "llm.complete", "llm.critique", "llm.revise", "metric", "noop",
                                                         "set", "sleep", "wait_for", "write_file"}));
  for (const std::string& name : registry_.names()) {
    auto d = registry_.describe(name);
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->summary.empty()) << name;
  }
}

TEST_F(BuiltinStages, CommandRecordsExitCodeAndOutputTail) {
  ASSERT_TRUE(run("command", Json{{"argv", {"sh", "-c", "echo one; echo two; echo err >&2"}}}));
  const Json* a = ctx_.get_artifact("step");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ((*a)["exit_code"], 0);
  EXPECT_EQ((*a)["stdout_tail"], "one\ntwo\n");
  EXPECT_EQ((*a)["stderr_tail"], "err\n");
  EXPECT_EQ(*ctx_.get_metric("step.exit_code"), 0);
}

TEST_F(BuiltinStages, CommandKeepsOnlyTheTail) {
  ASSERT_TRUE(run("command", Json{{"argv", {"sh", "-c", "for i in 1 2 3 4 5; do echo $i; done"}}, {"tail_lines", 2}}));
  EXPECT_EQ((*ctx_.get_artifact("step"))["stdout_tail"], "4\n5\n");
}

TEST_F(BuiltinStages, CommandFailureCarriesExitCodeAndStderr) {
  Status s = run("command", Json{{"argv", {"sh", "-c", "echo broken >&2; exit 3"}}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(s.error().message().find("exited with code 3"), std::string::npos);
  EXPECT_NE(s.error().message().find("broken"), std::string::npos);
  Status retryable = run("command", Json{{"argv", {"sh", "-c", "exit 75"}}, {"retryable_exit_codes", {75}}});
  EXPECT_EQ(retryable.error().code(), ErrorCode::kUnavailable);
}

TEST_F(BuiltinStages, MissingProgramIsNotFound) {
  Status s = run("command", Json{{"argv", {"definitely-not-a-program-xyz"}}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(s.error().message().find("not found on PATH"), std::string::npos);
}

TEST_F(BuiltinStages, CommandUsesEnvAndCwdWithoutAShell) {
  std::string dir = ::testing::TempDir();
  ASSERT_TRUE(
      run("command", Json{{"argv", {"sh", "-c", "echo $GREETING; pwd"}}, {"env", {{"GREETING", "hi"}}}, {"cwd", dir}}));
  std::string out = (*ctx_.get_artifact("step"))["stdout_tail"];
  EXPECT_EQ(out.substr(0, 3), "hi\n");
  EXPECT_NE(out.find(std::filesystem::canonical(dir).string()), std::string::npos);
  // No shell: metacharacters are plain arguments.
  ASSERT_TRUE(run("command", Json{{"argv", {"echo", "$HOME; rm -rf /"}}}));
  EXPECT_EQ((*ctx_.get_artifact("step"))["stdout_tail"], "$HOME; rm -rf /\n");
}

TEST_F(BuiltinStages, CommandTimeoutKillsTheProcess) {
  auto t0 = std::chrono::steady_clock::now();
  Status s = run("command", Json{{"argv", {"sleep", "30"}}, {"timeout", "100ms"}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST_F(BuiltinStages, StoppingACommandKillsItAndIsCancelled) {
  std::stop_source source;
  std::jthread stopper([&] {
    std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  Status s = run("command", Json{{"argv", {"sleep", "30"}}}, source.get_token());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kCancelled);
}

TEST_F(BuiltinStages, SetEvaluatesExpressionsAndKeepsLiterals) {
  ASSERT_TRUE(run("set", Json{{"double", "config.n * 2"}, {"label", "'x'"}, {"raw", 5}}));
  EXPECT_EQ(*ctx_.get("double"), 4);
  EXPECT_EQ(*ctx_.get("label"), "x");
  EXPECT_EQ(*ctx_.get("raw"), 5);
  Status bad = run("set", Json{{"oops", "config.n +"}});
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(BuiltinStages, AssertFailsWithTheConditionThatDidNotHold) {
  EXPECT_TRUE(run("assert", Json{{"that", {"config.n == 2", "config.n > 1"}}}));
  Status s = run("assert", Json{{"that", "config.n > 5"}, {"message", "need more"}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(s.error().message(), "assertion failed: config.n > 5 (need more)");
}

TEST_F(BuiltinStages, MetricAndWriteFile) {
  ASSERT_TRUE(run("metric", Json{{"name", "acc"}, {"value", 0.9}}));
  EXPECT_EQ(*ctx_.get_metric("acc"), 0.9);
  std::string path = ::testing::TempDir() + "/write_file_test.txt";
  std::remove(path.c_str());
  ASSERT_TRUE(run("write_file", Json{{"path", path}, {"text", "a"}, {"append", true}}));
  ASSERT_TRUE(run("write_file", Json{{"path", path}, {"text", "b"}, {"append", true}, {"sync", true}}));
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "a\nb\n");
  Status bad = run("write_file", Json{{"path", "/nonexistent-dir/x"}, {"text", "a"}});
  EXPECT_EQ(bad.error().code(), ErrorCode::kUnavailable);
}

TEST_F(BuiltinStages, SleepIsCancellable) {
  std::stop_source source;
  source.request_stop();
  Status s = run("sleep", Json{{"duration", "1h"}}, source.get_token());
  EXPECT_EQ(s.error().code(), ErrorCode::kCancelled);
  EXPECT_EQ(run("sleep", Json{{"duration", "soon"}}).error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(BuiltinStages, WaitForNeedsADurableRunner) {
  Status s = run("wait_for", Json{{"promise", "x"}});
  EXPECT_EQ(s.error().code(), ErrorCode::kFailedPrecondition);
}

// compare refuses what it cannot compare, naming the option or the branch.
TEST_F(BuiltinStages, CompareSaysWhatItCannotCompare) {
  auto branch = [](const char* id, Json config, Json metric, const char* status = "success") {
    return Json{{"config_id", id}, {"config", config}, {"status", status}, {"metrics", {{"acc", metric}}}};
  };
  auto message = [&](Json options) {
    Status s = run("compare", std::move(options));
    return s ? std::string("ok") : s.error().message();
  };
  EXPECT_NE(message({{"experiment", "sweep"}, {"metric", "acc"}}).find("no experiment 'sweep' has run before"),
            std::string::npos);
  Json branches = Json::array({branch("a", {{"lr", 1}}, {0.5, 0.6}), branch("b", {{"lr", 2}}, {0.7, 0.8}),
                               branch("c", {{"lr", 3}}, 0.9), branch("d", {{"lr", 4}}, 0.1, "failed")});
  ctx_.assign("sweep", Json{{"branches", branches}});
  const std::string dir = ::testing::TempDir() + "/compare-errors";
  EXPECT_NE(message({{"experiment", "sweep"}, {"metric", "acc"}, {"alpha", 1.5}, {"out_dir", dir}})
                .find("option 'alpha' must be in (0, 1)"),
            std::string::npos);
  EXPECT_NE(message({{"experiment", "sweep"}, {"metric", "acc"}, {"resamples", 10}, {"out_dir", dir}})
                .find("option 'resamples' must be at least 100"),
            std::string::npos);
  EXPECT_NE(message({{"experiment", "sweep"}, {"metric", "acc"}, {"group_by", "config.model"}, {"out_dir", dir}})
                .find("its config has no key 'config.model'"),
            std::string::npos);
  const std::string paired =
      message({{"experiment", "sweep"}, {"metric", "acc"}, {"paired_by", "lr"}, {"out_dir", dir}});
  EXPECT_NE(paired.find("paired tests compare exactly 2 groups, found 3"), std::string::npos) << paired;
  ctx_.assign("words",
              Json{{"branches", Json::array({branch("a", {{"lr", 1}}, "high"), branch("b", {{"lr", 2}}, 0.2)})}});
  EXPECT_NE(message({{"experiment", "words"}, {"metric", "acc"}, {"out_dir", dir}})
                .find("branch a: metric 'acc' must be a number or a list of numbers, got \"high\""),
            std::string::npos);
  std::ofstream(dir + "-file") << "a file, not a folder";
  EXPECT_NE(message({{"experiment", "sweep"}, {"metric", "acc"}, {"out_dir", dir + "-file/x"}})
                .find("option 'out_dir': cannot create"),
            std::string::npos);
}

}  // namespace
}  // namespace crucible
