// How records reach PostgreSQL's tables: the change a record makes to its run's row, and the few
// set-based statements that write a whole group commit's records in one round trip. Private to
// journal_postgres.
#pragma once

#include <functional>
#include <map>
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
// transaction: the new runs' rows, every record (its run locked and its fence epoch checked in the
// same statement; see kInsertRecordsSql) and the runs' changed rows, and the last sequence number
// each run then has. Sequence numbers continue from `last_seq`, what this journal last knew of
// each run; if another writer has numbered further meanwhile, the primary key fails the batch.
// Any failure rolls the whole batch back, and the caller then writes the groups one at a time to
// find the group at fault. nullopt when the batch has something this shape cannot express (a run
// whose last number is unknown, a run started twice, fenced records of a run started in the same
// batch, differing fence epochs for one run, a bad placement): the caller writes it group by
// group.
struct RecordBatchPlan {
  std::vector<Statement> statements;
  std::map<std::string, int64_t> last_seq;  // per run, once the statements have run
  std::vector<std::string> finished;        // runs the batch finished or parked
};
std::optional<RecordBatchPlan> plan_record_batch(
    const GroupCommit::Batch& batch, const std::function<std::optional<int64_t>(const std::string&)>& last_seq);

}  // namespace crucible::pg_internal
