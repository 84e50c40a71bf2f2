#include "crucible/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace crucible::testing {
namespace {

namespace fs = std::filesystem;

// The newest installed server's bin folder (/usr/lib/postgresql/<version>/bin), or empty.
std::string find_bin() {
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const int version = std::atoi(entry.path().filename().c_str());
    if (version > best_version && fs::exists(entry.path() / "bin" / "initdb")) {
      best_version = version;
      best = (entry.path() / "bin").string();
    }
  }
  return best;
}

// A port that was free a moment ago on 127.0.0.1.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::start(bool install_if_missing) {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  CRUCIBLE_RETURN_IF_ERROR(server->init(install_if_missing));
  return server;
}

// Forks `argv` with output to `log`, as the postgres user when running as root.
static pid_t spawn(const std::vector<std::string>& argv, const std::string& log, bool as_postgres, uid_t uid,
                   gid_t gid) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (as_postgres && (setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGQUIT);  // after setuid, which clears it: a crashed test stops its server
  execv(args[0], args.data());
  _exit(127);
}

Status PostgresServer::init(bool install_if_missing) {
  bin_ = find_bin();
  if (bin_.empty()) {
    // Developers get the server the tests need the way CI does.
    if (!install_if_missing || std::system(CRUCIBLE_SOURCE_DIR "/scripts/install-deps") != 0 ||
        (bin_ = find_bin()).empty()) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "no PostgreSQL server under /usr/lib/postgresql; run scripts/install-deps");
    }
  }
  char tmpl[] = "/tmp/crucible-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return make_error(ErrorCode::kInternal, "cannot create a folder for the cluster");
  dir_ = tmpl;
  if (geteuid() == 0) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr)
      return make_error(ErrorCode::kFailedPrecondition, "running as root and there is no postgres user");
    as_postgres_ = true;
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    if (chown(dir_.c_str(), uid_, gid_) != 0)
      return make_error(ErrorCode::kInternal, "cannot give " + dir_ + " to postgres");
  }
  const std::string log = dir_ + "/server.log";
  pid_t initdb = spawn({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "crucible", "-A", "trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions"},
                       dir_ + "/initdb.log", as_postgres_, uid_, gid_);
  int status = 0;
  waitpid(initdb, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return make_error(ErrorCode::kInternal, "initdb failed: " + read_file(dir_ + "/initdb.log"));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_port();
    pid_ = spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_), "-k", dir_, "-c",
                  "listen_addresses=127.0.0.1", "-c", "max_connections=200"},
                 log, as_postgres_, uid_, gid_);
    const std::string conninfo = url();
    for (int i = 0; i < 300; ++i) {
      if (PQping(conninfo.c_str()) == PQPING_OK) return {};
      if (waitpid(pid_, &status, WNOHANG) == pid_) break;  // it exited: the port was taken, try another
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  return make_error(ErrorCode::kUnavailable, "the PostgreSQL server did not start: " + read_file(log));
}

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    kill(pid_, SIGINT);  // fast shutdown: ends the sessions still open
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = waitpid(pid_, &status, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

void PostgresServer::kill_now() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://crucible@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

Status PostgresServer::sql(const std::string& statement, const std::string& database) const {
  PGconn* conn = PQconnectdb(url(database).c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, statement.c_str());
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(conn);
  if (!error.empty()) return make_error(ErrorCode::kInternal, statement + ": " + error);
  return {};
}

Result<std::string> PostgresServer::create_database() {
  const std::string name = "t" + std::to_string(++databases_);
  CRUCIBLE_RETURN_IF_ERROR(sql("CREATE DATABASE " + name));
  return url(name);
}

}  // namespace crucible::testing
