// The `crucible` command end to end: exit codes, JSON output, status, list, signal, fork, prune,
// resume, validation errors and the benchmarks' JSON.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "crucible/core/json.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "process.h"

namespace crucible::integration {
namespace {

namespace fs = std::filesystem;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("crucible-cli-" + std::to_string(getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    journal_ = dir_ + "/journal.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Output run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--journal", journal_});
    return run_crucible(args, dir_);
  }
  Json json_of(const Output& o) {
    auto j = parse_json(o.out);
    EXPECT_TRUE(j) << o.out << o.err;
    return j ? *j : Json();
  }

  std::string dir_;
  std::string journal_;
};

TEST_F(Cli, HelpWorksEverywhere) {
  EXPECT_EQ(run({"--help"}).code, 0);
  for (const char* cmd : {"run", "validate", "status", "list", "resume", "signal", "fork", "prune", "bench", "stages",
                          "describe", "experiments"}) {
    Output o = run({cmd, "--help"});
    EXPECT_EQ(o.code, 0) << cmd;
    EXPECT_NE(o.out.find("Usage"), std::string::npos) << cmd;
  }
  EXPECT_EQ(run({"frobnicate"}).code, 2);
}

TEST_F(Cli, QuickstartRunsAndPrintsJson) {
  Output o = run({"run", "examples/quickstart.yaml", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["metrics"]["accuracy.accuracy"], 0.86);
  EXPECT_EQ(r["stages"].size(), 15u);
  EXPECT_NE(o.err.find("/sweep[2]/train"), std::string::npos);  // progress goes to stderr with --json

  Output status = run({"status", r["run_id"], "--json"});
  ASSERT_EQ(status.code, 0) << status.err;
  Json s = json_of(status);
  EXPECT_EQ(s["status"], "completed");
  EXPECT_EQ(s["stages"][0]["key"], "/prepare");
  EXPECT_EQ(s["stages"][0]["status"], "completed");

  Output list = run({"list", "--json", "--status", "completed"});
  ASSERT_EQ(list.code, 0);
  EXPECT_EQ(json_of(list).size(), 1u);
  Output table = run({"status", r["run_id"]});
  EXPECT_NE(table.out.find("/gate/promote"), std::string::npos);
}

TEST_F(Cli, InvalidPipelinesExitTwoAndRunNothing) {
  Output o = run({"run", "tests/pipelines/invalid/unknown_key.yaml"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("tests/pipelines/invalid/unknown_key.yaml:5:5: error"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("nothing was run"), std::string::npos);
  EXPECT_EQ(json_of(run({"list", "--json"})).size(), 0u);
  Output v = run({"validate", "tests/pipelines/invalid/bad_expression.yaml", "--json"});
  EXPECT_EQ(v.code, 2);
  Json d = json_of(v);
  EXPECT_EQ(d["valid"], false);
  EXPECT_EQ(d["diagnostics"][0]["line"], 5);
  EXPECT_EQ(d["diagnostics"][0]["column"], 25);
  EXPECT_EQ(run({"validate", "examples/quickstart.yaml"}).code, 0);
  EXPECT_EQ(run({"run", "no/such/file.yaml"}).code, 2);
}

TEST_F(Cli, DistributedPipelinesSayPlainlyTheyCannotRunYet) {
  Output o = run({"run", "examples/staged_multi_epoch.yaml"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("distributed agent"), std::string::npos) << o.err;
  EXPECT_EQ(run({"validate", "examples/staged_multi_epoch.yaml"}).code, 0);
}

TEST_F(Cli, SetOverridesConfigAndFailuresExitOne) {
  Output o = run({"run", "examples/quickstart.yaml", "--json", "--set", "target_accuracy=0.99"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["state"]["promoted"], false);  // the gate took the else branch
  Output bad = run({"run", "examples/quickstart.yaml", "--json", "--set", "learning_rates=[0.1]"});
  EXPECT_EQ(bad.code, 1);
  Json f = json_of(bad);
  EXPECT_EQ(f["status"], "failed");
  EXPECT_NE(f["error"]["message"].get<std::string>().find("assertion failed"), std::string::npos);
  EXPECT_EQ(run({"run", "examples/quickstart.yaml", "--set", "novalue"}).code, 2);
}

TEST_F(Cli, SameRunIdIsIdempotentAndAnotherSpecNeedsNewVersion) {
  ASSERT_EQ(run({"run", "examples/quickstart.yaml", "--run-id", "mine", "--quiet"}).code, 0);
  Output again = run({"run", "examples/quickstart.yaml", "--run-id", "mine", "--json"});
  ASSERT_EQ(again.code, 0);
  Json r = json_of(again);
  EXPECT_EQ(r["executed"], 0);
  EXPECT_EQ(r["replayed"], 15);
  Output other = run({"run", "tests/integration/pipelines/approval.yaml", "--run-id", "mine"});
  EXPECT_EQ(other.code, 2);
  EXPECT_NE(other.err.find("--new-version"), std::string::npos);
}

TEST_F(Cli, SignalResolvesAWaitingRunAndResumeFinishesIt) {
  Output parked = run({"run", "tests/integration/pipelines/approval.yaml", "--run-id", "ask", "--no-wait", "--json"});
  ASSERT_EQ(parked.code, 0) << parked.err;
  EXPECT_EQ(json_of(parked)["status"], "waiting");
  EXPECT_EQ(json_of(run({"status", "ask", "--json"}))["status"], "waiting");
  Output bad = run({"signal", "ask", "approval", "--value", "{not json"});
  EXPECT_EQ(bad.code, 2);
  ASSERT_EQ(run({"signal", "ask", "approval", "--value", R"({"ok": true})"}).code, 0);
  Output second = run({"signal", "ask", "approval", "--value", R"({"ok": false})"});
  EXPECT_NE(second.out.find("already resolved"), std::string::npos);
  Output done = run({"resume", "ask", "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  Json r = json_of(done);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["state"]["verdict"]["ok"], true);
  EXPECT_EQ(run({"signal", "nobody", "approval", "--value", "1"}).code, 2);
}

TEST_F(Cli, ARunningProcessContinuesWhenSignalled) {
  Child waiting = spawn_crucible(
      {"--journal", journal_, "run", "tests/integration/pipelines/approval.yaml", "--run-id", "live", "--json"},
      dir_ + "/live.out", dir_ + "/live.err");
  for (int i = 0; i < 500; ++i) {
    Output s = run({"status", "live", "--json"});
    if (s.code == 0 && json_of(s)["status"] == "waiting") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Output signalled = run({"signal", "live", "approval", "--value", R"({"ok": true})"});
  ASSERT_EQ(signalled.code, 0) << signalled.err << slurp(dir_ + "/live.err");
  EXPECT_EQ(wait_child(waiting), 0) << slurp(dir_ + "/live.err");
  auto r = parse_json(slurp(dir_ + "/live.out"));
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["status"], "completed");
}

TEST_F(Cli, ASignalNobodyWaitsForIsAnError) {
  ASSERT_EQ(run({"run", "tests/integration/pipelines/approval.yaml", "--run-id", "typo", "--no-wait", "--quiet"}).code,
            0);
  Output typo = run({"signal", "typo", "aproval", "--value", "true"});
  EXPECT_EQ(typo.code, 2);
  EXPECT_NE(typo.err.find("it waits for promise 'approval'"), std::string::npos) << typo.err;
  ASSERT_EQ(run({"run", "examples/quickstart.yaml", "--run-id", "done", "--quiet"}).code, 0);
  Output late = run({"signal", "done", "approval", "--value", "true"});
  EXPECT_EQ(late.code, 2);
  EXPECT_NE(late.err.find("has completed; it waits for no signal"), std::string::npos) << late.err;
}

TEST_F(Cli, SigtermStopsGracefullyAndTheRunResumes) {
  Child child = spawn_crucible(
      {"--journal", journal_, "run", "tests/integration/pipelines/long_nap.yaml", "--run-id", "nap", "--quiet"},
      dir_ + "/nap.out", dir_ + "/nap.err");
  ASSERT_GT(child.pid, 0);
  for (int i = 0; i < 500; ++i) {  // until the run exists; its nap lasts 2 s
    if (run({"status", "nap"}).code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(child.pid, SIGTERM);
  EXPECT_EQ(wait_child(child), 130) << slurp(dir_ + "/nap.err");
  EXPECT_NE(slurp(dir_ + "/nap.err").find("crucible resume nap"), std::string::npos);
  Json status = json_of(run({"status", "nap", "--json"}));
  EXPECT_EQ(status["status"], "interrupted");
  Output done = run({"resume", "nap", "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(json_of(done)["status"], "completed");
}

// A command's processes never outlive the crucible that started them: SIGKILL of crucible takes
// the program and its background children with it; what survives a harder crash (its supervisor
// killed too) is stopped by the resume before the step runs again.
class CliChildren : public Cli {
 protected:
  void write_pipeline() {
    std::ofstream(dir_ + "/child.yaml") << "name: child\n"
                                           "stages:\n"
                                           "  - name: train\n"
                                           "    uses: command\n"
                                           "    idempotent: true\n"
                                           "    with:\n"
                                           "      cwd: "
                                        << dir_
                                        << "\n"
                                           "      argv: [sh, -c, 'test -e again && exit 0; touch again; sleep 60 & "
                                           "echo $! > bg; echo $$ > fg; wait']\n";
  }
  pid_t read_pid(const std::string& name) {
    for (int i = 0; i < 1000; ++i) {
      std::ifstream in(dir_ + "/" + name);
      pid_t pid = 0;
      if (in >> pid) return pid;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  static bool gone_soon(pid_t pid) {
    for (int i = 0; i < 500 && process_alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !process_alive(pid);
  }
  static pid_t group_of(pid_t pid) { return ::getpgid(pid); }
  // Waits until the run's journal holds the process group of its step (journaled just after the
  // program starts, so a kill before it would leave nothing to stop).
  bool group_journaled(const std::string& run_id) {
    for (int i = 0; i < 1000; ++i) {
      SqliteJournalOptions o;
      o.path = journal_;
      if (auto j = open_sqlite_journal(o)) {
        if (auto log = (*j)->read_run(*RunId::parse(run_id))) {
          for (const Record& r : log->records) {
            if (r.type == RecordType::kStepStarted && json_member(r.payload, "process_group") != nullptr) return true;
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

TEST_F(CliChildren, DieWithCrucible) {
  write_pipeline();
  Child child = spawn_crucible({"--journal", journal_, "run", dir_ + "/child.yaml", "--run-id", "c", "--quiet"},
                               dir_ + "/c.out", dir_ + "/c.err");
  pid_t bg = read_pid("bg"), fg = read_pid("fg");
  ASSERT_GT(bg, 0);
  ASSERT_GT(fg, 0);
  ::kill(child.pid, SIGKILL);
  EXPECT_EQ(wait_child(child), 128 + SIGKILL);
  EXPECT_TRUE(gone_soon(fg));
  EXPECT_TRUE(gone_soon(bg));
  Output done = run({"resume", "c", "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(json_of(done)["status"], "completed");
}

TEST_F(CliChildren, WhatSurvivesIsStoppedBeforeTheStepRunsAgain) {
  write_pipeline();
  Child child = spawn_crucible({"--journal", journal_, "run", dir_ + "/child.yaml", "--run-id", "c", "--quiet"},
                               dir_ + "/c.out", dir_ + "/c.err");
  pid_t bg = read_pid("bg"), fg = read_pid("fg");
  ASSERT_GT(bg, 0);
  ASSERT_TRUE(group_journaled("c"));
  pid_t supervisor = group_of(fg);
  ASSERT_GT(supervisor, 1);
  ASSERT_NE(supervisor, ::getpgid(0));
  ::kill(supervisor, SIGKILL);  // no one left to stop the group
  ::kill(child.pid, SIGKILL);
  EXPECT_EQ(wait_child(child), 128 + SIGKILL);
  EXPECT_TRUE(gone_soon(fg));  // it dies with its supervisor
  EXPECT_TRUE(process_alive(bg));
  EXPECT_EQ(group_of(bg), supervisor);
  Output done = run({"resume", "c", "--json"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(json_of(done)["status"], "completed");
  EXPECT_FALSE(process_alive(bg));
}

// The forms a person reads, beside the --json ones the other tests check.
TEST_F(Cli, HumanReadableOutputs) {
  ASSERT_EQ(run({"run", "examples/quickstart.yaml", "--run-id", "base", "--durability", "batched", "-q"}).code, 0);
  EXPECT_EQ(run({"run", "examples/quickstart.yaml", "--durability", "sometimes"}).code, 2);
  ASSERT_EQ(run({"fork", "base", "--from", "/gate", "--run-id", "child", "-q"}).code, 0);
  Output status = run({"status", "child"});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_NE(status.out.find("run child  pipeline"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("forked from base"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("STEP"), std::string::npos);
  ASSERT_EQ(run({"run", "tests/integration/pipelines/approval.yaml", "--run-id", "parked", "--no-wait", "-q"}).code, 0);
  Output parked = run({"status", "parked"});
  EXPECT_NE(parked.out.find("suspended: "), std::string::npos) << parked.out;
  Output list = run({"list", "--since", "1h"});
  ASSERT_EQ(list.code, 0);
  EXPECT_NE(list.out.find("RUN"), std::string::npos);
  EXPECT_NE(list.out.find("parked"), std::string::npos);
  EXPECT_EQ(run({"list", "--since", "lately"}).code, 2);
  Output described = run({"describe", "command"});
  ASSERT_EQ(described.code, 0);
  EXPECT_NE(described.out.find("idempotent: yes"), std::string::npos) << described.out;
  EXPECT_NE(described.out.find("[default 20]"), std::string::npos) << described.out;
  Output stages = run({"stages", "--json"});
  ASSERT_EQ(stages.code, 0);
  EXPECT_TRUE(json_of(stages).is_array());
  Output experiments = run({"experiments", "show", "base"});
  ASSERT_EQ(experiments.code, 0);
  EXPECT_NE(experiments.out.find("this run has no experiment branches"), std::string::npos) << experiments.out;
  std::ofstream(dir_ + "/bad.yaml") << "name: b\nstages:\n  - {name: s, uses: nop}\n";
  Output invalid = run({"validate", dir_ + "/bad.yaml", "--json"});
  EXPECT_EQ(invalid.code, 2);
  Json v = json_of(invalid);
  EXPECT_EQ(v["valid"], false);
  EXPECT_NE(v["diagnostics"][0]["message"].get<std::string>().find("did you mean 'noop'"), std::string::npos);
  Output failed = run({"run", dir_ + "/bad.yaml"});
  EXPECT_EQ(failed.code, 2);
  EXPECT_NE(failed.err.find("nothing was run"), std::string::npos);
  std::ofstream(dir_ + "/opt.yaml")
      << "name: o\nstages:\n"
         "  - {name: bad, uses: command, optional: true, with: {argv: [sh, -c, 'exit 4']}}\n"
         "  - {name: m, uses: metric, with: {name: score, value: 0.25}}\n";
  Output optional = run({"run", dir_ + "/opt.yaml"});
  EXPECT_EQ(optional.code, 0) << optional.err;
  EXPECT_NE(optional.out.find("optional stages that failed:\n  /bad"), std::string::npos) << optional.out;
  EXPECT_NE(optional.out.find("0.25"), std::string::npos) << optional.out;
  std::ofstream(dir_ + "/fail.yaml")
      << "name: f\nstages:\n  - {name: bad, uses: command, with: {argv: [sh, -c, 'exit 4']}}\n";
  Output failing = run({"run", dir_ + "/fail.yaml", "--run-id", "failing"});
  EXPECT_EQ(failing.code, 1);
  EXPECT_NE(failing.out.find("error: "), std::string::npos) << failing.out;
  Output failed_status = run({"status", "failing"});
  EXPECT_NE(failed_status.out.find("exited with code 4"), std::string::npos) << failed_status.out;
}

TEST_F(Cli, StatusTellsAnInterruptedRunAndLlmUsage) {
  Child child = spawn_crucible(
      {"--journal", journal_, "run", "tests/integration/pipelines/long_nap.yaml", "--run-id", "nap", "--quiet"},
      dir_ + "/nap.out", dir_ + "/nap.err");
  for (int i = 0; i < 500; ++i) {
    if (run({"status", "nap"}).code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(child.pid, SIGKILL);
  wait_child(child);
  Output status = run({"status", "nap"});
  EXPECT_NE(status.out.find("status interrupted"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("`crucible resume nap` continues it"), std::string::npos) << status.out;
  ASSERT_EQ(run({"run", "examples/critique_loop.yaml", "--run-id", "llm", "-q"}).code, 0);
  Output llm = run({"status", "llm"});
  EXPECT_NE(llm.out.find("llm: "), std::string::npos) << llm.out;
  EXPECT_EQ(run({"status", "a/b"}).code, 2);
  Output no_journal = run_crucible({"--journal", dir_, "status", "nap"}, dir_);
  EXPECT_EQ(no_journal.code, 1);
  EXPECT_NE(no_journal.err.find("is a directory"), std::string::npos) << no_journal.err;
  Output forked = run({"fork", "llm", "--from", "/generate", "--run-id", "llm2"});
  EXPECT_EQ(forked.code, 0) << forked.err;
  EXPECT_NE(forked.out.find("forked llm2 from llm at /generate"), std::string::npos) << forked.out;
}

TEST_F(Cli, ForkReexecutesFromTheStep) {
  ASSERT_EQ(run({"run", "examples/quickstart.yaml", "--run-id", "base", "--quiet"}).code, 0);
  Output f = run({"fork", "base", "--from", "/gate", "--run-id", "branch", "--json"});
  ASSERT_EQ(f.code, 0) << f.err;
  Json r = json_of(f);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["executed"], 2);  // /gate/promote and /check
  EXPECT_EQ(json_of(run({"status", "branch", "--json"}))["parent_run"], "base");
  EXPECT_EQ(run({"fork", "base", "--from", "/nope"}).code, 2);
}

TEST_F(Cli, PruneRemovesOldFinishedRunsOnly) {
  ASSERT_EQ(run({"run", "examples/quickstart.yaml", "--run-id", "old", "--quiet"}).code, 0);
  ASSERT_EQ(
      run({"run", "tests/integration/pipelines/approval.yaml", "--run-id", "parked", "--no-wait", "--quiet"}).code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  fs::create_directories(dir_ + "/runs/old");
  std::ofstream(dir_ + "/runs/old/report.json") << std::string(5000, ' ');
  fs::create_directories(dir_ + "/runs/parked");
  Output p = run({"prune", "--older-than", "1ms"});
  ASSERT_EQ(p.code, 0);
  EXPECT_NE(p.out.find("pruned 1 finished run(s) older than 1ms: journal "), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("1 report folder(s) 5.0 KB; freed "), std::string::npos) << p.out;
  EXPECT_FALSE(fs::exists(dir_ + "/runs/old"));
  EXPECT_TRUE(fs::exists(dir_ + "/runs/parked"));
  EXPECT_EQ(run({"status", "old"}).code, 2);
  EXPECT_EQ(run({"status", "parked"}).code, 0);
  EXPECT_EQ(run({"prune", "--older-than", "someday"}).code, 2);
  EXPECT_EQ(run({"prune", "--older-than", "1d", "--blob-grace", "soon"}).code, 2);
  Json again = json_of(run({"prune", "--older-than", "0s", "--blob-grace", "0s", "--json"}));
  EXPECT_EQ(again["runs"], Json::array());
  EXPECT_TRUE(again["journal_bytes_after"].is_number_integer());
}

TEST_F(Cli, StagesAndDescribe) {
  Output s = run({"stages"});
  EXPECT_NE(s.out.find("command"), std::string::npos);
  Output d = run({"describe", "command", "--json"});
  ASSERT_EQ(d.code, 0);
  EXPECT_EQ(json_of(d)["options"][0]["name"], "argv");
  EXPECT_EQ(run({"describe", "nope"}).code, 2);
}

TEST_F(Cli, EventsAreWrittenAsJsonLines) {
  std::string events = dir_ + "/events.jsonl";
  ASSERT_EQ(run({"--events", events, "run", "examples/quickstart.yaml", "--quiet"}).code, 0);
  std::string text = slurp(events);
  EXPECT_NE(text.find("\"event\":\"run.started\""), std::string::npos);
  EXPECT_NE(text.find("\"event\":\"stage.completed\""), std::string::npos);
  EXPECT_NE(text.find("\"event\":\"run.completed\""), std::string::npos);
}

TEST_F(Cli, ExperimentExampleComparesAndShowsItsBranches) {
  Output o = run({"run", "examples/experiment.yaml", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["metrics"]["sweep.succeeded"], 18);
  EXPECT_EQ(r["metrics"]["lr_effect.significant"], true);
  std::string id = r["run_id"];
  for (const char* ext : {".json", ".md", ".svg"}) {
    EXPECT_TRUE(fs::exists(dir_ + "/runs/" + id + "/lr_effect" + ext)) << ext;  // next to the journal
  }

  Output show = run({"experiments", "show", id, "--json"});
  ASSERT_EQ(show.code, 0) << show.err;
  Json s = json_of(show);
  ASSERT_EQ(s["experiments"]["/sweep"].size(), 18u);
  EXPECT_EQ(s["experiments"]["/sweep"][0]["status"], "success");
  EXPECT_TRUE(s["experiments"]["/sweep"][0]["metrics"].contains("loss"));
  ASSERT_EQ(s["comparisons"].size(), 1u);
  EXPECT_EQ(s["comparisons"][0]["tests"][0]["test"], "anova");
  EXPECT_EQ(s["comparisons"][0]["best"], "0.01");

  Output table = run({"experiments", "show", id});
  ASSERT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("experiment /sweep: 18 branches, 18 succeeded, 0 failed"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("| anova |"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("'0.01' has the lowest mean loss"), std::string::npos) << table.out;

  Json status = json_of(run({"status", id, "--json"}));
  EXPECT_EQ(status["experiments"]["/sweep"].size(), 18u);
  EXPECT_EQ(run({"experiments", "show", "no-such-run"}).code, 2);
  EXPECT_EQ(run({"experiments"}).code, 2);
}

TEST_F(Cli, BenchExperimentsPrintsItsJson) {
  Output o = run({"bench", "experiments", "--json", "--quick"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  for (const char* key : {"wall_ms", "extra_rss_mib", "overhead_us_per_branch", "raw_threads_wall_ms", "targets"}) {
    EXPECT_TRUE(b.contains(key)) << key;
  }
  EXPECT_EQ(b["branches"], 256);
  EXPECT_GE(b["wall_ms"].get<double>(), 100.0);  // every branch really waited
}

TEST_F(Cli, BenchLlmPrintsItsJson) {
  Output o = run({"bench", "llm", "--json", "--quick"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  for (const char* key :
       {"p99_reduction", "extra_calls_pct", "journaled_results_per_step", "baseline", "hedged", "targets"}) {
    EXPECT_TRUE(b.contains(key)) << key;
  }
  EXPECT_EQ(b["journaled_results_per_step"], 1.0);
  EXPECT_EQ(b["max_journaled_results_per_step"], 1);
  EXPECT_GT(b["hedged"]["losers_aborted_seen_by_server"].get<int>(), 0);
}

TEST_F(Cli, KeysAreCreatedShownOnceListedAndRevoked) {
  Output created = run({"keys", "create", "--name", "ci", "--scope", "write"});
  ASSERT_EQ(created.code, 0) << created.err;
  const std::string key = created.out.substr(0, created.out.find('\n'));
  EXPECT_TRUE(key.starts_with("crucible_")) << created.out;
  EXPECT_NE(created.err.find("shown only now"), std::string::npos);
  Output listed = run({"keys", "list", "--json"});
  ASSERT_EQ(listed.code, 0);
  EXPECT_EQ(listed.out.find(key.substr(key.rfind('_') + 1)), std::string::npos);  // never the secret
  Json keys = parse_json_or_discarded(listed.out);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0]["scope"], "write");
  EXPECT_EQ(run({"keys", "create", "--name", "ci"}).code, 2);  // a live key has the name
  EXPECT_EQ(run({"keys", "create", "--name", "x", "--scope", "root"}).code, 2);
  Output revoked = run({"keys", "revoke", "ci"});
  EXPECT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_EQ(run({"keys", "revoke", "nobody"}).code, 2);
  EXPECT_NE(run({"keys", "list"}).out.find("ci"), std::string::npos);
}

TEST_F(Cli, ServeRefusesBadFlagsAndServesUntilSigterm) {
  EXPECT_EQ(run({"serve", "--listen", "nowhere:port"}).code, 2);
  EXPECT_EQ(run({"serve", "--pipelines", dir_ + "/missing"}).code, 2);
  EXPECT_EQ(run({"serve", "--ingress-wait", "soon"}).code, 2);
  Output tls = run({"serve", "--listen", "127.0.0.1:0", "--tls-cert", dir_ + "/none.pem"});
  EXPECT_EQ(tls.code, 2);
  EXPECT_NE(tls.err.find("tls"), std::string::npos) << tls.err;

  fs::create_directories(dir_ + "/pipelines");
  std::ofstream(dir_ + "/pipelines/hello.yaml") << "name: hello\nstages:\n  - {name: a, uses: noop}\n";
  Child server = spawn_crucible({"--journal", journal_, "serve", "--listen", "127.0.0.1:0", "--pipelines",
                                 dir_ + "/pipelines", "--allow-anonymous-read"},
                                dir_ + "/serve.out", dir_ + "/serve.err");
  ASSERT_GT(server.pid, 0);
  std::string url;
  for (int i = 0; i < 200 && url.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    const std::string err = slurp(server.err_path);
    if (auto at = err.find("serving "); at != std::string::npos) {
      url = err.substr(at + 8, err.find(' ', at + 8) - at - 8);
    }
  }
  ASSERT_FALSE(url.empty()) << slurp(server.err_path);
  const std::string err = slurp(server.err_path);
  EXPECT_NE(err.find("WARNING: --allow-anonymous-read"), std::string::npos) << err;
  EXPECT_NE(err.find("no API key exists yet"), std::string::npos) << err;
  const std::string port = url.substr(url.rfind(':') + 1, url.rfind('/') - url.rfind(':') - 1);
  httplib::Client client("127.0.0.1", std::stoi(port));
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto pipelines = client.Get("/v1/pipelines");
  ASSERT_TRUE(pipelines);
  EXPECT_NE(pipelines->body.find("hello"), std::string::npos);
  auto page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<title>Crucible</title>"), std::string::npos);
  auto chart = client.Get("/assets/chart.min.js");
  ASSERT_TRUE(chart);
  EXPECT_GT(chart->body.size(), 100'000u);
  EXPECT_EQ(client.Post("/hello/run", "{}", "application/json")->status, 401);
  // A second server on the same port is refused with a clear error.
  Output busy = run({"serve", "--listen", "127.0.0.1:" + port});
  EXPECT_EQ(busy.code, 2);
  EXPECT_NE(busy.err.find("cannot listen"), std::string::npos) << busy.err;
  kill(server.pid, SIGTERM);
  EXPECT_EQ(wait_child(server), 0);
}

TEST_F(Cli, BenchServePrintsItsJson) {
  Output o = run({"bench", "serve", "--json", "--quick"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  for (const char* key :
       {"bare_httplib_get", "api_get_run", "in_process_run_10_steps", "ingress_run_10_steps_sequential",
        "ingress_run_10_steps_concurrent", "ingress_vs_in_process_p50", "goals"}) {
    EXPECT_TRUE(b.contains(key)) << key;
  }
  EXPECT_EQ(b["ingress_run_10_steps_concurrent"]["errors"], 0);
  EXPECT_TRUE(b["goals"]["no_errors"].get<bool>());
}

TEST_F(Cli, BenchDispatchPrintsItsJson) {
  Output o = run({"bench", "dispatch", "--json", "--quick"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  EXPECT_TRUE(b.contains("sequence_ns_per_stage"));
  EXPECT_TRUE(b.contains("parallel_ns_per_branch"));
  EXPECT_EQ(run({"bench", "nothing"}).code, 2);
}

TEST_F(Cli, BenchJournalPrintsTheBaselineBesideTheEngine) {
  Output o = run({"bench", "journal", "--json", "--quick"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  for (const char* key : {"raw_commit_p50_us", "raw_commit_p99_us", "strict_step_p50_us", "strict_step_p99_us",
                          "strict_workflow_p50_ms", "batched_records_per_s", "batched_step_ack_p99_ms", "recovery_s"}) {
    EXPECT_TRUE(b.contains(key)) << key;
  }
}

TEST_F(Cli, BenchHedgingPrintsRowsTargetsAndTheLiveTest) {
  Output o = run({"bench", "hedging", "--json", "--quick", "--scenarios", "tests/integration/scenarios/extra.json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json b = json_of(o);
  EXPECT_GT(b["rows"].size(), 100u);
  bool custom = false;
  for (const Json& r : b["rows"]) {
    for (const char* k : {"p50", "p90", "p99", "p99_9", "extra_requests_pct", "extra_work_pct"})
      ASSERT_TRUE(r.contains(k)) << k;
    custom = custom || r["scenario"] == "my-api";
  }
  EXPECT_TRUE(custom);
  for (const Json& t : b["targets"]) {
    for (const char* k : {"id", "pass", "value", "goal"}) ASSERT_TRUE(t.contains(k)) << k;
  }
  EXPECT_EQ(b["live"]["one_result_per_request"], true);
  EXPECT_GT(b["live"]["losers_aborted_seen_by_server"].get<int>(), 0);
  EXPECT_NE(b["reference"].get<std::string>().find("1,800 ms -> 74 ms"), std::string::npos);
  Output bad = run({"bench", "hedging", "--quick", "--scenarios", "tests/integration/scenarios/bad.json"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("scenarios[0] 'broken'.components: unknown type 'gaussian'"), std::string::npos) << bad.err;
  EXPECT_TRUE(b["random"].is_null());
}

// --random N --seed S adds N generated scenarios beside the fixed table: the goals they met, the
// worst ratios with the draw that replays each, and the budget's worst 1,000-request window.
TEST_F(Cli, BenchHedgingRandomScenariosReportTheirWorstDraws) {
  Output o = run({"bench", "hedging", "--json", "--quick", "--random", "6", "--seed", "3"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o)["random"];
  EXPECT_EQ(r["scenarios"], 6);
  EXPECT_EQ(r["seed"], 3);
  EXPECT_LE(r["goals_met"].get<int>(), 6);
  for (const char* k : {"worst_p99_vs_oracle", "worst_p99_9_vs_oracle", "worst_vs_percentile", "worst_vs_off"}) {
    ASSERT_TRUE(r[k]["ratio"].is_number()) << k;
    EXPECT_EQ(r[k]["draw"]["seed"], 3) << k;
    EXPECT_TRUE(r[k]["draw"].contains("family")) << k;
  }
  EXPECT_LE(r["budget_worst_window_extra_requests"].get<double>(), r["budget_window_bound"].get<double>());
  EXPECT_EQ(r["budget_holds"], true);
  // The same seed draws the same scenarios.
  Json again = json_of(run({"bench", "hedging", "--json", "--quick", "--random", "6", "--seed", "3"}))["random"];
  EXPECT_EQ(again["worst_p99_vs_oracle"]["draw"], r["worst_p99_vs_oracle"]["draw"]);
}

}  // namespace
}  // namespace crucible::integration
