// The SQLite journal's write side: the schema migrations and the statements that write records
// inside a group commit, with per-run sequence numbers. Used by the committing thread only.
// Private to journal_sqlite.
#pragma once

#include <sqlite3.h>

#include <string>
#include <unordered_map>

#include "crucible/journal/blob_store.h"
#include "crucible/journal/journal.h"
#include "sqlite_util.h"

namespace crucible::sqlite_internal {

// Moves a record's large values to the blob store before it reaches the commit queue: mutation
// values, and an object payload member by member, so its small fields (a run's pipeline name and
// spec hash) stay readable in the record and the run's row whatever the size of the rest.
[[nodiscard]] Status externalize_record(Record& r, BlobStore& blobs, size_t threshold);
// The reverse, for a record read back (whole-payload references of older journals included).
[[nodiscard]] Status internalize_record(Record& r, BlobStore& blobs);

// Brings the schema of `db` (the file `path`) to the latest version; a newer one is refused.
[[nodiscard]] Status migrate(sqlite3* db, const std::string& path);

class RecordWriter {
 public:
  [[nodiscard]] Status prepare(sqlite3* db);

  // One transaction; sequence numbers are read afresh in each.
  [[nodiscard]] Status begin();
  [[nodiscard]] Status commit();
  void rollback();
  // A group inside the transaction: all of its writes or none.
  void savepoint();
  void rollback_to_savepoint();
  void release_savepoint();
  // After a write that may have moved a lease (an op group): fenced records read it afresh.
  void forget_leases() { epoch_cache_.clear(); }

  // Writes one record inside the current transaction (`body`: its serialised form, when the
  // appending thread made it). Only records that change a run's status (or spec) touch its row;
  // step records just check that the run exists. Sequence numbers are per run, assigned under
  // the write lock, so several processes may share the file.
  [[nodiscard]] Status apply(const Record& r, const std::string* body = nullptr);

 private:
  Status insert_run(const Record& r);
  Status update_run(const Record& r, bool new_spec);
  Status check_run(const Record& r);
  Status check_fence(const Record& r);
  Result<int64_t> next_seq(const RunId& run);

  sqlite3* db_ = nullptr;
  Stmt insert_run_, update_run_, suspend_run_, insert_record_, next_seq_, run_exists_, lease_epoch_;
  Stmt savepoint_, release_, rollback_to_;
  // The last sequence number per run in the commit in progress.
  std::unordered_map<std::string, int64_t> next_seq_cache_;
  // The lease epoch per run in the commit in progress, for fenced records.
  std::unordered_map<std::string, uint64_t> epoch_cache_;
};

}  // namespace crucible::sqlite_internal
