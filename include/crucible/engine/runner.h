// The runner: walks a WorkflowSpec, journals every stage outcome and decision, and replays the
// journal on resume so finished work is never repeated.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/context.h"
#include "crucible/core/enum_names.h"
#include "crucible/core/executor.h"
#include "crucible/core/random.h"
#include "crucible/core/stage.h"
#include "crucible/journal/journal.h"
#include "crucible/telemetry/events.h"
#include "crucible/workflow/spec.h"

namespace crucible {

namespace engine_internal {
class Execution;
enum class Flow;
}  // namespace engine_internal

// What became of one step: in this execution (a report), or as the journal has it (in flight:
// started, no outcome yet).
enum class StepStatus { kCompleted, kReplayed, kSkipped, kFailed, kOptionalFailed, kCancelled, kInFlight };
inline const EnumNames<StepStatus> kStepStatusNames = {{StepStatus::kCompleted, "completed"},
                                                       {StepStatus::kReplayed, "replayed"},
                                                       {StepStatus::kSkipped, "skipped"},
                                                       {StepStatus::kFailed, "failed"},
                                                       {StepStatus::kOptionalFailed, "optional_failed"},
                                                       {StepStatus::kCancelled, "cancelled"},
                                                       {StepStatus::kInFlight, "in_flight"}};
inline std::string_view step_status_name(StepStatus s) { return kStepStatusNames.name(s); }

struct StepReport {
  std::string key;
  std::string name;
  StepStatus status = StepStatus::kCompleted;
  int attempts = 0;
  int64_t duration_us = 0;
  std::optional<Error> error;
  Json to_json() const;
};

struct RunResult {
  RunId run_id;
  std::string pipeline;
  RunStatus status = RunStatus::kRunning;
  Context context;
  std::vector<StepReport> steps;
  std::vector<std::string> optional_failures;  // step keys of optional stages that failed
  std::optional<Error> error;                  // why the run failed
  std::string waiting_on;                      // promise a waiting run needs
  std::optional<int64_t> wake_at_ms;           // when a waiting run times out
  std::string attention_step;                  // step whose outcome is unknown
  int64_t duration_us = 0;
  int executed = 0;
  int replayed = 0;
  // {"run_id","pipeline","status","duration_ms","stages":[...],"metrics":{...},...}
  Json to_json() const;
};

struct StartOptions {
  std::optional<RunId> run_id;      // a known id resumes that run instead of starting twice
  Json overrides = Json::object();  // merged over the spec's config
  bool new_version = false;         // continue an existing run with a changed spec
  std::optional<Durability> durability;
  std::optional<std::chrono::milliseconds> timeout;  // the run's deadline; overrides the spec's
};

struct ResumeOptions {
  std::set<std::string> rerun_steps;  // in-flight non-idempotent steps to run again
  std::set<std::string> skip_steps;   // in-flight non-idempotent steps to record as skipped
  std::optional<Lease> lease;         // the run's lease, already held (a worker's claim)
};

struct Submitted {
  RunId run_id;
  bool existed = false;  // the id was submitted (or run) before, with this spec and inputs
};

// Thread-safe: several runs may execute at once on one Runner.
class Runner {
 public:
  // All must outlive the Runner. `registry` makes the stage instances of each run's plan (the
  // registry the spec was validated against); `events` may be null.
  Runner(Journal& journal, Executor& executor, Clock& clock, Random& random, const StageRegistry& registry,
         EventBus* events = nullptr);
  ~Runner();

  // Starts a run, or resumes it when `options.run_id` names an existing one. Errors (the run
  // itself failing is not one): kFailedPrecondition when the id exists with another spec and
  // new_version is off or when another live worker holds the run; journal errors.
  [[nodiscard]] Result<RunResult> start(const WorkflowSpec& spec, const StartOptions& options = {});
  // Enqueues a run for the workers of `placement.queue` (Journal::claim_runs) and returns its id;
  // nothing runs here. The run id is the deduplication key: submitting an id again with the same
  // spec and inputs returns it (existed); with others, kFailedPrecondition naming what differs.
  [[nodiscard]] Result<Submitted> submit(const WorkflowSpec& spec, const StartOptions& options,
                                         const Placement& placement);
  // Replays the journal of `run_id` and continues at the first unfinished step. kNotFound if
  // there is no such run; kFailedPrecondition if `spec` is not the spec the run was started with.
  [[nodiscard]] Result<RunResult> resume(const WorkflowSpec& spec, const RunId& run_id,
                                         const ResumeOptions& options = {});
  // resume() of a run whose journal the caller has just read under the lease it holds
  // (options.lease): a worker that claimed it.
  [[nodiscard]] Result<RunResult> resume(const WorkflowSpec& spec, const RunLog& log, const ResumeOptions& options);
  // Starts a new run that reuses the journal of `source` before step `from` (the first record of
  // that step or anything below it) and re-executes from there. Returns the new run's id; run it
  // with resume(). kNotFound if the run or the step key does not exist.
  [[nodiscard]] Result<RunId> fork(const RunId& source, const StepKey& from,
                                   std::optional<RunId> new_id = std::nullopt);

  // For a waiting run: blocks (polling the journal, holding no executor thread) until its promise
  // resolves, its deadline passes or `stop` is requested, then resumes it.
  [[nodiscard]] Result<RunResult> wait_and_resume(const WorkflowSpec& spec, RunResult waiting, std::stop_token stop);

  // A token that interrupts every run of this runner (SIGINT, SIGTERM): in-flight stages are
  // cancelled through their stop_token, nothing is journaled as failed, the lease is released
  // and the run stays resumable; start() and resume() then return kCancelled.
  void set_interrupt(std::stop_token interrupt) { interrupt_ = std::move(interrupt); }

  // Identifies this worker in leases; defaults to "<hostname>:<pid>".
  void set_owner(std::string owner);
  const std::string& owner() const { return owner_; }
  // Lease length; renewed as steps finish.
  void set_lease_ttl(std::chrono::milliseconds ttl) { lease_ttl_ = ttl; }
  // Where stages write a run's files (reports, charts): <root>/<run id>, handed to stages as
  // StageServices::artifact_dir(). Defaults to ".crucible/runs"; the CLI puts it next to the journal.
  void set_artifact_root(std::string root) { artifact_root_ = std::move(root); }
  // The journal's blob directory, where the LLM completion cache lives; handed to stages as
  // StageServices::blob_dir(). Defaults to ".crucible/blobs".
  void set_blob_dir(std::string dir) { blob_dir_ = std::move(dir); }

 private:
  [[nodiscard]] Result<RunResult> execute(const WorkflowSpec& spec, const RunLog& log, Durability durability,
                                          const ResumeOptions& options, std::optional<Lease> taken = std::nullopt);
  Status check_version(const WorkflowSpec& spec, const RunLog& existing, const std::string& hash, bool new_version);
  Record run_started_record(const WorkflowSpec& spec, const RunId& run_id, const std::string& hash,
                            const StartOptions& options, Durability durability);
  // Ends a run that was cancelled or ran past its deadline (`why`'s code says which).
  Result<RunResult> end_run(const RunId& run_id, const std::string& pipeline, const Lease& lease, const Error& why);
  // The run's deadline: journaled at its first execution (a `#deadline` decision) from the
  // run_started record's timeout_ms; nullopt for a run without one.
  Result<std::optional<int64_t>> run_deadline(const RunLog& log, const Lease& lease);
  // `input` against the run's journaled input; `only_given`: just the keys `input` has.
  Status check_inputs(const RunLog& existing, const Json& input, bool only_given = false);
  // resume() with the run's lease already held (`lease`), or taken here.
  [[nodiscard]] Result<RunResult> resume_locked(const WorkflowSpec& spec, const RunId& run_id,
                                                const ResumeOptions& options, std::optional<Lease> lease);
  [[nodiscard]] Result<RunResult> resume_log(const WorkflowSpec& spec, const RunLog& log, const ResumeOptions& options,
                                             std::optional<Lease> lease);
  // The run's lease: `taken`, else a fresh one, else one taken over from a dead local owner.
  Result<Lease> take_lease(const RunId& run_id, std::optional<Lease> taken);
  // Journals how the run ended (or only flushes, for a parked or replayed run) and tells the
  // event bus.
  Status finish_run(engine_internal::Execution& exec, const Result<engine_internal::Flow>& flow, RunResult& result,
                    const Lease& lease, bool was_completed);
  void emit_run_end(EventType event, const RunResult& result);

  Journal& journal_;
  Executor& executor_;
  Clock& clock_;
  Random& random_;
  const StageRegistry& registry_;
  EventBus* events_;
  std::string owner_;
  std::stop_token interrupt_;
  std::chrono::milliseconds lease_ttl_{60'000};
  std::string artifact_root_ = ".crucible/runs";
  std::string blob_dir_ = ".crucible/blobs";
};

// Why a run the journal calls running is in fact interrupted (no process holds it, its lease
// expired, or its owner on this host has died), or nullopt when it is running or not running at
// all. `crucible resume` continues an interrupted run.
std::optional<std::string> interrupted_because(Journal& journal, const RunSummary& run, int64_t now_ms);

// The spec a run was started with (the latest one after --new-version): {"format":"yaml","text"}
// or {"format":"builder"}, with "file" and "spec_hash".
[[nodiscard]] Result<Json> journaled_spec(const RunLog& log);

}  // namespace crucible
