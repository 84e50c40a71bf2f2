#include "crucible/experiment/branch.h"

#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/experiment/run_logger.h"
#include "crucible/experiment/sweep.h"
#include "crucible/journal/journal.h"
#include "crucible/journal/memory_journal.h"

namespace crucible {
namespace {

TEST(ConfigId, UsesTheConfigsOwnIdElseAHashOfSortedJson) {
  EXPECT_EQ(config_id_of(Json{{"config_id", "baseline"}, {"lr", 0.1}}), "baseline");
  EXPECT_EQ(config_id_of(Json{{"config_id", 7}}), "7");
  std::string a = config_id_of(Json::parse(R"({"lr": 0.1, "model": "small"})"));
  std::string b = config_id_of(Json::parse(R"({"model": "small", "lr": 0.1})"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, config_id_of(Json::parse(R"({"lr": 0.2, "model": "small"})")));
  // sha256('{"lr":0.1,"model":"small"}')[:16], stable across runs and builds.
  EXPECT_EQ(a, "c73416749daeeb1d");
}

TEST(Branch, FinalisesExactlyOnce) {
  FakeClock clock;
  Branch b(Json{{"lr", 0.1}}, clock);
  EXPECT_EQ(b.status(), BranchStatus::kPending);
  EXPECT_FALSE(b.duration());
  clock.advance(std::chrono::milliseconds(250));
  ASSERT_TRUE(b.mark_success(Json{{"score", 0.9}}, clock));
  EXPECT_EQ(b.status(), BranchStatus::kSuccess);
  EXPECT_EQ(b.duration()->count(), 250'000);
  auto again = b.mark_failure(Error(ErrorCode::kInternal, "late"), clock);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(b.mark_skipped("no", clock));
  EXPECT_EQ(b.status(), BranchStatus::kSuccess);
  EXPECT_EQ(b.output()["score"], 0.9);
}

TEST(Branch, RoundTripsThroughJson) {
  FakeClock clock;
  Branch b(Json{{"lr", 0.1}}, clock, "x");
  clock.advance(std::chrono::milliseconds(3));
  ASSERT_TRUE(b.mark_failure(Error(ErrorCode::kUnavailable, "gpu lost"), clock));
  Json j = b.to_json();
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["error"]["code"], "unavailable");
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 3.0);
  auto back = Branch::from_json(j);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->config_id(), "x");
  EXPECT_EQ(back->status(), BranchStatus::kFailed);
  EXPECT_EQ(back->error()->message(), "gpu lost");
  EXPECT_EQ(back->duration()->count(), 3000);
  EXPECT_FALSE(Branch::from_json(Json{{"status", "success"}}));
}

TEST(BranchSet, FiltersAndFinds) {
  FakeClock clock;
  BranchSet set;
  for (int i = 0; i < 4; ++i) {
    Branch b(Json{{"i", i}}, clock, "c" + std::to_string(i));
    if (i % 2 == 0)
      ASSERT_TRUE(b.mark_success(Json(i), clock));
    else
      ASSERT_TRUE(b.mark_failure(Error(ErrorCode::kInternal, "odd"), clock));
    set.add(std::move(b));
  }
  EXPECT_EQ(set.size(), 4u);
  EXPECT_EQ(set.successful().size(), 2u);
  EXPECT_EQ(set.failed().size(), 2u);
  ASSERT_NE(set.by_config_id("c3"), nullptr);
  EXPECT_EQ(set.by_config_id("c3")->status(), BranchStatus::kFailed);
  EXPECT_EQ(set.by_config_id("nope"), nullptr);
  int n = 0;
  for (const Branch& b : set) n += b.config()["i"].get<int>();
  EXPECT_EQ(n, 6);
}

TEST(Sweep, ExpandsListsAtAnyDepthInProductOrder) {
  Json sweep = Json::parse(R"({"model": ["a", "b"], "opt": {"lr": [0.1, 0.01, 0.001], "name": "adam"},
                              "layers": [[64, 64], [128]], "seed": 1})");
  auto configs = expand_sweep(sweep);
  ASSERT_TRUE(configs) << configs.error().to_string();
  ASSERT_EQ(configs->size(), 2u * 2u * 3u);
  // Keys are sorted: layers varies slowest, then model, then opt.lr.
  EXPECT_EQ((*configs)[0],
            Json::parse(R"({"layers": [64, 64], "model": "a", "opt": {"lr": 0.1, "name": "adam"}, "seed": 1})"));
  EXPECT_EQ((*configs)[1]["opt"]["lr"], 0.01);
  EXPECT_EQ((*configs)[3]["model"], "b");
  EXPECT_EQ((*configs)[6]["layers"], Json::parse("[128]"));
  std::set<std::string> ids;
  for (const Json& c : *configs) ids.insert(config_id_of(c));
  EXPECT_EQ(ids.size(), configs->size());
  // Stable across expansions.
  EXPECT_EQ(config_id_of((*expand_sweep(sweep))[5]), config_id_of((*configs)[5]));
}

TEST(Sweep, RejectsEmptyListsAndHugeGrids) {
  auto empty = expand_sweep(Json::parse(R"({"a": {"b": []}})"));
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("sweep.a.b"), std::string::npos);
  Json big = Json::object();
  for (int i = 0; i < 6; ++i) big["k" + std::to_string(i)] = Json::array({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  auto huge = expand_sweep(big);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::kOutOfRange);
  EXPECT_FALSE(expand_sweep(Json::array({1, 2})));
  EXPECT_EQ(expand_sweep(Json{{"a", 1}})->size(), 1u);
}

TEST(Sweep, RandomSearchDrawsDistinctSeededConfigs) {
  Json big = Json::object();
  for (int i = 0; i < 6; ++i) big["k" + std::to_string(i)] = Json::array({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  auto a = random_search(big, 20, 42);
  auto b = random_search(big, 20, 42);
  auto c = random_search(big, 20, 43);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  std::set<std::string> ids;
  for (const Json& cfg : *a) ids.insert(config_id_of(cfg));
  EXPECT_EQ(ids.size(), 20u);
  auto all = random_search(Json::parse(R"({"x": [1, 2, 3]})"), 10, 1);
  EXPECT_EQ(all->size(), 3u);
  EXPECT_FALSE(random_search(big, 0, 1));
}

TEST(InMemoryRunLogger, OneRunPerBranchFromManyThreads) {
  InMemoryRunLogger logger;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto run = logger.start_run("exp", "c" + std::to_string(t));
        ASSERT_TRUE(run);
        ASSERT_TRUE(logger.log_params(*run, Json{{"t", t}}));
        ASSERT_TRUE(logger.log_metrics(*run, Json{{"score", i}}));
        ASSERT_TRUE(logger.end_run(*run, BranchStatus::kSuccess));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(logger.run_count(), 400u);
  for (const auto& [id, run] : logger.runs()) {
    EXPECT_TRUE(run.ended);
    EXPECT_EQ(run.metrics.size(), 1u);
    EXPECT_EQ("c" + std::to_string(run.params["t"].get<int>()), run.config_id) << id;
  }
  EXPECT_FALSE(logger.log_params("missing", Json::object()));
  auto run = logger.start_run("exp", "x");
  ASSERT_TRUE(logger.end_run(*run, BranchStatus::kFailed));
  EXPECT_FALSE(logger.end_run(*run, BranchStatus::kFailed));
  EXPECT_FALSE(logger.log_metrics(*run, Json(3)));
}

TEST(JsonlRunLogger, AppendsOneLinePerCall) {
  std::string path = testing::TempDir() + "/runs.jsonl";
  std::remove(path.c_str());
  {
    auto logger = JsonlRunLogger::open(path);
    ASSERT_TRUE(logger);
    FakeClock clock;
    Branch b(Json{{"lr", 1}}, clock, "c1");
    ASSERT_TRUE(b.mark_success(Json{{"score", 2}}, clock));
    auto run = (*logger)->start_run("exp", "c1");
    ASSERT_TRUE((*logger)->log_params(*run, b.config()));
    ASSERT_TRUE((*logger)->log_metrics(*run, Json{{"score", 2}}, 1));
    ASSERT_TRUE((*logger)->log_branch(*run, b));
    ASSERT_TRUE((*logger)->end_run(*run, BranchStatus::kSuccess));
  }
  std::ifstream in(path);
  std::vector<Json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(Json::parse(line));
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0]["event"], "start_run");
  EXPECT_EQ(lines[2]["metrics"]["score"], 2);
  EXPECT_EQ(lines[3]["branch"]["status"], "success");
  EXPECT_EQ(lines[4]["status"], "success");
  auto bad = JsonlRunLogger::open("/nonexistent-dir/x.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("/nonexistent-dir/x.jsonl"), std::string::npos);
}

TEST(JournalRunLogger, RecordsEachBranchInTheRun) {
  auto journal_owner = make_memory_journal();
  Journal& journal = *journal_owner;
  const RunId r1 = *RunId::parse("r1");
  Record start;
  start.type = RecordType::kRunStarted;
  start.run_id = r1;
  start.payload = Json{{"pipeline", "p"}};
  ASSERT_TRUE(journal.append(std::move(start), Durability::kStrict));
  JournalRunLogger logger(journal, r1);
  FakeClock clock;
  Branch b(Json{{"lr", 1}}, clock, "c1");
  ASSERT_TRUE(b.mark_success(Json{{"score", 2}}, clock));
  auto run = logger.start_run("sweep", "c1");
  ASSERT_TRUE(run);
  EXPECT_EQ(*run, "/sweep/branch[c1]");
  EXPECT_FALSE(logger.start_run("sweep", "c1"));  // one live run per branch
  ASSERT_TRUE(logger.log_params(*run, b.config()));
  ASSERT_TRUE(logger.log_metrics(*run, Json{{"score", 2}}));
  ASSERT_TRUE(logger.log_branch(*run, b));
  ASSERT_TRUE(logger.end_run(*run, BranchStatus::kSuccess));
  ASSERT_TRUE(journal.flush());
  auto log = journal.read_run(r1);
  ASSERT_TRUE(log);
  const Record& r = log->records.back();
  EXPECT_EQ(r.type, RecordType::kDecision);
  EXPECT_EQ(r.key.str(), "/sweep/branch[c1]#branch");
  EXPECT_EQ(r.payload["status"], "success");
  EXPECT_EQ(r.payload["metrics"]["score"], 2);
  EXPECT_EQ(r.payload["params"]["lr"], 1);
}

}  // namespace
}  // namespace crucible
