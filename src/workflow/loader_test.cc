#include "crucible/workflow/loader.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "crucible/stages/library.h"

namespace crucible {
namespace {

struct Invalid {
  const char* file;
  const char* location;  // "line:column"
  const char* message;   // a substring of the error
};

// Every file in tests/pipelines/invalid with the located message it must produce.
const Invalid kInvalid[] = {
    {"alias_bomb.yaml", "9:12", "more than 1000000 values once its aliases are expanded"},
    {"bad_duration.yaml", "5:14", "expected a duration such as 500ms, 30s, 5m or 2h, found '5 minutes'"},
    {"bad_stage_name.yaml", "3:12", "stage name 'a b' may contain only letters, digits, '_', '-' and '.'"},
    {"cyclic_alias.yaml", "2:19", "an alias refers to the node that contains it"},
    {"number_out_of_range.yaml", "3:11", "config.target: number 1e999 is out of range"},
    {"too_deep.yaml", "2:208", "the file nests deeper than 200 levels"},
    {"bad_hedging_default.yaml", "5:17", "reliability.hedging.percentile: must be between 1 and 99.99, got 150"},
    {"bad_hedging_option.yaml", "8:27",
     "stages[0] 'a'.hedging.options.delay_candidates: must be a list of at least 2 delays"},
    {"bad_expression.yaml", "5:25", "bad expression 'metrics.acc >> 2': column 14: unexpected '>'"},
    {"bad_template.yaml", "6:43", "bad template 'topic ${config.topic +}'"},
    {"completion_mismatch.yaml", "3:5",
     "use `type: validation` for a validation stage, or `completion: duration_or_tasks`"},
    {"distributed_missing_required.yaml", "2:3", "missing required key 'tree_creation_mode'"},
    {"duplicate_name.yaml", "5:5", "duplicate stage name 'a'"},
    {"wrong_types.yaml", "1:7", "name: expected a string, found a list"},
    {"duplicate_order.yaml", "6:5", "duplicate order 1: stages 'a' and 'b'"},
    {"empty.yaml", "1:1", "the pipeline file is empty"},
    {"hedging_fixed_without_delay.yaml", "8:7",
     "stages[0] 'a'.hedging.delay_ms: hedging strategy fixed needs delay_ms"},
    {"field_of_other_kind.yaml", "5:19", "'max_duration' does not apply to type prepare; it belongs to type hybrid"},
    {"malformed_yaml.yaml", "5:4", "malformed YAML"},
    {"missing_option.yaml", "3:5", "stage type 'metric' needs option 'name'"},
    {"unknown_key.yaml", "5:5", "unknown key 'timout'; did you mean 'timeout'?"},
    {"unknown_stage_type.yaml", "3:5", "unknown stage type 'noopp'; did you mean 'noop'?"},
    {"until_without_max.yaml", "5:7", "an 'until' loop needs 'max'"},
    {"wrong_option_type.yaml", "3:5", "option 'duration' must be duration, found array"},
    {"wrong_type.yaml", "6:17", "expected an integer, found 'three'"},
};

const std::string kDir = "tests/pipelines/invalid/";

TEST(Loader, EveryInvalidPipelineFailsWithItsLocatedMessage) {
  StageRegistry registry = builtin_registry();
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kDir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, std::size(kInvalid)) << "every invalid pipeline needs an expectation";
  for (const Invalid& c : kInvalid) {
    LoadResult r = load_pipeline_file(kDir + c.file, registry);
    EXPECT_FALSE(r.ok()) << c.file;
    std::string report = r.report();
    std::string prefix = kDir + c.file + ":" + c.location + ": error: ";
    EXPECT_NE(report.find(prefix), std::string::npos) << c.file << " report:\n" << report;
    EXPECT_NE(report.find(c.message), std::string::npos) << c.file << " report:\n" << report;
  }
}

TEST(LoaderLimits, OnlyRegularFilesOfBoundedSizeAreRead) {
  StageRegistry registry = builtin_registry();
  LoadResult dir = load_pipeline_file("tests/pipelines", registry);
  EXPECT_NE(dir.report().find("tests/pipelines: error: is a directory"), std::string::npos) << dir.report();
  LoadResult dev = load_pipeline_file("/dev/zero", registry);
  EXPECT_NE(dev.report().find("/dev/zero: error: is not a regular file"), std::string::npos) << dev.report();
  LoadResult missing = load_pipeline_file("tests/pipelines/nope.yaml", registry);
  EXPECT_NE(missing.report().find("no such file"), std::string::npos) << missing.report();
  std::string big = "name: big\nstages:\n  - {name: s, uses: noop}\n# " + std::string(9 << 20, 'x') + "\n";
  LoadResult huge = load_pipeline_text(big, "big.yaml", registry);
  EXPECT_NE(huge.report().find("big.yaml:1:1: error: the pipeline is"), std::string::npos) << huge.report();
  EXPECT_NE(huge.report().find("limited to 8 MiB"), std::string::npos);
}

TEST(LoaderLimits, AHugeStageNameIsALocatedErrorNotACrash) {
  StageRegistry registry = builtin_registry();
  std::string name(50'000, 'a');
  LoadResult r = load_pipeline_text("name: n\nstages:\n  - {name: " + name + ", uses: noop}\n", "n.yaml", registry);
  EXPECT_NE(r.report().find("n.yaml:3:12: error: stages[0].name: stage name is 50000 characters; at most 128"),
            std::string::npos)
      << r.report().substr(0, 300);
  std::string scalar(100'000, '1');  // a long number-like scalar is checked without a regex
  LoadResult s = load_pipeline_text("name: n\nconfig: {x: " + scalar + "}\nstages:\n  - {name: a, uses: noop}\n",
                                    "s.yaml", registry);
  EXPECT_NE(s.report().find("is out of range"), std::string::npos);
}

TEST(LoaderLimits, NumbersKeepTheirTypesAndQuotedOnesStayText) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_text(
      "name: n\nconfig: {a: 12, b: -1.5e3, c: '1e999', d: 1e, e: .5, f: 5., g: +7}\nstages:\n  - {name: a, uses: "
      "noop}\n",
      "n.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  EXPECT_EQ(r.spec->config["a"], 12);
  EXPECT_EQ(r.spec->config["b"], -1500.0);
  EXPECT_EQ(r.spec->config["c"], "1e999");
  EXPECT_EQ(r.spec->config["d"], "1e");
  EXPECT_EQ(r.spec->config["e"], 0.5);
  EXPECT_EQ(r.spec->config["f"], 5.0);
  EXPECT_EQ(r.spec->config["g"], 7);
}

TEST(Loader, ListsEveryErrorNotJustTheFirst) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_text(R"(name: many
stages:
  - name: a
    uses: noop
    timout: 1s
  - name: b
    uses: nope
  - name: c
    uses: noop
    when: "metrics.x >"
    retry: {attempts: lots}
)",
                                    "many.yaml", registry);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_count(), 4u) << r.report();
  EXPECT_NE(r.report().find("many.yaml:5:5"), std::string::npos);
  EXPECT_NE(r.report().find("many.yaml:6:5: error: stages[1] 'b'.uses: unknown stage type 'nope'"), std::string::npos);
  EXPECT_NE(r.report().find("many.yaml:10:"), std::string::npos);
  EXPECT_NE(r.report().find("many.yaml:11:"), std::string::npos);
}

TEST(Loader, QuickstartExampleLoads) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_file("examples/quickstart.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  EXPECT_EQ(r.spec->name, "quickstart");
  EXPECT_FALSE(unsupported_reason(*r.spec).has_value());
}

TEST(Loader, Seed003LoadsAsWrittenExceptTheForbiddenPreflight) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_file("tests/pipelines/seed003_multi_epoch.yaml", registry);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.error_count(), 1u) << r.report();
  EXPECT_NE(r.report().find("seed003_multi_epoch.yaml:10:7: error"), std::string::npos) << r.report();
  EXPECT_NE(r.report().find("`type: validation`"), std::string::npos);
  EXPECT_NE(r.report().find("`completion: duration_or_tasks`"), std::string::npos);
}

TEST(Loader, Seed003MultiEpochWithTheFixLoadsInOrder) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_file("examples/staged_multi_epoch.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  std::vector<const Node*> stages = run_order(r.spec->stages);
  std::vector<std::string> names;
  for (const Node* n : stages) names.push_back(n->name);
  EXPECT_EQ(names, (std::vector<std::string>{"preflight", "prepare", "epoch-1", "checkpoint-1", "epoch-2", "cleanup"}));
  const StageNode& checkpoint = stages[3]->as<StageNode>();
  EXPECT_EQ(checkpoint.type, StageKind::kCustom);
  EXPECT_EQ(checkpoint.completion, Completion::kScriptExit);
  EXPECT_EQ(checkpoint.command, "/usr/bin/save_checkpoint.sh");
  EXPECT_EQ(checkpoint.args, (std::vector<std::string>{"--epoch", "1"}));
  EXPECT_EQ(stages[2]->as<StageNode>().duration, std::chrono::seconds(3600));
  EXPECT_EQ(stages[1]->as<StageNode>().expected_tasks, 10000);
  EXPECT_TRUE(stages[5]->as<StageNode>().optional);
  EXPECT_EQ(r.spec->distributed["tree_creation_mode"], "coordinator");
  auto reason = unsupported_reason(*r.spec);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("1 distributed agent"), std::string::npos);
}

TEST(Loader, StagedPipelineWithoutStagesGetsTheDefaults) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_file("tests/pipelines/seed003_defaults.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  std::vector<std::string> names;
  for (const Node* n : run_order(r.spec->stages)) names.push_back(n->name);
  EXPECT_EQ(names, (std::vector<std::string>{"preflight", "prepare", "execute", "cleanup"}));
}

TEST(Loader, StagesRunByOrderAndGapsWarn) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_text(R"(name: ordered
stages:
  - {name: third, uses: noop, order: 7}
  - {name: first, uses: noop, order: 1}
  - {name: second, uses: noop, order: 2}
)",
                                    "ordered.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  EXPECT_EQ(run_order(r.spec->stages)[0]->name, "first");
  EXPECT_EQ(run_order(r.spec->stages)[2]->name, "third");
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].severity, Diagnostic::Severity::kWarning);
  EXPECT_NE(r.diagnostics[0].message.find("gap in order"), std::string::npos);
}

TEST(Loader, LocalStagesOfSai3KindsRunWithAUsesBody) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_text(R"(name: local
stages:
  - {name: check, type: validation, uses: assert, with: {that: "true"}}
  - {name: fill, type: prepare, uses: noop, completion: duration_or_tasks, duration: 10ms}
  - {name: epoch, type: execute, duration: 10s}
)",
                                    "local.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  auto reason = unsupported_reason(*r.spec);
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find("stage 'epoch' (type execute"), std::string::npos);
}

TEST(Loader, ConfigScalarsKeepTheirYamlTypes) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_text(R"(name: types
config: {i: 3, f: 0.5, b: true, s: "3", n: null, word: hello}
stages: [{name: a, uses: noop}]
)",
                                    "types.yaml", registry);
  ASSERT_TRUE(r.ok()) << r.report();
  EXPECT_EQ(r.spec->config["i"], 3);
  EXPECT_EQ(r.spec->config["f"], 0.5);
  EXPECT_EQ(r.spec->config["b"], true);
  EXPECT_EQ(r.spec->config["s"], "3");
  EXPECT_TRUE(r.spec->config["n"].is_null());
  EXPECT_EQ(r.spec->config["word"], "hello");
}

// Every ```yaml block starting with `# example:` in a document; returns how many loaded.
int check_document_examples(const std::string& path) {
  StageRegistry registry = builtin_registry();
  std::ifstream in(path);
  EXPECT_TRUE(in) << path << " is missing";
  std::string line, block;
  bool in_yaml = false;
  int examples = 0;
  while (std::getline(in, line)) {
    if (!in_yaml && line == "```yaml") {
      in_yaml = true;
      block.clear();
    } else if (in_yaml && line == "```") {
      in_yaml = false;
      if (block.rfind("# example:", 0) != 0) continue;
      ++examples;
      LoadResult r = load_pipeline_text(block, path, registry);
      EXPECT_TRUE(r.ok()) << block << r.report();
    } else if (in_yaml) {
      block += line + "\n";
    }
  }
  return examples;
}

TEST(Loader, EveryExampleInTheFormatDocumentLoads) {
  EXPECT_GE(check_document_examples("docs/pipeline-format.md"), 4);
  EXPECT_GE(check_document_examples("docs/experiments.md"), 1);
  EXPECT_GE(check_document_examples("docs/llm.md"), 1);
}

TEST(Loader, TheExamplePipelinesLoad) {
  StageRegistry registry = builtin_registry();
  for (const char* path : {"examples/quickstart.yaml", "examples/experiment.yaml", "examples/staged_multi_epoch.yaml",
                           "examples/simple.yaml", "examples/critique_loop.yaml", "examples/critique_human.yaml"}) {
    LoadResult r = load_pipeline_file(path, registry);
    EXPECT_TRUE(r.ok()) << path << "\n" << r.report();
  }
}

// Every key of a distributed: section is read and kept; each wrong one is a located error.
TEST(Loader, DistributedSectionsAreReadWhole) {
  StageRegistry registry = builtin_registry();
  LoadResult ok = load_pipeline_text(R"(name: d
distributed:
  shared_filesystem: true
  tree_creation_mode: isolated
  path_selection: partitioned
  partition_overlap: 0.25
  start_delay: 2s
  agent_ready_timeout: 30s
  agents:
    - {address: "127.0.0.1:7761", listen_port: 7761, concurrency_override: 4}
  barrier_sync:
    enabled: true
    default_heartbeat_interval: 5
    prepare: {type: majority, heartbeat_interval: 5, query_retries: 2}
  ssh: {user: bench}
  deployment: {image: sai3}
  path_template: "/data/{agent}"
  kv_cache_dir: /tmp/kv
)",
                                     "d.yaml", registry);
  ASSERT_TRUE(ok.ok()) << ok.report();
  const Json& d = ok.spec->distributed;
  EXPECT_EQ(d["partition_overlap"], 0.25);
  EXPECT_EQ(d["start_delay"], 2000);
  EXPECT_EQ(d["agents"][0]["listen_port"], 7761);
  EXPECT_EQ(d["barrier_sync"]["prepare"]["type"], "majority");
  EXPECT_EQ(d["ssh"]["user"], "bench");
  EXPECT_EQ(d["path_template"], "/data/{agent}");
  EXPECT_EQ(d["agent_count"], 1);
  ASSERT_EQ(ok.spec->stages.size(), 4u);  // the defaults: preflight, prepare, execute, cleanup

  LoadResult bad = load_pipeline_text(R"(name: d
distributed:
  shared_filesystem: true
  tree_creation_mode: isolated
  path_selection: partitioned
  partition_overlap: 2
  agents: many
  barrier_sync:
    execute: {type: everyone, missed_threshold: -1}
  ssh: root
  stages: []
)",
                                      "d.yaml", registry);
  ASSERT_FALSE(bad.ok());
  const std::string report = bad.report();
  for (const char* expected :
       {"d.yaml:6:22: error: distributed.partition_overlap: must be between 0 and 1",
        "d.yaml:7:11: error: distributed.agents: expected a list of agents, found 'many'",
        "distributed.barrier_sync.execute.type",
        "d.yaml:9:49: error: distributed.barrier_sync.execute.missed_threshold: must not be negative",
        "d.yaml:10:8: error: distributed.ssh: expected a mapping, found 'root'",
        "distributed.stages: the stage list is empty; remove it to get the defaults"}) {
    EXPECT_NE(report.find(expected), std::string::npos) << expected << "\n" << report;
  }
}

// A value of the wrong type anywhere is reported where it is, with what was expected; every one
// of them, in one pass.
TEST(Loader, EveryWrongTypeIsReportedWhereItIs) {
  StageRegistry registry = builtin_registry();
  LoadResult r = load_pipeline_file("tests/pipelines/invalid/wrong_types.yaml", registry);
  ASSERT_FALSE(r.ok());
  const std::string report = r.report();
  for (const char* expected : {
           "wrong_types.yaml: error: name: a pipeline needs a name",
           "wrong_types.yaml:1:7: error: name: expected a string, found a list",
           "wrong_types.yaml:2:13: error: durability: unknown value 'sometimes' (expected one of: strict, batched)",
           "wrong_types.yaml:3:9: error: config: expected a mapping, found a list",
           "wrong_types.yaml:4:9: error: models: expected a mapping of model names to providers, found '5'",
           "wrong_types.yaml:5:24: error: reliability.hedging: expected a mapping (strategy, delay_ms, percentile, "
           "max_hedges, budget_percent, options), found '3'",
           "wrong_types.yaml:7:37: error: stages[0] 's'.optional: expected true or false, found 'maybe'",
           "wrong_types.yaml:8:34: error: stages[1] 't'.order: integer out of range: 99999999999999999999",
           "wrong_types.yaml:9:60: error: stages[2] 'u'.retry.multiplier: expected a number, found 'fast'",
           "wrong_types.yaml:11:27: error: stages[3] 'l'.loop.max: must be at least 1",
           "wrong_types.yaml:13:39: error: stages[4] 'c'.conditional.then: expected a list of stages, found a mapping",
           "wrong_types.yaml:14:5: error: stages[5] 'p'.parallel.max_concurrency: must be at least 1",
           "wrong_types.yaml:14:5: error: stages[5] 'p'.parallel.branches[0].stages: the branch has no stages",
           "wrong_types.yaml:15:48: error: stages[5] 'p'.parallel.branches[0]: missing required key 'stages'",
           "wrong_types.yaml:16:33: error: stages[6] 'w'.with: expected a mapping of options, found a list",
           "wrong_types.yaml:17:33: error: stages[7] 'e'.when: expected an expression, found a list",
           "wrong_types.yaml:18:25: error: stages[8] 'q'.sequence: expected a list of stages, found a mapping",
           "wrong_types.yaml:19:36: error: stages[9] 'r'.timeout: expected a duration such as 500ms, 30s, 5m or 2h, "
           "found a list",
           "wrong_types.yaml:20:53: error: stages[10] 'v'.retry.on: unknown error code 'bogus' (expected e.g. "
           "unavailable, deadline_exceeded, resource_exhausted, internal)",
           "wrong_types.yaml:21:5: error: stages[11]: expected a stage (a mapping with name and uses), found '42'",
       }) {
    const std::string line = std::string("tests/pipelines/invalid/") + expected;
    EXPECT_NE(report.find(line), std::string::npos) << line << "\n" << report;
  }
  EXPECT_EQ(r.error_count(), 20u);
}

}  // namespace
}  // namespace crucible
