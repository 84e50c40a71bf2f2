// The PostgreSQL journal against raw libpq commits on the same throwaway server (or a server the
// caller names): one strict append at a time, then sixteen appenders at once, where group commit
// lets them share transactions (counted from the server's own xact_commit).
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/testing/postgres_server.h"

namespace crucible::bench {
namespace {

struct Conn {
  std::unique_ptr<PGconn, decltype(&PQfinish)> handle{nullptr, PQfinish};
  PGconn* c = nullptr;
};

Result<Conn> connect(const std::string& url) {
  Conn conn;
  const char* keys[] = {"dbname", "options", nullptr};
  const char* values[] = {url.c_str(), "-c synchronous_commit=on", nullptr};
  conn.handle.reset(PQconnectdbParams(keys, values, 1));
  conn.c = conn.handle.get();
  if (PQstatus(conn.c) != CONNECTION_OK) {
    return make_error(ErrorCode::kUnavailable, std::string("cannot connect: ") + PQerrorMessage(conn.c));
  }
  return conn;
}

Status exec(Conn& conn, const char* sql) {
  PGresult* r = PQexec(conn.c, sql);
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  std::string message = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  if (!ok) return make_error(ErrorCode::kInternal, std::string(sql) + ": " + message);
  return {};
}

Result<int64_t> commits_so_far(Conn& conn) {
  // A fresh snapshot of the statistics each time; this query's own commit is reported later.
  PQclear(PQexec(conn.c, "SELECT pg_stat_clear_snapshot()"));
  PGresult* r = PQexec(conn.c, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return make_error(ErrorCode::kInternal, "cannot read pg_stat_database");
  }
  int64_t n = std::atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

Record step_record(const RunId& run, int i) {
  Record r;
  r.type = RecordType::kStepCompleted;
  r.run_id = run;
  r.key = StepKey::from_string("/s" + std::to_string(i));
  r.at_ms = 1000;
  r.payload = Json{{"out", std::string(200, 'x')}};
  return r;
}

Record started(const RunId& run) {
  Record r;
  r.type = RecordType::kRunStarted;
  r.run_id = run;
  r.at_ms = 1000;
  r.payload = {{"pipeline", "bench"}, {"spec_hash", "h"}, {"input", Json::object()}};
  return r;
}

// `threads` appenders, each on its own run, `per_thread` strict appends each. The server's commit
// count is read before the journal opens and after it closes (a backend reports its statistics
// when it exits), so it includes opening the journal and starting the runs.
Result<Json> strict_appends(const std::string& url, int threads, int per_thread) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto stats, connect(url));
  CRUCIBLE_ASSIGN_OR_RETURN(int64_t commits_before, commits_so_far(stats));
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_postgres_journal(PostgresJournalOptions{url}));
  std::vector<RunId> runs;
  for (int t = 0; t < threads; ++t) {
    runs.push_back(*RunId::parse("bench-" + std::to_string(threads) + "-" + std::to_string(t)));
    CRUCIBLE_RETURN_IF_ERROR(journal->append(started(runs.back()), Durability::kStrict));
  }
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::atomic<int> failures{0};
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          auto a0 = std::chrono::steady_clock::now();
          if (!journal->append(step_record(runs[static_cast<size_t>(t)], i), Durability::kStrict)) ++failures;
          lat[static_cast<size_t>(t)].push_back(since_us(a0));
        }
      });
    }
  }
  const double seconds = since_us(t0) / 1e6;
  journal.reset();
  int64_t commits_after = commits_before;
  for (int i = 0; i < 50 && commits_after == commits_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CRUCIBLE_ASSIGN_OR_RETURN(commits_after, commits_so_far(stats));
  }
  if (failures > 0) return make_error(ErrorCode::kInternal, std::to_string(failures.load()) + " appends failed");
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  const double appends = static_cast<double>(threads) * per_thread;
  const double commits = static_cast<double>(std::max<int64_t>(commits_after - commits_before, 1));
  return Json{{"appenders", threads},
              {"appends", appends},
              {"appends_per_s", appends / seconds},
              {"p50_us", percentile(all, 50)},
              {"p99_us", percentile(all, 99)},
              {"server_commits", commits},
              {"appends_per_commit", appends / commits}};
}

}  // namespace

// The floor: one 200-byte row per autocommitted INSERT (BEGIN and COMMIT in one round trip).
Result<Json> raw_postgres_commits(const std::string& url, int n) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto conn, connect(url));
  CRUCIBLE_RETURN_IF_ERROR(exec(conn, "CREATE TABLE raw(wf TEXT, step INT, out TEXT, PRIMARY KEY(wf, step))"));
  const std::string blob(200, 'x');
  std::vector<double> lat;
  for (int i = 0; i < n; ++i) {
    const std::string step = std::to_string(i);
    const char* params[] = {"wf", step.c_str(), blob.c_str()};
    auto t0 = std::chrono::steady_clock::now();
    PGresult* r = PQexecParams(conn.c, "INSERT INTO raw VALUES($1, $2, $3)", 3, nullptr, params, nullptr, nullptr, 0);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) return make_error(ErrorCode::kInternal, "raw insert failed");
    lat.push_back(since_us(t0));
  }
  return Json{{"p50_us", percentile(lat, 50)}, {"p99_us", percentile(lat, 99)}};
}

Result<Json> run_journal_postgres(bool quick, const std::string& url_in) {
  std::unique_ptr<testing::PostgresServer> server;
  std::string url = url_in;
  if (url.empty()) {
    CRUCIBLE_ASSIGN_OR_RETURN(server, testing::PostgresServer::start(/*install_if_missing=*/false));
    CRUCIBLE_ASSIGN_OR_RETURN(url, server->create_database());
  }
  const int n = quick ? 300 : 3000;
  CRUCIBLE_ASSIGN_OR_RETURN(auto raw, raw_postgres_commits(url, n));
  CRUCIBLE_ASSIGN_OR_RETURN(auto one, strict_appends(url, 1, n));
  CRUCIBLE_ASSIGN_OR_RETURN(auto many, strict_appends(url, 16, n / 8));
  const double raw_p50 = raw["p50_us"], one_p50 = one["p50_us"];
  const double raw_rate = 1e6 / raw_p50;
  const double gain = many["appends_per_s"].get<double>() / one["appends_per_s"].get<double>();
  return Json{{"benchmark", "journal-postgres"},
              {"quick", quick},
              {"server", server ? "throwaway cluster on 127.0.0.1 (initdb, defaults, fsync on)" : redact_url(url)},
              {"raw_commit_p50_us", raw_p50},
              {"raw_commit_p99_us", raw["p99_us"]},
              {"raw_commits_per_s", raw_rate},
              {"one_appender", one},
              {"sixteen_appenders", many},
              {"group_commit_throughput_gain", gain},
              {"goals",
               {{"strict_append_p50_le_2x_raw_commit", one_p50 <= 2 * raw_p50},
                {"sixteen_appenders_share_commits", many["appends_per_commit"].get<double>() >= 2},
                {"group_commit_gain_ge_2x", gain >= 2}}}};
}

}  // namespace crucible::bench
