// A worker: claims runs from the journal's queues and executes them with a Runner, as many at a
// time as its concurrency allows. Any number of workers, on any number of machines, may share a
// journal; a run belongs to the worker whose lease it holds.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/executor.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/journal.h"

namespace crucible {

struct WorkerOptions {
  std::string id;  // the lease owner; empty: the runner's owner (<hostname>:<pid>)
  std::vector<std::string> queues = {"default"};
  size_t concurrency = 8;  // runs executing at once in this worker
  // A run whose worker dies is claimed by another after at most this long.
  std::chrono::milliseconds lease_ttl{15'000};
  std::chrono::milliseconds poll{200};  // how often an idle worker looks for work
  // A full worker claims freed slots together (an eighth of them), or when the first has waited
  // this long.
  std::chrono::milliseconds claim_batch_wait{10};
  // After a drain request, how long running stages may go on before they are handed back.
  std::chrono::milliseconds grace{30'000};
  // How often the worker starts the runs of due schedule ticks; 0: never (schedule.h).
  std::chrono::milliseconds schedule_interval{1'000};
  // How often the worker records itself and the runs it holds in the journal (`crucible
  // workers`); 0: never.
  std::chrono::milliseconds heartbeat{1'000};
};

struct WorkerStats {
  uint64_t claimed = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;       // failed, cancelled or past their deadline
  uint64_t parked = 0;       // waiting on a promise or a timer: they hold no slot
  uint64_t handed_back = 0;  // interrupted (drain, lost lease); another worker resumes them
};

// What a worker last recorded of itself in the journal's shared state (worker_key()).
struct WorkerInfo {
  std::string id;
  std::vector<std::string> queues;
  size_t concurrency = 0;
  std::vector<std::string> runs;  // the runs it was executing
  std::string state;              // "serving" or "draining"
  int64_t started_ms = 0;
  int64_t heartbeat_ms = 0;  // its last heartbeat
  int64_t heartbeat_every_ms = 0;
  WorkerStats stats;
  // Live: it heartbeated within three of its intervals.
  bool live(int64_t now_ms) const { return now_ms - heartbeat_ms <= 3 * heartbeat_every_ms; }
  Json to_json() const;
  [[nodiscard]] static Result<WorkerInfo> from_json(const Json& j);
};
std::string worker_key(const std::string& id);
inline constexpr const char* kWorkerPrefix = "worker/";
// The workers recorded in the journal, in id order: live ones, and for `lost_for` those whose
// heartbeats stopped that recently (a killed worker). A worker that stops cleanly removes itself.
[[nodiscard]] Result<std::vector<WorkerInfo>> list_workers(Journal& journal, int64_t now_ms,
                                                           std::chrono::milliseconds lost_for);

// The spec a claimed run was started with, from its journaled form (journaled_spec(); the CLI
// reloads the YAML text). Also loads the pipelines of schedules.
using SpecLoader = std::function<Result<WorkflowSpec>(const Json& spec)>;
// Told of each run a worker stops executing: its result, or why it stopped. An empty run id
// carries a worker-level error (a refused claim, a schedule that could not fire).
using RunListener = std::function<void(const RunId& run, const Result<RunResult>& outcome)>;

class Worker {
 public:
  // `runner` is the worker's own: the worker sets its owner, lease length and interrupt.
  Worker(Journal& journal, Runner& runner, Executor& executor, Clock& clock, SpecLoader load_spec,
         WorkerOptions options, RunListener listener = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Claims and executes runs until `drain` is requested. Then it claims nothing more, lets the
  // runs it holds go on for the grace period, interrupts the rest (their leases are released and
  // they stay resumable by any worker) and returns once every run has returned. Journal errors
  // while claiming are retried at the poll interval; they are not fatal.
  void run(std::stop_token drain);

  // Ends an idle worker's wait for its next poll, so it claims at once: for a process that has
  // just submitted a run, or resolved the promise a parked run waits on. Thread-safe.
  void wake();

  WorkerStats stats() const;
  const std::string& id() const { return options_.id; }

 private:
  void execute(Lease lease);
  void fire_due_schedules();
  // Records this worker in the journal when a heartbeat is due; `final` removes it.
  void heartbeat(const char* state, bool final = false);
  size_t reap();  // forgets finished runs; returns how many still execute

  Journal& journal_;
  Runner& runner_;
  Executor& executor_;
  Clock& clock_;
  SpecLoader load_spec_;
  WorkerOptions options_;
  RunListener listener_;
  std::stop_source hand_back_;  // interrupts the runs still executing at the end of a drain
  MonoTime next_schedule_check_{};
  MonoTime next_heartbeat_{};
  int64_t started_ms_ = 0;

  struct Active {
    RunId run;
    std::future<void> done;
  };
  std::atomic<bool> woken_{false};
  mutable std::mutex mu_;
  std::stop_source nap_;        // guarded by mu_: ends the current poll wait
  WorkerStats stats_;           // guarded by mu_
  std::vector<Active> active_;  // guarded by mu_
};

}  // namespace crucible
