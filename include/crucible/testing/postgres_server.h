// A throwaway PostgreSQL server for tests: a cluster made with Debian's initdb in a temporary
// folder, listening on 127.0.0.1 only (and a socket in that folder), stopped by its PID and
// removed when the object goes. As root the server runs as the `postgres` user, which initdb
// requires. When no PostgreSQL is installed, scripts/install-deps installs it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "crucible/core/error.h"

namespace crucible::testing {

class PostgresServer {
 public:
  // Creates and starts the cluster, waiting until it accepts connections. Without a server
  // installed, runs scripts/install-deps first when `install_if_missing`.
  [[nodiscard]] static Result<std::unique_ptr<PostgresServer>> start(bool install_if_missing = true);
  ~PostgresServer();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // postgresql://crucible@127.0.0.1:<port>/<database>
  std::string url(const std::string& database = "postgres") const;
  // A new, empty database; returns its URL.
  [[nodiscard]] Result<std::string> create_database();
  // Kills the server at once (SIGKILL, as a crash or a lost machine would) and reaps it.
  void kill_now();
  // Runs SQL as the superuser on `database` (psql), e.g. to end a journal's connections.
  [[nodiscard]] Status sql(const std::string& statement, const std::string& database = "postgres") const;

 private:
  PostgresServer() = default;
  Status init(bool install_if_missing);

  std::string dir_, bin_;
  int port_ = 0;
  pid_t pid_ = -1;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool as_postgres_ = false;
  int databases_ = 0;
};

}  // namespace crucible::testing
