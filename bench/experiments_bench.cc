// `crucible bench experiments`: a multi-branch experiment of 256 branches that each wait 100 ms
// on I/O, on the SQLite journal, against raw threads doing the same waits.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/clock.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/loader.h"

namespace crucible::bench {
namespace {

constexpr int kBranches = 256;
constexpr int kWaitMs = 100;

double rss_mib() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// Samples the resident set every millisecond while alive; peak() is the highest seen.
class RssSampler {
 public:
  RssSampler()
      : peak_(rss_mib()), thread_([this](std::stop_token stop) {
          while (!stop.stop_requested()) {
            double now = rss_mib();
            double p = peak_.load();
            while (now > p && !peak_.compare_exchange_weak(p, now)) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
        }) {}
  double peak() {
    thread_.request_stop();
    thread_.join();
    return peak_.load();
  }

 private:
  std::atomic<double> peak_;
  std::jthread thread_;
};

std::string pipeline(const std::string& body) {
  std::string yaml =
      "name: bench-experiment\nstages:\n  - name: sweep\n    experiment:\n      strategy: multi_branch\n"
      "      max_concurrency: " +
      std::to_string(kBranches) + "\n      sweep:\n        i: [";
  for (int i = 0; i < kBranches; ++i) yaml += (i ? ", " : "") + std::to_string(i);
  yaml += "]\n      stages:\n        - " + body + "\n";
  return yaml;
}

// The timings of every repetition, each list one figure per repetition.
struct Samples {
  std::vector<double> raw_ms, wall_ms, memory_wall_ms, rss, noop_us, raw_spawn_us;
};

// The raw baseline: 256 threads that each sleep 100 ms, and the cost of spawning 256 threads.
void raw_threads(Samples& out) {
  auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kBranches; ++i)
      threads.emplace_back([] { std::this_thread::sleep_for(std::chrono::milliseconds(kWaitMs)); });
  }
  out.raw_ms.push_back(since_us(t0) / 1000.0);
  t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kBranches; ++i) threads.emplace_back([] {});
  }
  out.raw_spawn_us.push_back(since_us(t0) / kBranches);
}

struct Pipelines {
  const WorkflowSpec& waiting;  // every branch sleeps kWaitMs
  const WorkflowSpec& empty;    // every branch is a noop: the bookkeeping alone
};

// One repetition: the waiting experiment on SQLite (wall time, peak RSS) and in memory, then
// the bookkeeping-only experiment.
Status repetition(Runner& runner, Executor& executor, Random& random, const StageRegistry& registry, const Pipelines& p,
                  Samples& out) {
  double before = rss_mib();
  RssSampler sampler;
  auto t0 = std::chrono::steady_clock::now();
  auto res = runner.start(p.waiting);
  out.wall_ms.push_back(since_us(t0) / 1000.0);
  out.rss.push_back(std::max(0.0, sampler.peak() - before));
  if (!res || res->status != RunStatus::kCompleted || res->context.get_metric("sweep.succeeded") == nullptr ||
      *res->context.get_metric("sweep.succeeded") != kBranches) {
    return make_error(ErrorCode::kInternal, "the waiting experiment did not complete every branch");
  }
  auto memory = make_memory_journal();
  Runner memory_runner(*memory, executor, real_clock(), random, registry);
  t0 = std::chrono::steady_clock::now();
  auto mres = memory_runner.start(p.waiting);
  out.memory_wall_ms.push_back(since_us(t0) / 1000.0);
  if (!mres || mres->status != RunStatus::kCompleted) {
    return make_error(ErrorCode::kInternal, "memory-journal run failed");
  }
  t0 = std::chrono::steady_clock::now();
  auto nres = runner.start(p.empty);
  out.noop_us.push_back(since_us(t0) / kBranches);
  if (!nres || nres->status != RunStatus::kCompleted) return make_error(ErrorCode::kInternal, "bookkeeping run failed");
  return {};
}

Json report(const Samples& s, int reps) {
  Json out;
  out["benchmark"] = "experiments";
  out["branches"] = kBranches;
  out["wait_ms"] = kWaitMs;
  out["max_concurrency"] = kBranches;
  out["repetitions"] = reps;
  out["journal"] = "sqlite (strict)";
  out["wall_ms"] = median(s.wall_ms);
  out["wall_ms_max"] = percentile(s.wall_ms, 100);
  out["wall_ms_memory_journal"] = median(s.memory_wall_ms);
  out["raw_threads_wall_ms"] = median(s.raw_ms);
  out["wall_vs_raw"] = median(s.wall_ms) / median(s.raw_ms);
  out["extra_rss_mib"] = median(s.rss);
  out["extra_rss_mib_max"] = percentile(s.rss, 100);
  out["overhead_us_per_branch"] = median(s.noop_us);
  out["raw_thread_spawn_us_per_branch"] = median(s.raw_spawn_us);
  Json targets = Json::array();
  targets.push_back({{"name", "wall_ms <= 300"}, {"value", median(s.wall_ms)}, {"met", median(s.wall_ms) <= 300}});
  targets.push_back({{"name", "extra_rss_mib <= 64"}, {"value", median(s.rss)}, {"met", median(s.rss) <= 64}});
  out["targets"] = targets;
  return out;
}

}  // namespace

Result<Json> run_experiments(bool quick) {
  const int reps = quick ? 3 : 7;
  StageRegistry registry = builtin_registry();
  LoadResult waiting = load_pipeline_text(
      pipeline("{name: io, uses: sleep, with: {duration: " + std::to_string(kWaitMs) + "ms}}"), "bench", registry);
  LoadResult empty = load_pipeline_text(pipeline("{name: io, uses: noop}"), "bench", registry);
  if (!waiting.ok() || !empty.ok())
    return make_error(ErrorCode::kInternal, "bench pipeline: " + waiting.report() + empty.report());

  auto dir = std::filesystem::temp_directory_path() / ("crucible-bench-experiments-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  SqliteJournalOptions jo;
  jo.path = (dir / "journal.db").string();
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(jo));
  Executor executor(2);
  SeededRandom random(1);
  Runner runner(*journal, executor, real_clock(), random, registry);
  runner.set_artifact_root((dir / "runs").string());

  Samples samples;
  // One untimed run warms the allocator, the journal file and the thread stacks' first use.
  (void)runner.start(*empty.spec);
  for (int r = 0; r < reps; ++r) {
    raw_threads(samples);
    CRUCIBLE_RETURN_IF_ERROR(repetition(runner, executor, random, registry, {*waiting.spec, *empty.spec}, samples));
  }
  std::filesystem::remove_all(dir);
  return report(samples, reps);
}

}  // namespace crucible::bench
