// The llm.* stages and the models: section, on scripted models and a loopback API server.
#include "crucible/stages/llm_stages.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/library.h"
#include "crucible/testing/llm_test_server.h"
#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

TEST(CritiqueParsing, FindsTheFirstObjectAndValidatesIt) {
  auto j = first_json_object(
      "Sure! Here is my verdict:\n```json\n{\"decision\": \"revise\", \"critique\": \"uses {braces}\", "
      "\"feedback\": \"say \\\"more\\\"\"}\n```\nThanks.");
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["critique"], "uses {braces}");
  EXPECT_FALSE(first_json_object("no json here"));
  EXPECT_FALSE(first_json_object("{broken"));
  EXPECT_EQ(*first_json_object("[1] {not json} {\"a\": 1}"), Json({{"a", 1}}));

  auto ok = parse_critique(R"({"decision": "pass", "critique": "fine"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["feedback"], "");
  for (const char* bad : {R"({"decision": "maybe", "critique": "x"})", R"({"decision": "revise", "critique": "x"})",
                          R"({"decision": "pass"})", "I think it is good."}) {
    auto r = parse_critique(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(std::string("raw reply: ") + bad), std::string::npos) << r.error().message();
  }
}

class LlmPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::path(::testing::TempDir()) /
        ("llm_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    journal_ = make_memory_journal();
    runner_ = std::make_unique<Runner>(*journal_, executor_, real_clock(), random_, registry_);
    runner_->set_blob_dir((dir_ / "blobs").string());
    runner_->set_artifact_root((dir_ / "runs").string());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  LoadResult load_raw(const std::string& yaml) { return load_pipeline_text(yaml, "llm.yaml", registry_); }
  WorkflowSpec load(const std::string& yaml) {
    LoadResult r = load_raw(yaml);
    EXPECT_TRUE(r.ok()) << r.report();
    return r.ok() ? *r.spec : WorkflowSpec{};
  }
  RunResult run(const WorkflowSpec& spec, StartOptions options = {}) {
    auto r = runner_->start(spec, options);
    EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
  }

  StageRegistry registry_ = builtin_registry();
  std::unique_ptr<Journal> journal_;
  Executor executor_{4};
  SeededRandom random_{3};
  std::unique_ptr<Runner> runner_;
  std::filesystem::path dir_;
};

const char* kLoop = R"(
name: critique-loop
models:
  writer:
    provider: scripted
    responses:
      - {match: CRITIQUE, text: '{"decision": "revise", "critique": "too short", "feedback": "add an example"}'}
      - {match: CRITIQUE, text: '{"decision": "pass", "critique": "good now"}'}
      - {match: REVISE, text: "A haiku needs seventeen syllables, for example this one."}
      - "A haiku is short."
stages:
  - name: generate
    uses: llm.complete
    with: {model: writer, prompt: "Explain haiku in one line.", output: draft}
  - name: refine
    loop:
      until: "state.critique.decision == 'pass'"
      max: 4
      stages:
        - {name: critique, uses: llm.critique, with: {model: writer, criteria: "has an example"}}
        - name: fix
          conditional:
            when: "state.critique.decision == 'revise'"
            then:
              - {name: revise, uses: llm.revise, with: {model: writer, max_revisions: 3}}
)";

TEST_F(LlmPipelineTest, CritiqueLoopRevisesUntilPass) {
  RunResult r = run(load(kLoop));
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  EXPECT_EQ(r.context.get_artifact("draft")->get<std::string>(),
            "A haiku needs seventeen syllables, for example this one.");
  EXPECT_EQ(*r.context.get("revisions"), 1);
  ASSERT_EQ(r.context.get("critiques")->size(), 2u);
  EXPECT_EQ((*r.context.get("critiques"))[0]["feedback"], "add an example");
  EXPECT_EQ((*r.context.get("critique"))["decision"], "pass");
  EXPECT_GT(r.context.get_metric("generate.llm_tokens_used")->get<int64_t>(), 0);
  int64_t total = r.context.get_metric("llm_tokens_used")->get<int64_t>();
  EXPECT_GT(total, r.context.get_metric("generate.llm_tokens_used")->get<int64_t>());
  // One journaled result per call: four completed llm steps.
  auto log = journal_->read_run(r.run_id);
  int llm_steps = 0;
  for (const Record& rec : log->records) {
    if (rec.type != RecordType::kStepCompleted) continue;
    for (const Mutation& m : rec.delta) llm_steps += m.key.ends_with(".llm_tokens_used") ? 1 : 0;
  }
  EXPECT_EQ(llm_steps, 4);
}

TEST_F(LlmPipelineTest, ExceedingMaxRevisionsFailsClearly) {
  RunResult r = run(load(R"(
name: stubborn
models:
  critic:
    provider: scripted
    responses:
      - {match: CRITIQUE, text: '{"decision": "revise", "critique": "no", "feedback": "try again"}'}
      - "draft"
stages:
  - {name: generate, uses: llm.complete, with: {model: critic, prompt: "write", output: draft}}
  - name: refine
    loop:
      until: "state.critique.decision == 'pass'"
      max: 10
      stages:
        - {name: critique, uses: llm.critique, with: {model: critic}}
        - {name: revise, uses: llm.revise, with: {model: critic, max_revisions: 2}}
)"));
  ASSERT_EQ(r.status, RunStatus::kFailed);
  ASSERT_TRUE(r.error);
  EXPECT_NE(
      r.error->message().find("max_revisions (2) reached and the draft still needs revising; last feedback: try again"),
      std::string::npos)
      << r.error->to_string();
  EXPECT_EQ(*r.context.get("revisions"), 2);
}

TEST_F(LlmPipelineTest, MalformedCritiqueIsInvalidArgumentAndRetryable) {
  const char* yaml = R"(
name: malformed
models:
  critic:
    provider: scripted
    responses:
      - {match: CRITIQUE, text: "Looks fine to me!"}
      - {match: CRITIQUE, text: '{"decision": "pass", "critique": "ok"}'}
stages:
  - name: critique
    uses: llm.critique
    with: {model: critic, draft: "some text"}
    RETRY
)";
  std::string with_retry = std::regex_replace(std::string(yaml), std::regex("RETRY"),
                                              "retry: {attempts: 2, on: [invalid_argument], backoff: 1ms}");
  RunResult ok = run(load(with_retry));
  ASSERT_EQ(ok.status, RunStatus::kCompleted) << (ok.error ? ok.error->to_string() : "");
  EXPECT_EQ(ok.steps[0].attempts, 2);

  std::string without = std::regex_replace(std::string(yaml), std::regex("    RETRY\n"), "");
  WorkflowSpec spec = load(without);
  spec.name = "malformed-2";  // a separate scripted model instance is not needed: the script cycles
  RunResult failed = run(spec);
  ASSERT_EQ(failed.status, RunStatus::kFailed);
  EXPECT_EQ(failed.error->code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(failed.error->message().find("raw reply:"), std::string::npos) << failed.error->message();
}

TEST_F(LlmPipelineTest, ModelsAreValidatedWithLocations) {
  struct Case {
    const char* yaml;
    const char* expect;
  };
  const Case cases[] = {
      {"name: x\nmodels:\n  w: {provider: gemini, model: g}\nstages: [{name: s, uses: noop}]\n",
       "llm.yaml:3:17: error: models.w.provider: unknown provider \"gemini\" (expected anthropic, openai or scripted)"},
      {"name: x\nmodels:\n  w: {provider: anthropic, model: claude}\nstages: [{name: s, uses: noop}]\n",
       "models.w.api_key_env: missing required key 'api_key_env'"},
      {"name: x\nmodels:\n  w: {provider: anthropic, model: c, api_key_env: sk-ant-123}\nstages: [{name: s, uses: "
       "noop}]\n",
       "expected the name of an environment variable"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, retry: {attempts: 0}}\nstages: [{name: s, uses: noop}]\n",
       "llm.yaml:3:53: error: models.w.retry.attempts: must be between 1 and 1000"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, hedging: {strategy: sometimes}}\nstages: [{name: s, uses: "
       "noop}]\n",
       "models.w.hedging:"},
      {"name: x\nmodels:\n  w: {provider: scripted, responses: [{txt: a}]}\nstages: [{name: s, uses: noop}]\n",
       "models.w.responses[0].txt: unknown key"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, circuit_breaker: {failures: 5, window: soon}}\nstages: "
       "[{name: s, uses: noop}]\n",
       "models.w.circuit_breaker.window: expected a duration"},
      {"name: x\nmodels:\n  w: {provider: scripted, responses: [a]}\nstages:\n  - {name: s, uses: llm.complete, with: "
       "{model: writer, prompt: p}}\n",
       "llm.yaml:5:5: error: stages[0] 's'.with.model: no model 'writer' in the pipeline's models: section (it has: "
       "w)"},
      {"name: x\nmodels:\n  w: 3\nstages: [{name: s, uses: noop}]\n",
       "models.w: expected a mapping with provider, model and api_key_env, found integer"},
      {"name: x\nmodels:\n  w: {model: m}\nstages: [{name: s, uses: noop}]\n",
       "models.w.provider: missing required key 'provider'"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, circuit_breaker: {probes: 0}}\nstages: "
       "[{name: s, uses: noop}]\n",
       "models.w.circuit_breaker.probes: expected an integer from 1 to 1000, got 0"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, circuit_breaker: {trips: 1}}\nstages: "
       "[{name: s, uses: noop}]\n",
       "models.w.circuit_breaker.trips: unknown key (expected failures, window, cooldown, probes)"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, hedging: 5}\nstages: [{name: s, uses: "
       "noop}]\n",
       "models.w.hedging: expected a mapping such as {strategy: percentile, percentile: 95}"},
      {"name: x\nmodels:\n  w: {provider: scripted}\nstages: [{name: s, uses: noop}]\n",
       "models.w.responses: a scripted model needs 'responses'"},
      {"name: x\nmodels:\n  w: {provider: scripted, responses: [a], offline: {responses: [b]}}\nstages: [{name: s, "
       "uses: noop}]\n",
       "models.w.offline: a scripted model is already offline"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, responses: [a]}\nstages: [{name: s, uses: "
       "noop}]\n",
       "models.w.responses: only a scripted model takes 'responses'"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, offline: [a]}\nstages: [{name: s, uses: "
       "noop}]\n",
       "models.w.offline: expected {responses: [...]}"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, offline: {responses: [a], when: never}}\n"
       "stages: [{name: s, uses: noop}]\n",
       "models.w.offline.when: unknown key (expected responses)"},
      {"name: x\nmodels:\n  w: {provider: openai, model: m, api_key_env: K, timeout: soon}\nstages: [{name: s, uses: "
       "noop}]\n",
       "models.w.timeout"},
  };
  for (const Case& c : cases) {
    LoadResult r = load_raw(c.yaml);
    EXPECT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.report().find(c.expect), std::string::npos) << r.report();
  }
}

TEST_F(LlmPipelineTest, WithoutAKeyAnOfflineScriptAnswersAndWithoutOneTheRunSaysWhatToSet) {
  ::unsetenv("CRUCIBLE_TEST_UNSET_KEY");
  RunResult r = run(load(R"(
name: offline
models:
  writer:
    provider: anthropic
    model: claude-sonnet-4-5
    api_key_env: CRUCIBLE_TEST_UNSET_KEY
    offline: {responses: ["An offline answer."]}
stages:
  - {name: generate, uses: llm.complete, with: {model: writer, prompt: "hi", output: draft}}
)"));
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  EXPECT_EQ(r.context.get_artifact("draft")->get<std::string>(), "An offline answer.");
  EXPECT_EQ(*r.context.get_metric("generate.offline"), true);

  RunResult no_script = run(load(R"(
name: needs-key
models:
  writer: {provider: anthropic, model: claude-sonnet-4-5, api_key_env: CRUCIBLE_TEST_UNSET_KEY}
stages:
  - {name: generate, uses: llm.complete, with: {model: writer, prompt: "hi"}}
)"));
  ASSERT_EQ(no_script.status, RunStatus::kFailed);
  EXPECT_NE(no_script.error->message().find("set CRUCIBLE_TEST_UNSET_KEY"), std::string::npos)
      << no_script.error->to_string();
}

TEST_F(LlmPipelineTest, CachedCompletionsAreReusedAcrossRuns) {
  WorkflowSpec spec = load(R"(
name: cached
models:
  writer: {provider: scripted, cache: true, responses: ["first answer", "second answer"]}
stages:
  - {name: generate, uses: llm.complete, with: {model: writer, prompt: "same prompt", output: draft}}
)");
  RunResult a = run(spec);
  RunResult b = run(spec);
  ASSERT_EQ(b.status, RunStatus::kCompleted);
  EXPECT_EQ(a.context.get_artifact("draft")->get<std::string>(), "first answer");
  EXPECT_EQ(b.context.get_artifact("draft")->get<std::string>(), "first answer");  // not the script's next answer
  EXPECT_FALSE(a.context.has_metric("generate.cached"));
  EXPECT_EQ(*b.context.get_metric("generate.cached"), true);
}

TEST_F(LlmPipelineTest, KeysComeFromTheEnvironmentAndNeverReachTheJournal) {
  const std::string secret = "sk-test-5f1e9c0a-never-journal-me";
  ::setenv("CRUCIBLE_TEST_SECRET_KEY", secret.c_str(), 1);
  testing::LlmTestServer server(secret);
  SqliteJournalOptions o;
  o.path = (dir_ / "journal.db").string();
  auto journal = open_sqlite_journal(o);
  ASSERT_TRUE(journal);
  Runner runner(**journal, executor_, real_clock(), random_, registry_);
  runner.set_blob_dir((dir_ / "blobs").string());
  WorkflowSpec spec = load(R"(
name: secret
config: {base_url: "http://127.0.0.1"}
models:
  writer:
    provider: anthropic
    model: claude-test
    base_url: "${config.base_url}"
    api_key_env: CRUCIBLE_TEST_SECRET_KEY
    retry: 2
  bad:
    provider: anthropic
    model: claude-test
    base_url: "${config.base_url}"
    api_key_env: CRUCIBLE_TEST_OTHER_KEY
stages:
  - {name: generate, uses: llm.complete, with: {model: writer, prompt: "hello", output: draft}}
  - {name: denied, uses: llm.complete, optional: true, with: {model: bad, prompt: "hello"}}
)");
  ::setenv("CRUCIBLE_TEST_OTHER_KEY", (secret + "-wrong").c_str(), 1);
  StartOptions so;
  so.overrides = Json{{"base_url", server.base_url()}};
  auto r = runner.start(spec, so);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->status, RunStatus::kCompleted) << (r->error ? r->error->to_string() : "");
  EXPECT_EQ(r->context.get_artifact("draft")->get<std::string>(), "echo: hello");
  EXPECT_EQ(server.calls.load(), 2);
  EXPECT_EQ(server.rejected.load(), 1);  // the wrong key was refused, and not retried
  ASSERT_EQ(r->optional_failures.size(), 1u);
  EXPECT_EQ(r->to_json().dump().find(secret), std::string::npos);
  ASSERT_TRUE((*journal)->flush());
  journal->reset();
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(secret), std::string::npos) << entry.path();
  }
  ::unsetenv("CRUCIBLE_TEST_SECRET_KEY");
  ::unsetenv("CRUCIBLE_TEST_OTHER_KEY");
}

// An OpenAI model from a pipeline's models: section, streamed (`stream: true`) through the retry,
// circuit-breaker and hedging decorators the section configures: a 503 is retried and the
// answer arrives whole.
TEST_F(LlmPipelineTest, AnOpenAiModelStreamsThroughItsDecorators) {
  ::setenv("CRUCIBLE_TEST_OPENAI_KEY", "sk-openai-test", 1);
  testing::LlmTestServer server("sk-openai-test");
  server.push(testing::LlmTestServer::status(503, "server_error"));
  WorkflowSpec spec = load(R"(
name: openai
config: {base_url: "http://127.0.0.1"}
models:
  writer:
    provider: openai
    model: gpt-test
    base_url: "${config.base_url}"
    api_key_env: CRUCIBLE_TEST_OPENAI_KEY
    retry: {attempts: 3, backoff: 1ms}
    circuit_breaker: {failures: 5, window: 60s, cooldown: 30s}
  hedged:
    provider: openai
    model: gpt-test
    base_url: "${config.base_url}"
    api_key_env: CRUCIBLE_TEST_OPENAI_KEY
    retry: {attempts: 3, backoff: 1ms}
    hedging: {strategy: fixed, delay_ms: 5000}
stages:
  - {name: generate, uses: llm.complete, with: {model: writer, prompt: "stream me", output: draft, stream: true}}
  - {name: again, uses: llm.complete, with: {model: hedged, prompt: "hedge me", output: second, stream: true}}
)");
  StartOptions so;
  so.overrides = Json{{"base_url", server.base_url()}};
  RunResult r = run(spec, so);
  ASSERT_EQ(r.status, RunStatus::kCompleted) << (r.error ? r.error->to_string() : "");
  ASSERT_NE(r.context.get_artifact("draft"), nullptr);
  EXPECT_EQ(r.context.get_artifact("draft")->get<std::string>(), "echo: stream me");
  EXPECT_EQ(server.calls.load(), 3);  // the 503, the answer, the hedged model's answer
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[1]["model"], "gpt-test");
  EXPECT_EQ(requests[1].value("stream", false), true);
  // A hedged model races whole answers (hedging happens before the first byte) and hands the
  // winner's text on in one piece.
  EXPECT_EQ(requests[2].value("stream", false), false);
  EXPECT_EQ(r.context.get_artifact("second")->get<std::string>(), "echo: hedge me");
  ::unsetenv("CRUCIBLE_TEST_OPENAI_KEY");
}

}  // namespace
}  // namespace crucible
