// `crucible serve`: the HTTP API under /v1, the ingress (POST /{pipeline}/run) and the dashboard,
// on cpp-httplib (private to this module). Runs started over HTTP are submitted to the journal's
// queue like `crucible submit`; an in-process Worker (or `crucible worker`s sharing the journal)
// executes them, so a server that dies loses no run: another worker, or the server restarted,
// resumes it from the journal.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/executor.h"
#include "crucible/core/stage.h"
#include "crucible/engine/runner.h"
#include "crucible/engine/worker.h"
#include "crucible/journal/journal.h"
#include "crucible/server/api_keys.h"
#include "crucible/telemetry/events.h"

namespace crucible::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;            // 0: any free port (port() says which)
  std::string pipelines_dir;  // pipelines by name (NAME.yaml); empty: only YAML sent in a request
  std::string queue = "default";
  // The read routes (GET) answer without a key. Off unless asked for; the server says so on start.
  bool allow_anonymous_read = false;
  std::string tls_cert;  // both set: HTTPS
  std::string tls_key;
  size_t max_body_bytes = 1 << 20;                 // larger requests get 413
  std::chrono::milliseconds read_timeout{5'000};   // a client that sends nothing for this long is dropped
  std::chrono::milliseconds write_timeout{5'000};  // a client that reads nothing for this long is dropped
  std::chrono::seconds keep_alive{5};              // an idle connection is closed after this long
  // The longest an ingress call waits for its run's result before answering 202 with the run id.
  std::chrono::milliseconds ingress_wait{30'000};
  // Requests per second per API key (bursts of one second's worth); beyond it, 429. 0: no limit.
  double rate_limit = 0;
  size_t threads = 64;                        // requests served at once; each live event stream holds one
  std::chrono::milliseconds event_poll{100};  // how often an event stream looks for new records
  bool dashboard = true;                      // serve the dashboard at /
  // Where runs write their files (<runs_dir>/<run id>/): training curves come from metrics.jsonl
  // there. Empty: no curves.
  std::string runs_dir;
};

// What the composition root lends the server; all must outlive it.
struct ServerDeps {
  Journal& journal;
  Runner& runner;  // submits runs, resumes and forks them
  Executor& executor;
  Clock& clock;
  const StageRegistry& registry;
  SpecLoader load_spec;      // a journaled spec back to a WorkflowSpec (resume, fork)
  Worker* worker = nullptr;  // the in-process worker, woken when a run becomes claimable; may be null
};

class Server {
 public:
  Server(ServerDeps deps, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on a thread of its own. kUnavailable naming the address when it cannot
  // bind; kInvalidArgument naming the file for a TLS certificate or key that does not load.
  [[nodiscard]] Status start();
  // Stops accepting, ends event streams and waits for requests and background resumes.
  void stop();
  int port() const;
  std::string url(const std::string& path = "") const;

  // Feed of the runs the in-process worker finishes (its RunListener): ingress calls waiting for
  // a run are woken by it instead of their next poll.
  void run_finished(const RunId& run);
  // Counts stage latencies and hedges for /metrics; add it to the runner's EventBus.
  std::shared_ptr<EventSink> metrics_sink();

  ApiKeyStore& keys();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crucible::server
