#include "pg_conn.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace crucible::pg_internal {

namespace {

// libpq's multi-line messages ("...failed: refused\n\tIs the server running...") on one line.
std::string one_line(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

PgResult::PgResult(PGresult* r) : r_(r, PQclear) {}
int PgResult::rows() const { return r_ ? PQntuples(r_.get()) : 0; }
int64_t PgResult::affected() const { return r_ ? std::atoll(PQcmdTuples(r_.get())) : 0; }
std::string PgResult::text(int row, int col) const { return PQgetvalue(r_.get(), row, col); }
int64_t PgResult::integer(int row, int col) const { return std::atoll(PQgetvalue(r_.get(), row, col)); }
bool PgResult::is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col) == 1; }

PgConn::~PgConn() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Status PgConn::connect(const std::string& url, int connect_timeout_s, std::string what) {
  what_ = std::move(what);
  // synchronous_commit on: a strict step is in the server's WAL on disk before COMMIT returns,
  // whatever the server's default, and again after a reconnection.
  const char* keys[] = {"dbname", "connect_timeout", "application_name", "options", nullptr};
  const std::string timeout = std::to_string(connect_timeout_s);
  const char* values[] = {url.c_str(), timeout.c_str(), "crucible", "-c synchronous_commit=on", nullptr};
  if (conn_ != nullptr) PQfinish(conn_);  // a connection that failed before is replaced
  prepared_.clear();
  conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  // The server's notices ("relation already exists, skipping") are not for the user's terminal.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string message = one_line(PQerrorMessage(conn_));
    return make_error(ErrorCode::kUnavailable, "cannot connect to the journal at " + what_ + ": " + message);
  }
  return {};
}

bool PgConn::lost() const { return conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK; }
bool PgConn::in_transaction() const { return PQtransactionStatus(conn_) != PQTRANS_IDLE; }

Status PgConn::reconnect() {
  prepared_.clear();  // a new session has none
  PQreset(conn_);
  if (PQstatus(conn_) == CONNECTION_OK) return {};
  return make_error(ErrorCode::kUnavailable, "lost the connection to the journal at " + what_ +
                                                 " and cannot re-establish it: " + one_line(PQerrorMessage(conn_)));
}

namespace {

// SQLSTATE classes and codes (PostgreSQL's errcodes) to canonical codes; the first match wins.
ErrorCode code_of(std::string_view state) {
  static constexpr std::pair<std::string_view, ErrorCode> kCodes[] = {
      {"40001", ErrorCode::kAborted},          {"40P01", ErrorCode::kAborted},
      {"23505", ErrorCode::kAlreadyExists},    {"53", ErrorCode::kResourceExhausted},
      {"42501", ErrorCode::kPermissionDenied}, {"08", ErrorCode::kUnavailable},
      {"57P", ErrorCode::kUnavailable},
  };
  for (const auto& [prefix, code] : kCodes) {
    if (state.starts_with(prefix)) return code;
  }
  return ErrorCode::kInternal;
}

}  // namespace

Result<PgResult> PgConn::exec(const char* sql, std::initializer_list<Param> params, const char* purpose) {
  return exec(sql, std::vector<Param>(params), purpose);
}

Status PgConn::run(const char* sql, std::initializer_list<Param> params, const char* purpose) {
  auto r = exec(sql, std::vector<Param>(params), purpose);
  if (!r) return make_error(r.error());
  return {};
}

Result<PgResult> PgConn::exec_again_if_lost(const char* sql, const std::vector<Param>& params, const char* purpose) {
  const bool idle = !lost() && !in_transaction();
  auto r = exec(sql, params, purpose);
  if (!r && idle && lost()) return exec(sql, params, purpose);
  return r;
}

Result<PgResult> PgConn::exec(const char* sql, const std::vector<Param>& params, const char* purpose) {
  if (lost()) CRUCIBLE_RETURN_IF_ERROR(reconnect());
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) values.push_back(p ? p->c_str() : nullptr);
  // Without parameters, the simple protocol, which also takes several statements (migrations).
  PGresult* r = values.empty() ? PQexec(conn_, sql)
                               : PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                                              nullptr, nullptr, 0);
  const ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return PgResult(r);
  return error_of(r, purpose);
}

Result<PgResult> PgConn::exec_prepared(const char* name, const char* sql, const std::vector<Param>& params,
                                       const char* purpose) {
  if (lost()) CRUCIBLE_RETURN_IF_ERROR(reconnect());
  if (!prepared_.contains(name)) {
    PGresult* p = PQprepare(conn_, name, sql, static_cast<int>(params.size()), nullptr);
    if (PQresultStatus(p) != PGRES_COMMAND_OK) return error_of(p, purpose);
    PQclear(p);
    prepared_.insert(name);
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& v : params) values.push_back(v ? v->c_str() : nullptr);
  PGresult* r = PQexecPrepared(conn_, name, static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0);
  const ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return PgResult(r);
  return error_of(r, purpose);
}

// The error of a failed statement (r, owned; null: the connection's own) as a canonical code.
Unexpected PgConn::error_of(PGresult* r, const char* purpose) {
  const char* field = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string state = field != nullptr ? field : "";  // copied: it lives in r
  std::string message = one_line(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
  if (message.empty()) message = one_line(PQerrorMessage(conn_));
  PQclear(r);
  const ErrorCode code = lost() ? ErrorCode::kUnavailable : code_of(state);
  std::string prefix = lost() ? "lost the connection to the journal at " + what_ + " while " : std::string();
  return make_error(code, prefix + purpose + ": " + message);
}

Result<std::vector<PgResult>> PgConn::pipeline(const std::vector<Statement>& statements, const char* purpose) {
  const bool idle = !lost() && !in_transaction();
  auto r = pipeline_once(statements, purpose);
  // Found lost before anything ran (the server ended an idle session): once more, on a new one.
  if (!r && idle && lost() && pipeline_ran_ == 0) return pipeline_once(statements, purpose);
  return r;
}

Result<std::vector<PgResult>> PgConn::pipeline_once(const std::vector<Statement>& statements, const char* purpose) {
  pipeline_ran_ = 0;
  if (lost()) CRUCIBLE_RETURN_IF_ERROR(reconnect());
  if (PQenterPipelineMode(conn_) != 1) return error_of(nullptr, purpose);
  // One entry per command sent, in order: the name it prepares, or nullptr for an execution.
  std::vector<const char*> commands;
  auto preparing = [&](const char* name) {
    return std::find_if(commands.begin(), commands.end(),
                        [&](const char* c) { return c != nullptr && std::string_view(c) == name; }) != commands.end();
  };
  bool sent = true;
  for (const Statement& s : statements) {
    std::vector<const char*> values;
    values.reserve(s.params.size());
    for (const Param& p : s.params) values.push_back(p ? p->c_str() : nullptr);
    const int n = static_cast<int>(values.size());
    if (s.name != nullptr && !prepared_.contains(s.name) && !preparing(s.name)) {
      sent = PQsendPrepare(conn_, s.name, s.sql, n, nullptr) == 1;
      if (!sent) break;
      commands.push_back(s.name);
    }
    sent = s.name != nullptr ? PQsendQueryPrepared(conn_, s.name, n, values.data(), nullptr, nullptr, 0) == 1
                             : PQsendQueryParams(conn_, s.sql, n, nullptr, values.data(), nullptr, nullptr, 0) == 1;
    if (!sent) break;
    commands.push_back(nullptr);
  }
  if (sent) sent = PQpipelineSync(conn_) == 1;
  if (!sent) {
    // The session is in an unknown state: drop it, and with it whatever was sent, which may have
    // run.
    pipeline_ran_ = statements.size();
    std::string message = one_line(PQerrorMessage(conn_));
    PQreset(conn_);
    prepared_.clear();
    return make_error(ErrorCode::kUnavailable,
                      "lost the connection to the journal at " + what_ + " while " + purpose + ": " + message);
  }
  return read_pipeline(commands, purpose);
}

// Reads one result per command sent, then the pipeline's sync, and leaves pipeline mode.
Result<std::vector<PgResult>> PgConn::read_pipeline(const std::vector<const char*>& commands, const char* purpose) {
  std::vector<PgResult> out;
  std::optional<Unexpected> first;
  for (const char* prepare : commands) {
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) {  // the connection broke: nothing more will come
      if (!first) first = error_of(nullptr, purpose);
      break;
    }
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (prepare != nullptr) {
        prepared_.insert(prepare);  // it lasts as long as the session, whatever follows
        PQclear(r);
      } else {
        out.emplace_back(r);
        ++pipeline_ran_;
      }
    } else if (st != PGRES_PIPELINE_ABORTED && !first) {
      first = error_of(r, purpose);
    } else {
      PQclear(r);
    }
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);  // the command's end
  }
  if (!lost()) {
    // The sync: the server processed everything before it.
    while (PGresult* r = PQgetResult(conn_)) {
      const bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (sync) break;
    }
    (void)PQexitPipelineMode(conn_);
  }
  if (first) {
    if (lost()) return make_error(ErrorCode::kUnavailable, first->value().message());
    return *first;
  }
  return out;
}

}  // namespace crucible::pg_internal
