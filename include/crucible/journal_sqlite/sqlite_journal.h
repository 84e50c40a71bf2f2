// The embedded default Journal: one SQLite file in WAL mode with synchronous=FULL, group commit
// and a content-addressed blob store for large values.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "crucible/core/error.h"
#include "crucible/journal/blob_store.h"
#include "crucible/journal/journal.h"

namespace crucible {

struct SqliteJournalOptions {
  std::string path = ".crucible/journal.db";
  // Defaults to "<directory of path>/blobs".
  std::string blob_dir;
  size_t blob_threshold = kDefaultBlobThreshold;
  // FULL syncs the WAL on every commit (durable across power loss); NORMAL only across crashes
  // of the process. Benchmarks compare both; the engine uses FULL.
  bool synchronous_full = true;
  // How long a commit waits for another process's lock on the file. Past it the commit fails
  // with kUnavailable, writes nothing, and the journal stays usable.
  std::chrono::milliseconds busy_timeout = std::chrono::seconds(10);
};

// The schema version this build writes. A journal with a newer version is refused.
inline constexpr int kSqliteSchemaVersion = 1;

// Opens (creating the file, its directory and the schema when missing) and migrates the journal.
// kFailedPrecondition for a journal written by a newer Crucible; kUnavailable if the file cannot
// be opened. Appends from many threads share commits: one fsync makes every pending record
// durable, in append order.
[[nodiscard]] Result<std::unique_ptr<Journal>> open_sqlite_journal(const SqliteJournalOptions& options);

// The journal path from --journal, else $CRUCIBLE_JOURNAL, else .crucible/journal.db.
std::string default_journal_path(const std::string& flag);

}  // namespace crucible
