// `crucible bench llm`: hedged LLM calls against a loopback server that speaks the Anthropic API
// with a slow-tailed latency: a lognormal body (median 20 ms, sigma 0.3) and 1% stragglers at
// 20x. The same request stream runs without hedging (the baseline) and with hedging at the
// running p95 under a 5% budget; then a pipeline of hedged llm.complete steps checks that each
// step journals exactly one result.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/llm/adapters.h"
#include "crucible/llm/decorators.h"
#include "crucible/reliability/hedging.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/stages/library.h"
#include "crucible/testing/llm_test_server.h"
#include "crucible/workflow/loader.h"

namespace crucible::bench {
namespace {

constexpr double kMedianMs = 20;
constexpr double kSigma = 0.3;
constexpr int kStragglerFactor = 20;
constexpr int kConcurrency = 8;
constexpr const char* kKeyEnv = "CRUCIBLE_BENCH_LLM_KEY";
constexpr const char* kKey = "bench-key";

// Latency of the server's call `n`: one call in a hundred is a straggler.
int latency_ms(int n) {
  uint64_t u1 = splitmix64(static_cast<uint64_t>(n) * 2 + 1), u2 = splitmix64(static_cast<uint64_t>(n) * 2 + 2);
  double a = (static_cast<double>(u1 >> 11) + 0.5) / 9007199254740992.0;
  double b = (static_cast<double>(u2 >> 11) + 0.5) / 9007199254740992.0;
  double z = std::sqrt(-2 * std::log(a)) * std::cos(2 * M_PI * b);
  double ms = kMedianMs * std::exp(kSigma * z);
  if (n % 100 == 37) ms *= kStragglerFactor;
  return static_cast<int>(std::lround(ms));
}

// The latency the slowest `tail` fraction of requests reach: with exactly 1% stragglers, the
// upper 1% quantile is the fastest straggler (nearest-rank p99 would sit on the boundary).
double upper_quantile(std::vector<double> v, double tail) {
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(std::ceil(tail * static_cast<double>(v.size())));
  return v[v.size() - std::max<size_t>(k, 1)];
}

struct Phase {
  std::vector<double> latencies_ms;
  int calls = 0;
  int aborted = 0;
};

Phase drive(llm::Provider& provider, testing::LlmTestServer& server, int warmup, int requests) {
  auto request = *llm::RequestBuilder().model("claude-bench").user("Summarise the run.").max_tokens(64).build();
  std::atomic<int> next{0};
  std::vector<double> latencies(static_cast<size_t>(requests));
  auto run_one = [&](int i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = provider.complete(request, {});
    if (i >= 0 && r) latencies[static_cast<size_t>(i)] = since_us(t0) / 1000.0;
  };
  for (int i = 0; i < warmup; ++i) run_one(-1);  // the policy learns the latency; not measured
  int calls_before = server.calls.load(), aborted_before = server.aborted.load();
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kConcurrency; ++t) {
      threads.emplace_back([&] {
        for (int i = next.fetch_add(1); i < requests; i = next.fetch_add(1)) run_one(i);
      });
    }
  }
  Phase p;
  p.latencies_ms = std::move(latencies);
  p.calls = server.calls.load() - calls_before;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  p.aborted = server.aborted.load() - aborted_before;
  return p;
}

Json summary(const Phase& p) {
  return Json{{"p50_ms", percentile(p.latencies_ms, 50)},
              {"p95_ms", percentile(p.latencies_ms, 95)},
              {"p99_ms", upper_quantile(p.latencies_ms, 0.01)},
              {"p99_nearest_rank_ms", percentile(p.latencies_ms, 99)},
              {"p99_9_ms", percentile(p.latencies_ms, 99.9)},
              {"max_ms", percentile(p.latencies_ms, 100)},
              {"server_calls", p.calls},
              {"losers_aborted_seen_by_server", p.aborted}};
}

// Hedged llm.complete steps in a pipeline on the SQLite journal: how many results each step
// journaled (exactly one, whatever the hedges did).
struct PipelineCheck {
  int steps = 0;
  int server_calls = 0;
  std::map<std::string, int> results;  // step key -> completed records
  int max_per_step() const {
    int m = 0;
    for (const auto& [_, n] : results) m = std::max(m, n);
    return m;
  }
  double per_step() const {
    int journaled = 0;
    for (const auto& [_, n] : results) journaled += n;
    return results.empty() ? 0.0 : static_cast<double>(journaled) / static_cast<double>(results.size());
  }
};

std::string pipeline_yaml(const testing::LlmTestServer& server, const Json& hedging, int steps) {
  return "name: bench-llm\nmodels:\n  writer:\n    provider: anthropic\n    model: claude-bench\n"
         "    base_url: " +
         server.base_url() + "\n    api_key_env: " + kKeyEnv + "\n    hedging: " + json_dump(hedging) +
         "\nstages:\n  - name: calls\n    loop:\n      count: " + std::to_string(steps) +
         "\n      stages:\n        - {name: ask, uses: llm.complete, with: {model: writer, "
         "prompt: \"step ${index}\", max_tokens: 64}}\n";
}

Result<PipelineCheck> run_pipeline(testing::LlmTestServer& server, Executor& executor, const Json& hedging, int steps) {
  auto dir = std::filesystem::temp_directory_path() / ("crucible-bench-llm-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  SqliteJournalOptions jo;
  jo.path = (dir / "journal.db").string();
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(jo));
  StageRegistry registry = builtin_registry();
  LoadResult loaded = load_pipeline_text(pipeline_yaml(server, hedging, steps), "bench", registry);
  if (!loaded.ok()) return make_error(ErrorCode::kInternal, "bench pipeline: " + loaded.report());
  SeededRandom random(5);
  Runner runner(*journal, executor, real_clock(), random, registry);
  runner.set_blob_dir((dir / "blobs").string());
  PipelineCheck check;
  check.steps = steps;
  int calls_before = server.calls.load();
  auto run = runner.start(*loaded.spec);
  if (!run || run->status != RunStatus::kCompleted) {
    return make_error(
        ErrorCode::kInternal,
        "hedged pipeline failed: " + (run ? (run->error ? run->error->to_string() : "") : run.error().to_string()));
  }
  check.server_calls = server.calls.load() - calls_before;
  CRUCIBLE_ASSIGN_OR_RETURN(auto log, journal->read_run(run->run_id));
  for (const Record& r : log.records) {
    if (r.type == RecordType::kStepCompleted) check.results[r.key.str()]++;
  }
  journal.reset();
  std::filesystem::remove_all(dir);
  return check;
}

Json targets_of(double p99_reduction, double extra, const PipelineCheck& check) {
  Json targets = Json::array();
  targets.push_back({{"name", "p99_reduction >= 3"}, {"value", p99_reduction}, {"met", p99_reduction >= 3}});
  targets.push_back({{"name", "extra_calls_pct <= 5"}, {"value", extra}, {"met", extra <= 5}});
  targets.push_back({{"name", "journaled_results_per_step == 1"},
                     {"value", check.max_per_step()},
                     {"met", check.max_per_step() == 1 && static_cast<int>(check.results.size()) == check.steps}});
  return targets;
}

Json report(const Phase& baseline, const Phase& with_hedging, const Json& policy_stats, const Json& hedging,
            int requests, int warmup, const PipelineCheck& check) {
  const double p99_reduction =
      upper_quantile(baseline.latencies_ms, 0.01) / upper_quantile(with_hedging.latencies_ms, 0.01);
  const double extra = 100.0 * (with_hedging.calls - requests) / requests;
  Json out;
  out["benchmark"] = "llm";
  out["server"] = "loopback Anthropic Messages API; lognormal body median 20 ms sigma 0.3, 1% of calls 20x";
  out["requests"] = requests;
  out["warmup_requests"] = warmup;
  out["concurrency"] = kConcurrency;
  out["hedging"] = hedging;
  out["baseline"] = summary(baseline);
  out["hedged"] = summary(with_hedging);
  out["hedged"]["policy"] = policy_stats;
  out["p99_definition"] = "latency reached by the slowest 1% of requests";
  out["p99_reduction"] = p99_reduction;
  out["p99_9_reduction"] = percentile(baseline.latencies_ms, 99.9) / percentile(with_hedging.latencies_ms, 99.9);
  out["p50_ratio"] = percentile(with_hedging.latencies_ms, 50) / percentile(baseline.latencies_ms, 50);
  out["extra_calls_pct"] = extra;
  out["pipeline_steps"] = check.steps;
  out["pipeline_server_calls"] = check.server_calls;
  out["journaled_results_per_step"] = check.per_step();
  out["max_journaled_results_per_step"] = check.max_per_step();
  out["targets"] = targets_of(p99_reduction, extra, check);
  return out;
}

}  // namespace

Result<Json> run_llm(bool quick) {
  const int requests = quick ? 400 : 2000;
  const int warmup = 100;
  testing::LlmTestServer server(kKey);
  server.set_latency(latency_ms);
  ::setenv(kKeyEnv, kKey, 1);

  auto adapter = std::shared_ptr<llm::Provider>(
      llm::make_anthropic_provider({server.base_url(), kKey, "2023-06-01", std::chrono::seconds(30)}));
  Phase baseline = drive(*adapter, server, warmup, requests);

  Executor executor(kConcurrency * 3);
  const Json hedging{{"strategy", "percentile"}, {"percentile", 95}, {"budget_percent", 5}};
  CRUCIBLE_ASSIGN_OR_RETURN(auto policy, make_hedge_policy(hedging));
  llm::HedgedProvider hedged(adapter, std::shared_ptr<HedgePolicy>(std::move(policy)), executor, real_clock(), 1,
                             "bench");
  Phase with_hedging = drive(hedged, server, warmup, requests);
  auto check = run_pipeline(server, executor, hedging, quick ? 40 : 150);
  ::unsetenv(kKeyEnv);
  if (!check) return make_error(check.error());

  return report(baseline, with_hedging, hedged.stats(), hedging, requests, warmup, *check);
}

}  // namespace crucible::bench
