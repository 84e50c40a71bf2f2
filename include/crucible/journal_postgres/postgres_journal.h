// The Journal on a PostgreSQL server, for workers on many machines sharing one database: the
// same tables as the SQLite journal, group commit (concurrent appenders share one transaction
// and one WAL flush, with synchronous_commit on), large values stored in the rows themselves
// (TOAST), errors translated at the edge and a lost connection re-established.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "crucible/core/error.h"
#include "crucible/journal/journal.h"

namespace crucible {

struct PostgresJournalOptions {
  // postgresql://user[:password]@host[:port]/database[?param=value...] (libpq's URI syntax).
  std::string url;
  std::chrono::seconds connect_timeout = std::chrono::seconds(10);
};

// The schema version this build writes. A database with a newer version is refused.
inline constexpr int kPostgresSchemaVersion = 4;

// True for postgresql:// and postgres:// URLs.
bool is_postgres_url(std::string_view text);
// The URL with its password replaced by ***, for messages.
std::string redact_url(std::string_view url);

// Connects, creates or migrates the schema (one migrator at a time across machines, under an
// advisory lock) and starts the writer. kUnavailable when the server cannot be reached,
// kFailedPrecondition for a schema from a newer Crucible.
[[nodiscard]] Result<std::unique_ptr<Journal>> open_postgres_journal(const PostgresJournalOptions& options);

}  // namespace crucible
