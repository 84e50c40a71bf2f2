// Workers in child processes sharing one journal (SQLite file or a throwaway PostgreSQL): runs are
// submitted, workers are killed with SIGKILL at random and restarted, and an oracle file written
// by the stages shows that no run is lost and no completed step runs again.
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/core/json.h"
#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/testing/postgres_server.h"
#include "process.h"

namespace crucible::integration {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::unique_ptr<testing::PostgresServer>& postgres() {
  static std::unique_ptr<testing::PostgresServer> server;
  return server;
}

class Fleet : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    test = test.substr(0, test.find('/'));
    dir_ = (fs::temp_directory_path() / ("crucible-fleet-" + GetParam() + "-" + std::to_string(getpid()) + "-" + test))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (GetParam() == "sqlite") {
      journal_ = dir_ + "/j.db";
    } else {
      if (!postgres()) {
        auto started = testing::PostgresServer::start();
        ASSERT_TRUE(started) << started.error().to_string();
        postgres() = std::move(*started);
      }
      auto url = postgres()->create_database();
      ASSERT_TRUE(url) << url.error().to_string();
      journal_ = *url;
    }
    SqliteJournalOptions file;
    file.path = journal_;
    auto j =
        is_postgres_url(journal_) ? open_postgres_journal(PostgresJournalOptions{journal_}) : open_sqlite_journal(file);
    ASSERT_TRUE(j) << j.error().to_string();
    journal__ = std::move(*j);
  }
  // Workers still running drain on SIGTERM (so their coverage counters are written) and are
  // killed if they outlast it.
  void TearDown() override {
    for (auto& [slot, w] : workers_) kill(w.pid, SIGTERM);
    for (auto& [slot, w] : workers_) {
      for (int i = 0; i < 500 && process_alive(w.pid); ++i) std::this_thread::sleep_for(10ms);
      kill(w.pid, SIGKILL);
      wait_child(w);
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }

  Output crucible(std::vector<std::string> args) {
    args.insert(args.begin(), {"--journal", journal_});
    fs::create_directories(dir_ + "/cli");
    return run_crucible(args, dir_ + "/cli");
  }

  std::string submit(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--quiet", "submit"};
    all.insert(all.end(), args.begin(), args.end());
    Output o = crucible(all);
    EXPECT_EQ(o.code, 0) << o.err;
    return o.out.substr(0, o.out.find('\n'));
  }

  // Starts (or restarts) the worker in `slot`.
  void start_worker(int slot, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--journal", journal_, "worker", "--poll", "20ms", "--id", "w" + std::to_string(slot)};
    if (std::find(extra.begin(), extra.end(), "--lease") == extra.end()) extra.insert(extra.end(), {"--lease", "1s"});
    if (std::find(extra.begin(), extra.end(), "--grace") == extra.end()) extra.insert(extra.end(), {"--grace", "1s"});
    if (std::find(extra.begin(), extra.end(), "--concurrency") == extra.end())
      extra.insert(extra.end(), {"--concurrency", "8"});
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string base = dir_ + "/worker" + std::to_string(slot) + "-" + std::to_string(starts_++);
    workers_[slot] = spawn_crucible(args, base + ".out", base + ".err", dir_);
    ASSERT_GT(workers_[slot].pid, 0);
  }

  // SIGKILLs the worker in `slot` and reaps it.
  void kill_worker(int slot) {
    kill(workers_[slot].pid, SIGKILL);
    wait_child(workers_[slot]);
    workers_.erase(slot);
  }

  // Waits for the worker in `slot` to exit; returns its exit code.
  int reap_worker(int slot) {
    const int code = wait_child(workers_[slot]);
    err_of_last_ = slurp(workers_[slot].err_path);
    workers_.erase(slot);
    return code;
  }

  RunLog log_of(const std::string& id) {
    auto log = journal__->read_run(*RunId::parse(id));
    EXPECT_TRUE(log) << id << ": " << (log ? "" : log.error().to_string());
    return log ? *log : RunLog{};
  }

  bool finished(const std::string& id) { return is_finished(log_of(id).summary.status); }

  std::string dir_, journal_;
  std::unique_ptr<Journal> journal__;
  std::map<int, Child> workers_;  // live (unreaped) workers by slot
  std::string err_of_last_;
  int starts_ = 0;
};

// The crash oracle's pipeline, run by three workers that are killed at random and restarted.
TEST_P(Fleet, WorkersKilledAtRandomLoseNoRunAndRepeatNoCompletedStep) {
  const int runs = GetParam() == "sqlite" ? 150 : 300;
  const std::string pipeline = fs::absolute("tests/integration/pipelines/crash.yaml").string();
  std::vector<std::string> ids;
  for (int i = 0; i < runs; ++i) {
    const std::string oracle = dir_ + "/oracle-" + std::to_string(i);
    fs::create_directories(dir_ + "/markers");
    ids.push_back(submit({pipeline, "--set", "oracle=" + oracle, "--set", "marker_dir=" + dir_ + "/markers", "--run-id",
                          "run-" + std::to_string(i)}));
  }
  for (int w = 0; w < 3; ++w) start_worker(w);
  std::mt19937 rng(7);
  // At each kill: the steps each run had completed (read first), then its oracle's length.
  struct Snapshot {
    std::map<std::string, std::set<std::string>> completed;
    std::map<std::string, size_t> lines;
  };
  std::vector<Snapshot> kills;
  const auto give_up = std::chrono::steady_clock::now() + 240s;
  size_t done = 0;
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 250));
    done = 0;
    for (const std::string& id : ids) done += finished(id) ? 1 : 0;
    if (done == ids.size()) break;
    if (kills.size() < 12) {
      const int victim = static_cast<int>(rng() % 3);
      kill_worker(victim);
      Snapshot s;
      for (int i = 0; i < runs; ++i) {
        for (const Record& r : log_of(ids[i]).records) {
          if (r.type == RecordType::kStepCompleted) s.completed[ids[i]].insert(r.key.str());
        }
      }
      for (int i = 0; i < runs; ++i) s.lines[ids[i]] = lines_of(dir_ + "/oracle-" + std::to_string(i)).size();
      kills.push_back(std::move(s));
      start_worker(victim);
    }
  }
  ASSERT_EQ(done, ids.size()) << "runs still unfinished after 240 s";
  EXPECT_GE(kills.size(), 3u);
  int resumed_elsewhere = 0;
  for (int i = 0; i < runs; ++i) {
    RunLog log = log_of(ids[i]);
    EXPECT_EQ(log.summary.status, RunStatus::kCompleted) << ids[i] << ": " << log.summary.error;
    if (log.summary.claims > 1) ++resumed_elsewhere;
    auto oracle = lines_of(dir_ + "/oracle-" + std::to_string(i));
    std::set<std::string> executed(oracle.begin(), oracle.end());
    EXPECT_EQ(executed.size(), 10u) << ids[i];  // every write_file step ran
    for (const Snapshot& s : kills) {
      auto completed = s.completed.find(ids[i]);
      if (completed == s.completed.end()) continue;
      for (size_t l = s.lines.at(ids[i]); l < oracle.size(); ++l) {
        EXPECT_FALSE(completed->second.contains(oracle[l]))
            << ids[i] << ": step " << oracle[l] << " ran again after it had completed";
      }
    }
  }
  EXPECT_GT(resumed_elsewhere, 0) << "no run was taken over from a killed worker";
}

TEST_P(Fleet, AQueueOfConcurrencyOneRunsInSubmissionOrderAcrossWorkers) {
  ASSERT_EQ(crucible({"queue", "set", "serial", "--concurrency", "1"}).code, 0);
  const std::string pipeline = fs::absolute("tests/integration/pipelines/ordered.yaml").string();
  const std::string order = dir_ + "/order";
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(
        submit({pipeline, "--queue", "serial", "--set", "order=" + order, "--set", "i=" + std::to_string(i)}));
  }
  start_worker(0, {"--queue", "serial"});
  start_worker(1, {"--queue", "serial"});
  for (int i = 0; i < 1000 && !finished(ids.back()); ++i) std::this_thread::sleep_for(20ms);
  std::vector<std::string> expected;
  for (int i = 0; i < 10; ++i) expected.push_back("i=" + std::to_string(i));
  EXPECT_EQ(lines_of(order), expected);
}

TEST_P(Fleet, ResubmittingARunIdIsOneRun) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/ordered.yaml").string();
  EXPECT_EQ(submit({pipeline, "--run-id", "once", "--set", "order=" + dir_ + "/o"}), "once");
  Output again = crucible({"submit", pipeline, "--run-id", "once", "--set", "order=" + dir_ + "/o"});
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("already submitted"), std::string::npos) << again.err;
  Output other = crucible({"submit", pipeline, "--run-id", "once", "--set", "order=" + dir_ + "/elsewhere"});
  EXPECT_EQ(other.code, 2);
  EXPECT_NE(other.err.find("config.order"), std::string::npos) << other.err;
  start_worker(0, {"--json"});
  for (int i = 0; i < 500 && !finished("once"); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(lines_of(dir_ + "/o").size(), 1u);
  // --json: one line per run the worker stops executing.
  const std::string out_path = workers_[0].out_path;
  kill(workers_[0].pid, SIGTERM);
  EXPECT_EQ(reap_worker(0), 0) << err_of_last_;
  auto line = parse_json(slurp(out_path));
  ASSERT_TRUE(line) << slurp(out_path);
  EXPECT_EQ((*line)["run_id"], "once");
  EXPECT_EQ((*line)["status"], "completed");
  EXPECT_EQ((*line)["executed"], 2);
}

// Cancelled while its worker is dead: the next worker to claim it ends it, and runs nothing more.
TEST_P(Fleet, CancelHoldsAcrossAWorkerRestart) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/slow.yaml").string();
  const std::string id = submit({pipeline, "--run-id", "cancel-me"});
  start_worker(0, {"--lease", "4s"});  // still live when `cancel` comes, however slow the build
  for (int i = 0; i < 500 && log_of(id).summary.status != RunStatus::kRunning; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms);
  kill_worker(0);
  Output cancelled = crucible({"cancel", id, "--json"});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_NE(cancelled.out.find("cancel_requested"), std::string::npos) << cancelled.out;  // its lease is still live
  start_worker(1);
  for (int i = 0; i < 1000 && !finished(id); ++i) std::this_thread::sleep_for(10ms);
  RunLog log = log_of(id);
  EXPECT_EQ(log.summary.status, RunStatus::kCancelled);
  for (const Record& r : log.records) EXPECT_NE(r.key.str(), "/last");
  // A live run is stopped where it runs.
  const std::string live = submit({pipeline, "--run-id", "cancel-live"});
  for (int i = 0; i < 500 && log_of(live).summary.status != RunStatus::kRunning; ++i) std::this_thread::sleep_for(10ms);
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_EQ(crucible({"cancel", live}).code, 0);
  for (int i = 0; i < 500 && !finished(live); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(log_of(live).summary.status, RunStatus::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 3s);  // a lease renewal away, not the 30 s sleep
}

// The deadline counts from the first execution and survives the worker that set it.
TEST_P(Fleet, ADeadlineHoldsAcrossAWorkerRestart) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/slow.yaml").string();
  const std::string id = submit({pipeline, "--run-id", "late", "--timeout", "3s"});
  start_worker(0);
  for (int i = 0; i < 500 && log_of(id).summary.status != RunStatus::kRunning; ++i) std::this_thread::sleep_for(10ms);
  kill_worker(0);
  start_worker(1);
  for (int i = 0; i < 1000 && !finished(id); ++i) std::this_thread::sleep_for(10ms);
  RunLog log = log_of(id);
  EXPECT_EQ(log.summary.status, RunStatus::kDeadlineExceeded) << log.summary.error;
  ASSERT_GE(log.records.size(), 2u);
  int64_t first = 0;
  for (const Record& r : log.records) {
    if (r.key.str() == "#deadline") first = r.at_ms;
  }
  EXPECT_NEAR(static_cast<double>(log.records.back().at_ms - first), 3000.0, 1500.0);
}

// SIGTERM: the running stage finishes within the grace period, nothing new is claimed, the worker
// exits 0.
TEST_P(Fleet, SigtermDrainsTheWorker) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/slow.yaml").string();
  const std::string id = submit({pipeline, "--run-id", "drained", "--set", "nap=6s"});
  // Queued behind it (a larger priority number), so the one slot takes `drained` first.
  const std::string queued = submit({pipeline, "--run-id", "not-taken", "--set", "nap=1s", "--priority", "5"});
  start_worker(0, {"--grace", "20s", "--concurrency", "1"});
  for (int i = 0; i < 500 && log_of(id).summary.status != RunStatus::kRunning; ++i) std::this_thread::sleep_for(10ms);
  kill(workers_[0].pid, SIGTERM);
  // While it drains, `crucible workers` and `crucible list` name the worker and what it holds.
  Json listed;
  for (int i = 0; i < 300; ++i) {
    auto rows = parse_json(crucible({"workers", "--json"}).out);
    if (rows && rows->size() == 1 && (*rows)[0]["state"] == "draining") {
      listed = *rows;
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], "w0");
  EXPECT_EQ(listed[0]["runs"], Json::array({"drained"}));
  EXPECT_EQ(listed[0]["live"], true);
  Output table = crucible({"list"});
  EXPECT_NE(table.out.find("WORKER"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("w0"), std::string::npos) << table.out;
  EXPECT_EQ(reap_worker(0), 0) << err_of_last_;
  EXPECT_EQ(parse_json(crucible({"workers", "--json", "--lost", "1h"}).out)->size(), 0u);  // it removed itself
  EXPECT_EQ(log_of(id).summary.status, RunStatus::kCompleted);
  EXPECT_EQ(log_of(queued).summary.status, RunStatus::kQueued);
  EXPECT_NE(err_of_last_.find("draining"), std::string::npos) << err_of_last_;
}

TEST_P(Fleet, SchedulesAreKeptInTheJournalAndBadOnesAreRefusedWithTheirField) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/ordered.yaml").string();
  Output added = crucible({"schedule", "add", "nightly", pipeline, "--cron", "0 2 * * *", "--set", "i=7"});
  ASSERT_EQ(added.code, 0) << added.err;
  EXPECT_NE(added.out.find("next run"), std::string::npos) << added.out;
  EXPECT_EQ(crucible({"schedule", "add", "nightly", pipeline, "--cron", "0 2 * * *"}).code, 2);  // exists
  Output bad = crucible({"schedule", "add", "other", pipeline, "--cron", "0 25 * * *"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("hour"), std::string::npos) << bad.err;
  ASSERT_EQ(crucible({"schedule", "pause", "nightly"}).code, 0);
  Output listed = crucible({"schedule", "list", "--json"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  auto rows = parse_json(listed.out);
  ASSERT_TRUE(rows) << listed.out;
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0]["name"], "nightly");
  EXPECT_EQ((*rows)[0]["paused"], true);
  EXPECT_EQ((*rows)[0]["overrides"]["i"], 7);
  ASSERT_EQ(crucible({"schedule", "remove", "nightly"}).code, 0);
  EXPECT_EQ(parse_json(crucible({"schedule", "list", "--json"}).out)->size(), 0u);
  EXPECT_EQ(crucible({"schedule", "resume", "nightly"}).code, 2);
}

TEST_P(Fleet, BadFleetArgumentsAreUsageErrorsNamingTheFlag) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/ordered.yaml").string();
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  for (const Case& c :
       {Case{{"worker", "--lease", "soon"}, "--lease"}, Case{{"worker", "--concurrency", "0"}, "--concurrency"},
        Case{{"submit", pipeline, "--timeout", "0s"}, "--timeout"},
        Case{{"submit", pipeline, "--queue", ""}, "--queue"}, Case{{"queue", "set", "q", "--rate", "ten"}, "--rate"},
        Case{{"cancel", "no-such-run"}, "no run"}, Case{{"list", "--status", "sleeping"}, "deadline_exceeded"},
        Case{{"workers", "--lost", "a while"}, "--lost"}, Case{{"queue", "set", "q", "--rate", "x/1m"}, "--rate"}}) {
    Output o = crucible(c.args);
    EXPECT_EQ(o.code, 2) << c.args[0] << ": " << o.err;
    EXPECT_NE(o.err.find(c.says), std::string::npos) << o.err;
  }
  ASSERT_EQ(crucible({"queue", "set", "q", "--concurrency", "2", "--rate", "10/1m"}).code, 0);
  Output shown = crucible({"queue", "show", "q", "--json"});
  auto j = parse_json(shown.out);
  ASSERT_TRUE(j) << shown.out;
  EXPECT_EQ((*j)["limits"]["concurrency"], 2);
  EXPECT_EQ((*j)["limits"]["rate_period_ms"], 60000);
}

// The forms a person reads, beside the --json ones the other tests check.
TEST_P(Fleet, CommandsPrintForPeople) {
  const std::string pipeline = fs::absolute("tests/integration/pipelines/slow.yaml").string();
  Output submitted = crucible({"submit", pipeline, "--run-id", "shown", "--queue", "people", "--json"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  EXPECT_EQ((*parse_json(submitted.out))["queue"], "people");
  Output none = crucible({"workers"});
  EXPECT_NE(none.err.find("no live workers"), std::string::npos) << none.err;
  start_worker(0, {"--queue", "people"});
  for (int i = 0; i < 500 && log_of("shown").summary.status != RunStatus::kRunning; ++i)
    std::this_thread::sleep_for(10ms);
  Output table;
  for (int i = 0; i < 300; ++i) {
    table = crucible({"workers"});
    if (table.out.find("shown") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(table.out.find("WORKER"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("w0"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("serving"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("1/8"), std::string::npos) << table.out;
  Output status = crucible({"status", "shown"});
  EXPECT_NE(status.out.find("held by w0"), std::string::npos) << status.out;
  Output queue = crucible({"queue", "show", "people"});
  EXPECT_NE(queue.out.find("running 1"), std::string::npos) << queue.out;
  // A schedule that missed ticks during an outage lists them.
  ASSERT_EQ(crucible({"schedule", "add", "hourly", pipeline, "--cron", "0 * * * *", "--queue", "people"}).code, 0);
  auto stored = journal__->get_value("", "schedule/hourly");
  ASSERT_TRUE(stored && *stored);
  Json with_missed = **stored;
  with_missed["missed"] = Json::array({1'700'000'000'000});
  ASSERT_TRUE(journal__->put_value("", "schedule/hourly", with_missed));
  ASSERT_EQ(crucible({"schedule", "pause", "hourly"}).code, 0);
  ASSERT_EQ(crucible({"schedule", "resume", "hourly"}).code, 0);
  Output listed = crucible({"schedule", "list"});
  EXPECT_NE(listed.out.find("hourly"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("active"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("missed 2023-11-14"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("hourly-20231114T2213Z"), std::string::npos) << listed.out;
  ASSERT_EQ(crucible({"cancel", "shown"}).code, 0);
}

INSTANTIATE_TEST_SUITE_P(Journals, Fleet, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace crucible::integration
