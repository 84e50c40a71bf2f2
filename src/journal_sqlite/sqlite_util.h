// The SQLite adapter's schema migrations and its thin wrappers over the sqlite3 C API: error
// translation to canonical codes, prepared statements, one-shot statements. Private to
// journal_sqlite.
#pragma once

#include <sqlite3.h>

#include <cerrno>
#include <string>

#include "crucible/core/error.h"

namespace crucible::sqlite_internal {

// Each entry migrates the schema from version i to i + 1.
inline const char* const kMigrations[] = {
    R"sql(
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY,
  pipeline TEXT NOT NULL,
  spec_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  parent_run TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_epoch INTEGER NOT NULL DEFAULT 0,
  lease_expires_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, created_ms);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created_ms);
CREATE TABLE IF NOT EXISTS records(
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  step_key TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY(run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv(
  scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY(scope, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promises(
  run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, resolved_ms INTEGER NOT NULL,
  PRIMARY KEY(run_id, name)) WITHOUT ROWID;
)sql",
    // Queues: where a submitted run waits, when a parked one wakes, and cancellation.
    R"sql(
ALTER TABLE runs ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN partition_key TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN started_ms INTEGER;
ALTER TABLE runs ADD COLUMN wake_ms INTEGER;
ALTER TABLE runs ADD COLUMN waiting_on TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_queue ON runs(queue, status, priority);
)sql",
};

// The columns decode_summary reads, in its order.
inline const char* const kSummaryColumns =
    "run_id, pipeline, spec_hash, status, created_ms, updated_ms, parent_run, error, queue, priority, claims, "
    "lease_owner, lease_expires_ms";

inline Error sqlite_error(sqlite3* db, int rc, const std::string& what) {
  ErrorCode code = ErrorCode::kInternal;
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
    code = ErrorCode::kUnavailable;
  else if (primary == SQLITE_FULL)
    code = ErrorCode::kResourceExhausted;
  else if (primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
    code = ErrorCode::kDataLoss;
  else if (primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY || primary == SQLITE_PERM)
    code = ErrorCode::kUnavailable;
  else if (primary == SQLITE_CONSTRAINT)
    code = ErrorCode::kAlreadyExists;
  std::string msg =
      what + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (sqlite " + std::to_string(rc) + ")";
  // A write that failed for want of room (ENOSPC, a quota, a file size limit) is a full disk,
  // whichever code SQLite gave it.
  const int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
  const bool no_room = primary == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT || sys == EFBIG;
  if (no_room) {
    code = ErrorCode::kResourceExhausted;
    msg += "; the disk is full";
  }
  return Error(code, msg);
}

// A prepared statement, reset on reuse.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  Status prepare(sqlite3* db, const char* sql) {
    db_ = db;
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) return make_error(sqlite_error(db, rc, std::string("prepare ") + sql));
    return {};
  }
  Stmt& reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    index_ = 0;
    return *this;
  }
  Stmt& bind(const std::string& v) {
    sqlite3_bind_text(stmt_, ++index_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int64_t v) {
    sqlite3_bind_int64(stmt_, ++index_, v);
    return *this;
  }
  Stmt& bind_null() {
    sqlite3_bind_null(stmt_, ++index_);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  std::string text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t == nullptr
               ? std::string()
               : std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  sqlite3_stmt* raw() { return stmt_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int index_ = 0;
};

inline Status exec(sqlite3* db, const char* sql) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK)
    return make_error(sqlite_error(db, rc, std::string("executing ") + std::string(sql).substr(0, 40)));
  return {};
}

}  // namespace crucible::sqlite_internal
