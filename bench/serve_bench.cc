// `crucible bench serve`: the HTTP server against a bare cpp-httplib handler in the same run.
// Requests per second and latency of GET /v1/runs/{id}; the ingress start-to-result of a 10-step
// run, one at a time against the same run started in-process (Runner::start, what `crucible run`
// does), and at concurrency 32 as runs per second. Every run is strict on a SQLite journal with
// FULL sync, executed by the server's in-process worker.
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/engine/worker.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/server/server.h"
#include "crucible/stages/builtin_stages.h"
#include "crucible/testing/loopback_server.h"
#include "crucible/workflow/loader.h"

namespace crucible::bench {
namespace {

namespace fs = std::filesystem;
constexpr int kSteps = 10;
// Restate's HTTP ingress on this machine kind, for a 10-step workflow at concurrency 32.
constexpr double kRestateRunsPerSecond = 173;

struct Load {
  std::vector<double> latencies_us;
  double seconds = 0;
  int errors = 0;
  double per_second() const { return static_cast<double>(latencies_us.size()) / seconds; }
  Json to_json() const {
    return Json{{"requests", latencies_us.size()},
                {"errors", errors},
                {"per_second", per_second()},
                {"p50_us", percentile(latencies_us, 50)},
                {"p99_us", percentile(latencies_us, 99)}};
  }
};

// `concurrency` threads, each with its own keep-alive connection, each sending `per_thread`
// requests; `call` returns whether the answer was the expected one.
Load load(int port, int concurrency, int per_thread, const std::function<bool(httplib::Client&)>& call) {
  Load out;
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(60, 0);
      std::vector<double> mine;
      int errors = 0;
      for (int i = 0; i < per_thread; ++i) {
        const auto start = std::chrono::steady_clock::now();
        if (call(client)) {
          mine.push_back(since_us(start));
        } else {
          ++errors;
        }
      }
      std::lock_guard lock(mu);
      out.latencies_us.insert(out.latencies_us.end(), mine.begin(), mine.end());
      out.errors += errors;
    });
  }
  for (auto& t : threads) t.join();
  out.seconds = since_us(t0) / 1e6;
  return out;
}

std::string ten_steps() {
  std::string yaml = "name: ten\nstages:\n";
  for (int i = 0; i < kSteps; ++i) yaml += "  - {name: s" + std::to_string(i) + ", uses: noop}\n";
  return yaml;
}

}  // namespace

Result<Json> run_serve(bool quick) {
  const fs::path dir = fs::temp_directory_path() / ("crucible-bench-serve-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "pipelines");
  std::ofstream(dir / "pipelines" / "ten.yaml") << ten_steps();
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  SqliteJournalOptions jo;
  jo.path = (dir / "journal.db").string();
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(jo));
  StageRegistry registry;
  CRUCIBLE_RETURN_IF_ERROR(register_builtin_stages(registry));
  LoadResult loaded = load_pipeline_text(ten_steps(), "ten.yaml", registry);
  if (!loaded.ok()) return make_error(ErrorCode::kInternal, loaded.report());
  const WorkflowSpec spec = *loaded.spec;
  Executor executor(8);
  EventBus events;
  Runner runner(*journal, executor, real_clock(), system_random(), registry, &events);
  runner.set_artifact_root((dir / "runs").string());
  const int slots = 32;
  WorkerOptions wo;
  wo.concurrency = slots;
  wo.id = "bench-serve";
  server::Server* served = nullptr;
  Worker worker(
      *journal, runner, executor, real_clock(), [&](const Json&) -> Result<WorkflowSpec> { return spec; }, wo,
      [&](const RunId& run, const Result<RunResult>&) {
        if (served != nullptr && !run.str().empty()) served->run_finished(run);
      });
  server::ServerOptions so;
  so.port = 0;
  so.pipelines_dir = (dir / "pipelines").string();
  server::Server srv(server::ServerDeps{*journal, runner, executor, real_clock(), registry,
                                        [&](const Json&) -> Result<WorkflowSpec> { return spec; }, &worker},
                     so);
  served = &srv;
  events.add_sink(srv.metrics_sink());
  CRUCIBLE_RETURN_IF_ERROR(srv.start());
  std::stop_source drain;
  std::thread worker_thread([&] { worker.run(drain.get_token()); });
  struct Stop {
    std::stop_source& drain;
    std::thread& thread;
    server::Server& srv;
    ~Stop() {
      srv.stop();
      drain.request_stop();
      thread.join();
    }
  } stop{drain, worker_thread, srv};
  CRUCIBLE_ASSIGN_OR_RETURN(auto key, srv.keys().create("bench", server::KeyScope::kWrite));
  const httplib::Headers auth = {{"Authorization", "Bearer " + key.key}};

  // The bare handler: cpp-httplib answering a small JSON body, nothing else.
  testing::LoopbackServer bare;
  bare.server().new_task_queue = [] { return new httplib::ThreadPool(64); };
  bare.server().set_tcp_nodelay(true);
  bare.server().Get("/hello", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"completed"})", "application/json");
  });
  bare.start();

  const int concurrency = 32;
  const int gets = quick ? 100 : 500;
  const int sequential = quick ? 30 : 200;
  const int ingress_each = quick ? 10 : 40;

  Load bare_get = load(bare.port(), concurrency, gets, [](httplib::Client& c) {
    auto r = c.Get("/hello");
    return r && r->status == 200;
  });

  // One completed run to read.
  CRUCIBLE_ASSIGN_OR_RETURN(auto first, runner.start(spec));
  const std::string detail = "/v1/runs/" + first.run_id.str();
  Load api_get = load(srv.port(), concurrency, gets, [&](httplib::Client& c) {
    auto r = c.Get(detail.c_str(), auth);
    return r && r->status == 200;
  });

  // Start to result, one run at a time: in-process, then through the ingress.
  std::vector<double> in_process;
  for (int i = 0; i < sequential; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    CRUCIBLE_ASSIGN_OR_RETURN(auto r, runner.start(spec));
    if (r.status != RunStatus::kCompleted) return make_error(ErrorCode::kInternal, "an in-process run failed");
    in_process.push_back(since_us(t0));
  }
  auto ingress_ok = [&](httplib::Client& c) {
    auto r = c.Post("/ten/run", auth, "{}", "application/json");
    return r && r->status == 200 && r->body.find("\"status\":\"completed\"") != std::string::npos;
  };
  Load ingress_one = load(srv.port(), 1, sequential, ingress_ok);
  Load ingress_many = load(srv.port(), concurrency, ingress_each, ingress_ok);

  const double ratio = percentile(ingress_one.latencies_us, 50) / percentile(in_process, 50);
  const bool errors = bare_get.errors + api_get.errors + ingress_one.errors + ingress_many.errors > 0;
  return Json{
      {"benchmark", "serve"},
      {"journal", "sqlite, synchronous FULL, strict steps"},
      {"worker_slots", slots},
      {"concurrency", concurrency},
      {"bare_httplib_get", bare_get.to_json()},
      {"api_get_run", api_get.to_json()},
      {"api_get_run_vs_bare_p50", percentile(api_get.latencies_us, 50) / percentile(bare_get.latencies_us, 50)},
      {"in_process_run_10_steps",
       Json{{"runs", sequential}, {"p50_us", percentile(in_process, 50)}, {"p99_us", percentile(in_process, 99)}}},
      {"ingress_run_10_steps_sequential", ingress_one.to_json()},
      {"ingress_run_10_steps_concurrent", ingress_many.to_json()},
      {"ingress_vs_in_process_p50", ratio},
      {"goals", Json{{"ingress_under_2x_in_process", ratio < 2.0},
                     {"runs_per_second_above_restate", ingress_many.per_second() > kRestateRunsPerSecond},
                     {"restate_runs_per_second", kRestateRunsPerSecond},
                     {"no_errors", !errors}}},
  };
}

}  // namespace crucible::bench
