// The `experiment` node and the `compare` stage in pipelines.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

struct Counter {
  std::mutex mu;
  std::map<std::string, int> by_branch;  // config_id -> executions
  int total() {
    std::lock_guard lock(mu);
    int n = 0;
    for (auto& [_, c] : by_branch) n += c;
    return n;
  }
};

class ExperimentPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = builtin_registry();
    auto counter = counter_;
    ASSERT_TRUE(registry_.register_stage("count", [counter] {
      StageDescription d;
      d.name = "count";
      d.summary = "counts executions per branch and records score = config.x * 10";
      return make_function_stage(d, [counter](Context& ctx, const StageOptions&, std::stop_token) -> Status {
        const Json* b = ctx.branch();
        if (b == nullptr) return make_error(ErrorCode::kFailedPrecondition, "not in a branch");
        {
          std::lock_guard lock(counter->mu);
          counter->by_branch[(*b)["config_id"].get<std::string>()]++;
        }
        ctx.put_metric("score", (*b)["config"].value("x", 0) * 10);
        return {};
      });
    }));
    journal_ = make_memory_journal();
    runner_ = std::make_unique<Runner>(*journal_, executor_, clock_, random_, registry_);
    dir_ = std::filesystem::path(testing::TempDir()) / ("exp_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    runner_->set_artifact_root(dir_.string());
  }

  LoadResult load_raw(const std::string& yaml) { return load_pipeline_text(yaml, "exp.yaml", registry_); }

  WorkflowSpec load(const std::string& yaml) {
    LoadResult r = load_raw(yaml);
    EXPECT_TRUE(r.ok()) << r.report();
    return r.ok() ? *r.spec : WorkflowSpec{};
  }

  RunResult run(Runner& runner, const WorkflowSpec& spec) {
    auto r = runner.start(spec);
    EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
  }

  StageRegistry registry_;
  std::shared_ptr<Counter> counter_ = std::make_shared<Counter>();
  std::unique_ptr<Journal> journal_;
  Executor executor_{4};
  FakeClock clock_;
  SeededRandom random_{7};
  std::unique_ptr<Runner> runner_;
  std::filesystem::path dir_;
};

const char* kMulti = R"(
name: multi
stages:
  - name: sweep
    experiment:
      strategy: multi_branch
      max_concurrency: 2
      sweep: {x: [1, 2, 3, 4]}
      stages:
        - {name: train, uses: count}
        - name: check
          uses: assert
          with: {that: "branch.config.x != 3", message: "x = 3 diverges"}
  - {name: after, uses: noop}
)";

TEST_F(ExperimentPipelineTest, MultiBranchRunsEveryConfigAndRecordsFailuresWithoutFailing) {
  RunResult r = run(*runner_, load(kMulti));
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  EXPECT_EQ(counter_->total(), 4);
  const Json* state = r.context.get("sweep");
  ASSERT_NE(state, nullptr);
  ASSERT_EQ((*state)["branches"].size(), 4u);
  EXPECT_EQ((*state)["strategy"], "multi_branch");
  const Json& third = (*state)["branches"][2];
  EXPECT_EQ(third["config"]["x"], 3);
  EXPECT_EQ(third["status"], "failed");
  EXPECT_NE(third["error"]["message"].get<std::string>().find("x = 3 diverges"), std::string::npos);
  EXPECT_EQ((*state)["branches"][1]["metrics"]["score"], 20);
  EXPECT_EQ(*r.context.get_metric("sweep.succeeded"), 3);
  EXPECT_EQ(*r.context.get_metric("sweep.failed"), 1);
  EXPECT_FALSE(r.context.has_metric("score"));  // branch metrics stay in their branch
  // Each branch has its own step keys and one outcome record.
  auto log = journal_->read_run(r.run_id);
  int outcomes = 0;
  std::set<std::string> train_keys;
  for (const Record& rec : log->records) {
    if (rec.key.str().ends_with("]#branch")) ++outcomes;
    if (rec.type == RecordType::kStepCompleted && rec.key.str().ends_with("/train")) train_keys.insert(rec.key.str());
  }
  EXPECT_EQ(outcomes, 4);
  ASSERT_EQ(train_keys.size(), 4u);
  EXPECT_EQ(train_keys.count("/sweep/branch[" + third["config_id"].get<std::string>() + "]/train"), 1u);
}

TEST_F(ExperimentPipelineTest, ResumeRunsOnlyBranchesThatHadNotFinished) {
  WorkflowSpec spec = load(kMulti);
  spec.stages[0].as<ExperimentNode>().max_concurrency = 1;  // branches finish in config order
  RunResult full = run(*runner_, spec);
  ASSERT_EQ(full.status, RunStatus::kCompleted);
  auto log = journal_->read_run(full.run_id);
  // The journal as a crash after the second branch finished and the third had started would
  // leave it: everything up to the third branch's first completed step.
  std::vector<Record> prefix;
  int finished = 0;
  for (const Record& rec : log->records) {
    prefix.push_back(rec);
    if (rec.key.str().ends_with("]#branch")) ++finished;
    if (finished == 2 && rec.type == RecordType::kStepCompleted && rec.key.str().ends_with("/train")) break;
  }
  ASSERT_EQ(finished, 2);
  auto crashed = make_memory_journal();
  for (Record& rec : prefix) ASSERT_TRUE(crashed->append(std::move(rec), Durability::kStrict));
  counter_->by_branch.clear();
  Runner resumed_runner(*crashed, executor_, clock_, random_, registry_);
  auto resumed = resumed_runner.resume(spec, full.run_id);
  ASSERT_TRUE(resumed) << resumed.error().to_string();
  ASSERT_EQ(resumed->status, RunStatus::kCompleted);
  // Branches 1 and 2 finished and branch 3's train step completed: only branch 4's train runs.
  EXPECT_EQ(counter_->total(), 1);
  EXPECT_EQ(resumed->context.get("sweep")->dump(), full.context.get("sweep")->dump());
  EXPECT_EQ(*resumed->context.get_metric("sweep.failed"), 1);
}

TEST_F(ExperimentPipelineTest, RoundRobinRotatesAcrossRunsAndMergesTheChosenBranch) {
  WorkflowSpec spec = load(R"(
name: rr
stages:
  - name: pick
    experiment:
      strategy: round_robin
      configs: [{config_id: small, x: 1}, {config_id: large, x: 5}]
      stages:
        - {name: train, uses: count}
)");
  std::vector<std::string> chosen;
  for (int i = 0; i < 3; ++i) {
    RunResult r = run(*runner_, spec);
    ASSERT_EQ(r.status, RunStatus::kCompleted);
    const Json* state = r.context.get("pick");
    ASSERT_EQ((*state)["branches"].size(), 1u);
    chosen.push_back((*state)["branches"][0]["config_id"]);
    EXPECT_EQ(*r.context.get_metric("score"), chosen.back() == "small" ? 10 : 50);  // merged unprefixed
  }
  EXPECT_EQ(chosen, (std::vector<std::string>{"small", "large", "small"}));
}

TEST_F(ExperimentPipelineTest, RoundRobinFailureFailsTheRunWithItsCode) {
  WorkflowSpec spec = load(R"(
name: rr_fail
stages:
  - name: pick
    experiment:
      strategy: round_robin
      configs: [{x: 1}]
      stages:
        - {name: check, uses: assert, with: {that: "branch.config.x > 1"}}
)");
  RunResult r = run(*runner_, spec);
  ASSERT_EQ(r.status, RunStatus::kFailed);
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->message().find("experiment 'pick'"), std::string::npos) << r.error->to_string();
}

TEST_F(ExperimentPipelineTest, ShadowReturnsThePrimaryAndJournalsShadowsBeforeTheRunEnds) {
  WorkflowSpec spec = load(R"(
name: shadow
stages:
  - name: serve
    experiment:
      strategy: shadow
      configs: [{config_id: prod, x: 1}, {config_id: candidate, x: 2}, {config_id: broken, x: 0}]
      stages:
        - {name: train, uses: count}
        - {name: check, uses: assert, with: {that: "branch.config.x != 0"}}
  - {name: next, uses: noop}
)");
  RunResult r = run(*runner_, spec);
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  EXPECT_EQ(*r.context.get_metric("score"), 10);  // the primary's
  EXPECT_EQ(counter_->total(), 3);
  auto log = journal_->read_run(r.run_id);
  std::map<std::string, std::string> status;
  for (const Record& rec : log->records) {
    if (rec.key.str().ends_with("]#branch")) status[rec.payload["config_id"]] = rec.payload["status"];
  }
  EXPECT_EQ(status,
            (std::map<std::string, std::string>{{"prod", "success"}, {"candidate", "success"}, {"broken", "failed"}}));
}

TEST_F(ExperimentPipelineTest, CompareWritesTheReportsAndDetectsTheDifference) {
  WorkflowSpec spec = load(R"(
name: cmp
reliability:
  stats: {alpha: 0.01}
stages:
  - name: sweep
    experiment:
      sweep: {base: [0, 10], seed: [1, 2, 3, 4, 5, 6]}
      stages:
        - name: score
          uses: metric
          with: {name: loss, value: "${branch.config.base + branch.config.seed % 4}"}
  - name: report
    uses: compare
    with: {experiment: sweep, metric: loss, group_by: base, paired_by: seed, higher_is_better: false}
)");
  RunResult r = run(*runner_, spec);
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  const Json* c = r.context.get_artifact("report");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ((*c)["alpha"], 0.01);
  EXPECT_EQ((*c)["groups"].size(), 2u);
  EXPECT_EQ((*c)["groups"][0]["name"], "0");
  EXPECT_EQ((*c)["best"], "0");
  EXPECT_EQ((*c)["pairs"], 6);
  EXPECT_TRUE((*c)["significant"].get<bool>());
  std::set<std::string> tests;
  for (const Json& t : (*c)["tests"]) tests.insert(t["test"]);
  EXPECT_EQ(tests, (std::set<std::string>{"welch_t", "mann_whitney_u", "paired_t", "wilcoxon_signed_rank"}));
  EXPECT_NEAR((*c)["bootstrap"]["difference"].get<double>(), 10.0, 1e-9);
  std::filesystem::path base = dir_ / r.run_id.str() / "report";
  for (const char* ext : {".json", ".md", ".svg"}) {
    EXPECT_TRUE(std::filesystem::exists(base.string() + ext)) << base.string() + ext;
  }
  std::ifstream md(base.string() + ".md");
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("| welch_t |"), std::string::npos) << text;
  EXPECT_EQ(r.context.get_artifact("report.markdown")->get<std::string>(), text);
  EXPECT_EQ(*r.context.get_metric("report.significant"), true);
}

TEST_F(ExperimentPipelineTest, CompareNamesAMissingMetric) {
  WorkflowSpec spec = load(R"(
name: cmp_bad
stages:
  - name: sweep
    experiment:
      configs: [{x: 1}, {x: 2}]
      stages: [{name: train, uses: count}]
  - {name: report, uses: compare, with: {experiment: sweep, metric: accuracy}}
)");
  RunResult r = run(*runner_, spec);
  ASSERT_EQ(r.status, RunStatus::kFailed);
  EXPECT_NE(r.error->message().find("has no metric 'accuracy' (it has: score)"), std::string::npos)
      << r.error->to_string();
}

TEST_F(ExperimentPipelineTest, BadExperimentsAreRejectedWithLocations) {
  struct Case {
    const char* yaml;
    const char* expect;
  };
  const Case cases[] = {
      {"name: x\nstages:\n  - name: e\n    experiment:\n      strategy: multibranch\n      configs: [{a: 1}]\n      "
       "stages: [{name: s, uses: noop}]\n",
       "exp.yaml:5:17: error: stages[0] 'e'.experiment.strategy: unknown strategy 'multibranch' (expected "
       "multi_branch, round_robin, shadow); did you mean 'multi_branch'?"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      sweep: {a: [1, 2]}\n      configs: [{a: 1}]\n      "
       "stages: [{name: s, uses: noop}]\n",
       "exactly one of 'configs'"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      sweep: {a: {b: []}}\n      stages: [{name: s, uses: "
       "noop}]\n",
       "exp.yaml:5:14: error: stages[0] 'e'.experiment.sweep: sweep.a.b: an empty list gives no configs"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      configs: [{config_id: a}, {config_id: a}]\n      stages: "
       "[{name: s, uses: noop}]\n",
       "the same config_id 'a'"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      configs: [{a: 1}]\n", "missing required key 'stages'"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      configs: [{a: 1}]\n      max_concurrency: 0\n      "
       "stages: [{name: s, uses: noop}]\n",
       "must be between 1 and 1024"},
      {"name: x\nstages:\n  - name: e\n    experiment:\n      configs: [3]\n      stages: [{name: s, uses: noop}]\n",
       "expected a config mapping"},
  };
  for (const Case& c : cases) {
    LoadResult r = load_raw(c.yaml);
    EXPECT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.report().find(c.expect), std::string::npos) << r.report();
  }
}

TEST_F(ExperimentPipelineTest, RandomSearchDrawsTheSameConfigsEveryLoad) {
  const char* yaml = R"(
name: rs
stages:
  - name: search
    experiment:
      sweep: {lr: [0.1, 0.01, 0.001, 0.0001], width: [64, 128, 256], depth: [2, 4]}
      samples: 5
      seed: 3
      stages: [{name: train, uses: noop}]
)";
  WorkflowSpec a = load(yaml), b = load(yaml);
  ASSERT_EQ(a.stages[0].as<ExperimentNode>().configs.size(), 5u);
  EXPECT_EQ(a.stages[0].as<ExperimentNode>().configs, b.stages[0].as<ExperimentNode>().configs);
  EXPECT_EQ(a.hash, b.hash);
}

}  // namespace
}  // namespace crucible
