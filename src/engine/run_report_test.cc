#include "crucible/engine/run_report.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

Record record(RecordType type, const std::string& key) {
  Record r;
  r.type = type;
  r.key = StepKey::from_string(key);
  return r;
}

TEST(RunReport, ReadsStepsUsageBranchesAndComparisons) {
  RunLog log;
  log.summary.pipeline = "p";
  log.records.push_back(record(RecordType::kRunStarted, ""));
  Record a = record(RecordType::kStepStarted, "/a");
  a.attempts = 1;
  log.records.push_back(a);
  Record done = record(RecordType::kStepCompleted, "/a");
  done.attempts = 2;
  done.duration_us = 1500;
  done.delta = {{Mutation::Kind::kMetric, "a.llm_tokens_used", 30},
                {Mutation::Kind::kMetric, "a.input_tokens", 20},
                {Mutation::Kind::kMetric, "a.output_tokens", 10},
                {Mutation::Kind::kArtifact, "report", Json{{"tests", Json::array()}, {"verdict", "no difference"}}}};
  log.records.push_back(done);
  Record failed = record(RecordType::kStepFailed, "/b");
  failed.payload = {{"optional", true}};
  failed.error = Error(ErrorCode::kUnavailable, "down");
  log.records.push_back(failed);
  log.records.push_back(record(RecordType::kStepStarted, "/c"));
  Record branch = record(RecordType::kDecision, "/sweep/branch[abc]#branch");
  branch.payload = {{"config_id", "abc"}, {"status", "success"}};
  log.records.push_back(branch);
  Record pick = record(RecordType::kDecision, "/sweep#pick");
  pick.payload = Json(0);
  log.records.push_back(pick);

  RunReport r = RunReport::from_log(log);
  EXPECT_EQ(r.records, 7u);
  ASSERT_EQ(r.steps.size(), 3u);
  EXPECT_EQ(r.steps[0].status, StepStatus::kCompleted);
  EXPECT_EQ(r.steps[0].attempts, 2);
  EXPECT_EQ(r.steps[0].to_json()["duration_ms"], 1.5);
  EXPECT_EQ(r.steps[1].status, StepStatus::kOptionalFailed);
  EXPECT_NE(r.steps[1].error.find("down"), std::string::npos);
  EXPECT_EQ(r.steps[2].status, StepStatus::kInFlight);
  EXPECT_EQ(r.steps[2].to_json()["status"], "in_flight");
  ASSERT_TRUE(r.llm.has_value());
  EXPECT_EQ(r.llm->calls, 1);
  EXPECT_EQ(r.llm->tokens_used, 30);
  EXPECT_EQ(r.llm->input_tokens, 20);
  ASSERT_EQ(r.experiments.count("/sweep"), 1u);
  EXPECT_EQ(r.experiments["/sweep"].size(), 1u);
  ASSERT_EQ(r.comparisons.size(), 1u);
  EXPECT_EQ(r.comparisons[0].first, "/a");
}

TEST(RunReport, AParkedRunShowsWhatItWaitsFor) {
  RunLog log;
  Record park = record(RecordType::kRunSuspended, "/gate");
  park.payload = {{"status", "waiting"}, {"promise", "go"}};
  log.records.push_back(park);
  EXPECT_EQ(RunReport::from_log(log).suspended["promise"], "go");
  log.records.push_back(record(RecordType::kStepStarted, "/gate"));
  EXPECT_TRUE(RunReport::from_log(log).suspended.is_null());
  EXPECT_FALSE(RunReport::from_log(log).llm.has_value());
}

}  // namespace
}  // namespace crucible
