// Crash tests with an external oracle: a child `crucible` process is killed with SIGKILL at
// random points and resumed until the run completes; the oracle file, written by the stages
// themselves, shows how often each step really ran.
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

const char* kPipeline = "tests/integration/pipelines/crash.yaml";

int crash_points() {
  if (const char* env = std::getenv("CRUCIBLE_CRASH_POINTS")) return std::max(1, std::atoi(env));
  return 50;
}

std::unique_ptr<testing::PostgresServer>& postgres() {
  static std::unique_ptr<testing::PostgresServer> server;
  return server;
}

// The journal a crash test writes to: a SQLite file in `dir`, or a fresh PostgreSQL database.
std::string journal_for(const std::string& kind, const std::string& dir) {
  if (kind == "sqlite") return dir + "/j.db";
  if (!postgres()) {
    auto started = testing::PostgresServer::start();
    CRUCIBLE_CHECK(started.has_value());
    postgres() = std::move(*started);
  }
  auto url = postgres()->create_database();
  CRUCIBLE_CHECK(url.has_value());
  return *url;
}

std::unique_ptr<Journal> open_any(const std::string& journal) {
  SqliteJournalOptions file;
  file.path = journal;
  auto j =
      is_postgres_url(journal) ? open_postgres_journal(PostgresJournalOptions{journal}) : open_sqlite_journal(file);
  return j ? std::move(*j) : nullptr;
}

struct JournalView {
  std::set<std::string> completed;
  RunStatus status = RunStatus::kRunning;
  bool exists = false;
};

JournalView view(const std::string& journal, const std::string& run_id) {
  JournalView v;
  auto j = open_any(journal);
  EXPECT_TRUE(j) << journal;
  if (!j) return v;
  auto log = j->read_run(*RunId::parse(run_id));
  if (!log) return v;
  v.exists = true;
  v.status = log->summary.status;
  for (const Record& r : log->records) {
    if (r.type == RecordType::kStepCompleted) v.completed.insert(r.key.str());
  }
  return v;
}

// The run's observable result: metrics, state and trace from `--json`.
Json outcome(const std::string& json_text) {
  auto j = parse_json(json_text);
  EXPECT_TRUE(j) << json_text;
  if (!j) return Json();
  return Json{
      {"status", (*j)["status"]}, {"metrics", (*j)["metrics"]}, {"state", (*j)["state"]}, {"trace", (*j)["trace"]}};
}

// The parameter: "strict" and "batched" on a SQLite file per case, "postgres" (strict) on one
// PostgreSQL database shared by every case (each case its own run id).
class CrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string durability() const { return GetParam() == "batched" ? "batched" : "strict"; }
  std::string journal_in(const std::string& dir) {
    if (GetParam() != "postgres") return dir + "/j.db";
    if (shared_.empty()) shared_ = journal_for("postgres", dir);
    return shared_;
  }

  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("crucible-crash-" + std::to_string(getpid()) + "-" + GetParam())).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  std::vector<std::string> args(const std::string& journal, const std::string& oracle, const std::string& markers) {
    return {"--journal",
            journal,
            "--quiet",
            "run",
            kPipeline,
            "--durability",
            durability(),
            "--set",
            "oracle=" + oracle,
            "--set",
            "marker_dir=" + markers,
            "--json"};
  }

  std::string dir_;
  std::string shared_;  // the PostgreSQL database
};

TEST_P(CrashTest, KilledRunsResumeWithoutRepeatingFinishedSteps) {
  // The uninterrupted reference.
  std::string ref_dir = dir_ + "/reference";
  fs::create_directories(ref_dir);
  auto ref_args = args(journal_in(ref_dir), ref_dir + "/oracle", ref_dir);
  ref_args.insert(ref_args.end(), {"--run-id", "ref"});
  auto t0 = std::chrono::steady_clock::now();
  Output ref = run_crucible(ref_args, ref_dir);
  auto ref_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(ref.code, 0) << ref.err;
  Json expected = outcome(ref.out);
  ASSERT_EQ(expected["status"], "completed");
  const size_t steps = lines_of(ref_dir + "/oracle").size();

  std::mt19937 rng(20261121);
  // Kills land in the first three quarters of the reference's time, so that a loaded machine
  // (the reference slow, a later run quick) still kills runs inside; resumes are killed too, so
  // the last quarter of a run is crashed at from there.
  std::uniform_int_distribution<int> delay(0, static_cast<int>(ref_ms * 3 / 4) + 5);
  int crashes_total = 0;
  // A PostgreSQL commit costs several times SQLite's here, so it gets half the points.
  const int points = GetParam() == "postgres" ? std::max(1, crash_points() / 2) : crash_points();
  for (int point = 0; point < points; ++point) {
    std::string case_dir = dir_ + "/case" + std::to_string(point);
    fs::create_directories(case_dir);
    std::string journal = journal_in(case_dir), oracle = case_dir + "/oracle";
    std::string run_id = "crash-" + std::to_string(point);
    auto run_args = args(journal, oracle, case_dir);
    run_args.insert(run_args.end(), {"--run-id", run_id});

    struct Crash {
      std::set<std::string> completed;  // durable when the process died
      size_t oracle_lines;              // executions before the crash
    };
    std::vector<Crash> crash_log;
    Output last{-1, "", ""};
    for (int attempt = 0; attempt < 20; ++attempt) {
      Child child = spawn_crucible(run_args, case_dir + "/out", case_dir + "/err");
      ASSERT_GT(child.pid, 0);
      // The first attempt is always killed, later ones (the resumes) half of the time.
      if (attempt == 0 || (attempt < 6 && rng() % 2 == 0)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
        ::kill(child.pid, SIGKILL);
      }
      int code = wait_child(child);
      last = Output{code, slurp(case_dir + "/out"), slurp(case_dir + "/err")};
      if (code == 128 + SIGKILL) {
        crash_log.push_back(Crash{view(journal, run_id).completed, lines_of(oracle).size()});
        continue;
      }
      ASSERT_EQ(code, 0) << last.err;
      break;
    }
    auto all = lines_of(oracle);
    for (size_t i = 0; i < crash_log.size(); ++i) {
      const Crash& c = crash_log[i];
      size_t end = i + 1 < crash_log.size() ? crash_log[i + 1].oracle_lines : all.size();
      std::set<std::string> before(all.begin(), all.begin() + static_cast<long>(c.oracle_lines));
      int reran = 0;
      for (size_t l = c.oracle_lines; l < all.size(); ++l) {
        EXPECT_FALSE(c.completed.contains(all[l]))
            << "point " << point << ": completed step " << all[l] << " ran again";
        if (l < end && before.contains(all[l])) ++reran;
      }
      // Only steps in flight at the crash run again: one per concurrent branch (2 here). In
      // batched mode the unsynced suffix may also re-run; it was never acknowledged.
      if (durability() == "strict") {
        EXPECT_LE(reran, 2) << "point " << point;
      }
    }
    int crashes = static_cast<int>(crash_log.size());
    crashes_total += crashes;
    JournalView final_view = view(journal, run_id);
    EXPECT_EQ(final_view.status, RunStatus::kCompleted) << "point " << point;
    // No acknowledged step was lost and the result equals the uninterrupted run's.
    EXPECT_EQ(outcome(last.out), expected) << "point " << point << "\n" << last.err;
    auto executed = lines_of(oracle);
    std::set<std::string> distinct(executed.begin(), executed.end());
    EXPECT_EQ(distinct.size(), steps) << "point " << point;
  }
  EXPECT_GT(crashes_total, points / 2) << "too few kills landed inside a run";
  RecordProperty("crashes", crashes_total);
}

INSTANTIATE_TEST_SUITE_P(Durability, CrashTest, ::testing::Values("strict", "batched", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Finished branch outcomes in the journal: config index -> status.
std::map<int, std::string> finished_branches(const std::string& journal, const std::string& run_id) {
  std::map<int, std::string> out;
  auto j = open_any(journal);
  if (!j) return out;
  auto log = j->read_run(*RunId::parse(run_id));
  if (!log) return out;
  for (const Record& r : log->records) {
    if (r.type == RecordType::kDecision && r.key.str().ends_with("]#branch")) {
      out[r.payload["config"]["i"].get<int>()] = r.payload["status"].get<std::string>();
    }
  }
  return out;
}

class ExperimentCrash : public ::testing::TestWithParam<std::string> {};

// Killed while branches run on one machine, resumed on another (another working folder, so
// nothing local is shared but the journal): finished branches do not run again.
TEST_P(ExperimentCrash, KilledExperimentResumesOnlyUnfinishedBranches) {
  std::string dir =
      (fs::temp_directory_path() / ("crucible-exp-crash-" + GetParam() + "-" + std::to_string(getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir + "/a");
  fs::create_directories(dir + "/b");
  const std::string journal = journal_for(GetParam(), dir), oracle = dir + "/oracle";
  const std::string pipeline = fs::absolute("tests/integration/pipelines/experiment_crash.yaml").string();
  Child child =
      spawn_crucible({"--journal", journal, "--quiet", "run", pipeline, "--set", "oracle=" + oracle, "--run-id", "exp"},
                     dir + "/out", dir + "/err", dir + "/a");
  ASSERT_GT(child.pid, 0);
  // Kill once the fifth branch has started: about two pairs of branches have finished.
  for (int i = 0; i < 1000 && lines_of(oracle).size() < 5; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(child.pid, SIGKILL);
  ASSERT_EQ(wait_child(child), 128 + SIGKILL);
  std::map<int, std::string> before = finished_branches(journal, "exp");
  ASSERT_GE(before.size(), 2u) << slurp(dir + "/err");
  ASSERT_LT(before.size(), 8u);
  std::map<int, int> runs_before;
  for (const std::string& l : lines_of(oracle)) runs_before[std::stoi(l)]++;

  Child resume = spawn_crucible({"--journal", journal, "--quiet", "resume", "exp", "--json"}, dir + "/rout",
                                dir + "/rerr", dir + "/b");
  ASSERT_EQ(wait_child(resume), 0) << slurp(dir + "/rerr") << slurp(dir + "/rout");
  std::map<int, int> runs_after;
  for (const std::string& l : lines_of(oracle)) runs_after[std::stoi(l)]++;
  for (const auto& [i, status] : before) {
    EXPECT_EQ(status, "success");
    EXPECT_EQ(runs_after[i], runs_before[i]) << "branch " << i << " had finished and ran again";
    EXPECT_EQ(runs_after[i], 1);
  }
  for (int i = 0; i < 8; ++i) EXPECT_GE(runs_after[i], 1) << "branch " << i << " never ran";
  std::map<int, std::string> after = finished_branches(journal, "exp");
  EXPECT_EQ(after.size(), 8u);
  auto result = parse_json(slurp(dir + "/rout"));
  ASSERT_TRUE(result);
  EXPECT_EQ((*result)["status"], "completed");
  EXPECT_EQ((*result)["metrics"]["sweep.succeeded"], 8);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Journals, ExperimentCrash, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace crucible::integration
