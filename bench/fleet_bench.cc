// The fleet on PostgreSQL (a throwaway cluster unless --postgres names a server): how long one
// strict step takes in a sequential run, and how many durable steps per second four workers
// sustain, each holding 64 concurrent runs, against raw single-row commits in the same run.
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/engine/worker.h"
#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/stages/library.h"
#include "crucible/testing/postgres_server.h"
#include "crucible/workflow/loader.h"

namespace crucible::bench {
namespace {

constexpr int kSteps = 10;

std::string ten_steps() {
  std::string yaml = "name: ten\nstages:\n";
  for (int i = 0; i < kSteps; ++i) yaml += "  - {name: s" + std::to_string(i) + ", uses: noop}\n";
  return yaml;
}

// When each stage of the current run completed (durably: the event follows the commit).
class CompletionTimes : public EventSink {
 public:
  void on_event(const Event& e) override {
    if (e.type == EventType::kStageCompleted) times_.push_back(std::chrono::steady_clock::now());
  }
  std::vector<std::chrono::steady_clock::time_point> take() { return std::exchange(times_, {}); }

 private:
  std::vector<std::chrono::steady_clock::time_point> times_;  // guarded by the bus
};

// Sequential strict runs, one after another. A step's latency is the time from one stage's
// durable completion to the next one's: the engine's work and the journal commit, without the
// run's start and end; the run's wall time over its steps is reported beside it.
Result<Json> step_latency(Journal& journal, const StageRegistry& registry, const WorkflowSpec& spec, int runs) {
  Executor executor(4);
  EventBus bus;
  auto times = std::make_shared<CompletionTimes>();
  bus.add_sink(times);
  Runner runner(journal, executor, real_clock(), system_random(), registry, &bus);
  std::vector<double> per_step, per_run_step;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    CRUCIBLE_ASSIGN_OR_RETURN(auto r, runner.start(spec));
    if (r.status != RunStatus::kCompleted) return make_error(ErrorCode::kInternal, "a benchmark run did not complete");
    per_run_step.push_back(since_us(t0) / kSteps);
    auto done = times->take();
    for (size_t k = 1; k < done.size(); ++k) {
      per_step.push_back(std::chrono::duration<double, std::micro>(done[k] - done[k - 1]).count());
    }
  }
  return Json{{"runs", runs},
              {"per_step_p50_us", percentile(per_step, 50)},
              {"per_step_p99_us", percentile(per_step, 99)},
              {"whole_run_per_step_p50_us", percentile(per_run_step, 50)}};
}

// Four workers, 64 slots each, on submitted strict runs: durable steps per second.
Result<Json> throughput(Journal& journal, const StageRegistry& registry, const WorkflowSpec& spec, int runs) {
  Executor executor(8);
  Runner submitter(journal, executor, real_clock(), system_random(), registry);
  for (int i = 0; i < runs; ++i) CRUCIBLE_RETURN_IF_ERROR(submitter.submit(spec, {}, Placement{}));
  std::vector<std::unique_ptr<Runner>> runners;
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<int> finished{0};
  auto loader = [&](const Json&) -> Result<WorkflowSpec> { return spec; };
  for (int w = 0; w < 4; ++w) {
    runners.push_back(std::make_unique<Runner>(journal, executor, real_clock(), system_random(), registry));
    WorkerOptions o;
    o.id = "bench-" + std::to_string(w);
    o.concurrency = 64;
    o.poll = std::chrono::milliseconds(5);
    o.schedule_interval = std::chrono::milliseconds(0);
    workers.push_back(std::make_unique<Worker>(journal, *runners.back(), executor, real_clock(), loader, o,
                                               [&](const RunId& id, const Result<RunResult>&) {
                                                 if (!id.str().empty()) ++finished;
                                               }));
  }
  std::stop_source drain;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::jthread> threads;
  for (auto& w : workers) threads.emplace_back([&, raw = w.get()] { raw->run(drain.get_token()); });
  while (finished.load() < runs && since_us(t0) < 300e6) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double seconds = since_us(t0) / 1e6;
  drain.request_stop();
  threads.clear();
  uint64_t completed = 0;
  for (auto& w : workers) completed += w->stats().completed;
  if (completed != static_cast<uint64_t>(runs)) {
    return make_error(ErrorCode::kInternal, "only " + std::to_string(completed) + " of " + std::to_string(runs) +
                                                " benchmark runs completed");
  }
  return Json{{"workers", 4},           {"slots_per_worker", 64}, {"runs", runs},
              {"steps", runs * kSteps}, {"seconds", seconds},     {"durable_steps_per_s", runs * kSteps / seconds}};
}

}  // namespace

Result<Json> run_fleet(bool quick, const std::string& url_in) {
  std::unique_ptr<testing::PostgresServer> server;
  std::string raw_url = url_in, journal_url = url_in;
  if (url_in.empty()) {
    CRUCIBLE_ASSIGN_OR_RETURN(server, testing::PostgresServer::start(/*install_if_missing=*/false));
    CRUCIBLE_ASSIGN_OR_RETURN(raw_url, server->create_database());
    CRUCIBLE_ASSIGN_OR_RETURN(journal_url, server->create_database());
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto raw, raw_postgres_commits(raw_url, quick ? 300 : 2000));
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_postgres_journal(PostgresJournalOptions{journal_url}));
  StageRegistry registry = builtin_registry();
  LoadResult loaded = load_pipeline_text(ten_steps(), "fleet-bench.yaml", registry);
  if (!loaded.ok()) return make_error(ErrorCode::kInternal, loaded.report());
  CRUCIBLE_ASSIGN_OR_RETURN(auto latency, step_latency(*journal, registry, *loaded.spec, quick ? 10 : 100));
  CRUCIBLE_ASSIGN_OR_RETURN(auto rate, throughput(*journal, registry, *loaded.spec, quick ? 64 : 1024));
  std::string recovery_url = journal_url, waits_url = journal_url;
  if (server) {
    CRUCIBLE_ASSIGN_OR_RETURN(recovery_url, server->create_database());
    CRUCIBLE_ASSIGN_OR_RETURN(waits_url, server->create_database());
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto recovery, fleet_recovery(recovery_url, quick ? 40 : 200));
  CRUCIBLE_ASSIGN_OR_RETURN(auto waits, fleet_http_waits(waits_url, quick ? 100 : 1000));
  const double raw_p50 = raw["p50_us"];
  const double step_p50 = latency["per_step_p50_us"];
  return Json{{"benchmark", "fleet"},
              {"quick", quick},
              {"server", server ? "throwaway cluster on 127.0.0.1 (initdb, defaults, fsync on)" : redact_url(url_in)},
              {"raw_commit_p50_us", raw_p50},
              {"raw_commit_p99_us", raw["p99_us"]},
              {"sequential_strict_run", latency},
              {"per_step_over_raw_commit_us", step_p50 - raw_p50},
              {"throughput", rate},
              {"recovery", recovery},
              {"http_waits", waits},
              {"goals",
               {{"per_step_p50_le_raw_commit_plus_0_1ms", step_p50 <= raw_p50 + 100},
                {"durable_steps_per_s_ge_20000", rate["durable_steps_per_s"].get<double>() >= 20000},
                {"recovery_all_done_once_within_lease_plus_2s", recovery["goal_met"]},
                {"http_waits_all_within_4s_under_1gib", waits["goal_met"]}}}};
}

}  // namespace crucible::bench
