#include "commands.h"
#include "crucible/core/suggest.h"

#include "experiments_view.h"
#include "wiring.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <set>

#include "crucible/core/clock.h"
#include "crucible/core/random.h"
#include "crucible/engine/run_report.h"
#include "crucible/engine/runner.h"
#include "crucible/experiment/comparison.h"
#include "crucible/journal_postgres/postgres_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/builtin_stages.h"
#include "crucible/stages/command_stage.h"
#include "crucible/stages/compare_stage.h"
#include "crucible/stages/hedging_stage.h"
#include "crucible/stages/http_stage.h"
#include "crucible/stages/llm_stages.h"
#include "crucible/telemetry/events.h"
#include "crucible/workflow/config_override.h"
#include "crucible/workflow/loader.h"

namespace crucible::cli {
namespace {

// Numbers as a person reads them: 0.4, not 0.3999999999999999.
std::string readable(const Json& v) {
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.6g", v.get<double>());
    return buf;
  }
  return json_dump(v);
}

void print_summary(const RunResult& r) {
  std::printf("\n%s: run %s %s (%d executed, %d replayed, %.1f ms)\n", r.pipeline.c_str(), r.run_id.str().c_str(),
              std::string(run_status_name(r.status)).c_str(), r.executed, r.replayed,
              static_cast<double>(r.duration_us) / 1000.0);
  if (!r.context.metrics().empty()) {
    std::printf("metrics:\n");
    for (const auto& [k, v] : r.context.metrics()) std::printf("  %-32s %s\n", k.c_str(), readable(v).c_str());
  }
  if (!r.optional_failures.empty()) {
    std::printf("optional stages that failed:\n");
    for (const auto& k : r.optional_failures) std::printf("  %s\n", k.c_str());
  }
  if (r.error) std::printf("error: %s\n", r.error->to_string().c_str());
  if (!r.waiting_on.empty()) {
    std::printf("waiting for promise '%s': crucible signal %s %s --value '<json>'\n", r.waiting_on.c_str(),
                r.run_id.str().c_str(), r.waiting_on.c_str());
  }
  if (!r.attention_step.empty()) {
    std::printf(
        "needs attention: the outcome of %s is unknown (it is not idempotent).\n"
        "  crucible resume %s --rerun-step %s   to run it again\n"
        "  crucible resume %s --skip-step %s    to record it as done\n",
        r.attention_step.c_str(), r.run_id.str().c_str(), r.attention_step.c_str(), r.run_id.str().c_str(),
        r.attention_step.c_str());
  }
}

int finish(const GlobalOptions& g, const RunResult& r) {
  if (g.json) {
    std::cout << json_dump(r.to_json(), 2) << std::endl;
  } else if (!g.quiet) {
    print_summary(r);
  } else {
    // Quiet: the one line a script needs, and why a run failed.
    std::printf("%s\n", r.run_id.str().c_str());
    if (r.error) std::fprintf(stderr, "error: %s\n", r.error->to_string().c_str());
  }
  switch (r.status) {
    case RunStatus::kCompleted:
    case RunStatus::kWaiting: return kOk;
    default: return kRunFailed;
  }
}

int drive(const GlobalOptions& g, Engine& e, const WorkflowSpec& spec, Result<RunResult> result, bool no_wait) {
  if (!result && e.signals && e.signals->stopped()) return fail(kInterrupted, result.error().message());
  if (!result)
    return fail(result.error().code() == ErrorCode::kFailedPrecondition ? kUsage : kRunFailed,
                result.error().to_string());
  if (result->status == RunStatus::kWaiting && !no_wait) {
    if (!g.quiet) {
      std::fprintf(g.json ? stderr : stdout, "waiting for promise '%s' (crucible signal %s %s --value '<json>')\n",
                   result->waiting_on.c_str(), result->run_id.str().c_str(), result->waiting_on.c_str());
    }
    result = e.runner->wait_and_resume(spec, std::move(*result), e.signals->token());
    if (!result && e.signals->stopped()) return fail(kInterrupted, result.error().message());
    if (!result) return fail(kRunFailed, result.error().to_string());
  }
  return finish(g, *result);
}

}  // namespace

int cmd_run(const GlobalOptions& g, const RunArgs& a) {
  Engine e;
  auto spec = load_or_report(g, a.file, e.registry);
  if (!spec) return kUsage;
  if (auto reason = unsupported_reason(*spec)) return fail(kUsage, *reason);
  auto parsed = start_options(*spec, a.sets, a.run_id);
  if (!parsed) return fail(kUsage, parsed.error().message());
  StartOptions options = std::move(*parsed);
  if (!a.durability.empty()) {
    auto durability = kDurabilityNames.parse(a.durability);
    if (!durability || *durability == Durability::kDeferred) {
      return fail(kUsage, "--durability must be strict or batched, got '" + a.durability + "'");
    }
    options.durability = *durability;
  }
  options.new_version = a.new_version;
  if (auto opened = e.open(g, true); !opened) return fail(kRunFailed, opened.error().to_string());
  return drive(g, e, *spec, e.runner->start(*spec, options), a.no_wait);
}

int cmd_validate(const GlobalOptions& g, const std::string& file) {
  StageLibrary library;
  StageRegistry& registry = library.registry;
  LoadResult loaded = load_pipeline_file(file, registry);
  if (g.json) {
    Json diags = Json::array();
    for (const Diagnostic& d : loaded.diagnostics) {
      diags.push_back({{"severity", d.severity == Diagnostic::Severity::kError ? "error" : "warning"},
                       {"file", d.loc.file},
                       {"line", d.loc.line},
                       {"column", d.loc.column},
                       {"field", d.field},
                       {"message", d.message}});
    }
    std::cout << json_dump(Json{{"file", file}, {"valid", loaded.ok()}, {"diagnostics", diags}}, 2) << std::endl;
  } else {
    std::fprintf(stderr, "%s", loaded.report().c_str());
    if (loaded.ok()) {
      std::printf("%s: valid pipeline '%s' (%zu top-level stages)\n", file.c_str(), loaded.spec->name.c_str(),
                  loaded.spec->stages.size());
      if (auto reason = unsupported_reason(*loaded.spec)) std::printf("note: %s\n", reason->c_str());
    } else {
      std::fprintf(stderr, "crucible: %zu error(s) in %s\n", loaded.error_count(), file.c_str());
    }
  }
  return loaded.ok() ? kOk : kUsage;
}

int cmd_stages(const GlobalOptions& g) {
  StageLibrary library;
  StageRegistry& registry = library.registry;
  Json out = Json::array();
  for (const std::string& name : registry.names()) {
    auto d = registry.describe(name);
    if (!d) continue;
    if (g.json)
      out.push_back(d->to_json());
    else
      std::printf("  %-12s %s\n", name.c_str(), d->summary.c_str());
  }
  if (g.json) std::cout << json_dump(out, 2) << std::endl;
  return kOk;
}

int cmd_describe(const GlobalOptions& g, const std::string& stage) {
  StageLibrary library;
  StageRegistry& registry = library.registry;
  auto d = registry.describe(stage);
  if (!d) {
    std::string hint = closest_match(stage, registry.names());
    return fail(kUsage, "unknown stage type '" + stage + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
                            " (`crucible stages` lists them)");
  }
  if (g.json) {
    std::cout << json_dump(d->to_json(), 2) << std::endl;
    return kOk;
  }
  std::printf("%s: %s\n", d->name.c_str(), d->summary.c_str());
  std::printf("idempotent: %s\n", d->idempotent ? "yes" : "no");
  if (!d->options.empty()) std::printf("options:\n");
  for (const OptionSpec& o : d->options) {
    std::printf("  %-20s %-10s %s%s%s\n", o.name.c_str(), o.type.c_str(), o.required ? "(required) " : "",
                o.description.c_str(),
                o.default_value.is_null() ? "" : (" [default " + json_dump(o.default_value) + "]").c_str());
  }
  for (const std::string& i : d->inputs) std::printf("reads:  %s\n", i.c_str());
  for (const std::string& o : d->outputs) std::printf("writes: %s\n", o.c_str());
  return kOk;
}

namespace {

// The journal of one run for the commands that show it; on failure prints why and sets `code`
// (usage for a bad or unknown id, run failure for a broken journal).
std::optional<RunLog> read_run_log(const GlobalOptions& g, const std::string& run_id, int* code) {
  auto id = RunId::parse(run_id);
  if (!id) {
    *code = fail(kUsage, id.error().message());
    return std::nullopt;
  }
  auto journal = open_journal(g);
  if (!journal) {
    *code = fail(kRunFailed, journal.error().to_string());
    return std::nullopt;
  }
  auto log = (*journal)->read_run(*id);
  if (!log) {
    *code = fail(log.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, log.error().message());
    return std::nullopt;
  }
  return std::move(*log);
}

}  // namespace

int cmd_experiments_show(const GlobalOptions& g, const std::string& run_id) {
  int code = kOk;
  auto log = read_run_log(g, run_id, &code);
  if (!log) return code;
  RunReport report = RunReport::from_log(*log);
  const auto& branches = report.experiments;
  const auto& compared = report.comparisons;
  if (g.json) {
    Json out{{"run_id", log->summary.run_id.str()},
             {"pipeline", log->summary.pipeline},
             {"status", run_status_name(log->summary.status)},
             {"experiments", Json::object()},
             {"comparisons", Json::array()}};
    for (const auto& [prefix, list] : branches) out["experiments"][prefix] = list;
    for (const auto& [key, c] : compared) {
      Json entry = c;
      entry["step"] = key;
      out["comparisons"].push_back(std::move(entry));
    }
    std::cout << json_dump(out, 2) << std::endl;
    return kOk;
  }
  std::printf("run %s  pipeline %s  status %s\n", log->summary.run_id.str().c_str(), log->summary.pipeline.c_str(),
              std::string(run_status_name(log->summary.status)).c_str());
  if (branches.empty() && compared.empty()) {
    std::printf("this run has no experiment branches\n");
    return kOk;
  }
  print_experiments(report);
  return kOk;
}

int cmd_status(const GlobalOptions& g, const std::string& run_id) {
  int code = kOk;
  auto log = read_run_log(g, run_id, &code);
  if (!log) return code;
  RunReport report = RunReport::from_log(*log);
  const RunSummary& s = report.summary;
  std::optional<std::string> interrupted;
  if (auto journal = open_journal(g)) interrupted = interrupted_because(**journal, s, real_clock().now_ms());
  if (g.json) {
    Json out = s.to_json();
    if (interrupted) {
      out["status"] = "interrupted";
      out["interrupted"] = {{"reason", *interrupted}, {"since_ms", s.updated_ms}};
    }
    if (auto journal = open_journal(g)) {
      if (auto lease = (*journal)->current_lease(s.run_id); lease && *lease) {
        out["lease"] = {{"owner", (*lease)->owner}, {"epoch", (*lease)->epoch}, {"expires_ms", (*lease)->expires_ms}};
      }
    }
    Json stages = Json::array();
    for (const StepRow& r : report.steps) stages.push_back(r.to_json());
    out["stages"] = stages;
    out["records"] = report.records;
    if (!report.suspended.is_null()) out["suspended"] = report.suspended;
    if (report.llm) out["llm"] = report.llm->to_json();
    if (!report.experiments.empty()) {
      out["experiments"] = Json::object();
      for (const auto& [prefix, list] : report.experiments) out["experiments"][prefix] = list;
    }
    std::cout << json_dump(out, 2) << std::endl;
    return kOk;
  }
  std::printf("run %s  pipeline %s  status %s  records %zu\n", s.run_id.str().c_str(), s.pipeline.c_str(),
              interrupted ? "interrupted" : std::string(run_status_name(s.status)).c_str(), report.records);
  if (interrupted) {
    std::printf("interrupted: %s (last record %s); `crucible resume %s` continues it\n", interrupted->c_str(),
                format_time(s.updated_ms).c_str(), s.run_id.str().c_str());
  }
  if (!s.parent_run.empty()) std::printf("forked from %s\n", s.parent_run.c_str());
  if (!s.queue.empty()) {
    std::printf("queue %s  priority %d  claims %d", s.queue.c_str(), s.priority, s.claims);
    if (auto journal = open_journal(g)) {
      if (auto lease = (*journal)->current_lease(s.run_id); lease && *lease) {
        std::printf("  held by %s (lease epoch %llu, expires %s)", (*lease)->owner.c_str(),
                    static_cast<unsigned long long>((*lease)->epoch), format_time((*lease)->expires_ms).c_str());
      }
    }
    std::printf("\n");
  }
  std::printf("%-40s %-16s %8s %12s  %s\n", "STEP", "STATUS", "ATTEMPTS", "DURATION", "ERROR");
  for (const StepRow& r : report.steps) {
    std::printf("%-40s %-16s %8d %10.1fms  %s\n", r.key.c_str(), std::string(step_status_name(r.status)).c_str(),
                r.attempts, static_cast<double>(r.duration_us) / 1000.0, r.error.c_str());
  }
  if (!s.error.empty()) std::printf("error: %s\n", s.error.c_str());
  if (!report.suspended.is_null()) std::printf("suspended: %s\n", json_dump(report.suspended).c_str());
  if (const auto& u = report.llm) {
    std::printf("llm: %lld calls, %lld tokens (input %lld, output %lld)\n", static_cast<long long>(u->calls),
                static_cast<long long>(u->tokens_used), static_cast<long long>(u->input_tokens),
                static_cast<long long>(u->output_tokens));
  }
  print_experiments(report);
  return kOk;
}

int cmd_list(const GlobalOptions& g, const ListArgs& a) {
  RunFilter filter;
  filter.limit = a.limit;
  if (!a.status.empty()) {
    auto st = parse_run_status(a.status);
    if (!st) {
      return fail(kUsage,
                  "--status must be queued, running, waiting, needs_attention, completed, failed, cancelled or "
                  "deadline_exceeded, got '" +
                      a.status + "'");
    }
    filter.status = *st;
  }
  if (!a.pipeline.empty()) filter.pipeline = a.pipeline;
  if (!a.since.empty()) {
    auto d = parse_duration(a.since);
    if (!d) return fail(kUsage, "--since expects a duration such as 2h or 7d, got '" + a.since + "'");
    filter.created_after_ms = real_clock().now_ms() - d->count();
  }
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto runs = (*journal)->list_runs(filter);
  if (!runs) return fail(kRunFailed, runs.error().to_string());
  if (g.json) {
    Json out = Json::array();
    for (const RunSummary& s : *runs) out.push_back(s.to_json());
    std::cout << json_dump(out, 2) << std::endl;
    return kOk;
  }
  std::printf("%-28s %-20s %-18s %-12s %6s  %-20s %s\n", "RUN", "PIPELINE", "STATUS", "QUEUE", "CLAIMS", "WORKER",
              "ERROR");
  const int64_t now = real_clock().now_ms();
  for (const RunSummary& s : *runs) {
    // A lease past its expiry is held by nobody: its worker died.
    const bool held = !s.lease_owner.empty() && s.lease_expires_ms > now;
    std::printf("%-28s %-20s %-18s %-12s %6d  %-20s %s\n", s.run_id.str().c_str(), s.pipeline.c_str(),
                std::string(run_status_name(s.status)).c_str(), s.queue.empty() ? "-" : s.queue.c_str(), s.claims,
                held ? s.lease_owner.c_str() : "-", s.error.substr(0, 60).c_str());
  }
  return kOk;
}

int cmd_resume(const GlobalOptions& g, const ResumeArgs& a) {
  auto id = RunId::parse(a.run_id);
  if (!id) return fail(kUsage, id.error().message());
  Engine e;
  if (auto opened = e.open(g, true); !opened) return fail(kRunFailed, opened.error().to_string());
  auto spec = spec_of_run(e, *id);
  if (!spec) return fail(spec.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, spec.error().message());
  ResumeOptions options;
  options.rerun_steps.insert(a.rerun_steps.begin(), a.rerun_steps.end());
  options.skip_steps.insert(a.skip_steps.begin(), a.skip_steps.end());
  return drive(g, e, *spec, e.runner->resume(*spec, *id, options), a.no_wait);
}

int cmd_signal(const GlobalOptions& g, const std::string& run_id, const std::string& name, const std::string& value) {
  auto id = RunId::parse(run_id);
  if (!id) return fail(kUsage, id.error().message());
  auto v = parse_json(value);
  if (!v) return fail(kUsage, "--value must be JSON: " + v.error().message());
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto log = (*journal)->read_run(*id);
  if (!log) return fail(log.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, log.error().message());
  if (Status s = check_signal(*log, name); !s) return fail(kUsage, s.error().message());
  auto resolved = (*journal)->resolve_promise(*id, name, *v);
  if (!resolved)
    return fail(resolved.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, resolved.error().message());
  if (!g.quiet) {
    std::printf(*resolved ? "resolved promise '%s' of run %s\n"
                          : "promise '%s' of run %s was already resolved; the first value stands\n",
                name.c_str(), run_id.c_str());
  }
  return kOk;
}

int cmd_fork(const GlobalOptions& g, const std::string& run_id, const std::string& from,
             const std::optional<std::string>& new_id, bool no_wait) {
  auto id = RunId::parse(run_id);
  if (!id) return fail(kUsage, id.error().message());
  if (from.empty() || from[0] != '/') {
    return fail(kUsage, "--from must be a step key such as /train[2]/eval (`crucible status " + run_id +
                            "` lists them), got '" + from + "'");
  }
  std::optional<RunId> target;
  if (new_id) {
    auto t = RunId::parse(*new_id);
    if (!t) return fail(kUsage, "--run-id: " + t.error().message());
    target = *t;
  }
  Engine e;
  if (auto opened = e.open(g, true); !opened) return fail(kRunFailed, opened.error().to_string());
  auto spec = spec_of_run(e, *id);
  if (!spec) return fail(spec.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, spec.error().message());
  auto forked = e.runner->fork(*id, StepKey::from_string(from), target);
  if (!forked)
    return fail(forked.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, forked.error().message());
  if (!g.quiet && !g.json)
    std::printf("forked %s from %s at %s\n", forked->str().c_str(), run_id.c_str(), from.c_str());
  return drive(g, e, *spec, e.runner->resume(*spec, *forked, {}), no_wait);
}

namespace {

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (std::abs(v) >= 1000 && u + 1 < std::size(units)) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// Removes the pruned runs' report folders (<journal dir>/runs/<id>); returns how many and their
// bytes.
std::pair<size_t, int64_t> remove_report_folders(const GlobalOptions& g, const std::vector<RunId>& runs) {
  namespace fs = std::filesystem;
  fs::path root = local_dir(g) / "runs";
  size_t folders = 0;
  int64_t bytes = 0;
  for (const RunId& id : runs) {
    std::error_code ec;
    fs::path folder = root / id.str();
    if (!fs::is_directory(folder, ec)) continue;
    for (const auto& f : fs::recursive_directory_iterator(folder, ec)) {
      std::error_code fe;
      if (f.is_regular_file(fe)) bytes += static_cast<int64_t>(f.file_size(fe));
    }
    if (fs::remove_all(folder, ec) > 0 && !ec) ++folders;
  }
  return {folders, bytes};
}

}  // namespace

int cmd_prune(const GlobalOptions& g, const PruneArgs& a) {
  auto d = parse_duration(a.older_than);
  if (!d) return fail(kUsage, "--older-than expects a duration such as 30d or 12h, got '" + a.older_than + "'");
  auto grace = parse_duration(a.blob_grace);
  if (!grace) return fail(kUsage, "--blob-grace expects a duration such as 15m or 0s, got '" + a.blob_grace + "'");
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto pruned = (*journal)->prune(PruneOptions{real_clock().now_ms() - d->count(), *grace});
  if (!pruned) return fail(kRunFailed, pruned.error().to_string());
  auto [folders, folder_bytes] = remove_report_folders(g, pruned->runs);
  const int64_t journal_freed = std::max<int64_t>(0, pruned->journal_bytes_before - pruned->journal_bytes_after);
  const int64_t freed = journal_freed + pruned->blob_bytes_freed + folder_bytes;
  if (g.json) {
    Json runs = Json::array();
    for (const RunId& id : pruned->runs) runs.push_back(id.str());
    Json out = {{"runs", runs},
                {"journal_bytes_before", pruned->journal_bytes_before},
                {"journal_bytes_after", pruned->journal_bytes_after},
                {"blobs_removed", pruned->blobs_removed},
                {"blob_bytes_freed", pruned->blob_bytes_freed},
                {"report_folders_removed", folders},
                {"report_bytes_freed", folder_bytes},
                {"bytes_freed", freed}};
    std::printf("%s\n", json_dump(out, 2).c_str());
  } else if (!g.quiet) {
    std::printf(
        "pruned %zu finished run(s) older than %s: journal %s -> %s, %zu blob(s) %s, %zu report folder(s) "
        "%s; freed %s\n",
        pruned->runs.size(), a.older_than.c_str(), format_bytes(pruned->journal_bytes_before).c_str(),
        format_bytes(pruned->journal_bytes_after).c_str(), pruned->blobs_removed,
        format_bytes(pruned->blob_bytes_freed).c_str(), folders, format_bytes(folder_bytes).c_str(),
        format_bytes(freed).c_str());
  }
  return kOk;
}

// The process becomes crucible-bench (execv), so gcov never writes what ran here; the CLI tests
// run every benchmark through it.
// GCOVR_EXCL_START
int cmd_bench(const GlobalOptions& g, const std::string& which, bool quick, const std::string& scenarios,
              const RandomScenarios& random) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path bench = self.parent_path() / "crucible-bench";
  if (ec || !std::filesystem::exists(bench)) {
    return fail(kRunFailed, "the benchmarks live in crucible-bench, which is not installed next to " +
                                (ec ? std::string("crucible") : self.string()) + " (build it with `make`)");
  }
  std::vector<std::string> args = {bench.string(), which, "--json"};
  if (quick) args.push_back("--quick");
  if (!scenarios.empty()) args.insert(args.end(), {"--scenarios", scenarios});
  if (random.count > 0) {
    args.insert(args.end(), {"--random", std::to_string(random.count), "--seed", std::to_string(random.seed)});
  }
  // journal-postgres measures the server --journal names, if it names one.
  if ((which == "journal-postgres" || which == "fleet") && g.journal && is_postgres_url(*g.journal)) {
    args.insert(args.end(), {"--postgres", *g.journal});
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  execv(argv[0], argv.data());
  return fail(kRunFailed, "cannot run " + bench.string() + ": " + std::strerror(errno));
}
// GCOVR_EXCL_STOP

}  // namespace crucible::cli
