// The LLM workflows end to end: the built `crucible` binary against a loopback server that speaks
// the Anthropic API, killed mid-loop and resumed; human review through a durable promise; API
// keys kept out of every output.
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/core/json.h"
#include "crucible/testing/llm_test_server.h"
#include "process.h"

namespace crucible::integration {
namespace {

namespace fs = std::filesystem;
using crucible::testing::LlmTestServer;

class LlmCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("crucible-llm-" + std::to_string(getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    journal_ = dir_ + "/journal.db";
    ::setenv("CRUCIBLE_IT_LLM_KEY", kKey, 1);
    ::unsetenv("ANTHROPIC_API_KEY");
  }
  void TearDown() override {
    ::unsetenv("CRUCIBLE_IT_LLM_KEY");
    if (!HasFailure()) fs::remove_all(dir_);
  }
  Output run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--journal", journal_});
    return run_crucible(args, dir_);
  }
  static Json json_of(const Output& o) {
    auto j = parse_json(o.out);
    EXPECT_TRUE(j) << o.out << o.err;
    return j ? *j : Json();
  }

  static constexpr const char* kKey = "sk-it-9c2d4e-do-not-print";
  std::string dir_, journal_;
};

// Drafts and verdicts by request: the first critique asks for a revision, later ones pass.
void script_loop(LlmTestServer& server) {
  auto critiques = std::make_shared<std::atomic<int>>(0);
  server.set_responder([critiques](const Json& body, int) -> std::string {
    std::string prompt = body["messages"].back()["content"].get<std::string>();
    if (prompt.find("CRITIQUE") != std::string::npos) {
      return critiques->fetch_add(1) == 0
                 ? R"({"decision": "revise", "critique": "too vague", "feedback": "name a failure"})"
                 : R"({"decision": "pass", "critique": "good"})";
    }
    if (prompt.find("REVISE") != std::string::npos) return "REVISED: a crash at hour 30 costs one stage.";
    return "FIRST DRAFT: journals help.";
  });
}

TEST_F(LlmCli, KilledAfterTheFirstCritiqueResumesWithoutCallingAgain) {
  LlmTestServer server(kKey);
  script_loop(server);
  server.push(LlmTestServer::answer());            // generate
  server.push(LlmTestServer::answer());            // first critique
  server.push(LlmTestServer::answer("", 20'000));  // revise: slow, killed while in flight
  Child child = spawn_crucible({"--journal", journal_, "--quiet", "run", "tests/integration/pipelines/llm_loop.yaml",
                                "--set", "base_url=" + server.base_url(), "--run-id", "loop"},
                               dir_ + "/out", dir_ + "/err");
  ASSERT_GT(child.pid, 0);
  for (int i = 0; i < 2000 && server.calls.load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(server.calls.load(), 3) << slurp(dir_ + "/err");
  ::kill(child.pid, SIGKILL);
  ASSERT_EQ(wait_child(child), 128 + SIGKILL);
  for (int i = 0; i < 400 && server.aborted.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(server.aborted.load(), 1);  // the killed process's connection closed

  Output resumed = run({"--quiet", "resume", "loop", "--json"});
  ASSERT_EQ(resumed.code, 0) << resumed.err << resumed.out;
  Json r = json_of(resumed);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["state"]["revisions"], 1);
  EXPECT_EQ(r["state"]["critiques"].size(), 2u);
  EXPECT_EQ(r["artifacts"]["draft"], "REVISED: a crash at hour 30 costs one stage.");
  // Generate and the first critique ran once; only the interrupted revise and the second
  // critique were called after the resume.
  EXPECT_EQ(server.calls.load(), 5);
  EXPECT_EQ(server.calls_containing("Write a draft about journals."), 1);
  EXPECT_EQ(server.calls_containing("CRITIQUE the draft"), 2);  // the first, not repeated, and the second
  EXPECT_EQ(server.calls_containing("REVISE the draft"), 2);    // killed in flight, then completed
  EXPECT_EQ(server.calls_containing("CRITIQUE the draft against the criteria.\n\nCriteria: clear, correct and complete"
                                    "\n\nDraft:\nFIRST DRAFT"),
            1);
  Json status = json_of(run({"status", "loop", "--json"}));
  EXPECT_EQ(status["llm"]["calls"], 4);
  EXPECT_GT(status["llm"]["tokens_used"].get<int>(), 0);
}

TEST_F(LlmCli, ApiKeysNeverReachOutputLogsOrTheJournal) {
  LlmTestServer server(kKey);
  script_loop(server);
  std::string events = dir_ + "/events.jsonl";
  Output o = run({"--events", events, "run", "tests/integration/pipelines/llm_loop.yaml", "--set",
                  "base_url=" + server.base_url(), "--json", "--run-id", "secret"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(server.rejected.load(), 0) << ::testing::PrintToString(
      server.rejections());  // the key went where the API expects it
  Output status = run({"status", "secret", "--json"});
  Output show = run({"experiments", "show", "secret", "--json"});
  EXPECT_NE(slurp(events).find("run.completed"), std::string::npos);
  for (const std::string& text : {o.out, o.err, status.out, show.out, slurp(events)}) {
    EXPECT_EQ(text.find(kKey), std::string::npos) << text;
  }
  for (const auto& entry : fs::recursive_directory_iterator(dir_)) {
    if (entry.is_regular_file()) {
      EXPECT_EQ(slurp(entry.path().string()).find(kKey), std::string::npos) << entry.path();
    }
  }
}

TEST_F(LlmCli, OfflineExamplesSayWhichVariableToSet) {
  Output o = run({"run", "examples/critique_loop.yaml", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.err.find("ANTHROPIC_API_KEY is not set, so it answers from its offline script"), std::string::npos)
      << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["state"]["revision_count"], 1);
  EXPECT_EQ(r["state"]["critiques"].size(), 2u);
  EXPECT_EQ(r["metrics"]["generate.offline"], true);
  Output simple = run({"run", "examples/simple.yaml", "--json"});
  ASSERT_EQ(simple.code, 0) << simple.err;
  EXPECT_EQ(json_of(simple)["state"]["critique"]["decision"], "pass");
}

TEST_F(LlmCli, AHumanApprovesOrRevisesThroughADurablePromise) {
  Output parked = run({"run", "examples/critique_human.yaml", "--run-id", "essay", "--no-wait", "--json"});
  ASSERT_EQ(parked.code, 0) << parked.err;
  EXPECT_EQ(json_of(parked)["status"], "waiting");
  Output signal = run({"signal", "essay", "external_revision", "--value", R"({"feedback": "Shorter, please."})"});
  ASSERT_EQ(signal.code, 0) << signal.err;
  Output done = run({"resume", "essay", "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  Json r = json_of(done);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["state"]["human"]["feedback"], "Shorter, please.");
  EXPECT_EQ(r["artifacts"]["draft"], "Journal every stage outcome, and a crash costs one stage, not the whole run.");

  Output approved = run({"run", "examples/critique_human.yaml", "--run-id", "essay2", "--no-wait"});
  ASSERT_EQ(approved.code, 0) << approved.err;
  ASSERT_EQ(run({"signal", "essay2", "external_revision", "--value", R"({"approve": true})"}).code, 0);
  Json r2 = json_of(run({"resume", "essay2", "--json"}));
  EXPECT_EQ(r2["status"], "completed");
  EXPECT_FALSE(r2["state"].contains("revisions"));  // approved as it was
}

}  // namespace
}  // namespace crucible::integration
