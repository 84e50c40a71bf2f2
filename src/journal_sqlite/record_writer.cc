#include "record_writer.h"

namespace crucible::sqlite_internal {

Status externalize_record(Record& r, BlobStore& blobs, size_t threshold) {
  for (Mutation& m : r.delta) {
    if (m.value.is_null()) continue;
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, externalize(m.value, blobs, threshold));
    m.value = std::move(v);
  }
  if (r.payload.is_object()) {
    for (auto& [key, value] : r.payload.items()) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, externalize(value, blobs, threshold));
      value = std::move(v);
    }
  } else if (!r.payload.is_null()) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, externalize(r.payload, blobs, threshold));
    r.payload = std::move(v);
  }
  return {};
}

Status internalize_record(Record& r, BlobStore& blobs) {
  for (Mutation& m : r.delta) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto v, internalize(m.value, blobs));
    m.value = std::move(v);
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto p, internalize(r.payload, blobs));
  r.payload = std::move(p);
  if (r.payload.is_object()) {
    for (auto& [key, value] : r.payload.items()) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, internalize(value, blobs));
      value = std::move(v);
    }
  }
  return {};
}

// Each step reads the version inside its write transaction, so processes that open a new journal
// at the same moment apply every migration once: the one that waited sees the other's work.
Status migrate(sqlite3* db, const std::string& path) {
  CRUCIBLE_RETURN_IF_ERROR(exec(db, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
  const int latest = static_cast<int>(std::size(kMigrations));
  Stmt q;
  CRUCIBLE_RETURN_IF_ERROR(q.prepare(db, "SELECT value FROM meta WHERE key = 'schema_version'"));
  for (;;) {
    CRUCIBLE_RETURN_IF_ERROR(exec(db, "BEGIN IMMEDIATE"));
    int version = 0;
    if (q.step() == SQLITE_ROW) version = std::atoi(q.text(0).c_str());
    q.reset();
    Status s;
    if (version > latest) {
      s = make_error(ErrorCode::kFailedPrecondition,
                     "journal '" + path + "' has schema version " + std::to_string(version) +
                         ", newer than this crucible supports (" + std::to_string(latest) +
                         "); use a newer crucible or another --journal");
    } else if (version < latest) {
      s = exec(db, kMigrations[version]);
      if (s) {
        std::string sql = "INSERT INTO meta(key, value) VALUES('schema_version', '" + std::to_string(version + 1) +
                          "') ON CONFLICT(key) DO UPDATE SET value = excluded.value";
        s = exec(db, sql.c_str());
      }
    }
    if (!s) {
      (void)exec(db, "ROLLBACK");
      return s;
    }
    CRUCIBLE_RETURN_IF_ERROR(exec(db, "COMMIT"));
    if (version >= latest) return {};
  }
}

Status RecordWriter::prepare(sqlite3* db) {
  db_ = db;
  CRUCIBLE_RETURN_IF_ERROR(insert_run_.prepare(db_,
                                               "INSERT INTO runs(run_id, pipeline, spec_hash, status, created_ms, "
                                               "updated_ms, parent_run, queue, priority, partition_key) "
                                               "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  CRUCIBLE_RETURN_IF_ERROR(suspend_run_.prepare(db_, "UPDATE runs SET wake_ms = ?, waiting_on = ? WHERE run_id = ?"));
  CRUCIBLE_RETURN_IF_ERROR(update_run_.prepare(
      db_,
      "UPDATE runs SET updated_ms = max(updated_ms, ?), status = coalesce(?, status), error = coalesce(?, error), "
      "spec_hash = coalesce(?, spec_hash), "
      "lease_owner = CASE WHEN ? THEN '' ELSE lease_owner END, "
      "lease_expires_ms = CASE WHEN ? THEN 0 ELSE lease_expires_ms END WHERE run_id = ?"));
  CRUCIBLE_RETURN_IF_ERROR(next_seq_.prepare(db_, "SELECT coalesce(max(seq), 0) FROM records WHERE run_id = ?"));
  CRUCIBLE_RETURN_IF_ERROR(run_exists_.prepare(db_, "SELECT 1 FROM runs WHERE run_id = ?"));
  CRUCIBLE_RETURN_IF_ERROR(lease_epoch_.prepare(db_, "SELECT lease_epoch FROM runs WHERE run_id = ?"));
  CRUCIBLE_RETURN_IF_ERROR(savepoint_.prepare(db_, "SAVEPOINT g"));
  CRUCIBLE_RETURN_IF_ERROR(release_.prepare(db_, "RELEASE g"));
  CRUCIBLE_RETURN_IF_ERROR(rollback_to_.prepare(db_, "ROLLBACK TO g"));
  return insert_record_.prepare(
      db_, "INSERT INTO records(run_id, seq, type, step_key, at_ms, body) VALUES(?, ?, ?, ?, ?, ?)");
}

Status RecordWriter::begin() {
  next_seq_cache_.clear();
  epoch_cache_.clear();
  int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return make_error(sqlite_error(db_, rc, "beginning a journal commit"));
  return {};
}

Status RecordWriter::commit() {
  int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) return {};
  Error e = sqlite_error(db_, rc, "committing the journal");
  rollback();
  return make_error(e);
}

void RecordWriter::rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

void RecordWriter::savepoint() { savepoint_.reset().step(); }

void RecordWriter::rollback_to_savepoint() {
  rollback_to_.reset().step();
  next_seq_cache_.clear();
  epoch_cache_.clear();
}

void RecordWriter::release_savepoint() { release_.reset().step(); }

Status RecordWriter::insert_run(const Record& r) {
  const Json& p = r.payload.contains("$blob") ? Json::object() : r.payload;
  Placement placement;
  std::string queue;  // empty: not submitted
  if (const Json* given = json_member(p, "placement")) {
    CRUCIBLE_ASSIGN_OR_RETURN(placement, Placement::from_json(*given));
    queue = placement.queue;
  }
  insert_run_.reset()
      .bind(r.run_id.str())
      .bind(json_string(p, "pipeline"))
      .bind(json_string(p, "spec_hash"))
      .bind(std::string(queue.empty() ? "running" : "queued"))
      .bind(r.at_ms)
      .bind(r.at_ms)
      .bind(json_string(p, "parent_run"))
      .bind(queue)
      .bind(static_cast<int64_t>(placement.priority))
      .bind(placement.partition);
  int rc = insert_run_.step();
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    return make_error(ErrorCode::kAlreadyExists, "run '" + r.run_id.str() + "' already exists");
  }
  if (rc != SQLITE_DONE) return make_error(sqlite_error(db_, rc, "inserting run"));
  return {};
}

Status RecordWriter::update_run(const Record& r, bool new_spec) {
  auto status = status_after(r);
  update_run_.reset().bind(r.at_ms);
  if (status && r.type != RecordType::kPromiseResolved)
    update_run_.bind(std::string(run_status_name(*status)));
  else
    update_run_.bind_null();
  if (r.type == RecordType::kRunFailed && r.error)
    update_run_.bind(r.error->message());
  else
    update_run_.bind_null();
  if (new_spec)
    update_run_.bind(json_string(r.payload, "spec_hash"));
  else
    update_run_.bind_null();
  int64_t releases =
      r.type == RecordType::kRunCompleted || r.type == RecordType::kRunFailed || r.type == RecordType::kRunSuspended;
  update_run_.bind(releases).bind(releases).bind(r.run_id.str());
  int rc = update_run_.step();
  if (rc != SQLITE_DONE) return make_error(sqlite_error(db_, rc, "updating run"));
  if (sqlite3_changes(db_) == 0) return make_error(ErrorCode::kNotFound, "run '" + r.run_id.str() + "' does not exist");
  if (r.type == RecordType::kRunSuspended) {
    // When a worker may claim the parked run again: its deadline, or its promise's signal.
    Stmt& q = suspend_run_.reset();
    if (auto wake = wake_time(r))
      q.bind(*wake);
    else
      q.bind_null();
    q.bind(json_string(r.payload, "promise")).bind(r.run_id.str());
    if (rc = q.step(); rc != SQLITE_DONE) return make_error(sqlite_error(db_, rc, "updating run"));
  }
  return {};
}

Status RecordWriter::check_run(const Record& r) {
  if (next_seq_cache_.contains(r.run_id.str())) return {};
  Stmt& q = run_exists_.reset().bind(r.run_id.str());
  int rc = q.step();
  q.reset();
  if (rc == SQLITE_DONE) return make_error(ErrorCode::kNotFound, "run '" + r.run_id.str() + "' does not exist");
  if (rc != SQLITE_ROW) return make_error(sqlite_error(db_, rc, "checking run"));
  return {};
}

// Before anything of the record is written: a fenced record needs the run's lease at its epoch.
Status RecordWriter::check_fence(const Record& r) {
  if (r.fence_epoch == 0) return {};
  auto [slot, fresh] = epoch_cache_.try_emplace(r.run_id.str(), 0);
  if (fresh) {
    Stmt& q = lease_epoch_.reset().bind(r.run_id.str());
    int rc = q.step();
    if (rc != SQLITE_ROW) {
      epoch_cache_.erase(slot);
      if (rc == SQLITE_DONE) return make_error(ErrorCode::kNotFound, "run '" + r.run_id.str() + "' does not exist");
      return make_error(sqlite_error(db_, rc, "checking the lease"));
    }
    slot->second = static_cast<uint64_t>(q.integer(0));
    q.reset();
  }
  if (slot->second != r.fence_epoch) return make_error(fenced_error(r.run_id, r.fence_epoch, slot->second));
  return {};
}

// Sequence numbers are counted per run within a commit; the first record of a run in the
// commit reads the last one written.
Result<int64_t> RecordWriter::next_seq(const RunId& run) {
  auto [slot, fresh] = next_seq_cache_.try_emplace(run.str(), 0);
  if (fresh) {
    Stmt& seq = next_seq_.reset().bind(run.str());
    if (seq.step() != SQLITE_ROW) return make_error(sqlite_error(db_, SQLITE_ERROR, "numbering record"));
    slot->second = seq.integer(0);
    seq.reset();
  }
  return ++slot->second;
}

Status RecordWriter::apply(const Record& r, const std::string* body) {
  bool new_spec =
      r.type == RecordType::kDecision && r.key.str() == "#spec" && json_member(r.payload, "spec_hash") != nullptr;
  bool changes_run = r.type != RecordType::kStepStarted && r.type != RecordType::kStepCompleted &&
                     r.type != RecordType::kDecision && r.type != RecordType::kStepFailed;
  CRUCIBLE_RETURN_IF_ERROR(check_fence(r));
  if (r.type == RecordType::kRunStarted) {
    CRUCIBLE_RETURN_IF_ERROR(insert_run(r));
  } else if (changes_run || new_spec) {
    CRUCIBLE_RETURN_IF_ERROR(update_run(r, new_spec));
  } else {
    CRUCIBLE_RETURN_IF_ERROR(check_run(r));
  }
  CRUCIBLE_ASSIGN_OR_RETURN(int64_t next, next_seq(r.run_id));
  insert_record_.reset()
      .bind(r.run_id.str())
      .bind(next)
      .bind(std::string(record_type_name(r.type)))
      .bind(r.key.str())
      .bind(r.at_ms)
      .bind(body != nullptr ? *body : json_dump(record_body_to_json(r)));
  int rc = insert_record_.step();
  if (rc != SQLITE_DONE) return make_error(sqlite_error(db_, rc, "inserting record"));
  return {};
}

}  // namespace crucible::sqlite_internal
