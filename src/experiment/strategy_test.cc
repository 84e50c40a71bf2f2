#include "crucible/experiment/strategy.h"

#include <atomic>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/journal_sqlite/sqlite_journal.h"

namespace crucible {
namespace {

using namespace std::chrono_literals;

std::vector<Json> configs(int n) {
  std::vector<Json> out;
  for (int i = 0; i < n; ++i) out.push_back(Json{{"config_id", "c" + std::to_string(i)}, {"i", i}});
  return out;
}

Result<Json> echo(const Json& config, std::stop_token) { return Json{{"score", config["i"]}}; }

TEST(Strategies, EmptyConfigsAreInvalid) {
  for (const char* name : {"round_robin", "shadow", "multi_branch"}) {
    auto s = get_strategy(name);
    ASSERT_TRUE(s);
    auto r = (*s)->run(echo, {}, nullptr);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(StrategyRegistry, RegistersLooksUpAndRejectsDuplicates) {
  auto names = strategy_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "multi_branch"), names.end());
  auto dup = register_strategy("round_robin", [](const StrategyOptions& o) { return std::make_unique<RoundRobin>(o); });
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), ErrorCode::kAlreadyExists);
  ASSERT_TRUE(
      register_strategy("first_only", [](const StrategyOptions& o) { return std::make_unique<RoundRobin>(o); }));
  EXPECT_TRUE(get_strategy("first_only"));
  auto missing = get_strategy("bayesian");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("multi_branch"), std::string::npos);
}

TEST(RoundRobin, RotatesOneConfigPerCall) {
  RoundRobin rr;
  std::vector<int> seen;
  for (int i = 0; i < 7; ++i) {
    auto out = rr.call(echo, configs(3));
    ASSERT_TRUE(out);
    seen.push_back((*out)["score"].get<int>());
  }
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(RoundRobin, FailurePropagatesWithItsOriginalCode) {
  RoundRobin rr;
  auto out = rr.call(
      [](const Json&, std::stop_token) -> Result<Json> { return make_error(ErrorCode::kResourceExhausted, "quota"); },
      configs(2));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(out.error().message(), "quota");
  // A throwing function is a failed branch, not a crash.
  auto thrown =
      rr.call([](const Json&, std::stop_token) -> Result<Json> { throw std::runtime_error("boom"); }, configs(2));
  ASSERT_FALSE(thrown);
  EXPECT_NE(thrown.error().message().find("boom"), std::string::npos);
}

TEST(RoundRobin, PositionSurvivesARestart) {
  auto dir = std::filesystem::path(testing::TempDir()) / "rr_journal";
  std::filesystem::remove_all(dir);
  SqliteJournalOptions o;
  o.path = (dir / "journal.db").string();
  std::vector<int> seen;
  for (int process = 0; process < 3; ++process) {
    auto journal = open_sqlite_journal(o);
    ASSERT_TRUE(journal);
    StrategyOptions so;
    so.experiment = "prompts";
    so.journal = journal->get();
    RoundRobin rr(so);
    for (int call = 0; call < 2; ++call) seen.push_back((*rr.call(echo, configs(4)))["score"].get<int>());
  }
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 0, 1}));
}

TEST(Shadow, ReturnsThePrimaryWithoutWaitingForShadows) {
  Shadow shadow;
  std::atomic<int> shadows_done{0};
  std::atomic<bool> release{false};
  auto fn = [&](const Json& config, std::stop_token) -> Result<Json> {
    if (config["i"] == 0) return Json{{"answer", "primary"}};
    while (!release.load()) std::this_thread::sleep_for(1ms);
    shadows_done.fetch_add(1);
    if (config["i"] == 2) return make_error(ErrorCode::kInternal, "shadow broke");
    return Json{{"answer", "shadow"}};
  };
  auto out = shadow.call(fn, configs(3));
  ASSERT_TRUE(out);
  EXPECT_EQ((*out)["answer"], "primary");
  EXPECT_EQ(shadows_done.load(), 0);  // the primary returned while shadows were still running
  release = true;
  BranchSet shadows = shadow.gather_shadows();
  ASSERT_EQ(shadows.size(), 2u);
  EXPECT_EQ(shadows_done.load(), 2);
  EXPECT_EQ(shadows[0].status(), BranchStatus::kSuccess);
  EXPECT_EQ(shadows[1].status(), BranchStatus::kFailed);
  EXPECT_EQ(shadows[1].error()->message(), "shadow broke");
}

TEST(Shadow, StartsShadowsTogetherWithThePrimary) {
  Shadow shadow;
  std::atomic<bool> shadow_started{false};
  auto fn = [&](const Json& config, std::stop_token) -> Result<Json> {
    if (config["i"] == 1) {
      shadow_started = true;
      return Json(1);
    }
    // The primary waits until the shadow has started: a strategy that ran shadows only after
    // the primary would time out here.
    for (int i = 0; i < 5000 && !shadow_started.load(); ++i) std::this_thread::sleep_for(1ms);
    return Json(shadow_started.load());
  };
  auto out = shadow.call(fn, configs(2));
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, true);
  EXPECT_EQ(shadow.gather_shadows().size(), 1u);
}

TEST(Shadow, PrimaryFailureIsReturnedShadowFailuresNever) {
  Shadow shadow;
  auto out = shadow.call(
      [](const Json& c, std::stop_token) -> Result<Json> {
        if (c["i"] == 0) return make_error(ErrorCode::kUnavailable, "primary down");
        return Json(1);
      },
      configs(2));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(shadow.gather_shadows().successful().size(), 1u);
}

TEST(MultiBranch, RunsAllConcurrentlyAndNeverRaises) {
  StrategyOptions o;
  o.max_concurrency = 16;
  MultiBranch mb(o);
  std::atomic<int> running{0}, peak{0};
  InMemoryRunLogger logger;
  auto set = mb.call(
      [&](const Json& c, std::stop_token) -> Result<Json> {
        int now = running.fetch_add(1) + 1;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(20ms);
        running.fetch_sub(1);
        if (c["i"].get<int>() % 5 == 4) return make_error(ErrorCode::kInternal, "bad config");
        return Json{{"score", c["i"]}};
      },
      configs(32), &logger);
  ASSERT_TRUE(set);
  ASSERT_EQ(set->size(), 32u);
  EXPECT_EQ(set->failed().size(), 6u);
  EXPECT_EQ(set->successful().size(), 26u);
  EXPECT_EQ((*set)[7].config_id(), "c7");  // config order
  EXPECT_LE(peak.load(), 16);
  EXPECT_GE(peak.load(), 8);  // blocking waits overlap beyond the pool size
  EXPECT_EQ(logger.run_count(), 32u);
  for (const auto& [id, run] : logger.runs()) {
    EXPECT_TRUE(run.ended);
    EXPECT_FALSE(run.branch.is_null());
  }
}

TEST(ExperimentWrapper, BindsAStrategyToAFunction) {
  auto run = experiment(std::make_shared<MultiBranch>(), [](const Json& config, int scale) {
    return Json{{"score", config["i"].get<int>() * scale}};
  });
  auto outcome = run(configs(3), 10);
  ASSERT_TRUE(outcome);
  ASSERT_EQ(outcome->branches.size(), 3u);
  EXPECT_EQ(outcome->branches[2].output()["score"], 20);

  auto rr =
      experiment(std::make_shared<RoundRobin>(), [](const Json& config, const std::string& suffix) -> Result<Json> {
        return Json(config["config_id"].get<std::string>() + suffix);
      });
  EXPECT_EQ(rr(configs(2), std::string("!"))->output, "c0!");
  EXPECT_EQ(rr(configs(2), std::string("?"))->output, "c1?");
}

}  // namespace
}  // namespace crucible
