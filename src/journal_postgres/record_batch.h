// How records reach PostgreSQL's tables: the change a record makes to its run's row, and the few
// set-based statements that write a whole group commit's records in one round trip. Private to
// journal_postgres.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crucible/journal/group_commit.h"
#include "crucible/journal/journal.h"
#include "pg_conn.h"

namespace crucible::pg_internal {

// The columns of a run's row that a record changes. Nothing is changed by a step's records.
struct RunRowChange {
  int64_t at_ms = 0;      // updated_ms becomes at least this
  Param status;           // the run's new status
  Param error;            // a failed run's message
  Param spec_hash;        // a journaled #spec decision replaced the spec
  bool releases = false;  // the run finished or parked: its lease is released
  bool parks = false;     // the run waits: wake_ms and waiting_on are set
  Param wake_ms;
  std::string waiting_on;

  // The effect of this change followed by `later`.
  void then(const RunRowChange& later);
};
// nullopt for a record that leaves its run's row alone (and for kRunStarted, which creates it).
std::optional<RunRowChange> run_row_change(const Record& r);

// The UPDATE of one run's row with `change`; parameters $1..$9, the run's id last.
extern const char* const kUpdateRunSql;
std::vector<Param> update_run_params(const RunRowChange& change, const std::string& run);

// A PostgreSQL array literal: {"a","b",NULL}, quotes and backslashes escaped.
std::string array_literal(const std::vector<Param>& items);
std::string text_array(const std::vector<std::string>& items);

// The statements that write the records of `batch`'s record groups in order, in the current
// transaction: the new runs' rows, one locking and fencing call over the other runs (it fails when
// a run is missing or a record's fence epoch is stale), the runs' changed rows, and every record
// numbered after its run's last. Any failure rolls the whole batch back, and the caller then
// writes the groups one at a time to find the group at fault. nullopt when the batch has
// something this shape cannot express (a run started twice, fenced records of a run started in
// the same batch, differing fence epochs for one run, a bad placement): the caller writes it
// group by group.
std::optional<std::vector<Statement>> plan_record_batch(const GroupCommit::Batch& batch);

// The server-side function plan_record_batch's locking call uses (migration 3).
extern const char* const kLockRunsFunctionSql;

}  // namespace crucible::pg_internal
