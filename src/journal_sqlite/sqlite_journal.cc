#include "crucible/journal_sqlite/sqlite_journal.h"

#include <sqlite3.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "crucible/core/clock.h"
#include "crucible/journal/group_commit.h"
#include "record_writer.h"
#include "sqlite_util.h"

namespace crucible {
namespace {

using sqlite_internal::exec;
using sqlite_internal::externalize_record;
using sqlite_internal::internalize_record;
using sqlite_internal::kSummaryColumns;
using sqlite_internal::migrate;
using sqlite_internal::RecordWriter;
using sqlite_internal::sqlite_error;
using sqlite_internal::Stmt;

class SqliteJournal : public Journal {
 public:
  SqliteJournal(const SqliteJournalOptions& options)
      : options_(options),
        blobs_(options.blob_dir),
        // A lock held too long by another process (kUnavailable) rolled back cleanly: the batch
        // fails and the journal stays usable. Any other failure (a full disk, an I/O error)
        // leaves it broken: after a failed write nothing is known about the file.
        queue_([this](GroupCommit::Batch& batch) { return commit_batch(batch); },
               [](const Error& e) { return e.code() != ErrorCode::kUnavailable; }) {}

  ~SqliteJournal() override {
    queue_.stop();
    for (sqlite3* db : {write_db_, read_db_}) sqlite3_close_v2(db);
  }

  Status open() {
    std::filesystem::path p(options_.path);
    std::error_code ec;
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
    for (sqlite3** db : {&write_db_, &read_db_}) {
      int rc = sqlite3_open_v2(options_.path.c_str(), db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
      if (rc != SQLITE_OK) {
        return make_error(ErrorCode::kUnavailable, "cannot open journal '" + options_.path +
                                                       "': " + (*db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc)));
      }
      sqlite3_busy_timeout(*db, static_cast<int>(options_.busy_timeout.count()));
    }
    if (int rc = sqlite3_exec(write_db_, "PRAGMA schema_version", nullptr, nullptr, nullptr); rc == SQLITE_NOTADB) {
      return make_error(ErrorCode::kInvalidArgument, "journal '" + options_.path +
                                                         "' is not a SQLite database; give the path of a crucible "
                                                         "journal, or of a file to create");
    }
    if (sqlite3_db_readonly(write_db_, "main") == 1) {
      return make_error(ErrorCode::kUnavailable, "journal '" + options_.path +
                                                     "' is read-only (its permissions, or a read-only file system); "
                                                     "crucible writes every step to it");
    }
    if (Status s = configure(); !s) return make_error(s.error().with_context("journal '" + options_.path + "'"));
    CRUCIBLE_RETURN_IF_ERROR(migrate(write_db_, options_.path));
    CRUCIBLE_RETURN_IF_ERROR(prepare_statements());
    queue_.start();
    return {};
  }

  using Journal::append;

 private:
  // Switching a file to WAL needs it to itself for a moment. When another process opens the
  // same new file at that moment, SQLite answers SQLITE_BUSY at once, without its busy handler,
  // so this waits and tries again for up to the busy timeout.
  Status switch_to_wal() {
    const auto deadline = std::chrono::steady_clock::now() + options_.busy_timeout;
    for (;;) {
      int rc = sqlite3_exec(write_db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
      if (rc == SQLITE_OK) return {};
      if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || std::chrono::steady_clock::now() >= deadline) {
        return make_error(sqlite_error(write_db_, rc, "executing PRAGMA journal_mode=WAL"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  // The connection settings: auto_vacuum before any table exists (prune gives deleted pages
  // back with incremental_vacuum), WAL, and the sync level.
  Status configure() {
    CRUCIBLE_RETURN_IF_ERROR(exec(write_db_, "PRAGMA auto_vacuum=INCREMENTAL"));
    CRUCIBLE_RETURN_IF_ERROR(switch_to_wal());
    CRUCIBLE_RETURN_IF_ERROR(
        exec(write_db_, options_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    return {};
  }

 public:
  Status append(std::vector<Record> records, Durability durability) override {
    std::vector<std::string> bodies;
    bodies.reserve(records.size());
    for (Record& r : records) {
      CRUCIBLE_RETURN_IF_ERROR(externalize_record(r, blobs_, options_.blob_threshold));
      bodies.push_back(json_dump(record_body_to_json(r)));
    }
    return queue_.append(std::move(records), std::move(bodies), durability);
  }

  Status flush() override { return queue_.flush(); }

  Result<RunLog> read_run(const RunId& run) override {
    std::lock_guard lock(read_mu_);
    RunLog log;
    CRUCIBLE_ASSIGN_OR_RETURN(auto summary, read_summary_locked(run));
    log.summary = std::move(summary);
    Stmt& q = read_records_.reset().bind(run.str());
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto r, decode_record(q, run));
      log.records.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "reading run " + run.str()));
    return log;
  }

  Result<std::vector<RunSummary>> list_runs(const RunFilter& filter) override {
    std::string sql = std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE 1=1";
    if (filter.status) sql += " AND status = ?";
    if (filter.pipeline) sql += " AND pipeline = ?";
    if (filter.created_after_ms) sql += " AND created_ms >= ?";
    if (filter.created_before_ms) sql += " AND created_ms < ?";
    sql += " ORDER BY created_ms DESC, run_id DESC LIMIT ?";
    std::lock_guard lock(read_mu_);
    Stmt q;
    CRUCIBLE_RETURN_IF_ERROR(q.prepare(read_db_, sql.c_str()));
    if (filter.status) q.bind(std::string(run_status_name(*filter.status)));
    if (filter.pipeline) q.bind(*filter.pipeline);
    if (filter.created_after_ms) q.bind(*filter.created_after_ms);
    if (filter.created_before_ms) q.bind(*filter.created_before_ms);
    q.bind(static_cast<int64_t>(filter.limit));
    std::vector<RunSummary> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) out.push_back(decode_summary(q));
    if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "listing runs"));
    return out;
  }

  Result<std::vector<RunLog>> read_unfinished() override {
    std::lock_guard lock(read_mu_);
    std::vector<RunLog> out;
    std::map<std::string, size_t> index;
    Stmt runs;
    CRUCIBLE_RETURN_IF_ERROR(runs.prepare(
        read_db_, (std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE status = 'running'").c_str()));
    int rc;
    while ((rc = runs.step()) == SQLITE_ROW) {
      RunLog log;
      log.summary = decode_summary(runs);
      index[log.summary.run_id.str()] = out.size();
      out.push_back(std::move(log));
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "listing unfinished runs"));
    Stmt recs;
    CRUCIBLE_RETURN_IF_ERROR(recs.prepare(
        read_db_,
        "SELECT r.seq, r.type, r.step_key, r.at_ms, r.body, r.run_id FROM records r JOIN runs u ON u.run_id = r.run_id "
        "WHERE u.status = 'running' ORDER BY r.run_id, r.seq"));
    while ((rc = recs.step()) == SQLITE_ROW) {
      auto it = index.find(recs.text(5));
      if (it == index.end()) continue;
      RunLog& log = out[it->second];
      CRUCIBLE_ASSIGN_OR_RETURN(auto r, decode_record(recs, log.summary.run_id));
      log.records.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "reading unfinished runs"));
    return out;
  }

  Result<Lease> acquire_lease(const RunId& run, const std::string& owner, std::chrono::milliseconds ttl,
                              std::optional<uint64_t> steal_epoch) override {
    Lease lease;
    Status s = with_writer([&]() -> Status {
      Stmt q;
      CRUCIBLE_RETURN_IF_ERROR(
          q.prepare(write_db_, "SELECT lease_owner, lease_epoch, lease_expires_ms FROM runs WHERE run_id = ?"));
      q.bind(run.str());
      if (q.step() != SQLITE_ROW) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
      std::string holder = q.text(0);
      uint64_t epoch = static_cast<uint64_t>(q.integer(1));
      int64_t expires = q.integer(2);
      int64_t now = real_clock().now_ms();
      bool free = holder.empty() || expires <= now || holder == owner || (steal_epoch && *steal_epoch == epoch);
      if (!free) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "run '" + run.str() + "' is being executed by " + holder + " (lease epoch " +
                              std::to_string(epoch) + ", expires in " + std::to_string((expires - now) / 1000) + " s)");
      }
      lease = Lease{run, owner, epoch + 1, now + ttl.count()};
      Stmt u;
      CRUCIBLE_RETURN_IF_ERROR(u.prepare(
          write_db_, "UPDATE runs SET lease_owner = ?, lease_epoch = ?, lease_expires_ms = ? WHERE run_id = ?"));
      u.bind(owner).bind(static_cast<int64_t>(lease.epoch)).bind(lease.expires_ms).bind(run.str());
      if (int rc = u.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "taking lease"));
      return {};
    });
    if (!s) return make_error(s.error());
    return lease;
  }

  Result<Lease> start_run(Record run_started, const std::string& owner, std::chrono::milliseconds ttl) override {
    CRUCIBLE_RETURN_IF_ERROR(externalize_record(run_started, blobs_, options_.blob_threshold));
    Lease lease;
    Status s = with_writer([&]() -> Status {
      CRUCIBLE_RETURN_IF_ERROR(writer_stmts_.apply(run_started));
      int64_t expires = real_clock().now_ms() + ttl.count();
      Stmt& q = take_lease_.reset().bind(owner).bind(expires).bind(run_started.run_id.str());
      if (q.step() != SQLITE_ROW) return make_error(sqlite_error(write_db_, SQLITE_ERROR, "taking lease"));
      lease = Lease{run_started.run_id, owner, static_cast<uint64_t>(q.integer(0)), expires};
      q.reset();
      return {};
    });
    if (!s) return make_error(s.error());
    return lease;
  }

  Result<std::optional<Lease>> current_lease(const RunId& run) override {
    std::lock_guard lock(read_mu_);
    Stmt q;
    CRUCIBLE_RETURN_IF_ERROR(
        q.prepare(read_db_, "SELECT lease_owner, lease_epoch, lease_expires_ms FROM runs WHERE run_id = ?"));
    q.bind(run.str());
    if (q.step() != SQLITE_ROW) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    if (q.text(0).empty()) return std::optional<Lease>();
    return std::optional<Lease>(Lease{run, q.text(0), static_cast<uint64_t>(q.integer(1)), q.integer(2)});
  }

  Status renew_lease(const Lease& lease, std::chrono::milliseconds ttl) override {
    return update_lease(lease, lease.owner, real_clock().now_ms() + ttl.count());
  }

  Status release_lease(const Lease& lease) override { return update_lease(lease, "", 0); }

  Result<std::vector<Lease>> claim_runs(const ClaimRequest& request) override {
    if (request.queues.empty() || request.max_runs == 0) return std::vector<Lease>();
    std::vector<Lease> out;
    Status s = with_writer([&]() -> Status {
      CRUCIBLE_ASSIGN_OR_RETURN(out, claim_locked(request));
      return {};
    });
    if (!s) return make_error(s.error());
    return out;
  }

  Result<CancelOutcome> cancel_run(const RunId& run, const std::string& reason, int64_t now_ms) override {
    CancelOutcome outcome = CancelOutcome::kCancelled;
    Status s = with_writer([&]() -> Status {
      Stmt q;
      CRUCIBLE_RETURN_IF_ERROR(
          q.prepare(write_db_, "SELECT status, lease_owner, lease_expires_ms FROM runs WHERE run_id = ?"));
      q.bind(run.str());
      if (q.step() != SQLITE_ROW) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
      const auto status = parse_run_status(q.text(0));
      const bool held = !q.text(1).empty() && q.integer(2) > now_ms;
      q.reset();
      if (status && is_finished(*status)) {
        outcome = CancelOutcome::kAlreadyFinished;
        return {};
      }
      Stmt flag;
      CRUCIBLE_RETURN_IF_ERROR(flag.prepare(write_db_, "UPDATE runs SET cancel_requested = 1 WHERE run_id = ?"));
      flag.bind(run.str());
      if (int rc = flag.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "cancelling"));
      if (held) {
        outcome = CancelOutcome::kRequested;
        return {};
      }
      outcome = CancelOutcome::kCancelled;
      return writer_stmts_.apply(cancelled_record(run, reason, now_ms));
    });
    if (!s) return make_error(s.error());
    return outcome;
  }

  Status put_value(const std::string& scope, const std::string& key, const Json& value) override {
    return with_writer([&]() -> Status {
      Stmt q;
      CRUCIBLE_RETURN_IF_ERROR(q.prepare(write_db_,
                                         "INSERT INTO kv(scope, key, value) VALUES(?, ?, ?) ON CONFLICT(scope, key) DO "
                                         "UPDATE SET value = excluded.value"));
      q.bind(scope).bind(key).bind(json_dump(value));
      if (int rc = q.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "writing state"));
      return {};
    });
  }

  Result<std::optional<Json>> get_value(const std::string& scope, const std::string& key) override {
    std::lock_guard lock(read_mu_);
    Stmt q;
    CRUCIBLE_RETURN_IF_ERROR(q.prepare(read_db_, "SELECT value FROM kv WHERE scope = ? AND key = ?"));
    q.bind(scope).bind(key);
    if (q.step() != SQLITE_ROW) return std::optional<Json>();
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(0)));
    return std::optional<Json>(std::move(v));
  }

  Result<std::vector<std::pair<std::string, Json>>> list_values(const std::string& scope,
                                                                const std::string& prefix) override {
    std::lock_guard lock(read_mu_);
    Stmt q;
    CRUCIBLE_RETURN_IF_ERROR(
        q.prepare(read_db_, "SELECT key, value FROM kv WHERE scope = ? AND substr(key, 1, ?) = ? ORDER BY key"));
    q.bind(scope).bind(static_cast<int64_t>(prefix.size())).bind(prefix);
    std::vector<std::pair<std::string, Json>> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(1)));
      out.emplace_back(q.text(0), std::move(v));
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "listing state"));
    return out;
  }

  Result<bool> resolve_promise(const RunId& run, const std::string& name, const Json& value) override {
    bool resolved = false;
    Status s = with_writer([&]() -> Status {
      int64_t now = real_clock().now_ms();
      Stmt ins;
      CRUCIBLE_RETURN_IF_ERROR(
          ins.prepare(write_db_,
                      "INSERT INTO promises(run_id, name, value, resolved_ms) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 "
                      "FROM runs WHERE run_id = ?) ON CONFLICT DO NOTHING"));
      ins.bind(run.str()).bind(name).bind(json_dump(value)).bind(now).bind(run.str());
      if (int rc = ins.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "resolving promise"));
      if (sqlite3_changes(write_db_) == 0) {
        Stmt exists;
        CRUCIBLE_RETURN_IF_ERROR(exists.prepare(write_db_, "SELECT 1 FROM runs WHERE run_id = ?"));
        exists.bind(run.str());
        if (exists.step() != SQLITE_ROW)
          return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
        return {};
      }
      resolved = true;
      Record r = promise_resolved_record(run, name, value, now);
      CRUCIBLE_RETURN_IF_ERROR(externalize_record(r, blobs_, options_.blob_threshold));
      return writer_stmts_.apply(r);
    });
    if (!s) return make_error(s.error());
    return resolved;
  }

  Result<std::optional<Json>> get_promise(const RunId& run, const std::string& name) override {
    std::lock_guard lock(read_mu_);
    Stmt q;
    CRUCIBLE_RETURN_IF_ERROR(q.prepare(read_db_, "SELECT value FROM promises WHERE run_id = ? AND name = ?"));
    q.bind(run.str()).bind(name);
    if (q.step() == SQLITE_ROW) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, parse_json(q.text(0)));
      return std::optional<Json>(std::move(v));
    }
    Stmt exists;
    CRUCIBLE_RETURN_IF_ERROR(exists.prepare(read_db_, "SELECT 1 FROM runs WHERE run_id = ?"));
    exists.bind(run.str());
    if (exists.step() != SQLITE_ROW)
      return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    return std::optional<Json>();
  }

  Result<PruneReport> prune(const PruneOptions& options) override {
    PruneReport report;
    report.journal_bytes_before = bytes_on_disk();
    CRUCIBLE_ASSIGN_OR_RETURN(report.runs, delete_finished_runs(options.updated_before_ms));
    CRUCIBLE_ASSIGN_OR_RETURN(auto live, live_blob_refs());
    CRUCIBLE_ASSIGN_OR_RETURN(auto swept, blobs_.sweep(live, options.blob_grace));
    report.blobs_removed = swept.removed;
    report.blob_bytes_freed = swept.bytes_freed;
    CRUCIBLE_RETURN_IF_ERROR(reclaim_pages());
    report.journal_bytes_after = bytes_on_disk();
    return report;
  }

 private:
  // The finished runs last updated before the cutoff, deleted with everything they own in one
  // transaction.
  Result<std::vector<RunId>> delete_finished_runs(int64_t updated_before_ms) {
    std::vector<RunId> doomed_ids;
    Status s = with_writer([&]() -> Status {
      doomed_ids.clear();
      const char* doomed =
          "SELECT run_id FROM runs WHERE status IN ('completed', 'failed', 'cancelled', 'deadline_exceeded') AND "
          "updated_ms < ?1";
      Stmt list;
      CRUCIBLE_RETURN_IF_ERROR(list.prepare(write_db_, doomed));
      list.bind(updated_before_ms);
      int rc;
      while ((rc = list.step()) == SQLITE_ROW) {
        if (auto id = RunId::parse(list.text(0))) doomed_ids.push_back(*id);
      }
      if (rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "pruning"));
      for (const char* table : {"records", "promises", "kv", "runs"}) {
        const char* column = std::string_view(table) == "kv" ? "scope" : "run_id";
        std::string sql = std::string("DELETE FROM ") + table + " WHERE " + column + " IN (" + doomed + ")";
        Stmt q;
        CRUCIBLE_RETURN_IF_ERROR(q.prepare(write_db_, sql.c_str()));
        q.bind(updated_before_ms);
        if (rc = q.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "pruning"));
      }
      return {};
    });
    if (!s) return make_error(s.error());
    return doomed_ids;
  }

  // The digests of the blobs still referenced: by the journal's records and by the LLM
  // completion cache's index beside the blobs.
  Result<std::unordered_set<std::string>> live_blob_refs() {
    std::unordered_set<std::string> live;
    {
      std::lock_guard lock(read_mu_);
      Stmt q;
      CRUCIBLE_RETURN_IF_ERROR(q.prepare(read_db_, "SELECT body FROM records WHERE instr(body, 'sha256:') > 0"));
      int rc;
      while ((rc = q.step()) == SQLITE_ROW) collect_blob_refs(q.text(0), live);
      if (rc != SQLITE_DONE) return make_error(sqlite_error(read_db_, rc, "listing blob references"));
    }
    std::error_code ec;
    const std::filesystem::path cache = std::filesystem::path(blobs_.dir()) / "llm-cache";
    for (const auto& entry : std::filesystem::directory_iterator(cache, ec)) {
      std::ifstream in(entry.path());
      std::string ref;
      if (std::getline(in, ref)) collect_blob_refs(ref, live);
    }
    return live;
  }

  // Gives the pages of deleted rows back to the file system: an incremental vacuum (a full one,
  // once, for a journal created before auto_vacuum was on), then a checkpoint that truncates the
  // write-ahead log. Uses its own connection: neither runs inside a transaction.
  Status reclaim_pages() {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(options_.path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    struct Close {
      sqlite3* db;
      ~Close() { sqlite3_close_v2(db); }
    } close{db};
    if (rc != SQLITE_OK) return make_error(sqlite_error(db, rc, "opening the journal to reclaim space"));
    sqlite3_busy_timeout(db, 10000);
    Stmt mode;
    CRUCIBLE_RETURN_IF_ERROR(mode.prepare(db, "PRAGMA auto_vacuum"));
    const bool incremental = mode.step() == SQLITE_ROW && mode.integer(0) == 2;
    mode.reset();
    if (incremental) {
      CRUCIBLE_RETURN_IF_ERROR(exec(db, "PRAGMA incremental_vacuum"));
    } else {
      CRUCIBLE_RETURN_IF_ERROR(exec(db, "PRAGMA auto_vacuum=INCREMENTAL"));
      CRUCIBLE_RETURN_IF_ERROR(exec(db, "VACUUM"));
    }
    return exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  }

  int64_t bytes_on_disk() const {
    int64_t total = 0;
    for (const std::string& p : {options_.path, options_.path + "-wal"}) {
      std::error_code ec;
      auto size = std::filesystem::file_size(p, ec);
      if (!ec) total += static_cast<int64_t>(size);
    }
    return total;
  }

  Status prepare_statements() {
    CRUCIBLE_RETURN_IF_ERROR(writer_stmts_.prepare(write_db_));
    CRUCIBLE_RETURN_IF_ERROR(take_lease_.prepare(
        write_db_,
        "UPDATE runs SET lease_owner = ?, lease_epoch = lease_epoch + 1, lease_expires_ms = ? WHERE run_id = ? "
        "RETURNING lease_epoch"));
    CRUCIBLE_RETURN_IF_ERROR(read_records_.prepare(
        read_db_, "SELECT seq, type, step_key, at_ms, body FROM records WHERE run_id = ? ORDER BY seq"));
    CRUCIBLE_RETURN_IF_ERROR(read_summary_.prepare(
        read_db_, (std::string("SELECT ") + kSummaryColumns + " FROM runs WHERE run_id = ?").c_str()));
    return {};
  }

  // One group inside the transaction: its op and records, all or nothing.
  Status commit_group(GroupCommit::Group& g) {
    // A single record fails before it writes anything; larger groups need a savepoint so a
    // failure leaves no half of them behind.
    bool savepoint = g.op || g.records.size() > 1;
    if (savepoint) writer_stmts_.savepoint();
    Status s;
    if (g.op) {
      s = g.op();
      writer_stmts_.forget_leases();
    }
    for (size_t i = 0; i < g.records.size() && s; ++i) {
      s = writer_stmts_.apply(g.records[i], i < g.bodies.size() ? &g.bodies[i] : nullptr);
    }
    if (savepoint && !s) writer_stmts_.rollback_to_savepoint();
    if (savepoint) writer_stmts_.release_savepoint();
    return s;
  }

  Status commit_batch(GroupCommit::Batch& batch) {
    CRUCIBLE_RETURN_IF_ERROR(writer_stmts_.begin());
    for (auto& g : batch) {
      if (g->records.empty() && !g->op) continue;
      Status s = commit_group(*g);
      if (s) continue;
      g->status = s;
      if (g->batched) queue_.defer(s.error());
    }
    return writer_stmts_.commit();
  }

  // Runs fn inside the next group commit, in a savepoint of its own, and waits for the commit.
  Status with_writer(const std::function<Status()>& fn) { return queue_.run(fn); }

  // A renewal (owner kept) of a run whose cancellation was requested returns kCancelled.
  Status update_lease(const Lease& lease, const std::string& owner, int64_t expires) {
    return with_writer([&]() -> Status {
      Stmt u;
      CRUCIBLE_RETURN_IF_ERROR(u.prepare(write_db_,
                                         "UPDATE runs SET lease_owner = ?, lease_expires_ms = ? WHERE run_id = ? AND "
                                         "lease_epoch = ? AND lease_owner = ? RETURNING cancel_requested"));
      u.bind(owner).bind(expires).bind(lease.run_id.str()).bind(static_cast<int64_t>(lease.epoch)).bind(lease.owner);
      int rc = u.step();
      if (rc == SQLITE_DONE) {
        return make_error(ErrorCode::kAborted, "lease on run '" + lease.run_id.str() + "' was taken over (epoch " +
                                                   std::to_string(lease.epoch) + " is stale)");
      }
      if (rc != SQLITE_ROW) return make_error(sqlite_error(write_db_, rc, "updating lease"));
      const bool cancelled = u.integer(0) != 0;
      if (rc = u.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "updating lease"));
      if (cancelled && !owner.empty()) {
        return make_error(ErrorCode::kCancelled, "run '" + lease.run_id.str() + "' was cancelled");
      }
      return {};
    });
  }

  // The claimable runs of the named queues, their queues' limits and load, inside the commit.
  Result<std::vector<Lease>> claim_locked(const ClaimRequest& request) {
    std::string in, numbered;  // "?, ?" and "?3, ?4": the queue names
    for (size_t i = 0; i < request.queues.size(); ++i) {
      in += i == 0 ? "?" : ", ?";
      numbered += (i == 0 ? "?" : ", ?") + std::to_string(i + 3);
    }
    std::map<std::string, QueueLimits> limits;
    std::map<std::string, QueueLoad> load;
    for (const std::string& q : request.queues) {
      Stmt v;
      CRUCIBLE_RETURN_IF_ERROR(v.prepare(write_db_, "SELECT value FROM kv WHERE scope = '' AND key = ?"));
      v.bind(queue_limits_key(q));
      if (v.step() != SQLITE_ROW) continue;
      CRUCIBLE_ASSIGN_OR_RETURN(auto j, parse_json(v.text(0)));
      auto parsed = QueueLimits::from_json(j);
      if (!parsed) return make_error(parsed.error().with_context("queue '" + q + "'"));
      limits[q] = *parsed;
      if (parsed->rate_limit) {
        Stmt starts;
        CRUCIBLE_RETURN_IF_ERROR(
            starts.prepare(write_db_, "SELECT count(*) FROM runs WHERE queue = ? AND started_ms > ?"));
        starts.bind(q).bind(request.now_ms - parsed->rate_period.count());
        if (starts.step() == SQLITE_ROW) load[q].recent_starts = static_cast<int>(starts.integer(0));
      }
    }
    auto bind_queues = [&](Stmt& q) {
      for (const std::string& name : request.queues) q.bind(name);
    };
    Stmt running;
    CRUCIBLE_RETURN_IF_ERROR(running.prepare(
        write_db_, ("SELECT queue, partition_key, count(*) FROM runs WHERE queue IN (" + in +
                    ") AND status = 'running' AND lease_owner <> '' AND lease_expires_ms > ? GROUP BY queue, "
                    "partition_key")
                       .c_str()));
    bind_queues(running);
    running.bind(request.now_ms);
    int rc;
    while ((rc = running.step()) == SQLITE_ROW) {
      load[running.text(0)].running[running.text(1)] = static_cast<int>(running.integer(2));
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "claiming runs"));
    Stmt due;
    CRUCIBLE_RETURN_IF_ERROR(due.prepare(
        write_db_,
        ("SELECT run_id, queue, partition_key, started_ms IS NULL FROM runs WHERE queue IN (" + numbered +
         ") AND (((status = 'queued' OR status = 'running') AND (lease_owner = '' OR lease_expires_ms <= ?1)) OR "
         "(status = 'waiting' AND (wake_ms <= ?1 OR EXISTS (SELECT 1 FROM promises p WHERE p.run_id = runs.run_id "
         "AND p.name = runs.waiting_on)))) ORDER BY priority, rowid LIMIT ?2")
            .c_str()));
    due.bind(request.now_ms).bind(static_cast<int64_t>(request.max_runs * 8 + 64));
    // ?1 and ?2 take the first two slots; the queue names follow them.
    for (size_t i = 0; i < request.queues.size(); ++i) {
      sqlite3_bind_text(due.raw(), static_cast<int>(i + 3), request.queues[i].data(),
                        static_cast<int>(request.queues[i].size()), SQLITE_TRANSIENT);
    }
    std::vector<ClaimCandidate> candidates;
    while ((rc = due.step()) == SQLITE_ROW) {
      candidates.push_back(ClaimCandidate{*RunId::parse(due.text(0)), due.text(1), due.text(2), due.integer(3) != 0});
    }
    if (rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "claiming runs"));
    std::vector<Lease> out;
    const int64_t expires = request.now_ms + request.ttl.count();
    for (size_t i : pick_claims(candidates, limits, std::move(load), request.max_runs)) {
      Stmt take;
      CRUCIBLE_RETURN_IF_ERROR(take.prepare(
          write_db_,
          "UPDATE runs SET lease_owner = ?, lease_epoch = lease_epoch + 1, lease_expires_ms = ?, status = 'running', "
          "claims = claims + 1, started_ms = coalesce(started_ms, ?) WHERE run_id = ? RETURNING lease_epoch, "
          "cancel_requested"));
      take.bind(request.owner).bind(expires).bind(request.now_ms).bind(candidates[i].run_id.str());
      if (rc = take.step(); rc != SQLITE_ROW) return make_error(sqlite_error(write_db_, rc, "claiming runs"));
      Lease lease{candidates[i].run_id, request.owner, static_cast<uint64_t>(take.integer(0)), expires};
      lease.cancel_requested = take.integer(1) != 0;
      out.push_back(std::move(lease));
      if (rc = take.step(); rc != SQLITE_DONE) return make_error(sqlite_error(write_db_, rc, "claiming runs"));
    }
    return out;
  }

  Result<RunSummary> read_summary_locked(const RunId& run) {
    Stmt& q = read_summary_.reset().bind(run.str());
    int rc = q.step();
    if (rc == SQLITE_DONE) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    if (rc != SQLITE_ROW) return make_error(sqlite_error(read_db_, rc, "reading run " + run.str()));
    RunSummary s = decode_summary(q);
    q.reset();
    return s;
  }

  static RunSummary decode_summary(Stmt& q) {
    RunSummary s;
    s.run_id = *RunId::parse(q.text(0));
    s.pipeline = q.text(1);
    s.spec_hash = q.text(2);
    s.status = parse_run_status(q.text(3)).value_or(RunStatus::kRunning);
    s.created_ms = q.integer(4);
    s.updated_ms = q.integer(5);
    s.parent_run = q.text(6);
    s.error = q.text(7);
    s.queue = q.text(8);
    s.priority = static_cast<int>(q.integer(9));
    s.claims = static_cast<int>(q.integer(10));
    s.lease_owner = q.text(11);
    s.lease_expires_ms = q.integer(12);
    return s;
  }

  Result<Record> decode_record(Stmt& q, const RunId& run) {
    Record r;
    r.run_id = run;
    r.seq = static_cast<uint64_t>(q.integer(0));
    auto type = parse_record_type(q.text(1));
    if (!type) return make_error(ErrorCode::kDataLoss, "unknown record type '" + q.text(1) + "' in run " + run.str());
    r.type = *type;
    r.key = StepKey::from_string(q.text(2));
    r.at_ms = q.integer(3);
    auto body = parse_json(q.text(4));
    if (!body)
      return make_error(ErrorCode::kDataLoss, "corrupt record " + std::to_string(r.seq) + " in run " + run.str());
    CRUCIBLE_RETURN_IF_ERROR(record_body_from_json(*body, r));
    CRUCIBLE_RETURN_IF_ERROR(internalize_record(r, blobs_));
    return r;
  }

  SqliteJournalOptions options_;
  BlobStore blobs_;
  sqlite3* write_db_ = nullptr;  // used by the thread leading the commit
  sqlite3* read_db_ = nullptr;   // guarded by read_mu_
  RecordWriter writer_stmts_;    // used by the thread leading the commit
  Stmt take_lease_;
  Stmt read_records_, read_summary_;

  std::mutex read_mu_;
  GroupCommit queue_;  // last: stopped before the connections close
};

}  // namespace

std::string default_journal_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("CRUCIBLE_JOURNAL"); env != nullptr && *env != '\0') return env;
  return ".crucible/journal.db";
}

Result<std::unique_ptr<Journal>> open_sqlite_journal(const SqliteJournalOptions& options) {
  if (options.path.empty()) return make_error(ErrorCode::kInvalidArgument, "the journal path is empty");
  std::error_code ec;
  if (auto st = std::filesystem::status(options.path, ec); !ec && std::filesystem::exists(st)) {
    if (std::filesystem::is_directory(st)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "journal '" + options.path + "' is a directory; give the path of a journal file");
    }
    if (!std::filesystem::is_regular_file(st)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "journal '" + options.path + "' is not a regular file (a device or a pipe?)");
    }
  }
  SqliteJournalOptions resolved = options;
  if (resolved.blob_dir.empty()) {
    std::filesystem::path p(resolved.path);
    resolved.blob_dir = (p.has_parent_path() ? p.parent_path() : std::filesystem::path(".")).string() + "/blobs";
  }
  auto journal = std::make_unique<SqliteJournal>(resolved);
  CRUCIBLE_RETURN_IF_ERROR(journal->open());
  return std::unique_ptr<Journal>(std::move(journal));
}

}  // namespace crucible
