// The fleet's commands: submit, worker, workers, cancel, queue limits and schedules.
#include <iostream>

#include "commands.h"
#include "crucible/core/duration.h"
#include "crucible/engine/schedule.h"
#include "crucible/engine/worker.h"
#include "crucible/workflow/config_override.h"
#include "crucible/workflow/loader.h"
#include "wiring.h"

namespace crucible::cli {
namespace {

// A duration flag, or a usage error naming it.
Result<std::chrono::milliseconds> duration_flag(const char* flag, const std::string& text, bool allow_zero = false) {
  auto d = parse_duration(text);
  if (!d || d->count() < 0 || (!allow_zero && d->count() == 0)) {
    return make_error(ErrorCode::kInvalidArgument, std::string(flag) + " expects a duration such as 30s or 5m" +
                                                       (allow_zero ? "" : " (above 0)") + ", got '" + text + "'");
  }
  return *d;
}

}  // namespace

int cmd_submit(const GlobalOptions& g, const SubmitArgs& a) {
  Engine e;
  auto spec = load_or_report(g, a.file, e.registry);
  if (!spec) return kUsage;
  if (auto reason = unsupported_reason(*spec)) return fail(kUsage, *reason);
  auto parsed = start_options(*spec, a.sets, a.run_id);
  if (!parsed) return fail(kUsage, parsed.error().message());
  StartOptions options = std::move(*parsed);
  if (!a.timeout.empty()) {
    auto t = duration_flag("--timeout", a.timeout);
    if (!t) return fail(kUsage, t.error().message());
    options.timeout = *t;
  }
  if (a.queue.empty()) return fail(kUsage, "--queue needs a name");
  if (auto opened = e.open(g, false); !opened) return fail(kRunFailed, opened.error().to_string());
  auto submitted = e.runner->submit(*spec, options, Placement{a.queue, a.priority, a.partition});
  if (!submitted) {
    return fail(submitted.error().code() == ErrorCode::kFailedPrecondition ? kUsage : kRunFailed,
                submitted.error().message());
  }
  if (g.json) {
    std::cout << json_dump(Json{{"run_id", submitted->run_id.str()},
                                {"queue", a.queue},
                                {"priority", a.priority},
                                {"existed", submitted->existed}},
                           2)
              << std::endl;
  } else {
    std::printf("%s\n", submitted->run_id.str().c_str());
    if (submitted->existed && !g.quiet) {
      std::fprintf(stderr, "crucible: run %s was already submitted; nothing new was queued\n",
                   submitted->run_id.str().c_str());
    }
  }
  return kOk;
}

int cmd_worker(const GlobalOptions& g, const WorkerArgs& a) {
  WorkerOptions options;
  if (!a.queues.empty()) options.queues = a.queues;
  for (const std::string& q : options.queues) {
    if (q.empty()) return fail(kUsage, "--queue needs a name");
  }
  if (a.concurrency == 0) return fail(kUsage, "--concurrency must be at least 1");
  options.concurrency = a.concurrency;
  options.id = a.id;
  auto lease = duration_flag("--lease", a.lease);
  auto poll = duration_flag("--poll", a.poll);
  auto grace = duration_flag("--grace", a.grace, true);
  for (const auto* d : {&lease, &poll, &grace}) {
    if (!*d) return fail(kUsage, d->error().message());
  }
  options.lease_ttl = *lease;
  options.poll = *poll;
  options.grace = *grace;
  Engine e;
  e.stop_message =
      "draining: no new runs; running ones finish within --grace, then go back to the queue (a second "
      "signal exits now)";
  if (auto opened = e.open(g, false); !opened) return fail(kRunFailed, opened.error().to_string());
  const bool print = !g.quiet;
  auto listener = [&g, print](const RunId& run, const Result<RunResult>& outcome) {
    if (run.str().empty()) {  // the journal refused a claim; the worker tries again
      std::fprintf(stderr, "crucible: %s\n", outcome.error().to_string().c_str());
      return;
    }
    if (g.json) {
      Json line = {{"run_id", run.str()}};
      if (outcome) {
        line["status"] = run_status_name(outcome->status);
        line["pipeline"] = outcome->pipeline;
        line["executed"] = outcome->executed;
        line["replayed"] = outcome->replayed;
        if (outcome->error) line["error"] = outcome->error->to_string();
      } else {
        line["status"] = "handed_back";
        line["error"] = outcome.error().to_string();
      }
      std::printf("%s\n", json_dump(line).c_str());
    } else if (print) {
      if (outcome) {
        std::printf("%s %s %s (%d executed, %d replayed)%s%s\n", run.str().c_str(), outcome->pipeline.c_str(),
                    std::string(run_status_name(outcome->status)).c_str(), outcome->executed, outcome->replayed,
                    outcome->error ? ": " : "", outcome->error ? outcome->error->to_string().c_str() : "");
      } else {
        std::printf("%s handed back: %s\n", run.str().c_str(), outcome.error().to_string().c_str());
      }
    }
    std::fflush(stdout);
  };
  SpecCache specs(e.registry);
  Worker worker(
      *e.journal, *e.runner, *e.executor, real_clock(),
      [&specs](const Json& spec) { return specs.load(spec, "the run"); }, options, listener);
  if (print) {
    std::string queues;
    for (const std::string& q : options.queues) queues += (queues.empty() ? "" : ", ") + q;
    std::fprintf(stderr, "crucible: worker %s serving %s with %zu slots, lease %s\n", worker.id().c_str(),
                 queues.c_str(), options.concurrency, format_duration(options.lease_ttl).c_str());
  }
  worker.run(e.signals->token());
  const WorkerStats s = worker.stats();
  if (print) {
    std::fprintf(stderr,
                 "crucible: worker %s stopped: %llu claimed, %llu completed, %llu failed, %llu parked, %llu handed "
                 "back\n",
                 worker.id().c_str(), static_cast<unsigned long long>(s.claimed),
                 static_cast<unsigned long long>(s.completed), static_cast<unsigned long long>(s.failed),
                 static_cast<unsigned long long>(s.parked), static_cast<unsigned long long>(s.handed_back));
  }
  return kOk;
}

int cmd_cancel(const GlobalOptions& g, const std::string& run_id, const std::string& reason) {
  auto id = RunId::parse(run_id);
  if (!id) return fail(kUsage, id.error().message());
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto outcome =
      (*journal)->cancel_run(*id, reason.empty() ? "cancelled by crucible cancel" : reason, real_clock().now_ms());
  if (!outcome)
    return fail(outcome.error().code() == ErrorCode::kNotFound ? kUsage : kRunFailed, outcome.error().message());
  const char* what = *outcome == CancelOutcome::kCancelled   ? "cancelled"
                     : *outcome == CancelOutcome::kRequested ? "cancel_requested"
                                                             : "already_finished";
  if (g.json) {
    std::cout << json_dump(Json{{"run_id", run_id}, {"outcome", what}}, 2) << std::endl;
  } else if (!g.quiet) {
    switch (*outcome) {
      case CancelOutcome::kCancelled: std::printf("run %s cancelled\n", run_id.c_str()); break;
      case CancelOutcome::kRequested:
        std::printf("run %s: cancellation requested; the worker holding it stops it at its next lease renewal\n",
                    run_id.c_str());
        break;
      case CancelOutcome::kAlreadyFinished: std::printf("run %s has already finished\n", run_id.c_str()); break;
    }
  }
  return kOk;
}

int cmd_workers(const GlobalOptions& g, const std::string& lost) {
  std::chrono::milliseconds lost_for{0};
  if (!lost.empty()) {
    auto d = duration_flag("--lost", lost);
    if (!d) return fail(kUsage, d.error().message());
    lost_for = *d;
  }
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  const int64_t now = real_clock().now_ms();
  auto workers = list_workers(**journal, now, lost_for);
  if (!workers) return fail(kRunFailed, workers.error().to_string());
  if (g.json) {
    Json out = Json::array();
    for (const WorkerInfo& w : *workers) {
      Json row = w.to_json();
      row["live"] = w.live(now);
      out.push_back(std::move(row));
    }
    std::cout << json_dump(out, 2) << std::endl;
    return kOk;
  }
  std::printf("%-28s %-9s %-16s %-7s %-10s %s\n", "WORKER", "STATE", "QUEUES", "SLOTS", "SEEN", "RUNS");
  for (const WorkerInfo& w : *workers) {
    std::string queues, runs;
    for (const std::string& q : w.queues) queues += (queues.empty() ? "" : ",") + q;
    for (const std::string& r : w.runs) runs += (runs.empty() ? "" : " ") + r;
    const std::string slots = std::to_string(w.runs.size()) + "/" + std::to_string(w.concurrency);
    const std::string seen = format_duration(std::chrono::milliseconds(std::max<int64_t>(0, now - w.heartbeat_ms)));
    std::printf("%-28s %-9s %-16s %-7s %-10s %s\n", w.id.c_str(), w.live(now) ? w.state.c_str() : "lost",
                queues.c_str(), slots.c_str(), (seen + " ago").c_str(), runs.empty() ? "-" : runs.c_str());
  }
  if (workers->empty() && !g.quiet) std::fprintf(stderr, "crucible: no live workers\n");
  return kOk;
}

int cmd_queue_set(const GlobalOptions& g, const QueueArgs& a) {
  if (a.name.empty()) return fail(kUsage, "the queue needs a name");
  QueueLimits limits;
  if (!a.clear) {
    if (a.concurrency) {
      if (*a.concurrency < 1) return fail(kUsage, "--concurrency must be at least 1");
      limits.concurrency = *a.concurrency;
    }
    if (!a.rate.empty()) {
      const size_t slash = a.rate.find('/');
      int n = 0;
      try {
        n = slash == std::string::npos ? 0 : std::stoi(a.rate.substr(0, slash));
      } catch (const std::exception&) {
        n = 0;
      }
      auto period = slash == std::string::npos ? std::nullopt : parse_duration(a.rate.substr(slash + 1));
      if (n < 1 || !period || period->count() <= 0) {
        return fail(kUsage, "--rate expects STARTS/PERIOD such as 10/1m, got '" + a.rate + "'");
      }
      limits.rate_limit = n;
      limits.rate_period = *period;
    }
  }
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  if (Status s = (*journal)->put_value("", queue_limits_key(a.name), limits.to_json()); !s) {
    return fail(kRunFailed, s.error().to_string());
  }
  if (!g.quiet) std::printf("queue %s: %s\n", a.name.c_str(), json_dump(limits.to_json()).c_str());
  return kOk;
}

int cmd_queue_show(const GlobalOptions& g, const std::string& name) {
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto value = (*journal)->get_value("", queue_limits_key(name));
  if (!value) return fail(kRunFailed, value.error().to_string());
  Json limits = value->value_or(Json::object());
  RunFilter filter;
  filter.limit = 100'000;
  Json counts = Json::object();
  for (RunStatus st : {RunStatus::kQueued, RunStatus::kRunning, RunStatus::kWaiting}) {
    filter.status = st;
    auto runs = (*journal)->list_runs(filter);
    if (!runs) return fail(kRunFailed, runs.error().to_string());
    counts[std::string(run_status_name(st))] =
        std::count_if(runs->begin(), runs->end(), [&](const RunSummary& s) { return s.queue == name; });
  }
  if (g.json) {
    std::cout << json_dump(Json{{"queue", name}, {"limits", limits}, {"runs", counts}}, 2) << std::endl;
  } else {
    std::printf("queue %s  limits %s  queued %d  running %d  waiting %d\n", name.c_str(), json_dump(limits).c_str(),
                counts["queued"].get<int>(), counts["running"].get<int>(), counts["waiting"].get<int>());
  }
  return kOk;
}

int cmd_schedule_add(const GlobalOptions& g, const ScheduleArgs& a) {
  if (Status s = check_schedule_name(a.name); !s) return fail(kUsage, s.error().message());
  auto cron = CronExpr::parse(a.cron);
  if (!cron) return fail(kUsage, "--cron: " + cron.error().message());
  if (a.queue.empty()) return fail(kUsage, "--queue needs a name");
  Engine e;
  auto spec = load_or_report(g, a.file, e.registry);
  if (!spec) return kUsage;
  if (auto reason = unsupported_reason(*spec)) return fail(kUsage, *reason);
  auto options = start_options(*spec, a.sets, std::nullopt);
  if (!options) return fail(kUsage, options.error().message());
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto existing = (*journal)->get_value("", schedule_key(a.name));
  if (!existing) return fail(kRunFailed, existing.error().to_string());
  if (existing->has_value() && !(*existing)->is_null()) {
    return fail(kUsage, "schedule '" + a.name + "' exists; `crucible schedule remove " + a.name + "` first");
  }
  Schedule s;
  s.name = a.name;
  s.cron = a.cron;
  s.spec = {{"format", "yaml"}, {"text", spec->source_text}, {"file", spec->file}, {"spec_hash", spec_hash(*spec)}};
  if (!options->overrides.empty()) s.overrides = options->overrides;
  s.placement = Placement{a.queue, a.priority, ""};
  s.backfill = a.backfill;
  s.created_ms = real_clock().now_ms();
  if (Status put = (*journal)->put_value("", schedule_key(a.name), s.to_json()); !put) {
    return fail(kRunFailed, put.error().to_string());
  }
  if (!g.quiet) {
    auto next = cron->next_after(s.created_ms);
    std::printf("schedule %s: %s, next run %s (started by any `crucible worker --queue %s`)\n", a.name.c_str(),
                a.cron.c_str(), next ? format_time(*next).c_str() : "never", a.queue.c_str());
  }
  return kOk;
}

int cmd_schedule_list(const GlobalOptions& g) {
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto stored = (*journal)->list_values("", kSchedulePrefix);
  if (!stored) return fail(kRunFailed, stored.error().to_string());
  const int64_t now = real_clock().now_ms();
  Json out = Json::array();
  if (!g.json) {
    std::printf("%-20s %-16s %-8s %-10s %-22s %-22s %s\n", "NAME", "CRON", "STATE", "QUEUE", "NEXT", "LAST", "MISSED");
  }
  for (const auto& [key, value] : *stored) {
    if (value.is_null()) continue;
    auto s = Schedule::from_json(value);
    if (!s) return fail(kRunFailed, key + ": " + s.error().message());
    auto cron = CronExpr::parse(s->cron);
    std::optional<int64_t> next = cron ? cron->next_after(std::max(now, s->last_tick_ms)) : std::nullopt;
    if (g.json) {
      Json row = s->to_json();
      row.erase("spec");
      if (next && !s->paused) row["next_ms"] = *next;
      out.push_back(row);
      continue;
    }
    std::printf("%-20s %-16s %-8s %-10s %-22s %-22s %zu\n", s->name.c_str(), s->cron.c_str(),
                s->paused ? "paused" : "active", s->placement.queue.c_str(),
                next && !s->paused ? format_time(*next).c_str() : "-",
                s->last_tick_ms > 0 ? format_time(s->last_tick_ms).c_str() : "-", s->missed.size());
    for (int64_t t : s->missed)
      std::printf("  missed %s (run id %s)\n", format_time(t).c_str(), schedule_run_id(s->name, t).str().c_str());
  }
  if (g.json) std::cout << json_dump(out, 2) << std::endl;
  return kOk;
}

int cmd_schedule_change(const GlobalOptions& g, const std::string& name, const std::string& action) {
  auto journal = open_journal(g);
  if (!journal) return fail(kRunFailed, journal.error().to_string());
  auto existing = (*journal)->get_value("", schedule_key(name));
  if (!existing) return fail(kRunFailed, existing.error().to_string());
  if (!existing->has_value() || (*existing)->is_null()) {
    return fail(kUsage, "no schedule '" + name + "' (`crucible schedule list` shows them)");
  }
  Json updated = **existing;
  if (action == "remove") {
    updated = Json();
  } else {
    updated["paused"] = action == "pause";
    // Resuming does not start the ticks the pause skipped.
    if (action == "resume")
      updated["last_tick_ms"] = std::max(updated.value("last_tick_ms", int64_t{0}), real_clock().now_ms());
  }
  if (Status s = (*journal)->put_value("", schedule_key(name), updated); !s)
    return fail(kRunFailed, s.error().to_string());
  if (!g.quiet)
    std::printf("schedule %s %s\n", name.c_str(),
                action == "remove"  ? "removed"
                : action == "pause" ? "paused"
                                    : "resumed");
  return kOk;
}

}  // namespace crucible::cli
