#include "run_views.h"

#include <map>

#include "crucible/core/context.h"
#include "crucible/engine/run_report.h"

namespace crucible::server {
namespace {

// The run's context: the final one a completed run journaled, else its steps' deltas replayed.
Json context_of(const RunLog& log) {
  for (auto it = log.records.rbegin(); it != log.records.rend(); ++it) {
    if (it->type == RecordType::kRunCompleted && it->payload.is_object() && it->payload.contains("context")) {
      return it->payload["context"];
    }
  }
  Context ctx;
  for (const Record& r : log.records) {
    if (r.type == RecordType::kStepCompleted) ctx.apply(r.delta);
  }
  return ctx.to_json();
}

Json member_or_empty(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key] : Json::object();
}

// The hedging metadata a hedged step's delta carries (metric "<stage>.hedging").
Json hedging_of(const Record& r) {
  for (const Mutation& m : r.delta) {
    if (m.kind == Mutation::Kind::kMetric && m.key.size() > 8 && m.key.ends_with(".hedging")) return m.value;
  }
  return Json();
}

}  // namespace

std::string_view event_type_of(RecordType type) {
  switch (type) {
    case RecordType::kRunStarted: return "run.started";
    case RecordType::kStepStarted: return "stage.started";
    case RecordType::kStepCompleted: return "stage.completed";
    case RecordType::kStepFailed: return "stage.failed";
    case RecordType::kDecision: return "decision";
    case RecordType::kPromiseResolved: return "promise.resolved";
    case RecordType::kRunCompleted: return "run.completed";
    case RecordType::kRunFailed: return "run.failed";
    case RecordType::kRunSuspended: return "run.suspended";
  }
  return "record";
}

Json record_event(const Record& r) {
  Json e = {{"seq", r.seq}, {"type", event_type_of(r.type)}, {"at_ms", r.at_ms}};
  if (!r.key.empty()) e["key"] = r.key.str();
  if (r.attempts != 0) e["attempts"] = r.attempts;
  if (r.duration_us != 0) e["duration_us"] = r.duration_us;
  if (r.error) e["error"] = r.error->to_string();
  switch (r.type) {
    case RecordType::kRunStarted:
      e["pipeline"] = json_string(r.payload, "pipeline");
      if (r.payload.is_object() && r.payload.contains("forked_from")) e["forked_from"] = r.payload["forked_from"];
      break;
    case RecordType::kStepCompleted: {
      e["status"] = r.payload.is_object() && r.payload.value("skipped", false) ? "skipped" : "completed";
      if (Json h = hedging_of(r); !h.is_null()) e["hedging"] = std::move(h);
      break;
    }
    case RecordType::kStepFailed: e["optional"] = r.payload.is_object() && r.payload.value("optional", false); break;
    case RecordType::kPromiseResolved:
      e["name"] = json_string(r.payload, "name");
      e["value"] = r.payload.is_object() && r.payload.contains("value") ? r.payload["value"] : Json();
      break;
    case RecordType::kRunSuspended:
    case RecordType::kRunFailed:
      if (r.payload.is_object()) {
        for (const auto& [k, v] : r.payload.items()) e[k] = v;
      }
      break;
    default: break;
  }
  return e;
}

Json run_detail(const RunLog& log) {
  RunReport report = RunReport::from_log(log);
  Json out = report.summary.to_json();
  out["records"] = report.records;
  // The id of the last event this view includes: an event stream opened with it as
  // Last-Event-ID sends only what happens after.
  out["last_seq"] = log.records.empty() ? 0 : log.records.back().seq;
  Json stages = Json::array();
  for (const StepRow& row : report.steps) stages.push_back(row.to_json());
  out["stages"] = std::move(stages);

  // Attempts on a timeline: an outcome record closes its attempt (it carries the duration); a
  // started record without an outcome is in flight.
  Json timeline = Json::array();
  std::map<std::string, Json> open;  // by "key#attempt"
  for (const Record& r : log.records) {
    const std::string id = r.key.str() + "#" + std::to_string(r.attempts);
    if (r.type == RecordType::kStepStarted) {
      open[id] = {{"key", r.key.str()},
                  {"attempt", r.attempts},
                  {"start_ms", r.at_ms},
                  {"end_ms", nullptr},
                  {"status", "running"}};
    } else if (r.type == RecordType::kStepCompleted || r.type == RecordType::kStepFailed) {
      open.erase(id);
      Json a = {{"key", r.key.str()},
                {"attempt", r.attempts},
                {"start_ms", r.at_ms - r.duration_us / 1000},
                {"end_ms", r.at_ms},
                {"status", r.type == RecordType::kStepFailed ? "failed" : "completed"}};
      if (r.type == RecordType::kStepCompleted && r.payload.is_object() && r.payload.value("skipped", false)) {
        a["status"] = "skipped";
      }
      if (r.error) a["error"] = r.error->to_string();
      if (Json h = hedging_of(r); !h.is_null()) a["hedging"] = std::move(h);
      timeline.push_back(std::move(a));
    }
  }
  for (auto& [id, a] : open) timeline.push_back(std::move(a));
  out["timeline"] = std::move(timeline);

  const Json context = context_of(log);
  out["metrics"] = member_or_empty(context, "metrics");
  out["artifacts"] = member_or_empty(context, "artifacts");
  out["state"] = member_or_empty(context, "state");

  Json resolved = Json::array();
  for (const Record& r : log.records) {
    if (r.type != RecordType::kPromiseResolved) continue;
    resolved.push_back({{"name", json_string(r.payload, "name")},
                        {"value", r.payload.is_object() && r.payload.contains("value") ? r.payload["value"] : Json()},
                        {"at_ms", r.at_ms}});
  }
  out["promises"] = {{"resolved", std::move(resolved)}};
  if (report.summary.status == RunStatus::kWaiting || report.summary.status == RunStatus::kNeedsAttention) {
    out["suspended"] = report.suspended;
    const std::string waiting_on = json_string(report.suspended, "promise");
    if (!waiting_on.empty()) out["promises"]["waiting"] = waiting_on;
  }
  if (report.llm) out["llm"] = report.llm->to_json();
  out["experiments"] = report.experiments.size();
  return out;
}

Json run_result(const RunLog& log) {
  const RunSummary& s = log.summary;
  Json out = {{"run_id", s.run_id.str()},
              {"pipeline", s.pipeline},
              {"status", run_status_name(s.status)},
              {"duration_ms", s.updated_ms - s.created_ms}};
  const Json context = context_of(log);
  out["metrics"] = member_or_empty(context, "metrics");
  out["artifacts"] = member_or_empty(context, "artifacts");
  out["state"] = member_or_empty(context, "state");
  if (!s.error.empty()) out["error"] = s.error;
  if (s.status == RunStatus::kWaiting) {
    RunReport report = RunReport::from_log(log);
    out["waiting_on"] = json_string(report.suspended, "promise");
  }
  return out;
}

Json run_experiments(const RunLog& log) {
  RunReport report = RunReport::from_log(log);
  Json experiments = Json::object();
  for (const auto& [key, branches] : report.experiments) experiments[key] = branches;
  Json comparisons = Json::array();
  for (const auto& [key, r] : report.comparisons) comparisons.push_back({{"key", key}, {"report", r}});
  return {{"run_id", log.summary.run_id.str()},
          {"experiments", std::move(experiments)},
          {"comparisons", std::move(comparisons)}};
}

}  // namespace crucible::server
