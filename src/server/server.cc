#include "crucible/server/server.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <vector>

#include "crucible/core/duration.h"
#include "crucible/core/hash.h"
#include "crucible/core/histogram.h"
#include "crucible/core/listen_backlog.h"
#include "crucible/engine/run_report.h"
#include "crucible/workflow/loader.h"
#include "dashboard_assets.h"
#include "run_views.h"

namespace crucible::server {
namespace {

namespace fs = std::filesystem;

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kOutOfRange: return 400;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kAborted: return 409;
    case ErrorCode::kResourceExhausted: return 429;
    case ErrorCode::kUnimplemented: return 501;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

void reply_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(json_dump(body), "application/json");
}

void reply_error(httplib::Response& res, const Error& error) {
  Json body = {{"code", error_code_name(error.code())}, {"message", error.message()}, {"field", nullptr}};
  if (error.field()) body["field"] = *error.field();
  if (error.retry_after()) {
    res.set_header("Retry-After", std::to_string(std::max<int64_t>(1, (error.retry_after()->count() + 999) / 1000)));
  }
  if (error.code() == ErrorCode::kUnauthenticated) res.set_header("WWW-Authenticate", "Bearer");
  reply_json(res, http_status(error.code()), body);
}

Error bad_field(const std::string& field, const std::string& message) {
  return Error(ErrorCode::kInvalidArgument, message).with_field(field);
}

// The request body as a JSON object; an empty body is {}.
Result<Json> body_object(const httplib::Request& req) {
  if (req.body.empty()) return Json::object();
  auto j = parse_json(req.body);
  if (!j) return make_error(bad_field("body", "the request body is not valid JSON: " + j.error().message()));
  if (!j->is_object()) return make_error(bad_field("body", "the request body must be a JSON object"));
  return std::move(*j);
}

// Pipeline names are file names in the pipelines folder, never paths.
Status check_pipeline_name(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  if (!std::regex_match(name, kName) || name.find("..") != std::string::npos) {
    return make_error(bad_field("pipeline",
                                "a pipeline name is 1 to 128 letters, digits, '_', '.' or '-' and "
                                "names a file in the pipelines folder, got '" +
                                    name + "'"));
  }
  return {};
}

Result<RunId> run_id_param(const std::string& text) {
  auto id = RunId::parse(text);
  if (!id) return make_error(bad_field("run_id", id.error().message()));
  return *id;
}

// cpp-httplib binds with SO_REUSEPORT, so a second server on a busy port would silently share it
// (and take half its requests). A plain bind tells whether anyone listens there.
bool port_is_free(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) return true;
  bool free = true;
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd >= 0) {
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    free = ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 || errno != EADDRINUSE;
    ::close(fd);
  }
  freeaddrinfo(found);
  return free;
}

constexpr double kBucketBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,      2.5,   5,      10,    30,   60,    120,  300, 600};

// Stage latencies and hedges seen on the event bus, for /metrics.
class MetricsSink : public EventSink {
 public:
  void on_event(const Event& e) override {
    if (e.type != EventType::kStageCompleted && e.type != EventType::kStageFailed) return;
    if (e.status == "replayed" || e.status == "skipped") return;
    std::lock_guard lock(mu_);
    steps_.record(static_cast<uint64_t>(std::max<int64_t>(0, e.duration_us)));
    if (e.type == EventType::kStageFailed) ++failed_;
    if (e.data.is_object() && e.data.contains("hedging")) {
      const Json& h = e.data["hedging"];
      const int attempts = h.value("attempts", 1);
      if (attempts > 1) hedges_ += static_cast<uint64_t>(attempts - 1);
      if (h.value("hedge_won", false)) ++hedge_wins_;
    }
  }

  void write(std::string& out) {
    std::lock_guard lock(mu_);
    out += "# HELP crucible_step_duration_seconds Duration of the stages this server executed.\n";
    out += "# TYPE crucible_step_duration_seconds histogram\n";
    const auto buckets = steps_.buckets();
    for (double bound : kBucketBounds) {
      uint64_t n = 0;
      const auto limit = static_cast<uint64_t>(bound * 1e6);
      for (const auto& b : buckets) {
        if (b.upper - 1 <= limit) n += b.count;
      }
      out += "crucible_step_duration_seconds_bucket{le=\"" + fmt_number(bound) + "\"} " + std::to_string(n) + "\n";
    }
    out += "crucible_step_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(steps_.count()) + "\n";
    out += "crucible_step_duration_seconds_sum " + fmt_number(static_cast<double>(steps_.sum()) / 1e6) + "\n";
    out += "crucible_step_duration_seconds_count " + std::to_string(steps_.count()) + "\n";
    out +=
        "# HELP crucible_steps_failed_total Stage attempts that failed.\n# TYPE crucible_steps_failed_total counter\n";
    out += "crucible_steps_failed_total " + std::to_string(failed_) + "\n";
    out += "# HELP crucible_hedges_fired_total Backup requests hedged stages sent.\n";
    out += "# TYPE crucible_hedges_fired_total counter\ncrucible_hedges_fired_total " + std::to_string(hedges_) + "\n";
    out += "# HELP crucible_hedge_wins_total Hedged stages whose answer came from a backup.\n";
    out += "# TYPE crucible_hedge_wins_total counter\ncrucible_hedge_wins_total " + std::to_string(hedge_wins_) + "\n";
  }

  static std::string fmt_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", v);
    return buf;
  }

 private:
  std::mutex mu_;
  LogLinearHistogram steps_;  // guarded by mu_, in microseconds
  uint64_t failed_ = 0;
  uint64_t hedges_ = 0;
  uint64_t hedge_wins_ = 0;
};

// A token bucket per API key.
class RateLimiter {
 public:
  explicit RateLimiter(double per_second) : rate_(per_second) {}
  // How long the caller must wait, or zero when the request may go now.
  std::chrono::milliseconds take(const std::string& key, MonoTime now) {
    if (rate_ <= 0) return std::chrono::milliseconds(0);
    std::lock_guard lock(mu_);
    auto [it, fresh] = buckets_.try_emplace(key, Bucket{std::max(1.0, rate_), now});
    Bucket& b = it->second;
    if (!fresh) {
      const double elapsed = std::chrono::duration<double>(now - b.last).count();
      b.tokens = std::min(std::max(1.0, rate_), b.tokens + elapsed * rate_);
      b.last = now;
    }
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return std::chrono::milliseconds(0);
    }
    return std::chrono::milliseconds(static_cast<int64_t>(std::ceil((1.0 - b.tokens) / rate_ * 1000.0)));
  }

 private:
  struct Bucket {
    double tokens;
    MonoTime last;
  };
  double rate_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;  // guarded by mu_
};

}  // namespace

struct Server::Impl {
  Impl(ServerDeps d, ServerOptions o)
      : deps(std::move(d)), options(std::move(o)), keys(deps.journal, deps.clock), limiter(options.rate_limit) {}

  ServerDeps deps;
  ServerOptions options;
  ApiKeyStore keys;
  RateLimiter limiter;
  std::shared_ptr<MetricsSink> metrics = std::make_shared<MetricsSink>();
  std::unique_ptr<httplib::Server> http;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};

  // Ingress calls waiting for their runs: the worker's listener marks them finished.
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::map<std::string, int> waiting;  // guarded by wait_mu: run id -> waiters
  std::set<std::string> finished;      // guarded by wait_mu: finished runs someone waits for

  // Pipelines loaded from the pipelines folder, by path.
  struct LoadedSpec {
    fs::file_time_type mtime;
    uintmax_t size = 0;
    WorkflowSpec spec;
  };
  std::mutex specs_mu;
  std::map<std::string, LoadedSpec> specs;  // guarded by specs_mu

  // Resumes and forks executing in the background.
  std::mutex bg_mu;
  std::vector<std::future<void>> background;  // guarded by bg_mu

  void install_routes();
  bool authorize(const httplib::Request& req, httplib::Response& res);

  void wake_worker() {
    if (deps.worker != nullptr) deps.worker->wake();
  }
  void in_background(std::function<void()> fn) {
    std::lock_guard lock(bg_mu);
    std::erase_if(background, [](std::future<void>& f) {
      return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    });
    background.push_back(deps.executor.run_in_background(std::move(fn)));
  }

  Result<WorkflowSpec> load_named(const std::string& name, fs::path* file);
  Result<WorkflowSpec> load_request_spec(const Json& body);
  Result<StartOptions> start_options(const Json& body, const httplib::Request& req, const WorkflowSpec& spec);
  Result<Placement> placement(const Json& body);
  // Waits until the run finishes (or parks) or `limit` passes; returns its journal then.
  Result<RunLog> wait_for_run(const RunId& run, std::chrono::milliseconds limit);

  void handle_submit(const httplib::Request& req, httplib::Response& res);
  void handle_list(const httplib::Request& req, httplib::Response& res);
  void handle_events(const httplib::Request& req, httplib::Response& res, const RunId& run);
  void handle_signal(const httplib::Request& req, httplib::Response& res);
  void handle_cancel(const httplib::Request& req, httplib::Response& res);
  void handle_resume(const httplib::Request& req, httplib::Response& res);
  void handle_fork(const httplib::Request& req, httplib::Response& res);
  void handle_ingress(const httplib::Request& req, httplib::Response& res);
  void handle_pipelines(httplib::Response& res);
  void handle_metrics_log(httplib::Response& res, const RunId& run);
  void handle_metrics(httplib::Response& res);
};

Server::Server(ServerDeps deps, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(deps), std::move(options))) {}

Server::~Server() { stop(); }

ApiKeyStore& Server::keys() { return impl_->keys; }
std::shared_ptr<EventSink> Server::metrics_sink() { return impl_->metrics; }
int Server::port() const { return impl_->port; }

std::string Server::url(const std::string& path) const {
  const bool tls = !impl_->options.tls_cert.empty();
  return std::string(tls ? "https://" : "http://") + impl_->options.host + ":" + std::to_string(impl_->port) + path;
}

void Server::run_finished(const RunId& run) {
  std::lock_guard lock(impl_->wait_mu);
  if (!impl_->waiting.contains(run.str())) return;
  impl_->finished.insert(run.str());
  impl_->wait_cv.notify_all();
}

Status Server::start() {
  Impl& s = *impl_;
  if (s.options.tls_cert.empty() != s.options.tls_key.empty()) {
    return make_error(
        bad_field(s.options.tls_cert.empty() ? "tls-cert" : "tls-key", "HTTPS needs both --tls-cert and --tls-key"));
  }
  if (!s.options.tls_cert.empty()) {
    for (const auto& [flag, file] :
         {std::pair{"tls-cert", s.options.tls_cert}, std::pair{"tls-key", s.options.tls_key}}) {
      std::error_code ec;
      if (!fs::is_regular_file(file, ec)) {
        return make_error(bad_field(flag, "--" + std::string(flag) + ": no such file '" + file + "'"));
      }
    }
    auto tls = std::make_unique<httplib::SSLServer>(s.options.tls_cert.c_str(), s.options.tls_key.c_str());
    if (!tls->is_valid()) {
      return make_error(bad_field("tls-cert", "the certificate '" + s.options.tls_cert + "' or the key '" +
                                                  s.options.tls_key + "' is not a valid PEM pair"));
    }
    s.http = std::move(tls);
  } else {
    s.http = std::make_unique<httplib::Server>();
  }
  const size_t threads = std::max<size_t>(4, s.options.threads);
  s.http->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http->set_payload_max_length(s.options.max_body_bytes);
  const auto secs = [](std::chrono::milliseconds d) {
    return std::pair<time_t, time_t>(static_cast<time_t>(d.count() / 1000),
                                     static_cast<time_t>(d.count() % 1000 * 1000));
  };
  s.http->set_read_timeout(secs(s.options.read_timeout).first, secs(s.options.read_timeout).second);
  s.http->set_write_timeout(secs(s.options.write_timeout).first, secs(s.options.write_timeout).second);
  // Without TCP_NODELAY a response written in two pieces waits for the client's delayed ACK
  // (40 ms on Linux).
  s.http->set_tcp_nodelay(true);
  s.http->set_keep_alive_max_count(1000);
  s.http->set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(s.options.keep_alive.count())));
  s.install_routes();

  if (s.options.port == 0) {
    s.port = s.http->bind_to_any_port(s.options.host);
  } else if (!port_is_free(s.options.host, s.options.port)) {
    s.port = -1;
  } else {
    s.port = s.http->bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    return make_error(ErrorCode::kUnavailable, "cannot listen on " + s.options.host + ":" +
                                                   std::to_string(s.options.port) +
                                                   " (in use, or not an address of this machine)");
  }
  widen_listen_backlog(s.port);
  s.thread = std::thread([&s] { s.http->listen_after_bind(); });
  while (!s.http->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return {};
}

void Server::stop() {
  Impl& s = *impl_;
  s.stopping.store(true);
  s.wait_cv.notify_all();
  if (s.http && s.thread.joinable()) {
    s.http->stop();
    s.thread.join();
  }
  std::vector<std::future<void>> left;
  {
    std::lock_guard lock(s.bg_mu);
    left.swap(s.background);
  }
  for (auto& f : left) f.wait();
}

bool Server::Impl::authorize(const httplib::Request& req, httplib::Response& res) {
  const KeyScope needed = req.method == "GET" || req.method == "HEAD" ? KeyScope::kRead : KeyScope::kWrite;
  const std::string header = req.get_header_value("Authorization");
  if (header.empty()) {
    if (needed == KeyScope::kRead && options.allow_anonymous_read) return true;
    reply_error(res, Error(ErrorCode::kUnauthenticated,
                           "this route needs an API key: send 'Authorization: Bearer <key>' (`crucible keys create`)"));
    return false;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() || header.compare(0, kBearer.size(), kBearer) != 0) {
    reply_error(res, Error(ErrorCode::kUnauthenticated, "the Authorization header must be 'Bearer <key>'"));
    return false;
  }
  auto key = keys.verify(std::string_view(header).substr(kBearer.size()));
  if (!key) {
    reply_error(res, key.error());
    return false;
  }
  if (static_cast<int>(key->scope) < static_cast<int>(needed)) {
    reply_error(res, Error(ErrorCode::kPermissionDenied,
                           "API key " + key->id + " has scope '" + std::string(key_scope_name(key->scope)) + "'; " +
                               req.method + " " + req.path + " needs '" + std::string(key_scope_name(needed)) + "'"));
    return false;
  }
  if (auto wait = limiter.take(key->id, deps.clock.monotonic()); wait.count() > 0) {
    reply_error(res, Error(ErrorCode::kResourceExhausted, "API key " + key->id + " is over its rate limit of " +
                                                              MetricsSink::fmt_number(options.rate_limit) +
                                                              " requests per second")
                         .with_retry_after(wait));
    return false;
  }
  return true;
}

void Server::Impl::install_routes() {
  httplib::Server& h = *http;
  h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const bool api = req.path.starts_with("/v1/") || req.path == "/v1" || req.path == "/metrics" ||
                     (req.method == "POST" && req.path.ends_with("/run"));
    if (!api) return httplib::Server::HandlerResponse::Unhandled;
    return authorize(req, res) ? httplib::Server::HandlerResponse::Unhandled
                               : httplib::Server::HandlerResponse::Handled;
  });
  h.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      reply_error(res, bad_field("body", "the request body is larger than the server accepts (--max-body)"));
      res.status = 413;
    } else if (res.status == 404) {
      reply_error(res, Error(ErrorCode::kNotFound, "no route " + req.method + " " + req.path));
    } else if (res.status == 400) {
      // httplib could not read a request: malformed, or too slow (the read timeout). The
      // connection is not worth keeping.
      reply_json(res, 400,
                 {{"code", "invalid_argument"},
                  {"message", "the request could not be read (malformed, or sent slower than the read timeout)"},
                  {"field", nullptr}});
      res.set_header("Connection", "close");
    } else {
      reply_json(
          res, res.status,
          {{"code", "http_" + std::to_string(res.status)}, {"message", "the request failed"}, {"field", nullptr}});
    }
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    reply_error(res, Error(ErrorCode::kInternal, "the server failed: " + what));
  });

  h.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    RunFilter probe;
    probe.limit = 1;
    if (auto r = deps.journal.list_runs(probe); !r) {
      reply_json(res, 503, {{"status", "unavailable"}, {"journal", r.error().to_string()}});
      return;
    }
    reply_json(res, 200, {{"status", "ok"}});
  });
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { handle_metrics(res); });
  h.Get("/v1/pipelines", [this](const httplib::Request&, httplib::Response& res) { handle_pipelines(res); });
  h.Post("/v1/runs", [this](const httplib::Request& req, httplib::Response& res) { handle_submit(req, res); });
  h.Get("/v1/runs", [this](const httplib::Request& req, httplib::Response& res) { handle_list(req, res); });
  h.Get(R"(/v1/runs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto id = run_id_param(req.matches[1]);
    if (!id) return reply_error(res, id.error());
    auto log = deps.journal.read_run(*id);
    if (!log) return reply_error(res, log.error());
    Json out = run_detail(*log);
    if (auto why = interrupted_because(deps.journal, log->summary, deps.clock.now_ms())) {
      out["interrupted"] = {{"reason", *why}, {"since_ms", log->summary.updated_ms}};
    }
    reply_json(res, 200, out);
  });
  h.Get(R"(/v1/runs/([^/]+)/experiments)", [this](const httplib::Request& req, httplib::Response& res) {
    auto id = run_id_param(req.matches[1]);
    if (!id) return reply_error(res, id.error());
    auto log = deps.journal.read_run(*id);
    if (!log) return reply_error(res, log.error());
    reply_json(res, 200, run_experiments(*log));
  });
  h.Get(R"(/v1/runs/([^/]+)/events)", [this](const httplib::Request& req, httplib::Response& res) {
    auto id = run_id_param(req.matches[1]);
    if (!id) return reply_error(res, id.error());
    handle_events(req, res, *id);
  });
  h.Post(R"(/v1/runs/([^/]+)/signals/([^/]+))",
         [this](const httplib::Request& req, httplib::Response& res) { handle_signal(req, res); });
  h.Post(R"(/v1/runs/([^/]+)/cancel)",
         [this](const httplib::Request& req, httplib::Response& res) { handle_cancel(req, res); });
  h.Post(R"(/v1/runs/([^/]+)/resume)",
         [this](const httplib::Request& req, httplib::Response& res) { handle_resume(req, res); });
  h.Post(R"(/v1/runs/([^/]+)/fork)",
         [this](const httplib::Request& req, httplib::Response& res) { handle_fork(req, res); });
  h.Post(R"(/([^/]+)/run)", [this](const httplib::Request& req, httplib::Response& res) { handle_ingress(req, res); });
  h.Get(R"(/v1/runs/([^/]+)/metrics-log)", [this](const httplib::Request& req, httplib::Response& res) {
    auto id = run_id_param(req.matches[1]);
    if (!id) return reply_error(res, id.error());
    handle_metrics_log(res, *id);
  });
  if (options.dashboard) {
    for (const Asset& asset : dashboard_assets()) {
      h.Get(std::string(asset.path), [asset](const httplib::Request&, httplib::Response& res) {
        res.set_content(asset.bytes.data(), asset.bytes.size(), std::string(asset.content_type).c_str());
        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("Content-Security-Policy",
                       "default-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'");
      });
    }
  }
}

Result<WorkflowSpec> Server::Impl::load_named(const std::string& name, fs::path* file) {
  CRUCIBLE_RETURN_IF_ERROR(check_pipeline_name(name));
  if (options.pipelines_dir.empty()) {
    return make_error(Error(ErrorCode::kNotFound,
                            "the server has no pipelines folder (--pipelines); send the "
                            "pipeline's YAML as 'yaml' instead")
                          .with_field("pipeline"));
  }
  std::error_code ec;
  fs::path path;
  for (const char* ext : {".yaml", ".yml"}) {
    fs::path p = fs::path(options.pipelines_dir) / (name + ext);
    if (fs::is_regular_file(p, ec)) {
      path = p;
      break;
    }
  }
  if (path.empty()) {
    return make_error(Error(ErrorCode::kNotFound, "no pipeline named '" + name + "' in " + options.pipelines_dir +
                                                      " (GET /v1/pipelines lists them)")
                          .with_field("pipeline"));
  }
  if (file != nullptr) *file = path;
  // Loading and validating a pipeline costs about a millisecond, as much as a short run: the
  // result is kept until the file changes (its modification time or size).
  const auto mtime = fs::last_write_time(path, ec);
  const auto size = fs::file_size(path, ec);
  {
    std::lock_guard lock(specs_mu);
    if (auto it = specs.find(path.string());
        it != specs.end() && it->second.mtime == mtime && it->second.size == size && !ec) {
      return it->second.spec;
    }
  }
  LoadResult loaded = load_pipeline_file(path.string(), deps.registry);
  if (!loaded.ok()) return make_error(bad_field("pipeline", loaded.report()));
  if (auto reason = unsupported_reason(*loaded.spec)) return make_error(bad_field("pipeline", *reason));
  if (!ec) {
    std::lock_guard lock(specs_mu);
    if (specs.size() >= 256) specs.clear();
    specs[path.string()] = LoadedSpec{mtime, size, *loaded.spec};
  }
  return std::move(*loaded.spec);
}

Result<WorkflowSpec> Server::Impl::load_request_spec(const Json& body) {
  const bool named = body.contains("pipeline");
  const bool text = body.contains("yaml");
  if (named == text) {
    return make_error(bad_field("pipeline",
                                "give either 'pipeline' (a name from GET /v1/pipelines) or 'yaml' (the "
                                "pipeline's text)"));
  }
  if (named) {
    if (!body["pipeline"].is_string()) return make_error(bad_field("pipeline", "'pipeline' must be a string"));
    return load_named(body["pipeline"].get<std::string>(), nullptr);
  }
  if (!body["yaml"].is_string()) return make_error(bad_field("yaml", "'yaml' must be a string"));
  LoadResult loaded = load_pipeline_text(body["yaml"].get<std::string>(), "request.yaml", deps.registry);
  if (!loaded.ok()) return make_error(bad_field("yaml", loaded.report()));
  if (auto reason = unsupported_reason(*loaded.spec)) return make_error(bad_field("yaml", *reason));
  return std::move(*loaded.spec);
}

Result<StartOptions> Server::Impl::start_options(const Json& body, const httplib::Request& req,
                                                 const WorkflowSpec& spec) {
  StartOptions o;
  if (body.contains("config")) {
    if (!body["config"].is_object()) return make_error(bad_field("config", "'config' must be an object"));
    Json config = spec.config.is_object() ? spec.config : Json::object();
    config.merge_patch(body["config"]);
    o.overrides = std::move(config);
  }
  if (body.contains("run_id")) {
    if (!body["run_id"].is_string()) return make_error(bad_field("run_id", "'run_id' must be a string"));
    CRUCIBLE_ASSIGN_OR_RETURN(o.run_id, run_id_param(body["run_id"].get<std::string>()));
  } else if (req.has_header("Idempotency-Key")) {
    const std::string key = req.get_header_value("Idempotency-Key");
    if (key.empty() || key.size() > 256) {
      return make_error(bad_field("Idempotency-Key", "the Idempotency-Key header must be 1 to 256 characters"));
    }
    o.run_id = *RunId::parse("idem-" + sha256_hex(key).substr(0, 32));
  }
  if (body.contains("timeout")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto t, duration_field(body["timeout"], "timeout"));
    if (t.count() == 0) return make_error(bad_field("timeout", "'timeout' must be above 0"));
    o.timeout = t;
  }
  return o;
}

Result<Placement> Server::Impl::placement(const Json& body) {
  Placement p;
  p.queue = options.queue;
  if (body.contains("queue")) {
    if (!body["queue"].is_string() || body["queue"].get<std::string>().empty()) {
      return make_error(bad_field("queue", "'queue' must be a queue name"));
    }
    p.queue = body["queue"].get<std::string>();
  }
  if (body.contains("priority")) {
    if (!body["priority"].is_number_integer())
      return make_error(bad_field("priority", "'priority' must be an integer"));
    p.priority = body["priority"].get<int>();
  }
  if (body.contains("partition")) {
    if (!body["partition"].is_string()) return make_error(bad_field("partition", "'partition' must be a string"));
    p.partition = body["partition"].get<std::string>();
  }
  return p;
}

void Server::Impl::handle_submit(const httplib::Request& req, httplib::Response& res) {
  auto body = body_object(req);
  if (!body) return reply_error(res, body.error());
  static const std::set<std::string> kFields = {"pipeline", "yaml",     "config",    "run_id",
                                                "queue",    "priority", "partition", "timeout"};
  for (const auto& [k, v] : body->items()) {
    if (!kFields.contains(k)) {
      return reply_error(res, bad_field(k, "unknown field '" + k +
                                               "'; expected pipeline, yaml, config, run_id, queue, priority, "
                                               "partition or timeout"));
    }
  }
  auto spec = load_request_spec(*body);
  if (!spec) return reply_error(res, spec.error());
  auto start = start_options(*body, req, *spec);
  if (!start) return reply_error(res, start.error());
  auto place = placement(*body);
  if (!place) return reply_error(res, place.error());
  auto submitted = deps.runner.submit(*spec, *start, *place);
  if (!submitted) return reply_error(res, submitted.error());
  wake_worker();
  const std::string id = submitted->run_id.str();
  res.set_header("Location", "/v1/runs/" + id);
  reply_json(res, submitted->existed ? 200 : 201,
             {{"run_id", id}, {"existed", submitted->existed}, {"queue", place->queue}, {"url", "/v1/runs/" + id}});
}

void Server::Impl::handle_list(const httplib::Request& req, httplib::Response& res) {
  RunFilter filter;
  size_t limit = 50;
  if (req.has_param("limit")) {
    const std::string v = req.get_param_value("limit");
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < 1 || n > 500) {
      return reply_error(res, bad_field("limit", "'limit' must be an integer from 1 to 500, got '" + v + "'"));
    }
    limit = static_cast<size_t>(n);
  }
  if (req.has_param("status")) {
    auto st = parse_run_status(req.get_param_value("status"));
    if (!st) {
      return reply_error(res, bad_field("status", "unknown status '" + req.get_param_value("status") +
                                                      "'; expected running, completed, failed, waiting, "
                                                      "needs_attention, queued, cancelled or deadline_exceeded"));
    }
    filter.status = *st;
  }
  if (req.has_param("pipeline")) filter.pipeline = req.get_param_value("pipeline");
  if (req.has_param("since")) {
    auto d = parse_duration(req.get_param_value("since"));
    if (!d) {
      return reply_error(res, bad_field("since", "'since' must be a duration such as 30m or 2h, got '" +
                                                     req.get_param_value("since") + "'"));
    }
    filter.created_after_ms = deps.clock.now_ms() - d->count();
  }
  // The cursor is the last run of the previous page, "<created_ms>.<run id>": runs come newest
  // first, ties by descending id, so the next page is what sorts after it.
  std::optional<std::pair<int64_t, std::string>> after;
  if (req.has_param("cursor")) {
    const std::string c = req.get_param_value("cursor");
    const size_t dot = c.find('.');
    const std::string millis = dot == std::string::npos ? std::string() : c.substr(0, dot);
    char* end = nullptr;
    const long long ms = millis.empty() ? -1 : std::strtoll(millis.c_str(), &end, 10);
    if (ms < 0 || *end != '\0' || dot + 1 >= c.size()) {
      return reply_error(res, bad_field("cursor", "'cursor' must be the next_cursor of a previous page"));
    }
    after = std::pair<int64_t, std::string>(ms, c.substr(dot + 1));
    filter.created_before_ms = ms + 1;
  }
  std::vector<RunSummary> page;
  bool more = false;
  for (size_t fetch = limit + 1;; fetch *= 4) {
    filter.limit = fetch;
    auto runs = deps.journal.list_runs(filter);
    if (!runs) return reply_error(res, runs.error());
    page.clear();
    for (const RunSummary& s : *runs) {
      if (after && s.created_ms == after->first && s.run_id.str() >= after->second) continue;
      page.push_back(s);
    }
    more = page.size() > limit;
    if (more || runs->size() < fetch) break;
  }
  if (page.size() > limit) page.resize(limit);
  Json items = Json::array();
  for (const RunSummary& s : page) items.push_back(s.to_json());
  Json out = {{"runs", std::move(items)}, {"next_cursor", nullptr}};
  if (more && !page.empty()) {
    out["next_cursor"] = std::to_string(page.back().created_ms) + "." + page.back().run_id.str();
  }
  reply_json(res, 200, out);
}

void Server::Impl::handle_events(const httplib::Request& req, httplib::Response& res, const RunId& run) {
  uint64_t last = 0;
  std::string from = req.get_header_value("Last-Event-ID");
  if (from.empty() && req.has_param("last_event_id")) from = req.get_param_value("last_event_id");
  if (!from.empty()) {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(from.c_str(), &end, 10);
    if (*end != '\0' || from[0] == '-') {
      return reply_error(res,
                         bad_field("Last-Event-ID", "Last-Event-ID must be the id of an event, got '" + from + "'"));
    }
    last = n;
  }
  auto first = deps.journal.read_run(run);
  if (!first) return reply_error(res, first.error());
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  struct Stream {
    uint64_t last;
    std::optional<RunLog> pending;
    MonoTime last_write;
  };
  auto st = std::make_shared<Stream>(Stream{last, std::move(*first), deps.clock.monotonic()});
  res.set_chunked_content_provider("text/event-stream", [this, run, st](size_t, httplib::DataSink& sink) {
    auto send = [&sink, &st, this](const std::string& text) {
      st->last_write = deps.clock.monotonic();
      return sink.write(text.data(), text.size());
    };
    if (stopping.load()) {
      sink.done();
      return true;
    }
    RunLog log;
    if (st->pending) {
      log = std::move(*st->pending);
      st->pending.reset();
      if (!send("retry: 1000\n\n")) return false;
    } else {
      auto fresh = deps.journal.read_run(run);
      if (!fresh) {
        Json e = {{"code", error_code_name(fresh.error().code())}, {"message", fresh.error().message()}};
        (void)send("event: error\ndata: " + json_dump(e) + "\n\n");
        sink.done();
        return true;
      }
      log = std::move(*fresh);
    }
    for (const Record& r : log.records) {
      if (r.seq <= st->last) continue;
      const Json e = record_event(r);
      if (!send("id: " + std::to_string(r.seq) + "\nevent: " + std::string(event_type_of(r.type)) +
                "\ndata: " + json_dump(e) + "\n\n")) {
        return false;
      }
      st->last = r.seq;
    }
    if (is_finished(log.summary.status)) {
      Json end = {{"run_id", run.str()}, {"status", run_status_name(log.summary.status)}};
      (void)send("event: end\ndata: " + json_dump(end) + "\n\n");
      sink.done();
      return true;
    }
    if (deps.clock.monotonic() - st->last_write > std::chrono::seconds(15)) {
      if (!send(": keep-alive\n\n")) return false;
    }
    std::unique_lock lock(wait_mu);
    wait_cv.wait_for(lock, options.event_poll, [this] { return stopping.load(); });
    return true;
  });
}

void Server::Impl::handle_signal(const httplib::Request& req, httplib::Response& res) {
  auto id = run_id_param(req.matches[1]);
  if (!id) return reply_error(res, id.error());
  const std::string name = req.matches[2];
  Json value;
  if (!req.body.empty()) {
    auto v = parse_json(req.body);
    if (!v) return reply_error(res, bad_field("body", "the signal's value must be JSON: " + v.error().message()));
    value = std::move(*v);
  }
  auto log = deps.journal.read_run(*id);
  if (!log) return reply_error(res, log.error());
  if (Status s = check_signal(*log, name); !s) return reply_error(res, s.error());
  auto resolved = deps.journal.resolve_promise(*id, name, value);
  if (!resolved) return reply_error(res, resolved.error());
  wake_worker();
  reply_json(res, 200, {{"run_id", id->str()}, {"promise", name}, {"resolved", *resolved}});
}

void Server::Impl::handle_cancel(const httplib::Request& req, httplib::Response& res) {
  auto id = run_id_param(req.matches[1]);
  if (!id) return reply_error(res, id.error());
  auto body = body_object(req);
  if (!body) return reply_error(res, body.error());
  const std::string reason = json_string(*body, "reason", "cancelled over the API");
  auto outcome = deps.journal.cancel_run(*id, reason, deps.clock.now_ms());
  if (!outcome) return reply_error(res, outcome.error());
  const char* what = *outcome == CancelOutcome::kCancelled   ? "cancelled"
                     : *outcome == CancelOutcome::kRequested ? "requested"
                                                             : "already_finished";
  reply_json(res, *outcome == CancelOutcome::kRequested ? 202 : 200, {{"run_id", id->str()}, {"outcome", what}});
}

void Server::Impl::handle_resume(const httplib::Request& req, httplib::Response& res) {
  auto id = run_id_param(req.matches[1]);
  if (!id) return reply_error(res, id.error());
  auto body = body_object(req);
  if (!body) return reply_error(res, body.error());
  ResumeOptions ro;
  for (const char* field : {"rerun_steps", "skip_steps"}) {
    if (!body->contains(field)) continue;
    const Json& list = (*body)[field];
    if (!list.is_array())
      return reply_error(res, bad_field(field, std::string("'") + field + "' must be a list of step keys"));
    for (const Json& k : list) {
      if (!k.is_string()) return reply_error(res, bad_field(field, std::string("'") + field + "' must hold strings"));
      (std::string(field) == "rerun_steps" ? ro.rerun_steps : ro.skip_steps).insert(k.get<std::string>());
    }
  }
  auto log = deps.journal.read_run(*id);
  if (!log) return reply_error(res, log.error());
  const RunSummary& s = log->summary;
  if (is_finished(s.status)) {
    return reply_error(res, Error(ErrorCode::kFailedPrecondition, "run '" + id->str() + "' has " +
                                                                      std::string(run_status_name(s.status)) +
                                                                      "; fork it from a step to run it again"));
  }
  if (s.status == RunStatus::kRunning && !interrupted_because(deps.journal, s, deps.clock.now_ms())) {
    return reply_error(res, Error(ErrorCode::kFailedPrecondition,
                                  "run '" + id->str() + "' is running" +
                                      (s.lease_owner.empty() ? std::string() : " on " + s.lease_owner)));
  }
  if (s.status == RunStatus::kQueued) {
    wake_worker();
    return reply_json(res, 202, {{"run_id", id->str()}, {"status", "queued"}});
  }
  auto spec_json = journaled_spec(*log);
  if (!spec_json) return reply_error(res, spec_json.error());
  auto spec = deps.load_spec(*spec_json);
  if (!spec) return reply_error(res, spec.error());
  in_background(
      [this, spec = std::move(*spec), run = *id, ro = std::move(ro)] { (void)deps.runner.resume(spec, run, ro); });
  reply_json(res, 202, {{"run_id", id->str()}, {"status", "resuming"}});
}

void Server::Impl::handle_fork(const httplib::Request& req, httplib::Response& res) {
  auto id = run_id_param(req.matches[1]);
  if (!id) return reply_error(res, id.error());
  auto body = body_object(req);
  if (!body) return reply_error(res, body.error());
  const std::string from = json_string(*body, "from");
  if (from.empty() || from[0] != '/') {
    return reply_error(res, bad_field("from", "'from' must be a step key such as /train[2]/eval (GET /v1/runs/" +
                                                  id->str() + " lists them)"));
  }
  std::optional<RunId> target;
  if (body->contains("run_id")) {
    if (!(*body)["run_id"].is_string()) return reply_error(res, bad_field("run_id", "'run_id' must be a string"));
    auto t = run_id_param((*body)["run_id"].get<std::string>());
    if (!t) return reply_error(res, t.error());
    target = *t;
  }
  auto log = deps.journal.read_run(*id);
  if (!log) return reply_error(res, log.error());
  auto spec_json = journaled_spec(*log);
  if (!spec_json) return reply_error(res, spec_json.error());
  auto spec = deps.load_spec(*spec_json);
  if (!spec) return reply_error(res, spec.error());
  auto forked = deps.runner.fork(*id, StepKey::from_string(from), target);
  if (!forked) {
    Error e = forked.error();
    if (e.code() == ErrorCode::kNotFound && !e.field()) e.with_field("from");
    return reply_error(res, e);
  }
  in_background([this, spec = std::move(*spec), run = *forked] { (void)deps.runner.resume(spec, run, {}); });
  res.set_header("Location", "/v1/runs/" + forked->str());
  reply_json(res, 201, {{"run_id", forked->str()}, {"forked_from", id->str()}, {"from", from}});
}

Result<RunLog> Server::Impl::wait_for_run(const RunId& run, std::chrono::milliseconds limit) {
  const MonoTime until = deps.clock.monotonic() + limit;
  // With an in-process worker its listener wakes us; runs that other processes execute are
  // seen by polling the journal.
  const auto poll = deps.worker != nullptr ? std::chrono::milliseconds(250) : std::chrono::milliseconds(50);
  while (true) {
    bool told = false;
    {
      std::unique_lock lock(wait_mu);
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - deps.clock.monotonic());
      wait_cv.wait_for(lock, std::clamp(left, std::chrono::milliseconds(0), poll),
                       [&] { return finished.contains(run.str()) || stopping.load(); });
      told = finished.contains(run.str());
    }
    auto log = deps.journal.read_run(run);
    if (!log) return log;
    const RunStatus st = log->summary.status;
    if (is_finished(st) || st == RunStatus::kWaiting || st == RunStatus::kNeedsAttention || told || stopping.load() ||
        deps.clock.monotonic() >= until) {
      return log;
    }
  }
}

void Server::Impl::handle_ingress(const httplib::Request& req, httplib::Response& res) {
  const std::string name = req.matches[1];
  auto spec = load_named(name, nullptr);
  if (!spec) return reply_error(res, spec.error());
  auto input = body_object(req);
  if (!input) return reply_error(res, input.error());
  Json body = {{"config", *input}};
  auto start = start_options(body, req, *spec);
  if (!start) return reply_error(res, start.error());
  std::chrono::milliseconds limit = options.ingress_wait;
  if (req.has_param("wait")) {
    auto w = parse_duration(req.get_param_value("wait"));
    if (!w) return reply_error(res, bad_field("wait", "'wait' must be a duration such as 10s"));
    limit = std::min(limit, *w);
  }
  Placement place;
  place.queue = options.queue;
  // Register before submitting, so a run that finishes at once is not missed.
  std::string key;
  auto submit = [&]() -> Result<Submitted> { return deps.runner.submit(*spec, *start, place); };
  Result<Submitted> submitted = make_error(ErrorCode::kInternal, "not submitted");
  if (start->run_id) {
    key = start->run_id->str();
    std::lock_guard lock(wait_mu);
    ++waiting[key];
  }
  submitted = submit();
  if (submitted && key.empty()) {
    key = submitted->run_id.str();
    std::lock_guard lock(wait_mu);
    ++waiting[key];
  }
  auto unregister = [&] {
    if (key.empty()) return;
    std::lock_guard lock(wait_mu);
    if (--waiting[key] == 0) {
      waiting.erase(key);
      finished.erase(key);
    }
  };
  if (!submitted) {
    unregister();
    return reply_error(res, submitted.error());
  }
  wake_worker();
  auto log = wait_for_run(submitted->run_id, limit);
  unregister();
  if (!log) return reply_error(res, log.error());
  const RunStatus st = log->summary.status;
  if (!is_finished(st) && st != RunStatus::kWaiting && st != RunStatus::kNeedsAttention) {
    res.set_header("Location", "/v1/runs/" + submitted->run_id.str());
    return reply_json(res, 202,
                      {{"run_id", submitted->run_id.str()},
                       {"status", run_status_name(st)},
                       {"url", "/v1/runs/" + submitted->run_id.str()}});
  }
  reply_json(res, 200, run_result(*log));
}

void Server::Impl::handle_pipelines(httplib::Response& res) {
  Json items = Json::array();
  if (!options.pipelines_dir.empty()) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(options.pipelines_dir, ec)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file(ec) && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
    }
    if (ec) {
      return reply_error(res, Error(ErrorCode::kUnavailable,
                                    "cannot read the pipelines folder " + options.pipelines_dir + ": " + ec.message()));
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      const std::string name = file.stem().string();
      if (!check_pipeline_name(name)) continue;
      LoadResult loaded = load_pipeline_file(file.string(), deps.registry);
      Json item = {{"name", name}, {"file", file.filename().string()}, {"valid", loaded.ok()}};
      if (loaded.ok()) {
        item["pipeline"] = loaded.spec->name;
        item["config"] = loaded.spec->config;
      } else {
        item["errors"] = loaded.report();
      }
      items.push_back(std::move(item));
    }
  }
  reply_json(res, 200, {{"pipelines", std::move(items)}});
}

void Server::Impl::handle_metrics_log(httplib::Response& res, const RunId& run) {
  auto log = deps.journal.read_run(run);
  if (!log) return reply_error(res, log.error());
  constexpr size_t kMaxPoints = 20'000;
  std::vector<Json> points;
  size_t skipped = 0;
  if (!options.runs_dir.empty() && run.str() != "." && run.str() != "..") {
    std::ifstream in(fs::path(options.runs_dir) / run.str() / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      Json j = parse_json_or_discarded(line);
      if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) {
        ++skipped;
        continue;
      }
      points.push_back(std::move(j));
    }
  }
  // Long runs are thinned to an even stride, keeping the last point.
  Json out = Json::array();
  const size_t stride = points.size() > kMaxPoints ? (points.size() + kMaxPoints - 1) / kMaxPoints : 1;
  for (size_t i = 0; i < points.size(); i += stride) out.push_back(std::move(points[i]));
  if (stride > 1 && (points.size() - 1) % stride != 0) out.push_back(std::move(points.back()));
  reply_json(res, 200, {{"run_id", run.str()}, {"points", std::move(out)}, {"stride", stride}, {"skipped", skipped}});
}

void Server::Impl::handle_metrics(httplib::Response& res) {
  RunFilter all;
  all.limit = 1'000'000;
  auto runs = deps.journal.list_runs(all);
  if (!runs) return reply_error(res, runs.error());
  std::map<std::string, uint64_t> by_status;
  std::map<std::string, uint64_t> queued;
  for (RunStatus st :
       {RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kFailed, RunStatus::kWaiting, RunStatus::kNeedsAttention,
        RunStatus::kQueued, RunStatus::kCancelled, RunStatus::kDeadlineExceeded}) {
    by_status[std::string(run_status_name(st))] = 0;
  }
  for (const RunSummary& s : *runs) {
    ++by_status[std::string(run_status_name(s.status))];
    if (s.status == RunStatus::kQueued) ++queued[s.queue];
  }
  if (!queued.contains(options.queue)) queued[options.queue] = 0;
  std::string out = "# HELP crucible_runs Runs in the journal, by status.\n# TYPE crucible_runs gauge\n";
  for (const auto& [status, n] : by_status)
    out += "crucible_runs{status=\"" + status + "\"} " + std::to_string(n) + "\n";
  out += "# HELP crucible_queue_depth Runs waiting for a worker, by queue.\n# TYPE crucible_queue_depth gauge\n";
  for (const auto& [queue, n] : queued)
    out += "crucible_queue_depth{queue=\"" + queue + "\"} " + std::to_string(n) + "\n";
  metrics->write(out);
  res.status = 200;
  res.set_content(out, "text/plain; version=0.0.4");
}

}  // namespace crucible::server
