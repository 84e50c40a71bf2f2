// The Journal port: an append-only log of run records (the durable truth of every run), run
// listing, leases with fencing epochs, per-run key/value state and durable promises.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crucible/core/context.h"
#include "crucible/core/enum_names.h"
#include "crucible/core/error.h"
#include "crucible/core/ids.h"
#include "crucible/core/json.h"

namespace crucible {

enum class RecordType : uint8_t {
  kRunStarted = 1,       // payload: {pipeline, spec, spec_hash, input, parent_run?, forked_from?, placement?}
  kStepStarted = 2,      // attempts: the attempt about to run
  kStepCompleted = 3,    // delta, attempts, duration_us; payload: {skipped?: true}
  kStepFailed = 4,       // error, attempts, duration_us; payload: {optional: bool}
  kDecision = 5,         // payload: the decided value (loop items, branch taken, memo, ...)
  kPromiseResolved = 6,  // payload: {name, value}
  kRunCompleted = 7,     // payload: {context}
  kRunFailed = 8,        // error
  kRunSuspended = 9,     // payload: {status: "waiting"|"needs_attention", ...}
};

std::string_view record_type_name(RecordType type);
std::optional<RecordType> parse_record_type(std::string_view name);

struct Record {
  RecordType type = RecordType::kDecision;
  RunId run_id;
  uint64_t seq = 0;  // assigned by the journal; increases in append order
  StepKey key;
  int64_t at_ms = 0;
  int attempts = 0;
  int64_t duration_us = 0;
  Delta delta;
  std::optional<Error> error;
  Json payload;
  // Fencing: the lease epoch its writer holds. A journal appends the record only while the run's
  // lease still has this epoch, so a writer whose lease was taken over (a worker that was paused
  // or cut off) never writes again: kAborted. 0: no check (signals, forks, tools). Not stored.
  uint64_t fence_epoch = 0;
};

// The fields of a record other than its type, run, seq and key, as stored.
Json record_body_to_json(const Record& record);
[[nodiscard]] Status record_body_from_json(const Json& body, Record& record);

// kQueued: submitted, waiting for a worker to claim it. kCancelled and kDeadlineExceeded: ended
// by `cancel` or by the run's own deadline (a kRunFailed record whose payload says so).
enum class RunStatus {
  kRunning,
  kCompleted,
  kFailed,
  kWaiting,
  kNeedsAttention,
  kQueued,
  kCancelled,
  kDeadlineExceeded
};
std::string_view run_status_name(RunStatus status);
std::optional<RunStatus> parse_run_status(std::string_view name);
inline bool is_finished(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kFailed || s == RunStatus::kCancelled ||
         s == RunStatus::kDeadlineExceeded;
}

// How long append() waits. kStrict: until the record and every record before it are durable.
// kBatched: only until it is queued; a group commit makes it durable soon after (about a
// millisecond), in order. kDeferred: queued like kBatched, but no commit is started for it: it
// becomes durable with the next commit, or within tens of milliseconds. The runner uses it for
// records that a strict step commit follows anyway (a step's intent, a loop's list), so a strict
// step costs one fsync.
enum class Durability { kStrict, kBatched, kDeferred };
inline const EnumNames<Durability> kDurabilityNames = {
    {Durability::kStrict, "strict"}, {Durability::kBatched, "batched"}, {Durability::kDeferred, "deferred"}};
inline std::string_view durability_name(Durability d) { return kDurabilityNames.name(d); }

struct RunSummary {
  RunId run_id;
  std::string pipeline;
  std::string spec_hash;
  RunStatus status = RunStatus::kRunning;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::string parent_run;  // set on forks
  std::string error;       // message of the RunFailed record
  // Where a submitted run waits (empty queue for a run started by `crucible run`), and how
  // often workers have claimed it.
  std::string queue;
  int priority = 0;
  int claims = 0;
  // The worker holding the run's lease and when that lease expires (empty owner: nobody).
  std::string lease_owner;
  int64_t lease_expires_ms = 0;
  Json to_json() const;
};

struct RunLog {
  RunSummary summary;
  std::vector<Record> records;  // in seq order
};

struct RunFilter {
  std::optional<RunStatus> status;
  std::optional<std::string> pipeline;
  std::optional<int64_t> created_after_ms;
  std::optional<int64_t> created_before_ms;
  size_t limit = 50;
};

// Ownership of a run by one worker. `epoch` increases on every acquisition and fences stale
// owners: a renewal or release with an old epoch fails with kAborted.
struct Lease {
  RunId run_id;
  std::string owner;
  uint64_t epoch = 0;
  int64_t expires_ms = 0;
  // Set by claim_runs on a run that `cancel` asked to stop while another worker held it: the
  // claimer ends it as cancelled instead of running it.
  bool cancel_requested = false;
};

// Where a submitted run waits for a worker: the kRunStarted payload's "placement". A run with a
// placement starts kQueued and only a worker's claim_runs starts it.
struct Placement {
  std::string queue = "default";
  int priority = 0;       // smaller runs first, as in DBOS: 0 before 5; equal ones in submission order
  std::string partition;  // flow control per key: the queue's concurrency counts each partition apart
  Json to_json() const;
  // kInvalidArgument naming the field.
  [[nodiscard]] static Result<Placement> from_json(const Json& j);
};

// A queue's flow control, kept in the journal's shared state (queue_limits_key) so every worker
// sees the same limits. Unset: no limit.
struct QueueLimits {
  std::optional<int> concurrency;            // runs of the queue executing at once on all workers (per partition)
  std::optional<int> rate_limit;             // at most this many first starts ...
  std::chrono::milliseconds rate_period{0};  // ... in any window this long
  Json to_json() const;
  [[nodiscard]] static Result<QueueLimits> from_json(const Json& j);
};
std::string queue_limits_key(const std::string& queue);

struct ClaimRequest {
  std::string owner;
  std::vector<std::string> queues = {"default"};
  size_t max_runs = 1;  // the worker's free slots
  std::chrono::milliseconds ttl{15'000};
  int64_t now_ms = 0;  // the claimer's clock: due timers, expired leases and rate windows
};

// What claim_runs knows of one claimable run and of the queues' load; pick_claims decides.
struct ClaimCandidate {
  RunId run_id;
  std::string queue;
  std::string partition;
  bool first_start = true;  // never claimed before: counts against the rate limit
};
struct QueueLoad {
  std::map<std::string, int> running;  // runs executing under a live lease, per partition
  int recent_starts = 0;               // first starts within the rate period
};
// The candidates (in claim order: priority, then submission) to claim: at most `max_runs`,
// keeping every queue within its limits. Shared by the adapters so they decide alike.
std::vector<size_t> pick_claims(const std::vector<ClaimCandidate>& candidates,
                                const std::map<std::string, QueueLimits>& limits, std::map<std::string, QueueLoad> load,
                                size_t max_runs);

enum class CancelOutcome {
  kCancelled,        // it held no live lease: ended now (a kRunFailed record, kCancelled)
  kRequested,        // a worker holds it: it stops at its next lease renewal and ends the run
  kAlreadyFinished,  // nothing to do
};

struct PruneOptions {
  int64_t updated_before_ms = 0;  // finished runs last updated before this are deleted
  // Unreferenced blobs stored (or stored again) this recently are kept: a run may be about to
  // append the record that references one.
  std::chrono::milliseconds blob_grace = std::chrono::minutes(15);
};

struct PruneReport {
  std::vector<RunId> runs;  // the runs deleted
  // The journal's files on disk (database and write-ahead log) before and after; 0 for a
  // journal without files.
  int64_t journal_bytes_before = 0;
  int64_t journal_bytes_after = 0;
  size_t blobs_removed = 0;
  int64_t blob_bytes_freed = 0;
};

// Implementations are thread-safe.
class Journal {
 public:
  virtual ~Journal() = default;

  // Appends records in order. A kRunStarted record creates the run (kAlreadyExists if it does);
  // other records need an existing run (kNotFound). After a failed commit (fsync, disk full) the
  // journal is broken: this and every later call return kDataLoss or kResourceExhausted, and no
  // later record becomes durable.
  [[nodiscard]] virtual Status append(std::vector<Record> records, Durability durability) = 0;
  // One record; adapters may override to avoid building a vector.
  [[nodiscard]] virtual Status append(Record record, Durability durability);
  // Waits until everything appended so far is durable.
  [[nodiscard]] virtual Status flush() = 0;

  // kNotFound if the run does not exist.
  [[nodiscard]] virtual Result<RunLog> read_run(const RunId& run) = 0;
  [[nodiscard]] virtual Result<std::vector<RunSummary>> list_runs(const RunFilter& filter) = 0;
  // Every run whose status is running, with its records: the input of crash recovery.
  [[nodiscard]] virtual Result<std::vector<RunLog>> read_unfinished() = 0;

  // Takes the lease if it is free, expired, already ours, or its epoch equals `steal_epoch`.
  // kFailedPrecondition naming the holder otherwise.
  [[nodiscard]] virtual Result<Lease> acquire_lease(const RunId& run, const std::string& owner,
                                                    std::chrono::milliseconds ttl,
                                                    std::optional<uint64_t> steal_epoch = std::nullopt) = 0;
  [[nodiscard]] virtual Result<std::optional<Lease>> current_lease(const RunId& run) = 0;
  // kAborted if the lease was taken over (epoch changed).
  [[nodiscard]] virtual Status renew_lease(const Lease& lease, std::chrono::milliseconds ttl) = 0;
  [[nodiscard]] virtual Status release_lease(const Lease& lease) = 0;
  // Appends a kRunStarted record and takes the new run's lease in one commit. The default
  // appends, then acquires.
  [[nodiscard]] virtual Result<Lease> start_run(Record run_started, const std::string& owner,
                                                std::chrono::milliseconds ttl);
  // A run that finishes or parks (kRunCompleted, kRunFailed, kRunSuspended) has no owner: the
  // record releases its lease in the same commit.

  // Claims up to request.max_runs runs of the named queues and takes their leases, in one
  // transaction: runs queued, runs whose worker's lease expired, and waiting runs whose promise
  // was resolved or whose deadline passed (a parked run holds no lease and no worker slot).
  // Priority first, then submission order; each queue's QueueLimits hold across all workers.
  // A claimed run's status becomes running. renew_lease on a claimed run whose cancellation was
  // requested returns kCancelled.
  [[nodiscard]] virtual Result<std::vector<Lease>> claim_runs(const ClaimRequest& request) = 0;
  // Ends the run as cancelled, or asks the worker holding it to (see CancelOutcome). kNotFound
  // if there is no such run.
  [[nodiscard]] virtual Result<CancelOutcome> cancel_run(const RunId& run, const std::string& reason,
                                                         int64_t now_ms) = 0;

  // Per-run key/value state, and state shared by all runs when `run` is empty.
  [[nodiscard]] virtual Status put_value(const std::string& scope, const std::string& key, const Json& value) = 0;
  [[nodiscard]] virtual Result<std::optional<Json>> get_value(const std::string& scope, const std::string& key) = 0;
  // The scope's keys that start with `prefix`, with their values, in key order.
  [[nodiscard]] virtual Result<std::vector<std::pair<std::string, Json>>> list_values(const std::string& scope,
                                                                                      const std::string& prefix) = 0;

  // Resolves the run's promise `name` and appends a kPromiseResolved record. Returns false if it
  // was already resolved (the first value wins). kNotFound if the run does not exist.
  [[nodiscard]] virtual Result<bool> resolve_promise(const RunId& run, const std::string& name, const Json& value) = 0;
  [[nodiscard]] virtual Result<std::optional<Json>> get_promise(const RunId& run, const std::string& name) = 0;

  // Deletes finished (completed or failed) runs last updated before the cutoff and gives back
  // the space they held: the journal's pages and the blobs nothing references any more.
  [[nodiscard]] virtual Result<PruneReport> prune(const PruneOptions& options) = 0;
};

// The error for a record whose fence_epoch is no longer the run's lease epoch.
Error fenced_error(const RunId& run, uint64_t fence_epoch, uint64_t current_epoch);

// The kPromiseResolved record a journal appends when resolve_promise sets a value.
Record promise_resolved_record(const RunId& run, const std::string& name, const Json& value, int64_t at_ms);

// The kRunFailed record that ends a run as `how` (kCancelled or kDeadlineExceeded); its payload
// {"ended": status name} sets the run's status.
Record ended_record(const RunId& run, RunStatus how, const std::string& reason, int64_t at_ms);
inline Record cancelled_record(const RunId& run, const std::string& reason, int64_t at_ms) {
  return ended_record(run, RunStatus::kCancelled, reason.empty() ? "the run was cancelled" : reason, at_ms);
}

// When a waiting run becomes claimable without a signal: the earlier of the deadlines its
// kRunSuspended record names (the promise's, the run's), if any.
std::optional<int64_t> wake_time(const Record& suspended);

// Status transition implied by appending `record` to a run, if any.
std::optional<RunStatus> status_after(const Record& record);

}  // namespace crucible
