#include "crucible/journal_postgres/postgres_journal.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

#include "crucible/core/clock.h"
#include "crucible/journal/group_commit.h"
#include "pg_conn.h"
#include "record_batch.h"

namespace crucible {
namespace {

using pg_internal::Param;
using pg_internal::PgConn;
using pg_internal::PgResult;
using pg_internal::Statement;
using pg_internal::str;
using pg_internal::text_array;

// Each entry migrates the schema from version i to i + 1. Records and promises go with their run.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE runs(
  run_id TEXT PRIMARY KEY,
  pipeline TEXT NOT NULL,
  spec_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  parent_run TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_epoch BIGINT NOT NULL DEFAULT 0,
  lease_expires_ms BIGINT NOT NULL DEFAULT 0);
CREATE INDEX runs_by_status ON runs(status, created_ms);
CREATE INDEX runs_by_created ON runs(created_ms);
CREATE TABLE records(
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  type TEXT NOT NULL,
  step_key TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY(run_id, seq));
CREATE TABLE kv(scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(scope, key));
CREATE TABLE promises(
  run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  name TEXT NOT NULL, value TEXT NOT NULL, resolved_ms BIGINT NOT NULL,
  PRIMARY KEY(run_id, name));
)sql",
    // Queues: where a submitted run waits, when a parked one wakes, and cancellation.
    R"sql(
ALTER TABLE runs
  ADD COLUMN queue TEXT NOT NULL DEFAULT '',
  ADD COLUMN priority INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN partition_key TEXT NOT NULL DEFAULT '',
  ADD COLUMN claims INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN started_ms BIGINT,
  ADD COLUMN wake_ms BIGINT,
  ADD COLUMN waiting_on TEXT NOT NULL DEFAULT '',
  ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN submit_order BIGSERIAL;
CREATE INDEX runs_by_queue ON runs(queue, status, priority, submit_order);
)sql",
    // Version 3 locked and fenced a batch's runs in a function; version 4 does that in the
    // batch's insert and drops it.
    R"sql(
CREATE OR REPLACE FUNCTION crucible_lock_runs(ids text[], epochs bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  locked bigint;
BEGIN
  -- One lock order for every writer, so that two batches never wait for each other in a cycle.
  SELECT count(*) INTO locked FROM (SELECT 1 FROM runs WHERE run_id = ANY(ids) ORDER BY run_id FOR UPDATE) AS l;
  IF locked <> cardinality(ids) THEN
    RAISE EXCEPTION 'a run of the batch does not exist' USING ERRCODE = 'no_data_found';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(ids, epochs) AS t(id, epoch) JOIN runs u ON u.run_id = t.id
             WHERE t.epoch <> 0 AND u.lease_epoch <> t.epoch) THEN
    RAISE EXCEPTION 'a writer of the batch no longer holds its lease' USING ERRCODE = 'lock_not_available';
  END IF;
END
$fn$;
)sql",
    // Records and promises stand without a foreign key: every write checks its run under a row
    // lock already (the key's own check cost more than the rest of a small insert), and prune
    // deletes them with their run. Claims find the runs they may take in index order.
    R"sql(
DROP FUNCTION IF EXISTS crucible_lock_runs(text[], bigint[]);
ALTER TABLE records DROP CONSTRAINT records_run_id_fkey;
ALTER TABLE promises DROP CONSTRAINT promises_run_id_fkey;
CREATE INDEX runs_claimable ON runs(queue, priority, submit_order) WHERE status IN ('queued', 'running', 'waiting');
)sql",
};
static_assert(std::size(kMigrations) == kPostgresSchemaVersion);

// Any number; migrators on every machine take the same advisory lock.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(7238417706)";

const char* const kSummaryColumns =
    "run_id, pipeline, spec_hash, status, created_ms, updated_ms, parent_run, error, queue, priority, claims, "
    "lease_owner, lease_expires_ms";

RunSummary decode_summary(const PgResult& q, int row) {
  RunSummary s;
  s.run_id = *RunId::parse(q.text(row, 0));
  s.pipeline = q.text(row, 1);
  s.spec_hash = q.text(row, 2);
  s.status = parse_run_status(q.text(row, 3)).value_or(RunStatus::kRunning);
  s.created_ms = q.integer(row, 4);
  s.updated_ms = q.integer(row, 5);
  s.parent_run = q.text(row, 6);
  s.error = q.text(row, 7);
  s.queue = q.text(row, 8);
  s.priority = static_cast<int>(q.integer(row, 9));
  s.claims = static_cast<int>(q.integer(row, 10));
  s.lease_owner = q.text(row, 11);
  s.lease_expires_ms = q.integer(row, 12);
  return s;
}

// Columns seq, type, step_key, at_ms, body from `col`.
Result<Record> decode_record(const PgResult& q, int row, const RunId& run, int col = 0) {
  Record r;
  r.run_id = run;
  r.seq = static_cast<uint64_t>(q.integer(row, col));
  auto type = parse_record_type(q.text(row, col + 1));
  if (!type) {
    return make_error(ErrorCode::kDataLoss, "unknown record type '" + q.text(row, col + 1) + "' in run " + run.str());
  }
  r.type = *type;
  r.key = StepKey::from_string(q.text(row, col + 2));
  r.at_ms = q.integer(row, col + 3);
  auto body = parse_json(q.text(row, col + 4));
  if (!body)
    return make_error(ErrorCode::kDataLoss, "corrupt record " + std::to_string(r.seq) + " in run " + run.str());
  CRUCIBLE_RETURN_IF_ERROR(record_body_from_json(*body, r));
  return r;
}

class PostgresJournal : public Journal {
 public:
  explicit PostgresJournal(PostgresJournalOptions options)
      : options_(std::move(options)),
        // The server rolls a failed transaction back whole, so a failed batch leaves the journal
        // usable; only a commit whose outcome is unknown breaks it.
        queue_([this](GroupCommit::Batch& batch) { return commit_batch(batch); },
               [this](const Error&) { return in_doubt_; }) {}

  ~PostgresJournal() override { queue_.stop(); }

  Status open() {
    const std::string what = redact_url(options_.url);
    const int timeout = static_cast<int>(options_.connect_timeout.count());
    CRUCIBLE_RETURN_IF_ERROR(write_.connect(options_.url, timeout, what));
    for (size_t i = 0; i < kReaders; ++i) readers_.push_back(std::make_unique<Reader>());
    CRUCIBLE_RETURN_IF_ERROR(readers_[0]->conn.connect(options_.url, timeout, what));
    readers_[0]->connected = true;
    CRUCIBLE_RETURN_IF_ERROR(claim_.connect(options_.url, timeout, what));
    CRUCIBLE_RETURN_IF_ERROR(migrate(what));
    queue_.start();
    return {};
  }

  using Journal::append;

  // Records are serialised by the appending threads; the leader only inserts.
  Status append(std::vector<Record> records, Durability durability) override {
    std::vector<std::string> bodies;
    bodies.reserve(records.size());
    for (const Record& r : records) bodies.push_back(json_dump(record_body_to_json(r)));
    return queue_.append(std::move(records), std::move(bodies), durability);
  }

  Status flush() override { return queue_.flush(); }

  // The run's row and its records in one round trip.
  Result<RunLog> read_run(const RunId& run) override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    RunLog log;
    static const std::string summary_sql = std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE run_id = $1";
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto q, read->pipeline({{"crucible_read_summary", summary_sql.c_str(), {run.str()}},
                                {"crucible_read_records",
                                 "SELECT seq, type, step_key, at_ms, body FROM records WHERE run_id = $1 ORDER BY seq",
                                 {run.str()}}},
                               "reading a run"));
    if (q[0].rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    log.summary = decode_summary(q[0], 0);
    for (int i = 0; i < q[1].rows(); ++i) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto r, decode_record(q[1], i, run));
      log.records.push_back(std::move(r));
    }
    // A run read is usually about to be written (a worker resuming it): its next number is known.
    if (!log.records.empty() && !is_finished(log.summary.status)) {
      note_seq(run.str(), static_cast<int64_t>(log.records.back().seq));
    }
    return log;
  }

  Result<std::vector<RunSummary>> list_runs(const RunFilter& filter) override {
    std::string sql = std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE true";
    std::vector<Param> params;
    auto add = [&](const char* clause, std::string value) {
      params.push_back(std::move(value));
      sql += std::string(" AND ") + clause + " $" + std::to_string(params.size());
    };
    if (filter.status) add("status =", std::string(run_status_name(*filter.status)));
    if (filter.pipeline) add("pipeline =", *filter.pipeline);
    if (filter.created_after_ms) add("created_ms >=", str(*filter.created_after_ms));
    if (filter.created_before_ms) add("created_ms <", str(*filter.created_before_ms));
    params.push_back(str(static_cast<int64_t>(filter.limit)));
    sql += " ORDER BY created_ms DESC, run_id DESC LIMIT $" + std::to_string(params.size());
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(auto q, read->exec_again_if_lost(sql.c_str(), params, "listing runs"));
    std::vector<RunSummary> out;
    for (int i = 0; i < q.rows(); ++i) out.push_back(decode_summary(q, i));
    return out;
  }

  Result<std::vector<RunLog>> read_unfinished() override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    // One snapshot for both queries, so no record is missing from a run listed.
    CRUCIBLE_RETURN_IF_ERROR(
        read->exec_again_if_lost("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}, "reading unfinished runs"));
    auto result = read_unfinished_locked(*read);
    (void)read->exec(result ? "COMMIT" : "ROLLBACK", {}, "reading unfinished runs");
    return result;
  }

  Result<Lease> acquire_lease(const RunId& run, const std::string& owner, std::chrono::milliseconds ttl,
                              std::optional<uint64_t> steal_epoch) override {
    Lease lease;
    Status s = with_writer([&](PgConn& db) -> Status {
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto q, db.exec("SELECT lease_owner, lease_epoch, lease_expires_ms FROM runs WHERE run_id = $1 FOR UPDATE",
                          {run.str()}, "taking a lease"));
      if (q.rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
      const std::string holder = q.text(0, 0);
      const uint64_t epoch = static_cast<uint64_t>(q.integer(0, 1));
      const int64_t expires = q.integer(0, 2);
      const int64_t now = real_clock().now_ms();
      bool free = holder.empty() || expires <= now || holder == owner || (steal_epoch && *steal_epoch == epoch);
      if (!free) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "run '" + run.str() + "' is being executed by " + holder + " (lease epoch " +
                              std::to_string(epoch) + ", expires in " + std::to_string((expires - now) / 1000) + " s)");
      }
      lease = Lease{run, owner, epoch + 1, now + ttl.count()};
      return db.run("UPDATE runs SET lease_owner = $1, lease_epoch = $2, lease_expires_ms = $3 WHERE run_id = $4",
                    {owner, str(static_cast<int64_t>(lease.epoch)), str(lease.expires_ms), run.str()},
                    "taking a lease");
    });
    if (!s) return make_error(s.error());
    return lease;
  }

  Result<Lease> start_run(Record run_started, const std::string& owner, std::chrono::milliseconds ttl) override {
    Lease lease;
    Status s = with_writer([&](PgConn& db) -> Status {
      CRUCIBLE_RETURN_IF_ERROR(apply(db, run_started));
      const int64_t expires = real_clock().now_ms() + ttl.count();
      CRUCIBLE_ASSIGN_OR_RETURN(auto q, db.exec("UPDATE runs SET lease_owner = $1, lease_epoch = lease_epoch + 1, "
                                                "lease_expires_ms = $2 WHERE run_id = $3 RETURNING lease_epoch",
                                                {owner, str(expires), run_started.run_id.str()}, "taking a lease"));
      lease = Lease{run_started.run_id, owner, static_cast<uint64_t>(q.integer(0, 0)), expires};
      return {};
    });
    if (!s) return make_error(s.error());
    return lease;
  }

  Result<std::optional<Lease>> current_lease(const RunId& run) override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto q,
        read->exec_again_if_lost("SELECT lease_owner, lease_epoch, lease_expires_ms FROM runs WHERE run_id = $1",
                                 {run.str()}, "reading a lease"));
    if (q.rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    if (q.text(0, 0).empty()) return std::optional<Lease>();
    return std::optional<Lease>(Lease{run, q.text(0, 0), static_cast<uint64_t>(q.integer(0, 1)), q.integer(0, 2)});
  }

  Status renew_lease(const Lease& lease, std::chrono::milliseconds ttl) override {
    return update_lease(lease, lease.owner, real_clock().now_ms() + ttl.count());
  }

  Status release_lease(const Lease& lease) override { return update_lease(lease, "", 0); }

  // A claim is a transaction of its own on a connection of its own, beside the group commit: a
  // worker taking runs does not wait for the records of the runs it executes, nor they for it.
  // A claimer never waits for a writer (SKIP LOCKED), so the two cannot deadlock.
  Result<std::vector<Lease>> claim_runs(const ClaimRequest& request) override {
    if (request.queues.empty() || request.max_runs == 0) return std::vector<Lease>();
    std::lock_guard lock(claim_mu_);
    CRUCIBLE_RETURN_IF_ERROR(claim_.exec_again_if_lost("BEGIN", {}, "claiming runs"));
    // The claim need not wait for its own WAL flush: the first record the claimer commits
    // (synchronously, and fenced by this claim's epoch) flushes the WAL past it. A claim lost in
    // a server crash took nothing that a record depends on, so its epoch fences the claimer out.
    CRUCIBLE_RETURN_IF_ERROR(claim_.run("SET LOCAL synchronous_commit TO off", {}, "claiming runs"));
    auto out = claim_locked(claim_, request);
    if (!out) {
      if (!claim_.lost()) (void)claim_.exec("ROLLBACK", {}, "claiming runs");
      return out;
    }
    // A commit whose outcome is unknown claimed nothing this worker can rely on; if it landed,
    // the leases expire unrenewed and the runs are claimed again.
    CRUCIBLE_RETURN_IF_ERROR(claim_.exec("COMMIT", {}, "claiming runs"));
    return out;
  }

  Result<CancelOutcome> cancel_run(const RunId& run, const std::string& reason, int64_t now_ms) override {
    CancelOutcome outcome = CancelOutcome::kCancelled;
    Status s = with_writer([&](PgConn& db) -> Status {
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto q, db.exec("SELECT status, lease_owner, lease_expires_ms FROM runs WHERE run_id = $1 FOR UPDATE",
                          {run.str()}, "cancelling a run"));
      if (q.rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
      const auto status = parse_run_status(q.text(0, 0));
      if (status && is_finished(*status)) {
        outcome = CancelOutcome::kAlreadyFinished;
        return {};
      }
      CRUCIBLE_RETURN_IF_ERROR(
          db.run("UPDATE runs SET cancel_requested = true WHERE run_id = $1", {run.str()}, "cancelling a run"));
      if (!q.text(0, 1).empty() && q.integer(0, 2) > now_ms) {
        outcome = CancelOutcome::kRequested;
        return {};
      }
      outcome = CancelOutcome::kCancelled;
      return apply(db, cancelled_record(run, reason, now_ms));
    });
    if (!s) return make_error(s.error());
    return outcome;
  }

  Status put_value(const std::string& scope, const std::string& key, const Json& value) override {
    return with_writer([&](PgConn& db) -> Status {
      return db.run(
          "INSERT INTO kv(scope, key, value) VALUES($1, $2, $3) ON CONFLICT(scope, key) DO UPDATE SET value = "
          "excluded.value",
          {scope, key, json_dump(value)}, "writing state");
    });
  }

  Result<std::optional<Json>> get_value(const std::string& scope, const std::string& key) override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(auto q, read->exec_again_if_lost("SELECT value FROM kv WHERE scope = $1 AND key = $2",
                                                               {scope, key}, "reading state"));
    if (q.rows() == 0) return std::optional<Json>();
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(0, 0)));
    return std::optional<Json>(std::move(v));
  }

  Result<std::vector<std::pair<std::string, Json>>> list_values(const std::string& scope,
                                                                const std::string& prefix) override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto q, read->exec_again_if_lost(
                    "SELECT key, value FROM kv WHERE scope = $1 AND left(key, $2::int) = $3 ORDER BY key COLLATE \"C\"",
                    {scope, str(static_cast<int64_t>(prefix.size())), prefix}, "listing state"));
    std::vector<std::pair<std::string, Json>> out;
    for (int i = 0; i < q.rows(); ++i) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(i, 1)));
      out.emplace_back(q.text(i, 0), std::move(v));
    }
    return out;
  }

  Result<bool> resolve_promise(const RunId& run, const std::string& name, const Json& value) override {
    bool resolved = false;
    Status s = with_writer([&](PgConn& db) -> Status {
      const int64_t now = real_clock().now_ms();
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto ins, db.exec("INSERT INTO promises(run_id, name, value, resolved_ms) SELECT $1, $2, $3, $4 WHERE EXISTS "
                            "(SELECT 1 FROM runs WHERE run_id = $1) ON CONFLICT DO NOTHING",
                            {run.str(), name, json_dump(value), str(now)}, "resolving a promise"));
      if (ins.affected() == 0) {
        CRUCIBLE_ASSIGN_OR_RETURN(auto exists,
                                  db.exec("SELECT 1 FROM runs WHERE run_id = $1", {run.str()}, "resolving a promise"));
        if (exists.rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
        return {};
      }
      resolved = true;
      return apply(db, promise_resolved_record(run, name, value, now));
    });
    if (!s) return make_error(s.error());
    return resolved;
  }

  Result<std::optional<Json>> get_promise(const RunId& run, const std::string& name) override {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto q,
        read->exec_again_if_lost("SELECT p.value, r.run_id FROM runs r LEFT JOIN promises p ON p.run_id = r.run_id AND "
                                 "p.name = $2 WHERE r.run_id = $1",
                                 {run.str(), name}, "reading a promise"));
    if (q.rows() == 0) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    if (q.is_null(0, 0)) return std::optional<Json>();
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(0, 0)));
    return std::optional<Json>(std::move(v));
  }

  Result<PruneReport> prune(const PruneOptions& options) override {
    PruneReport report;
    CRUCIBLE_ASSIGN_OR_RETURN(report.journal_bytes_before, table_bytes());
    Status s = with_writer([&](PgConn& db) -> Status {
      report.runs.clear();
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto q,
          db.exec("DELETE FROM runs WHERE status IN ('completed', 'failed', 'cancelled', 'deadline_exceeded') AND "
                  "updated_ms < $1 RETURNING run_id",
                  {str(options.updated_before_ms)}, "pruning"));
      std::vector<std::string> ids;
      for (int i = 0; i < q.rows(); ++i) {
        ids.push_back(q.text(i, 0));
        if (auto id = RunId::parse(ids.back())) report.runs.push_back(*id);
      }
      if (ids.empty()) return {};
      const std::string names = text_array(ids);
      for (const char* sql :
           {"DELETE FROM records WHERE run_id = ANY($1::text[])", "DELETE FROM promises WHERE run_id = ANY($1::text[])",
            "DELETE FROM kv WHERE scope = ANY($1::text[])"}) {
        CRUCIBLE_RETURN_IF_ERROR(db.run(sql, {names}, "pruning"));
      }
      return {};
    });
    if (!s) return make_error(s.error());
    // The deleted rows' space becomes reusable; VACUUM cannot run inside a transaction, so it
    // runs on the reading connection, between reads.
    {
      auto read = reader();
      CRUCIBLE_RETURN_IF_ERROR(read.status);
      for (const char* table : {"VACUUM records", "VACUUM promises", "VACUUM kv", "VACUUM runs"}) {
        CRUCIBLE_RETURN_IF_ERROR(read->run(table, {}, "vacuuming after prune"));
      }
    }
    CRUCIBLE_ASSIGN_OR_RETURN(report.journal_bytes_after, table_bytes());
    return report;
  }

 private:
  Status migrate(const std::string& what) {
    CRUCIBLE_RETURN_IF_ERROR(write_.run("BEGIN", {}, "migrating the schema"));
    Status s = migrate_locked(what);
    (void)write_.exec(s ? "COMMIT" : "ROLLBACK", {}, "migrating the schema");
    return s;
  }

  Status migrate_locked(const std::string& what) {
    CRUCIBLE_RETURN_IF_ERROR(write_.run(kMigrationLock, {}, "migrating the schema"));
    CRUCIBLE_RETURN_IF_ERROR(
        write_.run("CREATE TABLE IF NOT EXISTS crucible_meta(key TEXT PRIMARY KEY, value TEXT NOT "
                   "NULL)",
                   {}, "migrating the schema"));
    CRUCIBLE_ASSIGN_OR_RETURN(auto q, write_.exec("SELECT value FROM crucible_meta WHERE key = 'schema_version'", {},
                                                  "migrating the schema"));
    const int version = q.rows() > 0 ? static_cast<int>(q.integer(0, 0)) : 0;
    if (version > kPostgresSchemaVersion) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "journal at " + what + " has schema version " + std::to_string(version) +
                            ", newer than this crucible supports (" + std::to_string(kPostgresSchemaVersion) +
                            "); use a newer crucible or another --journal");
    }
    for (int v = version; v < kPostgresSchemaVersion; ++v) {
      CRUCIBLE_RETURN_IF_ERROR(write_.run(kMigrations[v], {}, "migrating the schema"));
    }
    return write_.run(
        "INSERT INTO crucible_meta(key, value) VALUES('schema_version', $1) ON CONFLICT(key) DO UPDATE SET "
        "value = excluded.value",
        {std::to_string(std::max(version, kPostgresSchemaVersion))}, "migrating the schema");
  }

  Result<std::vector<RunLog>> read_unfinished_locked(PgConn& db) {
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto runs,
        db.exec_again_if_lost(
            (std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE status = 'running' ORDER BY run_id").c_str(),
            {}, "listing unfinished runs"));
    std::vector<RunLog> out;
    std::unordered_map<std::string, size_t> index;
    for (int i = 0; i < runs.rows(); ++i) {
      RunLog log;
      log.summary = decode_summary(runs, i);
      index[log.summary.run_id.str()] = out.size();
      out.push_back(std::move(log));
    }
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto recs,
        db.exec_again_if_lost("SELECT r.run_id, r.seq, r.type, r.step_key, r.at_ms, r.body FROM records r JOIN runs u "
                              "ON u.run_id = r.run_id WHERE u.status = 'running' ORDER BY r.run_id, r.seq",
                              {}, "reading unfinished runs"));
    for (int i = 0; i < recs.rows(); ++i) {
      auto it = index.find(recs.text(i, 0));
      if (it == index.end()) continue;
      RunLog& log = out[it->second];
      CRUCIBLE_ASSIGN_OR_RETURN(auto r, decode_record(recs, i, log.summary.run_id, 1));
      log.records.push_back(std::move(r));
    }
    return out;
  }

  // The journal's tables with their indexes and TOAST, in bytes.
  Result<int64_t> table_bytes() {
    auto read = reader();
    CRUCIBLE_RETURN_IF_ERROR(read.status);
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto q, read->exec_again_if_lost(
                    "SELECT sum(pg_total_relation_size(t))::bigint FROM unnest(ARRAY['runs', 'records', 'kv', "
                    "'promises', 'crucible_meta']) AS t",
                    {}, "measuring the journal"));
    return q.integer(0, 0);
  }

  // Writes one record inside the current transaction: a run's row when the record changes its
  // status or spec, and the record with the run's next sequence number.
  Status apply(PgConn& db, const Record& r, const std::string* body = nullptr) {
    const std::string run = r.run_id.str();
    if (r.fence_epoch != 0) {
      // Before anything is written; the row lock holds the lease still until the commit, so the
      // epoch read once per run and commit stays true (an op group in between forgets it).
      auto [slot, fresh] = epochs_.try_emplace(run, 0);
      if (fresh) {
        auto q = db.exec("SELECT lease_epoch FROM runs WHERE run_id = $1 FOR UPDATE", {run}, "checking the lease");
        if (!q || q->rows() == 0) {
          epochs_.erase(slot);
          if (!q) return make_error(q.error());
          return make_error(ErrorCode::kNotFound, "run '" + run + "' does not exist");
        }
        slot->second = static_cast<uint64_t>(q->integer(0, 0));
      }
      if (slot->second != r.fence_epoch) return make_error(fenced_error(r.run_id, r.fence_epoch, slot->second));
    }
    if (r.type == RecordType::kRunStarted) {
      Placement placement;
      std::string queue;  // empty: not submitted
      if (const Json* given = json_member(r.payload, "placement")) {
        CRUCIBLE_ASSIGN_OR_RETURN(placement, Placement::from_json(*given));
        queue = placement.queue;
      }
      auto q = db.exec(
          "INSERT INTO runs(run_id, pipeline, spec_hash, status, created_ms, updated_ms, parent_run, queue, priority, "
          "partition_key) VALUES($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
          {run, json_string(r.payload, "pipeline"), json_string(r.payload, "spec_hash"),
           std::string(queue.empty() ? "running" : "queued"), str(r.at_ms), json_string(r.payload, "parent_run"), queue,
           str(placement.priority), placement.partition},
          "starting a run");
      if (!q && q.error().code() == ErrorCode::kAlreadyExists) {
        return make_error(ErrorCode::kAlreadyExists, "run '" + run + "' already exists");
      }
      CRUCIBLE_RETURN_IF_ERROR(q);
      next_seq_[run] = 0;
    } else if (auto change = pg_internal::run_row_change(r)) {
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto q, db.exec(pg_internal::kUpdateRunSql, pg_internal::update_run_params(*change, run), "updating a run"));
      if (q.affected() == 0) return make_error(ErrorCode::kNotFound, "run '" + run + "' does not exist");
    }
    auto [slot, fresh] = next_seq_.try_emplace(run, 0);
    if (fresh) {
      // The run must exist; its last sequence number, under a row lock so that writers in other
      // processes number its records one at a time.
      CRUCIBLE_ASSIGN_OR_RETURN(
          auto q, db.exec("SELECT (SELECT coalesce(max(seq), 0) FROM records WHERE run_id = $1) FROM runs WHERE run_id "
                          "= $1 FOR UPDATE",
                          {run}, "numbering a record"));
      if (q.rows() == 0) {
        next_seq_.erase(slot);
        return make_error(ErrorCode::kNotFound, "run '" + run + "' does not exist");
      }
      slot->second = q.integer(0, 0);
    }
    const int64_t seq = ++slot->second;
    return db.run("INSERT INTO records(run_id, seq, type, step_key, at_ms, body) VALUES($1, $2, $3, $4, $5, $6)",
                  {run, str(seq), std::string(record_type_name(r.type)), r.key.str(), str(r.at_ms),
                   body != nullptr ? *body : json_dump(record_body_to_json(r))},
                  "writing a record");
  }

  // A renewal (owner kept) of a run whose cancellation was requested returns kCancelled.
  Status update_lease(const Lease& lease, const std::string& owner, int64_t expires) {
    return with_writer([&](PgConn& db) -> Status {
      CRUCIBLE_ASSIGN_OR_RETURN(auto q, db.exec("UPDATE runs SET lease_owner = $1, lease_expires_ms = $2 WHERE run_id "
                                                "= $3 AND lease_epoch = $4 AND lease_owner = $5 RETURNING "
                                                "cancel_requested",
                                                {owner, str(expires), lease.run_id.str(),
                                                 str(static_cast<int64_t>(lease.epoch)), lease.owner},
                                                "updating a lease"));
      if (q.rows() == 0) {
        return make_error(ErrorCode::kAborted, "lease on run '" + lease.run_id.str() + "' was taken over (epoch " +
                                                   std::to_string(lease.epoch) + " is stale)");
      }
      if (q.text(0, 0) == "t" && !owner.empty()) {
        return make_error(ErrorCode::kCancelled, "run '" + lease.run_id.str() + "' was cancelled");
      }
      return {};
    });
  }

  // Inside the claim's transaction. Claimers of a queue with limits take its advisory lock, so
  // the limits hold across workers; SKIP LOCKED passes over runs another transaction holds.
  Result<std::vector<Lease>> claim_locked(PgConn& db, const ClaimRequest& request) {
    std::vector<std::string> queues = request.queues;
    std::sort(queues.begin(), queues.end());  // one lock order for every claimer
    queues.erase(std::unique(queues.begin(), queues.end()), queues.end());
    std::vector<std::string> keys;
    for (const std::string& q : queues) keys.push_back(queue_limits_key(q));
    CRUCIBLE_ASSIGN_OR_RETURN(auto stored, db.exec_prepared("crucible_queue_limits",
                                                            "SELECT key, value FROM kv WHERE scope = '' AND key = "
                                                            "ANY($1::text[]) ORDER BY key COLLATE \"C\"",
                                                            {text_array(keys)}, "claiming runs"));
    std::map<std::string, QueueLimits> limits;
    std::map<std::string, QueueLoad> load;
    for (int i = 0; i < stored.rows(); ++i) {
      const std::string q = stored.text(i, 0).substr(queue_limits_key("").size());
      CRUCIBLE_ASSIGN_OR_RETURN(auto j, parse_json(stored.text(i, 1)));
      if (j.is_null()) continue;
      auto parsed = QueueLimits::from_json(j);
      if (!parsed) return make_error(parsed.error().with_context("queue '" + q + "'"));
      if (!parsed->concurrency && !parsed->rate_limit) continue;
      limits[q] = *parsed;
    }
    CRUCIBLE_RETURN_IF_ERROR(count_load(db, request, limits, load));
    // Without limits the first max_runs claimable runs are the ones taken; with limits, more
    // candidates let pick_claims pass over runs whose queue or partition is full. One queue (the
    // common case) walks runs_claimable in claim order and stops at the limit; several are sorted.
    const int64_t wanted = limits.empty() ? request.max_runs : request.max_runs * 8 + 64;
    static const std::string kHead = "SELECT run_id, queue, partition_key, started_ms IS NULL FROM runs WHERE queue ";
    static const std::string kTail =
        " AND status IN ('queued', 'running', 'waiting') AND (((status = 'queued' OR status = 'running') AND "
        "(lease_owner = '' OR lease_expires_ms <= $2)) OR (status = 'waiting' AND (wake_ms <= $2 OR EXISTS (SELECT 1 "
        "FROM promises p WHERE p.run_id = runs.run_id AND p.name = runs.waiting_on)))) ORDER BY priority, submit_order "
        "LIMIT $3 FOR UPDATE SKIP LOCKED";
    static const std::string kOneQueue = kHead + "= $1" + kTail;
    static const std::string kQueues = kHead + "= ANY($1::text[])" + kTail;
    const bool one = queues.size() == 1;
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto due, db.exec_prepared(
                      one ? "crucible_claimable_1" : "crucible_claimable", (one ? kOneQueue : kQueues).c_str(),
                      {one ? queues.front() : text_array(queues), str(request.now_ms), str(wanted)}, "claiming runs"));
    std::vector<ClaimCandidate> candidates;
    for (int i = 0; i < due.rows(); ++i) {
      candidates.push_back(
          ClaimCandidate{*RunId::parse(due.text(i, 0)), due.text(i, 1), due.text(i, 2), due.text(i, 3) == "t"});
    }
    std::vector<std::string> picked;
    for (size_t i : pick_claims(candidates, limits, std::move(load), request.max_runs)) {
      picked.push_back(candidates[i].run_id.str());
    }
    std::vector<Lease> out;
    if (picked.empty()) return out;
    const int64_t expires = request.now_ms + request.ttl.count();
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto taken,
        db.exec_prepared("crucible_take_runs",
                         "UPDATE runs SET lease_owner = $1, lease_epoch = lease_epoch + 1, lease_expires_ms = $2, "
                         "status = 'running', claims = claims + 1, started_ms = coalesce(started_ms, $3) WHERE run_id "
                         "= ANY($4::text[]) RETURNING run_id, lease_epoch, cancel_requested",
                         {request.owner, str(expires), str(request.now_ms), text_array(picked)}, "claiming runs"));
    std::map<std::string, std::pair<uint64_t, bool>> epochs;
    for (int i = 0; i < taken.rows(); ++i) {
      epochs[taken.text(i, 0)] = {static_cast<uint64_t>(taken.integer(i, 1)), taken.text(i, 2) == "t"};
    }
    for (const std::string& run : picked) {  // in claim order
      Lease lease{*RunId::parse(run), request.owner, epochs[run].first, expires};
      lease.cancel_requested = epochs[run].second;
      out.push_back(std::move(lease));
    }
    return out;
  }

  // The load of the queues that have limits, under their advisory locks (in name order).
  Status count_load(PgConn& db, const ClaimRequest& request, const std::map<std::string, QueueLimits>& limits,
                    std::map<std::string, QueueLoad>& load) {
    for (const auto& [q, l] : limits) {
      CRUCIBLE_RETURN_IF_ERROR(db.exec_prepared("crucible_queue_lock",
                                                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                                                {"crucible.queue/" + q}, "claiming runs"));
      if (l.rate_limit) {
        CRUCIBLE_ASSIGN_OR_RETURN(
            auto starts,
            db.exec_prepared("crucible_queue_starts", "SELECT count(*) FROM runs WHERE queue = $1 AND started_ms > $2",
                             {q, str(request.now_ms - l.rate_period.count())}, "claiming runs"));
        load[q].recent_starts = static_cast<int>(starts.integer(0, 0));
      }
      if (l.concurrency) {
        CRUCIBLE_ASSIGN_OR_RETURN(
            auto running,
            db.exec_prepared("crucible_queue_running",
                             "SELECT partition_key, count(*) FROM runs WHERE queue = $1 AND status = 'running' AND "
                             "lease_owner <> '' AND lease_expires_ms > $2 GROUP BY partition_key",
                             {q, str(request.now_ms)}, "claiming runs"));
        for (int i = 0; i < running.rows(); ++i) {
          load[q].running[running.text(i, 0)] = static_cast<int>(running.integer(i, 1));
        }
      }
    }
    return {};
  }

  // One transaction for the batch. Its records go first, all at once in one round trip
  // (write_records_at_once); if that fails, or the batch has a shape it cannot take, each group is
  // written in a savepoint of its own, so that a bad group (a run that does not exist, a fenced
  // writer) fails alone. Other writes (leases, claims, state) follow, each in a savepoint. A
  // connection lost before COMMIT rolled everything back on the server: the batch fails with
  // kUnavailable and the next call reconnects. Lost during COMMIT, the outcome is unknown, and the
  // journal refuses further writes rather than guess.
  Status commit_batch(GroupCommit::Batch& batch) {
    next_seq_.clear();
    epochs_.clear();
    in_doubt_ = false;
    const bool ops = std::any_of(batch.begin(), batch.end(), [](const auto& g) { return static_cast<bool>(g->op); });
    bool records_written = false;
    auto plan = pg_internal::plan_record_batch(batch, [this](const std::string& run) { return known_seq(run); });
    if (plan && !plan->statements.empty()) {
      CRUCIBLE_ASSIGN_OR_RETURN(records_written, write_records_at_once(*plan, /*commit=*/!ops));
      if (!records_written) forget_seqs(plan->last_seq);
      if (records_written && !ops) return learn_seqs(*plan);
    }
    if (!records_written) {
      CRUCIBLE_RETURN_IF_ERROR(write_.exec_again_if_lost("BEGIN", {}, "beginning a journal commit"));
    }
    for (auto& g : batch) {
      if (g->records.empty() && !g->op) continue;
      if (records_written && !g->op) continue;
      Status s = commit_group(*g);
      if (s) continue;
      if (write_.lost()) return s;
      g->status = s;
      if (g->batched) queue_.defer(s.error());
    }
    CRUCIBLE_RETURN_IF_ERROR(commit());
    if (records_written) (void)learn_seqs(*plan);
    std::lock_guard lock(seq_mu_);
    for (const auto& [run, seq] : next_seq_) known_seq_[run] = std::max(known_seq_[run], seq);
    return {};
  }

  // The last sequence number this journal knows a run to have, from its own commits and reads.
  std::optional<int64_t> known_seq(const std::string& run) {
    std::lock_guard lock(seq_mu_);
    auto it = known_seq_.find(run);
    if (it == known_seq_.end()) return std::nullopt;
    return it->second;
  }
  void note_seq(const std::string& run, int64_t seq) {
    std::lock_guard lock(seq_mu_);
    if (known_seq_.size() > kKnownSeqLimit) known_seq_.clear();
    int64_t& known = known_seq_[run];
    known = std::max(known, seq);
  }
  Status learn_seqs(const pg_internal::RecordBatchPlan& plan) {
    std::lock_guard lock(seq_mu_);
    if (known_seq_.size() > kKnownSeqLimit) known_seq_.clear();
    for (const auto& [run, seq] : plan.last_seq) known_seq_[run] = std::max(known_seq_[run], seq);
    for (const std::string& run : plan.finished) known_seq_.erase(run);
    return {};
  }
  void forget_seqs(const std::map<std::string, int64_t>& runs) {
    std::lock_guard lock(seq_mu_);
    for (const auto& [run, seq] : runs) known_seq_.erase(run);
  }

  Status commit() {
    auto committed = write_.exec("COMMIT", {}, "committing the journal");
    if (!committed && write_.lost()) return in_doubt(committed.error());
    if (!committed) return make_error(committed.error());
    return {};
  }

  Unexpected in_doubt(const Error& e) {
    in_doubt_ = true;
    return make_error(ErrorCode::kUnavailable, e.message() +
                                                   "; whether the last commit landed is unknown, so this journal "
                                                   "takes no more writes (open it again to go on)");
  }

  // Sends the batch's record statements together: with `commit`, as the pipeline's implicit
  // transaction, committed at its end; without, after a BEGIN, leaving the transaction open for
  // the batch's other writes. True when they ran; false when one failed and the transaction was
  // rolled back, so the caller writes the groups one by one.
  Result<bool> write_records_at_once(const pg_internal::RecordBatchPlan& plan, bool commit) {
    std::vector<Statement> statements;
    if (!commit) statements.push_back(Statement{nullptr, "BEGIN", {}});
    statements.insert(statements.end(), plan.statements.begin(), plan.statements.end());
    auto done = write_.pipeline(statements, "writing a batch of records");
    if (done) return true;
    if (write_.lost()) {
      // The implicit transaction commits at the pipeline's end: once a statement ran, it may have.
      if (commit && write_.pipeline_ran() > 0) return in_doubt(done.error());
      return make_error(done.error());
    }
    if (write_.in_transaction()) CRUCIBLE_RETURN_IF_ERROR(write_.run("ROLLBACK", {}, "journal commit"));
    return false;
  }

  Status commit_group(GroupCommit::Group& g) {
    CRUCIBLE_RETURN_IF_ERROR(write_.run("SAVEPOINT g", {}, "journal commit"));
    const auto seqs = next_seq_;
    const auto epochs = epochs_;
    Status s;
    if (g.op) {
      s = g.op();
      epochs_.clear();  // it may have moved a lease
    }
    for (size_t i = 0; i < g.records.size() && s; ++i) {
      s = apply(write_, g.records[i], i < g.bodies.size() ? &g.bodies[i] : nullptr);
    }
    if (!s) {
      if (write_.lost()) return s;
      (void)write_.exec("ROLLBACK TO SAVEPOINT g", {}, "journal commit");
      next_seq_ = seqs;
      epochs_ = epochs;
    }
    (void)write_.exec("RELEASE SAVEPOINT g", {}, "journal commit");
    return s;
  }

  // Runs fn inside the next group commit, in a savepoint of its own, and waits for the commit.
  Status with_writer(std::function<Status(PgConn&)> fn) {
    return queue_.run([this, fn = std::move(fn)] { return fn(write_); });
  }

  PostgresJournalOptions options_;
  PgConn write_;  // used by the thread leading the commit (and by open)
  // Reads go to a small pool of connections, so that runs starting together (a worker filling its
  // slots) read their journals side by side; each connection is opened on first use.
  static constexpr size_t kReaders = 4;
  struct Reader {
    std::mutex mu;
    PgConn conn;             // guarded by mu
    bool connected = false;  // guarded by mu
  };
  // A reader held for the scope: status says whether its connection could be opened.
  struct HeldReader {
    std::unique_lock<std::mutex> lock;
    PgConn* conn;
    Status status;
    PgConn* operator->() { return conn; }
    PgConn& operator*() { return *conn; }
  };
  HeldReader reader() {
    const size_t start = next_reader_.fetch_add(1, std::memory_order_relaxed) % readers_.size();
    Reader* r = readers_[start].get();
    std::unique_lock<std::mutex> lock(r->mu, std::try_to_lock);
    for (size_t i = 1; i < readers_.size() && !lock.owns_lock(); ++i) {
      r = readers_[(start + i) % readers_.size()].get();
      lock = std::unique_lock<std::mutex>(r->mu, std::try_to_lock);
    }
    if (!lock.owns_lock()) {
      r = readers_[start].get();
      lock = std::unique_lock<std::mutex>(r->mu);
    }
    Status status;
    if (!r->connected) {
      status =
          r->conn.connect(options_.url, static_cast<int>(options_.connect_timeout.count()), redact_url(options_.url));
      r->connected = static_cast<bool>(status);
    }
    return HeldReader{std::move(lock), &r->conn, std::move(status)};
  }
  std::vector<std::unique_ptr<Reader>> readers_;
  std::atomic<size_t> next_reader_{0};
  PgConn claim_;                                       // guarded by claim_mu_
  std::unordered_map<std::string, int64_t> next_seq_;  // per run, in the commit in progress
  std::unordered_map<std::string, uint64_t> epochs_;   // lease epoch per run, in the commit in progress

  // Forgotten wholesale past this size; a run not known is numbered by a lookup.
  static constexpr size_t kKnownSeqLimit = 100'000;
  std::mutex seq_mu_;
  std::unordered_map<std::string, int64_t> known_seq_;  // guarded by seq_mu_

  std::mutex claim_mu_;
  bool in_doubt_ = false;  // used by the thread leading the commit
  GroupCommit queue_;      // last: stopped before the connections close
};

}  // namespace

bool is_postgres_url(std::string_view text) {
  return text.starts_with("postgresql://") || text.starts_with("postgres://");
}

std::string redact_url(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t at = url.find('@', scheme + 3);
  const size_t colon = url.find(':', scheme + 3);
  if (at == std::string_view::npos || colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

Result<std::unique_ptr<Journal>> open_postgres_journal(const PostgresJournalOptions& options) {
  if (!is_postgres_url(options.url)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "'" + redact_url(options.url) + "' is not a PostgreSQL URL; expected postgresql://user@host/db");
  }
  auto journal = std::make_unique<PostgresJournal>(options);
  CRUCIBLE_RETURN_IF_ERROR(journal->open());
  return std::unique_ptr<Journal>(std::move(journal));
}

}  // namespace crucible
