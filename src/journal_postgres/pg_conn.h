// A libpq connection with text parameters, error translation to canonical codes and
// reconnection. Private to journal_postgres; libpq stays behind it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
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
  // exec for a statement whose rows do not matter.
  [[nodiscard]] Status run(const char* sql, std::initializer_list<Param> params, const char* purpose);
  // exec that, when the connection turns out to have been lost before the statement ran
  // (a server restart, an idle session ended), reconnects and runs it once more. Only for
  // statements that change nothing on their own: reads, BEGIN.
  [[nodiscard]] Result<PgResult> exec_again_if_lost(const char* sql, const std::vector<Param>& params,
                                                    const char* purpose);
  // True when the last error lost the connection.
  bool lost() const;
  bool in_transaction() const;

 private:
  Status reconnect();
  PGconn* conn_ = nullptr;
  std::string what_;
};

inline std::string str(int64_t v) { return std::to_string(v); }

}  // namespace crucible::pg_internal
