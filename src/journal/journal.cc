#include "crucible/journal/journal.h"

#include "crucible/core/enum_names.h"

namespace crucible {
namespace {

const EnumNames<RecordType> kRecordNames = {
    {RecordType::kRunStarted, "run_started"},
    {RecordType::kStepStarted, "step_started"},
    {RecordType::kStepCompleted, "step_completed"},
    {RecordType::kStepFailed, "step_failed"},
    {RecordType::kDecision, "decision"},
    {RecordType::kPromiseResolved, "promise_resolved"},
    {RecordType::kRunCompleted, "run_completed"},
    {RecordType::kRunFailed, "run_failed"},
    {RecordType::kRunSuspended, "run_suspended"},
};

const EnumNames<RunStatus> kStatusNames = {
    {RunStatus::kRunning, "running"},
    {RunStatus::kCompleted, "completed"},
    {RunStatus::kFailed, "failed"},
    {RunStatus::kWaiting, "waiting"},
    {RunStatus::kNeedsAttention, "needs_attention"},
    {RunStatus::kQueued, "queued"},
    {RunStatus::kCancelled, "cancelled"},
    {RunStatus::kDeadlineExceeded, "deadline_exceeded"},
};

}  // namespace

std::string_view record_type_name(RecordType type) {
  std::string_view name = kRecordNames.name(type);
  return name.empty() ? "unknown" : name;
}

std::optional<RecordType> parse_record_type(std::string_view name) { return kRecordNames.parse(name); }

std::string_view run_status_name(RunStatus status) {
  std::string_view name = kStatusNames.name(status);
  return name.empty() ? "unknown" : name;
}

std::optional<RunStatus> parse_run_status(std::string_view name) { return kStatusNames.parse(name); }

Json RunSummary::to_json() const {
  Json out = {{"run_id", run_id.str()},   {"pipeline", pipeline},
              {"spec_hash", spec_hash},   {"status", run_status_name(status)},
              {"created_ms", created_ms}, {"updated_ms", updated_ms}};
  if (!parent_run.empty()) out["parent_run"] = parent_run;
  if (!error.empty()) out["error"] = error;
  if (!queue.empty()) {
    out["queue"] = queue;
    out["priority"] = priority;
    out["claims"] = claims;
  }
  if (!lease_owner.empty()) out["lease"] = {{"owner", lease_owner}, {"expires_ms", lease_expires_ms}};
  return out;
}

Json Placement::to_json() const {
  Json out = {{"queue", queue}, {"priority", priority}};
  if (!partition.empty()) out["partition"] = partition;
  return out;
}

Result<Placement> Placement::from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "placement must be an object");
  Placement p;
  for (const auto& [k, v] : j.items()) {
    if (k == "queue" && v.is_string() && !v.get<std::string>().empty()) {
      p.queue = v.get<std::string>();
    } else if (k == "priority" && v.is_number_integer()) {
      p.priority = v.get<int>();
    } else if (k == "partition" && v.is_string()) {
      p.partition = v.get<std::string>();
    } else {
      return field_error("placement." + k, "placement." + k +
                                               ": expected queue (a non-empty string), priority (an integer) or "
                                               "partition (a string), got " +
                                               json_type_name(v));
    }
  }
  return p;
}

Json QueueLimits::to_json() const {
  Json out = Json::object();
  if (concurrency) out["concurrency"] = *concurrency;
  if (rate_limit) {
    out["rate_limit"] = *rate_limit;
    out["rate_period_ms"] = rate_period.count();
  }
  return out;
}

Result<QueueLimits> QueueLimits::from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "queue limits must be an object");
  QueueLimits q;
  auto positive = [&](const char* key) -> Result<std::optional<int64_t>> {
    const Json* v = json_member(j, key);
    if (v == nullptr) return std::optional<int64_t>();
    if (!v->is_number_integer() || v->get<int64_t>() <= 0) {
      return field_error(key,
                         std::string("queue limit ") + key + ": expected a positive integer, got " + json_dump(*v));
    }
    return std::optional<int64_t>(v->get<int64_t>());
  };
  CRUCIBLE_ASSIGN_OR_RETURN(auto concurrency, positive("concurrency"));
  CRUCIBLE_ASSIGN_OR_RETURN(auto rate, positive("rate_limit"));
  CRUCIBLE_ASSIGN_OR_RETURN(auto period, positive("rate_period_ms"));
  if (concurrency) q.concurrency = static_cast<int>(*concurrency);
  if (rate.has_value() != period.has_value()) {
    return field_error(rate ? "rate_period_ms" : "rate_limit",
                       "queue limits: rate_limit and rate_period_ms go together");
  }
  if (rate) {
    q.rate_limit = static_cast<int>(*rate);
    q.rate_period = std::chrono::milliseconds(*period);
  }
  return q;
}

std::string queue_limits_key(const std::string& queue) { return "queue/" + queue; }

std::vector<size_t> pick_claims(const std::vector<ClaimCandidate>& candidates,
                                const std::map<std::string, QueueLimits>& limits, std::map<std::string, QueueLoad> load,
                                size_t max_runs) {
  std::vector<size_t> picked;
  for (size_t i = 0; i < candidates.size() && picked.size() < max_runs; ++i) {
    const ClaimCandidate& c = candidates[i];
    QueueLoad& l = load[c.queue];
    if (auto it = limits.find(c.queue); it != limits.end()) {
      const QueueLimits& q = it->second;
      if (q.concurrency && l.running[c.partition] >= *q.concurrency) continue;
      if (q.rate_limit && c.first_start && l.recent_starts >= *q.rate_limit) continue;
    }
    ++l.running[c.partition];
    if (c.first_start) ++l.recent_starts;
    picked.push_back(i);
  }
  return picked;
}

Json record_body_to_json(const Record& r) {
  Json body = Json::object();
  if (r.attempts != 0) body["attempts"] = r.attempts;
  if (r.duration_us != 0) body["duration_us"] = r.duration_us;
  if (!r.delta.empty()) body["delta"] = delta_to_json(r.delta);
  if (r.error) {
    body["error"] = {{"code", error_code_name(r.error->code())}, {"message", r.error->message()}};
    if (r.error->field()) body["error"]["field"] = *r.error->field();
  }
  if (!r.payload.is_null()) body["payload"] = r.payload;
  return body;
}

namespace {

// kDataLoss naming the record and the field that does not decode.
Unexpected corrupt(const Record& r, const std::string& what) {
  return make_error(ErrorCode::kDataLoss, "run '" + r.run_id.str() + "' record " + std::to_string(r.seq) + ": " + what);
}

template <class T>
Status read_integer(const Json& body, const char* field, const Record& r, T& out) {
  auto it = body.find(field);
  if (it == body.end()) return {};
  if (!it->is_number_integer()) {
    return corrupt(r, std::string("field '") + field + "' must be an integer, found " + json_type_name(*it));
  }
  out = it->get<T>();
  return {};
}

Status read_error(const Json& e, const Record& r) {
  if (!e.is_object()) return corrupt(r, "field 'error' must be an object, found " + json_type_name(e));
  for (const char* key : {"code", "message", "field"}) {
    if (e.contains(key) && !e[key].is_string()) {
      return corrupt(r, std::string("field 'error.") + key + "' must be a string, found " + json_type_name(e[key]));
    }
  }
  return {};
}

}  // namespace

Status record_body_from_json(const Json& body, Record& r) {
  if (!body.is_object()) return corrupt(r, "the body is " + json_type_name(body) + ", not an object");
  CRUCIBLE_RETURN_IF_ERROR(read_integer(body, "attempts", r, r.attempts));
  CRUCIBLE_RETURN_IF_ERROR(read_integer(body, "duration_us", r, r.duration_us));
  if (auto it = body.find("delta"); it != body.end()) {
    auto delta = delta_from_json(*it);
    if (!delta) return corrupt(r, "field 'delta': " + delta.error().message());
    r.delta = std::move(*delta);
  }
  if (auto it = body.find("error"); it != body.end()) {
    CRUCIBLE_RETURN_IF_ERROR(read_error(*it, r));
    auto code = parse_error_code(it->value("code", std::string("unknown")));
    r.error = Error(code.value_or(ErrorCode::kUnknown), it->value("message", std::string()));
    if (auto f = it->find("field"); f != it->end()) r.error->with_field(f->get<std::string>());
  }
  if (auto it = body.find("payload"); it != body.end()) r.payload = *it;
  return {};
}

Error fenced_error(const RunId& run, uint64_t fence_epoch, uint64_t current_epoch) {
  return Error(ErrorCode::kAborted, "run '" + run.str() + "' was taken over: this writer's lease (epoch " +
                                        std::to_string(fence_epoch) + ") is stale, the run's is epoch " +
                                        std::to_string(current_epoch) + "; it writes nothing more");
}

Record ended_record(const RunId& run, RunStatus how, const std::string& reason, int64_t at_ms) {
  Record r;
  r.type = RecordType::kRunFailed;
  r.run_id = run;
  r.at_ms = at_ms;
  r.error = Error(how == RunStatus::kCancelled ? ErrorCode::kCancelled : ErrorCode::kDeadlineExceeded, reason);
  r.payload = {{"ended", run_status_name(how)}};
  return r;
}

std::optional<int64_t> wake_time(const Record& suspended) {
  std::optional<int64_t> wake;
  for (const char* key : {"deadline_ms", "run_deadline_ms"}) {
    const Json* at = json_member(suspended.payload, key);
    if (at == nullptr || !at->is_number_integer()) continue;
    if (!wake || at->get<int64_t>() < *wake) wake = at->get<int64_t>();
  }
  return wake;
}

Record promise_resolved_record(const RunId& run, const std::string& name, const Json& value, int64_t at_ms) {
  Record r;
  r.type = RecordType::kPromiseResolved;
  r.run_id = run;
  r.at_ms = at_ms;
  r.payload = {{"name", name}, {"value", value}};
  return r;
}

std::optional<RunStatus> status_after(const Record& record) {
  switch (record.type) {
    case RecordType::kRunStarted:
      return json_member(record.payload, "placement") != nullptr ? RunStatus::kQueued : RunStatus::kRunning;
    case RecordType::kRunCompleted: return RunStatus::kCompleted;
    case RecordType::kRunFailed: {
      const std::string ended = json_string(record.payload, "ended");
      if (ended == "cancelled") return RunStatus::kCancelled;
      if (ended == "deadline_exceeded") return RunStatus::kDeadlineExceeded;
      return RunStatus::kFailed;
    }
    case RecordType::kRunSuspended: {
      const Json& p = record.payload;
      bool named = p.is_object() && p.contains("status") && p["status"].is_string();
      return named ? parse_run_status(p["status"].get<std::string>()).value_or(RunStatus::kWaiting)
                   : RunStatus::kWaiting;
    }
    case RecordType::kStepStarted:
    case RecordType::kStepCompleted:
    case RecordType::kStepFailed:
    case RecordType::kDecision: return RunStatus::kRunning;
    case RecordType::kPromiseResolved: return std::nullopt;
  }
  return std::nullopt;
}

Result<Lease> Journal::start_run(Record run_started, const std::string& owner, std::chrono::milliseconds ttl) {
  RunId run = run_started.run_id;
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(run_started), Durability::kStrict));
  return acquire_lease(run, owner, ttl);
}

Status Journal::append(Record record, Durability durability) {
  std::vector<Record> records;
  records.push_back(std::move(record));
  return append(std::move(records), durability);
}

}  // namespace crucible
