// The `crucible` command on a PostgreSQL journal (a real server from the test fixture): runs,
// status and list read the database from any working folder; a URL is never taken for a path.
// (A run killed on one machine and resumed on another: crash_test.cc.)
#include <filesystem>

#include <gtest/gtest.h>

#include "crucible/core/json.h"
#include "crucible/testing/postgres_server.h"
#include "process.h"

namespace crucible::integration {
namespace {

namespace fs = std::filesystem;

testing::PostgresServer& server() {
  static std::unique_ptr<testing::PostgresServer> s = [] {
    auto started = testing::PostgresServer::start();
    CRUCIBLE_CHECK(started.has_value());
    return std::move(*started);
  }();
  return *s;
}

class PostgresCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("crucible-pg-cli-" + std::to_string(getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/a");
    fs::create_directories(dir_ + "/b");
    auto url = server().create_database();
    ASSERT_TRUE(url) << url.error().to_string();
    url_ = *url;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // crucible in `cwd` (a machine of its own: its reports go to <cwd>/.crucible).
  Output run_in(const std::string& cwd, const std::vector<std::string>& args) {
    Child c = spawn_crucible(args, dir_ + "/stdout", dir_ + "/stderr", cwd);
    int code = wait_child(c);
    return Output{code, slurp(c.out_path), slurp(c.err_path)};
  }

  Json json_of(const Output& o) {
    auto j = parse_json(o.out);
    EXPECT_TRUE(j) << o.out << o.err;
    return j ? *j : Json();
  }

  std::string dir_, url_;
};

TEST_F(PostgresCli, QuickstartRunsAndIsListedFromTheDatabase) {
  const std::string pipeline = fs::absolute("examples/quickstart.yaml").string();
  Output o = run_in(dir_ + "/a", {"--journal", url_, "run", pipeline, "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["metrics"]["accuracy.accuracy"], 0.86);
  // Another machine (another folder, nothing on its disk) sees the run.
  Output status = run_in(dir_ + "/b", {"--journal", url_, "status", r["run_id"], "--json"});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_EQ(json_of(status)["status"], "completed");
  Output list = run_in(dir_ + "/b", {"--journal", url_, "list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(json_of(list).size(), 1u);
  EXPECT_FALSE(fs::exists(dir_ + "/a/postgresql:"));           // a URL is never taken for a path
  EXPECT_FALSE(fs::exists(dir_ + "/a/.crucible/journal.db"));  // nor is a local journal made beside it
}

TEST_F(PostgresCli, AnUnknownSchemeIsAnErrorNeverAPath) {
  Output o = run_in(dir_ + "/a", {"--journal", "mysql://u:secret@h/db", "list"});
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.err.find("unknown scheme 'mysql://'"), std::string::npos) << o.err;
  EXPECT_EQ(o.err.find("secret"), std::string::npos) << o.err;
  EXPECT_TRUE(fs::is_empty(dir_ + "/a"));
}

// The benchmark brings its own throwaway server; sixteen strict appenders share commits.
TEST_F(PostgresCli, BenchJournalPostgresComparesWithRawCommits) {
  Output o = run_in(dir_ + "/a", {"bench", "journal-postgres", "--quick", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["benchmark"], "journal-postgres");
  EXPECT_GT(r["raw_commit_p50_us"].get<double>(), 0);
  EXPECT_EQ(r["one_appender"]["appends"], 300);
  EXPECT_GT(r["sixteen_appenders"]["appends_per_commit"].get<double>(), 1.0);
  EXPECT_TRUE(r["goals"].contains("group_commit_gain_ge_2x"));
  EXPECT_EQ(o.err.find("NOTICE"), std::string::npos) << o.err;
}

// Four in-process workers finish every submitted run; the figures sit beside raw commits.
TEST_F(PostgresCli, BenchFleetRunsEverySubmittedRunAndComparesWithRawCommits) {
  Output o = run_in(dir_ + "/a", {"bench", "fleet", "--quick", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json r = json_of(o);
  EXPECT_EQ(r["benchmark"], "fleet");
  EXPECT_GT(r["raw_commit_p50_us"].get<double>(), 0);
  EXPECT_EQ(r["sequential_strict_run"]["runs"], 10);
  EXPECT_EQ(r["throughput"]["steps"], 640);
  EXPECT_GT(r["throughput"]["durable_steps_per_s"].get<double>(), 0);
  EXPECT_TRUE(r["goals"].contains("durable_steps_per_s_ge_20000"));
}

}  // namespace
}  // namespace crucible::integration
