// The Journal port: an append-only log of run records (the durable truth of every run), run
// listing, leases with fencing epochs, per-run key/value state and durable promises.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/context.h"
#include "crucible/core/enum_names.h"
#include "crucible/core/error.h"
#include "crucible/core/ids.h"
#include "crucible/core/json.h"

namespace crucible {

enum class RecordType : uint8_t {
  kRunStarted = 1,       // payload: {pipeline, spec, spec_hash, input, parent_run?, forked_from?}
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

enum class RunStatus { kRunning, kCompleted, kFailed, kWaiting, kNeedsAttention };
std::string_view run_status_name(RunStatus status);
std::optional<RunStatus> parse_run_status(std::string_view name);
inline bool is_finished(RunStatus s) { return s == RunStatus::kCompleted || s == RunStatus::kFailed; }

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

  // Per-run key/value state, and state shared by all runs when `run` is empty.
  [[nodiscard]] virtual Status put_value(const std::string& scope, const std::string& key, const Json& value) = 0;
  [[nodiscard]] virtual Result<std::optional<Json>> get_value(const std::string& scope, const std::string& key) = 0;

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

// Status transition implied by appending `record` to a run, if any.
std::optional<RunStatus> status_after(const Record& record);

}  // namespace crucible
