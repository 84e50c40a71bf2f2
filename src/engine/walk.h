// One run in progress: the tree walk, replay and journaling behind Runner. Private to the engine.
#pragma once

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

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
};

// The run's directories, handed to stages through StageServices.
struct RunDirs {
  std::string artifact_dir;
  std::string blob_dir;
};

class Execution {
 public:
  Execution(Deps deps, const WorkflowSpec& spec, RunId run_id, Durability durability, const RunLog& log,
            const ResumeOptions& options, RunDirs dirs = {});

  // Runs the root sequence. An error is a stage failure (already journaled) unless
  // journal_error() is set.
  Result<Flow> run(Context& ctx, std::stop_token stop);

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
  Record make_record(RecordType type, const StepKey& key);
  // The recorded decision `key+suffix`, or computes, journals and returns it.
  Result<Json> decide(const StepKey& key, const std::string& suffix, const std::function<Result<Json>()>& compute);
  Journal& journal() { return deps_.journal; }
  Clock& clock() { return deps_.clock; }
  Executor& executor() { return deps_.executor; }
  const RunId& run_id() const { return run_id_; }
  const WorkflowSpec& spec() const { return spec_; }
  const RunDirs& dirs() const { return dirs_; }

 private:
  Result<Flow> exec_list(const std::vector<Node>& nodes, const StepKey& parent, Context& ctx, std::stop_token stop);
  Result<Flow> exec_node(const Node& node, const StepKey& parent, Context& ctx, std::stop_token stop);
  Result<Flow> exec_stage(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop);
  Result<Flow> exec_loop(const Node& node, const StepKey& parent, const StepKey& key, Context& ctx,
                         std::stop_token stop);
  Result<Flow> exec_conditional(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop);
  Result<Flow> exec_parallel(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop);
  Result<Flow> exec_experiment(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop);
  // One experiment branch: runs it on a copy of `base`, or takes its journaled outcome (a
  // finished branch never runs again; a successful one is replayed to rebuild its context).
  struct BranchRun {
    Json record;                     // {config_id, config, status, duration_ms, metrics, error}
    std::optional<Context> context;  // the branch's context when it succeeded
    std::optional<Error> abort;      // the run must stop: journal failure or cancellation
    bool suspended = false;
  };
  BranchRun run_branch(const Node& node, const StepKey& key, const Context& base, size_t index, std::stop_token stop);
  Result<Flow> finish_experiment(const Node& node, Context& ctx, const std::vector<std::optional<BranchRun>>& all,
                                 const std::vector<size_t>& selected);
  // Waits for shadow branches still running in the background.
  void join_background();
  // One attempt of a stage: its intent, the stage under its policies, then its outcome record
  // (completed, or parked on a promise). A failed attempt leaves no trace in `ctx`.
  Result<Flow> attempt_step(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop, int attempt,
                            MonoTime start);
  // Whether an append has failed (journal_error_ then holds why); cheap, without the lock.
  bool journal_failed() const;
  Status run_attempt(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop);
  Status run_body(const Node& node, Stage& stage, Context& ctx, const StageOptions& options, std::stop_token stop);
  Status run_hedged(const Node& node, Stage& stage, Context& ctx, const StageOptions& options, std::stop_token stop);
  Result<Flow> replayed_stage(const Node& node, const StepKey& key, Context& ctx);
  Result<Flow> finish_failure(const Node& node, const StepKey& key, Context& ctx, const Error& error, int attempts,
                              int64_t duration_us);
  Status merge(const Node& node, Context& ctx, const std::vector<size_t>& winners,
               const std::vector<std::optional<Context>>& branches);
  void report(StepReport r);
  void emit(EventType type, const Node& node, const StepKey& key, const StepReport* r);
  Durability step_durability(const Node& node) const;
  Durability lazy_durability() const;

  Deps deps_;
  const WorkflowSpec& spec_;
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
