// `crucible serve` and `crucible keys`: the HTTP server and its API keys.
#include <unistd.h>

#include <iostream>

#include "commands.h"
#include "crucible/core/duration.h"
#include "crucible/engine/worker.h"
#include "crucible/server/server.h"
#include "wiring.h"

namespace crucible::cli {
namespace {

// "host:port" or ":port" or "port".
Result<std::pair<std::string, int>> parse_listen(const std::string& text) {
  std::string host = "127.0.0.1";
  std::string port = text;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    if (colon > 0) host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535 || host.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--listen expects HOST:PORT such as 127.0.0.1:8080, got '" + text + "'");
  }
  return std::pair<std::string, int>(host, static_cast<int>(p));
}

}  // namespace

int cmd_serve(const GlobalOptions& g, const ServeArgs& a) {
  server::ServerOptions options;
  auto listen = parse_listen(a.listen);
  if (!listen) return fail(kUsage, listen.error().message());
  options.host = listen->first;
  options.port = listen->second;
  options.pipelines_dir = a.pipelines;
  options.queue = a.queue;
  options.allow_anonymous_read = a.allow_anonymous_read;
  options.tls_cert = a.tls_cert;
  options.tls_key = a.tls_key;
  options.rate_limit = a.rate_limit;
  if (a.rate_limit < 0) return fail(kUsage, "--rate-limit must be 0 (none) or more requests per second");
  if (a.max_body == 0) return fail(kUsage, "--max-body must be at least 1 byte");
  options.max_body_bytes = a.max_body;
  auto wait = parse_duration(a.ingress_wait);
  if (!wait || wait->count() <= 0) {
    return fail(kUsage, "--ingress-wait expects a duration such as 30s, got '" + a.ingress_wait + "'");
  }
  options.ingress_wait = *wait;
  if (!a.pipelines.empty() && !std::filesystem::is_directory(a.pipelines)) {
    return fail(kUsage, "--pipelines: '" + a.pipelines + "' is not a folder");
  }

  options.runs_dir = (local_dir(g) / "runs").string();
  Engine e;
  e.stop_message = "stopping: no new requests; running stages finish within --grace (a second signal exits now)";
  if (auto opened = e.open(g, false); !opened) return fail(kRunFailed, opened.error().to_string());
  SpecCache specs(e.registry);
  SpecLoader load_spec = [&specs](const Json& spec) { return specs.load(spec, "the run"); };

  server::Server* served = nullptr;
  std::unique_ptr<Worker> worker;
  if (a.workers > 0) {
    WorkerOptions wo;
    wo.queues = {a.queue};
    wo.concurrency = a.workers;
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "localhost");
    wo.id = std::string("serve:") + host + ":" + std::to_string(getpid());
    worker = std::make_unique<Worker>(*e.journal, *e.runner, *e.executor, real_clock(), load_spec, wo,
                                      [&served, &g](const RunId& run, const Result<RunResult>& outcome) {
                                        if (run.str().empty()) {
                                          if (!g.quiet)
                                            std::fprintf(stderr, "crucible: %s\n", outcome.error().to_string().c_str());
                                          return;
                                        }
                                        if (served != nullptr) served->run_finished(run);
                                      });
  }
  server::Server srv(
      server::ServerDeps{*e.journal, *e.runner, *e.executor, real_clock(), e.registry, load_spec, worker.get()},
      options);
  served = &srv;
  e.events.add_sink(srv.metrics_sink());
  if (auto started = srv.start(); !started) return fail(kUsage, started.error().to_string());
  if (!g.quiet) {
    std::fprintf(stderr, "crucible: serving %s (API under /v1, dashboard at /)\n", srv.url("/").c_str());
    if (worker) {
      std::fprintf(stderr, "crucible: runs execute here (%zu at once, queue '%s')\n", a.workers, a.queue.c_str());
    } else {
      std::fprintf(stderr, "crucible: --workers 0: runs wait in queue '%s' for `crucible worker`s\n", a.queue.c_str());
    }
    if (options.allow_anonymous_read) {
      std::fprintf(stderr,
                   "crucible: WARNING: --allow-anonymous-read: anyone who reaches this address can read every run\n");
    }
    if (auto keys = srv.keys().list();
        keys && std::none_of(keys->begin(), keys->end(), [](const auto& k) { return !k.revoked(); })) {
      std::fprintf(stderr,
                   "crucible: no API key exists yet; create one with `crucible keys create --name NAME --scope "
                   "write`\n");
    }
  }
  if (worker) {
    worker->run(e.signals->token());
  } else {
    while (!e.signals->stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  srv.stop();
  return kOk;
}

int cmd_keys_create(const GlobalOptions& g, const std::string& name, const std::string& scope) {
  auto s = server::parse_key_scope(scope);
  if (!s) return fail(kUsage, "--scope must be read, write or admin, got '" + scope + "'");
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  server::ApiKeyStore store(**journal, real_clock());
  auto key = store.create(name, *s);
  if (!key) {
    return fail(key.error().code() == ErrorCode::kInvalidArgument || key.error().code() == ErrorCode::kAlreadyExists
                    ? kUsage
                    : kRunFailed,
                key.error().message());
  }
  if (g.json) {
    Json out = key->info.to_json();
    out["key"] = key->key;
    std::cout << json_dump(out, 2) << std::endl;
  } else {
    std::printf("%s\n", key->key.c_str());
    if (!g.quiet) {
      std::fprintf(stderr, "crucible: key %s ('%s', scope %s) created; it is shown only now: store it somewhere safe\n",
                   key->info.id.c_str(), name.c_str(), scope.c_str());
    }
  }
  return kOk;
}

int cmd_keys_list(const GlobalOptions& g) {
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  server::ApiKeyStore store(**journal, real_clock());
  auto keys = store.list();
  if (!keys) return fail(kRunFailed, keys.error().to_string());
  if (g.json) {
    Json out = Json::array();
    for (const auto& k : *keys) out.push_back(k.to_json());
    std::cout << json_dump(out, 2) << std::endl;
    return kOk;
  }
  std::printf("%-14s %-24s %-6s %-22s %s\n", "ID", "NAME", "SCOPE", "CREATED", "REVOKED");
  for (const auto& k : *keys) {
    std::printf("%-14s %-24s %-6s %-22s %s\n", k.id.c_str(), k.name.c_str(),
                std::string(server::key_scope_name(k.scope)).c_str(), format_time(k.created_ms).c_str(),
                k.revoked() ? format_time(k.revoked_ms).c_str() : "-");
  }
  return kOk;
}

int cmd_keys_revoke(const GlobalOptions& g, const std::string& id_or_name) {
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  server::ApiKeyStore store(**journal, real_clock());
  auto revoked = store.revoke(id_or_name);
  if (!revoked)
    return fail(revoked.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, revoked.error().message());
  if (!g.quiet) std::printf("revoked key %s ('%s')\n", revoked->id.c_str(), revoked->name.c_str());
  return kOk;
}

}  // namespace crucible::cli
