#include "crucible/engine/run_report.h"

#include <algorithm>

namespace crucible {
namespace {

bool is_step_record(RecordType t) {
  return t == RecordType::kStepStarted || t == RecordType::kStepCompleted || t == RecordType::kStepFailed;
}

void add_step(const Record& r, std::vector<StepRow>& rows, std::map<std::string, size_t>& index) {
  auto [it, inserted] = index.emplace(r.key.str(), rows.size());
  if (inserted) rows.push_back(StepRow{r.key.str(), StepStatus::kInFlight, 0, 0, ""});
  StepRow& row = rows[it->second];
  if (r.type == RecordType::kStepStarted) {
    row.status = StepStatus::kInFlight;
    row.attempts = r.attempts;
    return;
  }
  row.attempts = std::max(row.attempts, r.attempts);
  row.duration_us = r.duration_us;
  if (r.type == RecordType::kStepCompleted) {
    bool skipped = r.payload.is_object() && r.payload.value("skipped", false);
    row.status = skipped ? StepStatus::kSkipped : StepStatus::kCompleted;
    row.error.clear();
    return;
  }
  bool optional = r.payload.is_object() && r.payload.value("optional", false);
  row.status = optional ? StepStatus::kOptionalFailed : StepStatus::kFailed;
  if (r.error) row.error = r.error->to_string();
}

// Each llm.* step records <stage>.llm_tokens_used, .input_tokens and .output_tokens.
void add_usage(const Record& r, LlmUsage& u) {
  for (const Mutation& m : r.delta) {
    if (m.kind != Mutation::Kind::kMetric || !m.value.is_number_integer() || m.key == "llm_tokens_used") continue;
    if (m.key.ends_with(".llm_tokens_used")) {
      ++u.calls;
      u.tokens_used += m.value.get<int64_t>();
    } else if (m.key.ends_with(".input_tokens")) {
      u.input_tokens += m.value.get<int64_t>();
    } else if (m.key.ends_with(".output_tokens")) {
      u.output_tokens += m.value.get<int64_t>();
    }
  }
}

void add_comparisons(const Record& r, std::vector<std::pair<std::string, Json>>& out) {
  for (const Mutation& m : r.delta) {
    if (m.kind == Mutation::Kind::kArtifact && m.value.is_object() && m.value.contains("tests") &&
        m.value.contains("verdict")) {
      out.emplace_back(r.key.str(), m.value);
    }
  }
}

}  // namespace

Json StepRow::to_json() const {
  return Json{{"key", key},
              {"status", step_status_name(status)},
              {"attempts", attempts},
              {"duration_ms", static_cast<double>(duration_us) / 1000.0},
              {"error", error}};
}

Json LlmUsage::to_json() const {
  return Json{
      {"calls", calls}, {"input_tokens", input_tokens}, {"output_tokens", output_tokens}, {"tokens_used", tokens_used}};
}

RunReport RunReport::from_log(const RunLog& log) {
  RunReport report;
  report.summary = log.summary;
  report.records = log.records.size();
  std::map<std::string, size_t> index;
  LlmUsage usage;
  for (const Record& r : log.records) {
    if (is_step_record(r.type)) add_step(r, report.steps, index);
    if (r.type == RecordType::kStepCompleted) {
      add_usage(r, usage);
      add_comparisons(r, report.comparisons);
    }
    if (r.type == RecordType::kDecision && r.payload.is_object() && r.payload.contains("config_id")) {
      if (auto branch = StepKey::parse_branch(r.key.str()); branch && branch->suffix == "#branch") {
        report.experiments[branch->experiment].push_back(r.payload);
      }
    }
    if (r.type == RecordType::kRunSuspended) report.suspended = r.payload;
    if (r.type == RecordType::kStepStarted || r.type == RecordType::kRunCompleted) report.suspended = Json();
  }
  if (usage.calls > 0) report.llm = usage;
  return report;
}

// A signal must reach something: a finished run waits for nothing, and a waiting run only for its
// promise. A running run may not have reached its wait yet, so any name is taken then.
Status check_signal(const RunLog& log, const std::string& name) {
  const RunSummary& s = log.summary;
  if (is_finished(s.status)) {
    return make_error(
        ErrorCode::kFailedPrecondition,
        "run '" + s.run_id.str() + "' has " + std::string(run_status_name(s.status)) + "; it waits for no signal");
  }
  if (s.status != RunStatus::kWaiting) return {};
  RunReport report = RunReport::from_log(log);
  const std::string on = json_string(report.suspended, "promise");
  if (on.empty() || on == name) return {};
  return make_error(ErrorCode::kInvalidArgument, "run '" + s.run_id.str() + "' is not waiting for '" + name +
                                                     "'; it waits for promise '" + on + "'");
}

}  // namespace crucible
