// One run in progress: the tree walk, replay and journaling behind Runner. Private to the engine.
#pragma once

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crucible/engine/plan.h"
#include "crucible/engine/replay.h"
#include "crucible/engine/runner.h"
#include "crucible/experiment/strategy.h"

namespace crucible::engine_internal {

inline int64_t micros_since(Clock& clock, MonoTime start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(clock.monotonic() - start).count();
}

enum class Flow { kContinue, kSuspended };

struct Deps {
  Journal& journal;
  Executor& executor;
  Clock& clock;
  Random& random;
  EventBus* events;
  std::stop_token interrupt;               // the process is stopping: journal no failure for what it cancels
  uint64_t fence_epoch = 0;                // the run's lease epoch: every record is fenced by it
  std::optional<int64_t> run_deadline_ms;  // a parked run wakes by then, to end past its deadline
};

// The run's directories, handed to stages through StageServices.
struct RunDirs {
  std::string artifact_dir;
  std::string blob_dir;
};

class Execution {
 public:
  Execution(Deps deps, const WorkflowSpec& spec, const Plan& plan, RunId run_id, Durability durability,
            const RunLog& log, const ResumeOptions& options, RunDirs dirs = {});

  // Runs the root sequence. An error is a stage failure (already journaled) unless
  // journal_error() is set.
  Result<Flow> run(Context& ctx, const std::stop_token& stop);

  const std::optional<Error>& journal_error() const { return journal_error_; }
  std::vector<StepReport> take_reports();
  std::vector<std::string> optional_failures();
  const std::string& attention_step() const { return attention_step_; }
  const std::string& waiting_on() const { return waiting_on_; }
  std::optional<int64_t> wake_at_ms() const { return wake_at_ms_; }
  bool replay_only() const { return executed_.load() == 0; }
  int executed() const { return executed_.load(); }
  int replayed() const { return replayed_.load(); }

  // Appends and remembers the first failure; every later append fails too.
  Status append(Record record, Durability durability);
  Status append(std::vector<Record> records, Durability durability);
  // A record of this run at `at_ms`, or now.
  Record make_record(RecordType type, const StepKey& key, std::optional<int64_t> at_ms = std::nullopt);
  // The recorded decision `key+suffix`, or computes, journals and returns it.
  Result<Json> decide(const StepKey& key, const std::string& suffix, const std::function<Result<Json>()>& compute);
  // Journals, strictly, that attempt `attempt` of step `key` started process group `group`.
  Status hold_process_group(const StepKey& key, int attempt, const Json& group);
  Journal& journal() { return deps_.journal; }
  Clock& clock() { return deps_.clock; }
  Executor& executor() { return deps_.executor; }
  const RunId& run_id() const { return run_id_; }
  const WorkflowSpec& spec() const { return spec_; }
  const RunDirs& dirs() const { return dirs_; }

 private:
  Result<Flow> exec_list(const PlanList& nodes, const StepKey& parent, Context& ctx, const std::stop_token& stop);
  Result<Flow> exec_node(const PlanNode& node, const StepKey& parent, Context& ctx, const std::stop_token& stop);
  Result<Flow> exec_stage(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop);
  Result<Flow> exec_loop(const PlanNode& node, const StepKey& parent, const StepKey& key, Context& ctx,
                         const std::stop_token& stop);
  Result<Flow> exec_conditional(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop);
  Result<Flow> exec_parallel(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop);
  Result<Flow> exec_experiment(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop);
  // One experiment branch: runs it on a copy of `base`, or takes its journaled outcome (a
  // finished branch never runs again; a successful one is replayed to rebuild its context).
  struct BranchRun {
    Json record;                     // {config_id, config, status, duration_ms, metrics, error}
    std::optional<Context> context;  // the branch's context when it succeeded
    std::optional<Error> abort;      // the run must stop: journal failure or cancellation
    bool suspended = false;
  };
  BranchRun run_branch(const PlanNode& node, const StepKey& key, const Context& base, size_t index,
                       const std::stop_token& stop);
  BranchRun journal_branch(const std::string& record_key, Json record, std::optional<Context> context);
  std::vector<size_t> run_strategy(const PlanNode& node, const StepKey& key, const Context& ctx,
                                   const std::shared_ptr<std::vector<std::optional<BranchRun>>>& runs,
                                   const std::stop_token& stop);
  Result<Flow> finish_experiment(const PlanNode& node, Context& ctx, const std::vector<std::optional<BranchRun>>& all,
                                 const std::vector<size_t>& selected);
  // Waits for shadow branches still running in the background.
  void join_background();
  // One attempt of a stage: its intent, the stage under its policies, then its outcome record
  // (completed, or parked on a promise). A failed attempt leaves no trace in `ctx`.
  Result<Flow> attempt_step(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop,
                            int attempt, MonoTime start);
  // Whether an append has failed (journal_error_ then holds why); cheap, without the lock.
  bool journal_failed() const;
  Status run_attempt(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop, int attempt);
  // Stops what is left of the process groups that in-flight steps of an earlier execution
  // started, before any step runs again.
  Status stop_leftover_processes();
  Status run_body(const PlanNode& node, Stage& stage, Context& ctx, const StageOptions& options,
                  const std::stop_token& stop);
  Status run_hedged(const PlanNode& node, Stage& stage, Context& ctx, const StageOptions& options,
                    const std::stop_token& stop);
  Result<Flow> replayed_stage(const PlanNode& node, const StepKey& key, Context& ctx);
  // The stage's outcome as the journal has it (completed, optional failure, an operator's skip,
  // or parked when a non-idempotent step's outcome is unknown); nullopt when it must run.
  std::optional<Result<Flow>> replay_outcome(const PlanNode& node, const StepKey& key, Context& ctx);
  // Whether the node's `when` is false (decided once, journaled); reports the skip.
  Result<bool> skipped_by_when(const PlanNode& node, const StepKey& key, Context& ctx);
  // Parks the run on `suspend`'s promise; `intent` is the step's start record when it has not
  // been journaled yet.
  Result<Flow> park_on_promise(const StepKey& key, const SuspendRequest& suspend, std::optional<Record> intent);
  static std::vector<Record> with_intent(std::optional<Record> intent, Record outcome);
  Status run_with_timeout(const PlanNode& node, Context& ctx, const StageOptions& options, const std::stop_token& stop);
  Result<Json> loop_items(const PlanNode& node, const StepKey& key, Context& ctx);
  Result<Flow> finish_failure(const PlanNode& node, const StepKey& key, Context& ctx, const Error& error, int attempts,
                              int64_t duration_us);
  // One parallel node's branches in flight: their contexts and results, the first to finish.
  struct ParallelRun {
    explicit ParallelRun(size_t n) : contexts(n), results(n) {}
    std::vector<std::optional<Context>> contexts;
    std::vector<std::optional<Result<Flow>>> results;
    std::stop_source group;
    std::mutex winner_mu;
    std::optional<size_t> winner;  // guarded by winner_mu
  };
  std::optional<Result<Flow>> replay_parallel_winner(const PlanNode& node, const StepKey& key, Context& ctx,
                                                     const std::stop_token& stop);
  void run_parallel_branch(const PlanNode& node, const StepKey& key, const Context& ctx, size_t i, ParallelRun& run);
  Result<Flow> join_all(const PlanNode& node, Context& ctx, ParallelRun& run);
  Result<Flow> join_first(const PlanNode& node, const StepKey& key, Context& ctx, ParallelRun& run);
  Status merge(const PlanNode& node, Context& ctx, const std::vector<size_t>& winners,
               const std::vector<std::optional<Context>>& branches);
  void report(StepReport r);
  void emit(EventType type, const PlanNode& node, const StepKey& key, const StepReport* r, Json data = Json());
  Durability step_durability(const PlanNode& node) const;
  Durability lazy_durability() const;

  Deps deps_;
  const WorkflowSpec& spec_;
  const Plan& plan_;
  RunId run_id_;
  Durability durability_;
  ReplayIndex replay_;
  ResumeOptions options_;
  RunDirs dirs_;

  std::mutex mu_;
  std::vector<StepReport> reports_;             // guarded by mu_
  std::vector<std::string> optional_failures_;  // guarded by mu_
  std::optional<Error> journal_error_;          // guarded by mu_
  std::atomic<bool> journal_failed_{false};     // set once journal_error_ is
  std::string attention_step_;                  // guarded by mu_
  std::string waiting_on_;                      // guarded by mu_
  std::optional<int64_t> wake_at_ms_;           // guarded by mu_
  std::mutex background_mu_;
  std::vector<std::unique_ptr<Shadow>> background_;  // guarded by background_mu_: shadows still running
  std::atomic<int> executed_{0};
  std::atomic<int> replayed_{0};
};

}  // namespace crucible::engine_internal
