#include "crucible/engine/schedule.h"

#include <gtest/gtest.h>

#include <thread>

#include "runner_fixture.h"

namespace crucible::engine_test {
namespace {

class ScheduleTest : public RunnerTest {
 protected:
  void SetUp() override {
    RunnerTest::SetUp();
    // 2026-12-01 10:00:30 UTC.
    clock_.advance(std::chrono::milliseconds(1'796'119'230'000 - clock_.now_ms()));
    spec_ = load("name: nightly\nstages: [{name: a, uses: probe}]\n");
  }

  void add(const std::string& name, const std::string& cron, bool backfill = false) {
    Schedule s;
    s.name = name;
    s.cron = cron;
    s.spec = {{"format", "yaml"}, {"text", "name: nightly\nstages: [{name: a, uses: probe}]\n"}};
    s.backfill = backfill;
    s.created_ms = clock_.now_ms();
    ASSERT_TRUE(journal_->put_value("", schedule_key(name), s.to_json()));
  }

  FireReport fire(Runner& runner) {
    auto report = fire_schedules(
        *journal_, runner, [this](const Json&) -> Result<WorkflowSpec> { return spec_; }, clock_.now_ms());
    EXPECT_TRUE(report) << report.error().to_string();
    return report ? *report : FireReport{};
  }

  size_t queued() {
    RunFilter f;
    f.status = RunStatus::kQueued;
    return journal_->list_runs(f)->size();
  }

  WorkflowSpec spec_;
};

TEST_F(ScheduleTest, EachTickStartsOneRunNamedAfterTheScheduleAndTheTick) {
  add("every5", "*/5 * * * *");
  EXPECT_TRUE(fire(*runner_).started.empty());  // 10:00:30: the next tick is 10:05
  clock_.advance(4min + 30s);
  FireReport r = fire(*runner_);
  ASSERT_EQ(r.started.size(), 1u);
  EXPECT_EQ(r.started[0].run_id.str(), "every5-20261201T1005Z");
  EXPECT_TRUE(fire(*runner_).started.empty());  // the same instant again: nothing new
  clock_.advance(5min);
  ASSERT_EQ(fire(*runner_).started.size(), 1u);
  EXPECT_EQ(queued(), 2u);
}

TEST_F(ScheduleTest, ManyWorkersFiringAtOnceStartEachTickOnce) {
  add("every5", "*/5 * * * *");
  clock_.advance(5min);
  std::vector<std::unique_ptr<Runner>> runners;
  for (int i = 0; i < 3; ++i)
    runners.push_back(std::make_unique<Runner>(*journal_, executor_, clock_, random_, registry_));
  std::vector<std::jthread> threads;
  std::atomic<int> fresh{0};
  for (auto& runner : runners) {
    threads.emplace_back([&, r = runner.get()] {
      for (const FiredTick& t : fire(*r).started) fresh += t.existed ? 0 : 1;
    });
  }
  threads.clear();
  EXPECT_EQ(fresh.load(), 1);
  EXPECT_EQ(queued(), 1u);
}

TEST_F(ScheduleTest, AnOutageIsReportedAndOnlyTheLatestTickRunsUnlessBackfilling) {
  add("skips", "*/5 * * * *");
  add("catches-up", "*/5 * * * *", true);
  clock_.advance(22min);  // ticks 10:05, 10:10, 10:15, 10:20 passed
  FireReport r = fire(*runner_);
  std::map<std::string, std::vector<std::string>> started;
  for (const FiredTick& t : r.started) started[t.schedule].push_back(t.run_id.str());
  EXPECT_EQ(started["skips"], std::vector<std::string>{"skips-20261201T1020Z"});
  EXPECT_EQ(started["catches-up"].size(), 4u);
  EXPECT_EQ(r.missed.size(), 3u);
  auto stored = Schedule::from_json(**journal_->get_value("", schedule_key("skips")));
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->missed.size(), 3u);
}

TEST_F(ScheduleTest, PausedAndRemovedSchedulesStartNothingAndBadOnesAreReported) {
  add("paused", "* * * * *");
  Json paused = **journal_->get_value("", schedule_key("paused"));
  paused["paused"] = true;
  ASSERT_TRUE(journal_->put_value("", schedule_key("paused"), paused));
  ASSERT_TRUE(journal_->put_value("", schedule_key("removed"), Json()));
  add("broken", "61 * * * *");
  clock_.advance(10min);
  FireReport r = fire(*runner_);
  EXPECT_TRUE(r.started.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].first, "broken");
  EXPECT_EQ(r.errors[0].second.field(), "minute");
}

TEST(ScheduleNames, BecomePartOfRunIds) {
  EXPECT_TRUE(check_schedule_name("nightly-eval"));
  EXPECT_FALSE(check_schedule_name(""));
  EXPECT_FALSE(check_schedule_name("has space"));
  auto bad = Schedule::from_json(Json{{"name", 3}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kDataLoss);
  EXPECT_FALSE(Schedule::from_json(Json(1)));
}

}  // namespace
}  // namespace crucible::engine_test
