// A worker: claims runs from the journal's queues and executes them with a Runner, as many at a
// time as its concurrency allows. Any number of workers, on any number of machines, may share a
// journal; a run belongs to the worker whose lease it holds.
#pragma once

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
  // After a drain request, how long running stages may go on before they are handed back.
  std::chrono::milliseconds grace{30'000};
  // How often the worker starts the runs of due schedule ticks; 0: never (schedule.h).
  std::chrono::milliseconds schedule_interval{1'000};
};

struct WorkerStats {
  uint64_t claimed = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;       // failed, cancelled or past their deadline
  uint64_t parked = 0;       // waiting on a promise or a timer: they hold no slot
  uint64_t handed_back = 0;  // interrupted (drain, lost lease); another worker resumes them
};

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

  WorkerStats stats() const;
  const std::string& id() const { return options_.id; }

 private:
  void execute(Lease lease);
  void fire_due_schedules();
  size_t reap();  // forgets finished runs; returns how many still execute

  Journal& journal_;
  Runner& runner_;
  Executor& executor_;
  Clock& clock_;
  SpecLoader load_spec_;
  WorkerOptions options_;
  RunListener listener_;
  std::stop_source hand_back_;
  MonoTime next_schedule_check_{};  // interrupts the runs still executing at the end of a drain

  mutable std::mutex mu_;
  WorkerStats stats_;                      // guarded by mu_
  std::vector<std::future<void>> active_;  // guarded by mu_
};

}  // namespace crucible
