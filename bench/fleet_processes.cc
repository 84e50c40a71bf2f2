// The fleet benchmark's parts with `crucible worker` processes: recovery after one of four workers
// is killed with SIGKILL, and one worker holding 1,000 runs that each wait in an HTTP call.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/random.h"
#include "crucible/engine/runner.h"
#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/stages/library.h"
#include "crucible/testing/child_process.h"
#include "crucible/testing/loopback_server.h"
#include "crucible/workflow/loader.h"

namespace crucible::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::Child;

// The CLI installed next to this benchmark binary.
std::string crucible_binary() { return (fs::read_symlink("/proc/self/exe").parent_path() / "crucible").string(); }

// Peak resident set of a live process, in MiB (VmHWM), or -1.
double peak_rss_mib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

Result<std::vector<RunId>> submit_runs(Journal& journal, const std::string& yaml, const std::string& queue, int n) {
  StageRegistry registry = builtin_registry();
  LoadResult loaded = load_pipeline_text(yaml, "fleet-bench.yaml", registry);
  if (!loaded.ok()) return make_error(ErrorCode::kInternal, loaded.report());
  Executor executor(2);
  Runner runner(journal, executor, real_clock(), system_random(), registry);
  std::vector<RunId> ids;
  for (int i = 0; i < n; ++i) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto s, runner.submit(*loaded.spec, {}, Placement{queue, 0, ""}));
    ids.push_back(s.run_id);
  }
  return ids;
}

Child start_worker(const std::string& url, const std::string& dir, const std::string& id,
                   const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--journal", url, "--quiet", "worker", "--id", id, "--poll", "20ms"};
  args.insert(args.end(), extra.begin(), extra.end());
  return testing::spawn_program(crucible_binary(), args, dir + "/" + id + ".out", dir + "/" + id + ".err", dir);
}

void stop_worker(const Child& w) {
  ::kill(w.pid, SIGTERM);
  (void)testing::wait_child(w);
}

// Whether no run of the journal is left queued, running or waiting (cheap: one row at most each).
Result<bool> all_finished(Journal& journal) {
  for (RunStatus st : {RunStatus::kQueued, RunStatus::kRunning, RunStatus::kWaiting}) {
    RunFilter filter;
    filter.status = st;
    filter.limit = 1;
    CRUCIBLE_ASSIGN_OR_RETURN(auto runs, journal.list_runs(filter));
    if (!runs.empty()) return false;
  }
  return true;
}

// Completed runs among `ids`.
Result<size_t> completed(Journal& journal, const std::vector<RunId>& ids) {
  size_t n = 0;
  for (const RunId& id : ids) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto log, journal.read_run(id));
    n += log.summary.status == RunStatus::kCompleted ? 1 : 0;
  }
  return n;
}

}  // namespace

Result<Json> fleet_recovery(const std::string& url, int runs) {
  constexpr int kWorkers = 4, kSteps = 10;
  constexpr auto kLease = 2s;
  const std::string dir =
      (fs::temp_directory_path() / ("crucible-bench-recovery-" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_postgres_journal(PostgresJournalOptions{url}));
  std::string yaml = "name: recovery\nstages:\n";
  for (int i = 0; i < kSteps; ++i)
    yaml += "  - {name: s" + std::to_string(i) + ", uses: sleep, with: {duration: 100ms}}\n";
  CRUCIBLE_ASSIGN_OR_RETURN(auto ids, submit_runs(*journal, yaml, "recovery", runs));
  // Each worker has slots for a quarter of the runs, so the four hold them all between them.
  const std::string slots = std::to_string(std::max(1, runs / kWorkers));
  std::vector<Child> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(start_worker(url, dir, "w" + std::to_string(w),
                                   {"--queue", "recovery", "--concurrency", slots, "--lease", "2s"}));
  }
  // Kill w0 once it holds its share of runs and they have made progress.
  std::set<std::string> held;
  for (int i = 0; i < 1000 && static_cast<int>(held.size()) < std::max(1, runs / kWorkers); ++i) {
    std::this_thread::sleep_for(10ms);
    RunFilter filter;
    filter.status = RunStatus::kRunning;
    filter.limit = static_cast<size_t>(runs);
    CRUCIBLE_ASSIGN_OR_RETURN(auto running, journal->list_runs(filter));
    held.clear();
    for (const RunSummary& s : running) {
      if (s.lease_owner == "w0") held.insert(s.run_id.str());
    }
  }
  std::this_thread::sleep_for(300ms);
  ::kill(workers[0].pid, SIGKILL);
  (void)testing::wait_child(workers[0]);
  const int64_t killed_ms = real_clock().now_ms();
  const auto t_kill = std::chrono::steady_clock::now();
  bool finished = false;
  while (!finished && since_us(t_kill) < 60e6) {
    std::this_thread::sleep_for(20ms);
    CRUCIBLE_ASSIGN_OR_RETURN(finished, all_finished(*journal));
  }
  CRUCIBLE_ASSIGN_OR_RETURN(const size_t done, completed(*journal, ids));
  for (size_t w = 1; w < workers.size(); ++w) stop_worker(workers[w]);
  // Every step completed once; the killed worker's runs finished within the lease plus 2 s.
  int repeated = 0, resumed = 0;
  int64_t last_ms = 0;
  for (const RunId& id : ids) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto log, journal->read_run(id));
    std::map<std::string, int> completions;
    for (const Record& r : log.records) {
      if (r.type == RecordType::kStepCompleted && ++completions[r.key.str()] == 2) ++repeated;
    }
    if (held.contains(id.str())) {
      resumed += log.summary.claims > 1 ? 1 : 0;
      last_ms = std::max(last_ms, log.summary.updated_ms - killed_ms);
    }
  }
  fs::remove_all(dir);
  const bool all = done == ids.size();
  return Json{{"runs", runs},
              {"workers", kWorkers},
              {"steps_per_run", kSteps},
              {"step_ms", 100},
              {"lease_ms", kLease.count() * 1000},
              {"killed_worker_held", held.size()},
              {"killed_worker_runs_resumed_elsewhere", resumed},
              {"all_completed", all},
              {"steps_completed_twice", repeated},
              {"last_of_killed_workers_runs_done_after_kill_ms", last_ms},
              {"goal_met", all && repeated == 0 && last_ms <= kLease.count() * 1000 + 2000}};
}

Result<Json> fleet_http_waits(const std::string& url, int runs) {
  constexpr auto kWait = 2s;
  const std::string dir = (fs::temp_directory_path() / ("crucible-bench-waits-" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  testing::LoopbackServer server;
  const size_t threads = static_cast<size_t>(runs) + 16;
  server.server().new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.server().Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(kWait);
    res.set_content("{\"ok\": true}", "application/json");
  });
  server.start();
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_postgres_journal(PostgresJournalOptions{url}));
  const std::string yaml = "name: waits\nstages:\n  - {name: call, uses: http.request, with: {url: \"" +
                           server.url("/slow") + "\", timeout: 30s}}\n";
  CRUCIBLE_ASSIGN_OR_RETURN(auto ids, submit_runs(*journal, yaml, "waits", runs));
  const auto t0 = std::chrono::steady_clock::now();
  Child worker = start_worker(url, dir, "waiter", {"--queue", "waits", "--concurrency", std::to_string(runs)});
  bool finished = false;
  double rss = 0;
  while (!finished && since_us(t0) < 60e6) {
    std::this_thread::sleep_for(10ms);
    rss = std::max(rss, peak_rss_mib(worker.pid));
    CRUCIBLE_ASSIGN_OR_RETURN(finished, all_finished(*journal));
  }
  const double seconds = since_us(t0) / 1e6;
  CRUCIBLE_ASSIGN_OR_RETURN(const size_t done, completed(*journal, ids));
  rss = std::max(rss, peak_rss_mib(worker.pid));
  stop_worker(worker);
  fs::remove_all(dir);
  const bool all = done == ids.size();
  return Json{{"runs", runs},
              {"wait_in_http_call_ms", 2000},
              {"completed", done},
              {"all_finished_s", seconds},
              {"worker_peak_rss_mib", rss},
              {"goal_met", all && seconds <= 4.0 && rss < 1024}};
}

}  // namespace crucible::bench
