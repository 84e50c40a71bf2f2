#include "wiring.h"

#include <unistd.h>

#include <cctype>
#include <ctime>

#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/config_override.h"
#include "crucible/workflow/loader.h"

namespace crucible::cli {

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "crucible: %s\n", message.c_str());
  return code;
}

namespace {

// "scheme" when `where` starts with scheme://, else empty (a file path).
std::string url_scheme(const std::string& where) {
  const size_t end = where.find("://");
  if (end == std::string::npos || end == 0) return "";
  for (size_t i = 0; i < end; ++i) {
    const char c = where[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return "";
  }
  return where.substr(0, end);
}

}  // namespace

Result<std::unique_ptr<Journal>> open_journal(const GlobalOptions& g) {
  if (g.journal && g.journal->empty()) return make_error(ErrorCode::kInvalidArgument, "--journal needs a path");
  const std::string where = default_journal_path(g.journal.value_or(""));
  if (is_postgres_url(where)) return open_postgres_journal(PostgresJournalOptions{where});
  if (const std::string scheme = url_scheme(where); !scheme.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "journal '" + redact_url(where) + "': unknown scheme '" + scheme +
                          "://'; expected a file path (SQLite) or postgresql://user@host:port/database");
  }
  SqliteJournalOptions options;
  options.path = where;
  return open_sqlite_journal(options);
}

std::filesystem::path local_dir(const GlobalOptions& g) {
  const std::string where = default_journal_path(g.journal.value_or(""));
  if (is_postgres_url(where)) return ".crucible";
  std::filesystem::path dir = std::filesystem::path(where).parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

StageLibrary::StageLibrary() {
  Status s = register_stage_library(registry, models);
  CRUCIBLE_CHECK(s.has_value());
}

Status Engine::open(const GlobalOptions& g, bool progress) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto j, open_journal(g));
  journal = std::move(j);
  executor = std::make_unique<Executor>();
  if (progress && !g.quiet) events.add_sink(make_console_sink(g.json ? stderr : stdout, isatty(g.json ? 2 : 1) != 0));
  if (!g.events_file.empty()) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto sink, make_jsonl_sink(g.events_file));
    events.add_sink(sink);
  }
  runner = std::make_unique<Runner>(*journal, *executor, real_clock(), system_random(), registry, &events);
  signals = std::make_unique<SignalStop>(*executor, stop_message);
  runner->set_interrupt(signals->token());
  const std::filesystem::path dir = local_dir(g);
  runner->set_artifact_root((dir / "runs").string());
  runner->set_blob_dir((dir / "blobs").string());
  return {};
}

// A wall-clock time in ms as UTC, e.g. 2026-12-01 12:40:55Z.
std::string format_time(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

std::optional<WorkflowSpec> load_or_report(const GlobalOptions& g, const std::string& file,
                                           const StageRegistry& registry) {
  LoadResult loaded = load_pipeline_file(file, registry);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s", loaded.report().c_str());
    std::fprintf(stderr, "crucible: %zu error(s) in %s; nothing was run\n", loaded.error_count(), file.c_str());
    return std::nullopt;
  }
  if (!g.quiet) {
    for (const Diagnostic& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.to_string().c_str());
  }
  return std::move(loaded.spec);
}

Result<StartOptions> start_options(const WorkflowSpec& spec, const std::vector<std::string>& sets,
                                   const std::optional<std::string>& run_id) {
  StartOptions options;
  if (!sets.empty()) {
    Json config = spec.config.is_object() ? spec.config : Json::object();
    for (const std::string& s : sets) CRUCIBLE_RETURN_IF_ERROR(apply_config_override(config, s));
    options.overrides = std::move(config);
  }
  if (run_id) {
    auto id = RunId::parse(*run_id);
    if (!id) return make_error(ErrorCode::kInvalidArgument, "--run-id: " + id.error().message());
    options.run_id = *id;
  }
  return options;
}

Result<WorkflowSpec> spec_of_run(Engine& e, const RunId& id) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto log, e.journal->read_run(id));
  return spec_from_log(log, e.registry);
}

Result<WorkflowSpec> spec_from_log(const RunLog& log, const StageRegistry& registry) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto spec, journaled_spec(log));
  return spec_from_json(spec, "run '" + log.summary.run_id.str() + "'", registry);
}

Result<WorkflowSpec> spec_from_json(const Json& spec, const std::string& whose, const StageRegistry& registry) {
  if (json_string(spec, "format") != "yaml") {
    return make_error(ErrorCode::kFailedPrecondition,
                      whose + " was built with the C++ builder; resume it from the program that built it");
  }
  const std::string file = json_string(spec, "file", "<journal>");
  LoadResult loaded = load_pipeline_text(json_string(spec, "text"), file, registry);
  if (!loaded.ok()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "the journaled pipeline of " + whose + " no longer validates:\n" + loaded.report());
  }
  return std::move(*loaded.spec);
}

Result<WorkflowSpec> SpecCache::load(const Json& spec, const std::string& whose) {
  const std::string key = json_string(spec, "file") + '\n' + json_string(spec, "text");
  {
    std::lock_guard lock(mu_);
    if (auto it = specs_.find(key); it != specs_.end()) return it->second;
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto loaded, spec_from_json(spec, whose, registry_));
  std::lock_guard lock(mu_);
  if (specs_.size() >= 256) specs_.clear();
  specs_.emplace(key, loaded);
  return loaded;
}

}  // namespace crucible::cli
