// A libpq connection with text parameters, error translation to canonical codes and
// reconnection. Private to journal_postgres; libpq stays behind it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "crucible/core/error.h"

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace crucible::pg_internal {

// One statement's result rows, as text.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r);
  int rows() const;
  // Rows a command changed (INSERT, UPDATE, DELETE).
  int64_t affected() const;
  std::string text(int row, int col) const;
  int64_t integer(int row, int col) const;
  bool is_null(int row, int col) const;

 private:
  std::shared_ptr<PGresult> r_;
};

using Param = std::optional<std::string>;  // nullopt: SQL NULL

// One statement of a pipeline. A named one is prepared once per session and executed by name
// from then on, so the server parses and plans it once.
struct Statement {
  const char* name = nullptr;  // nullptr: parsed each time
  const char* sql = nullptr;
  std::vector<Param> params;
};

class PgConn {
 public:
  PgConn() = default;
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // `what` names the server in messages (the URL without its password).
  [[nodiscard]] Status connect(const std::string& url, int connect_timeout_s, std::string what);
  // Runs one statement. A connection found lost is re-established first, outside a transaction.
  // Errors: kUnavailable (connection lost or server shutting down), kAborted (serialization
  // failure, deadlock), kAlreadyExists (unique violation), kResourceExhausted (disk full, out of
  // memory), kPermissionDenied, kInternal otherwise; each names the statement's purpose.
  [[nodiscard]] Result<PgResult> exec(const char* sql, std::initializer_list<Param> params, const char* purpose);
  [[nodiscard]] Result<PgResult> exec(const char* sql, const std::vector<Param>& params, const char* purpose);
  // exec of a statement prepared once per session under `name` (parsed and planned once).
  [[nodiscard]] Result<PgResult> exec_prepared(const char* name, const char* sql, const std::vector<Param>& params,
                                               const char* purpose);
  // exec for a statement whose rows do not matter.
  [[nodiscard]] Status run(const char* sql, std::initializer_list<Param> params, const char* purpose);
  // exec that, when the connection turns out to have been lost before the statement ran
  // (a server restart, an idle session ended), reconnects and runs it once more. Only for
  // statements that change nothing on their own: reads, BEGIN.
  [[nodiscard]] Result<PgResult> exec_again_if_lost(const char* sql, const std::vector<Param>& params,
                                                    const char* purpose);
  // Sends the statements together and reads their results (libpq's pipeline mode): one round trip
  // for all of them. Stops at the first error, which it returns (kUnavailable when the connection
  // was lost); the statements after it did not run. A transaction the statements opened stays
  // open, or aborted after an error: the caller ends it. A connection found lost before the first
  // statement ran is re-established and the statements sent once more.
  [[nodiscard]] Result<std::vector<PgResult>> pipeline(const std::vector<Statement>& statements, const char* purpose);
  // How many statements of the last pipeline ran; all of them when a failed send left it unknown.
  size_t pipeline_ran() const { return pipeline_ran_; }
  // True when the last error lost the connection.
  bool lost() const;
  bool in_transaction() const;

 private:
  Status reconnect();
  Unexpected error_of(PGresult* r, const char* purpose);
  Result<std::vector<PgResult>> pipeline_once(const std::vector<Statement>& statements, const char* purpose);
  Result<std::vector<PgResult>> read_pipeline(const std::vector<const char*>& commands, const char* purpose);
  PGconn* conn_ = nullptr;
  std::set<std::string> prepared_;  // statement names prepared in this session
  size_t pipeline_ran_ = 0;
  std::string what_;
};

inline std::string str(int64_t v) { return std::to_string(v); }

}  // namespace crucible::pg_internal
