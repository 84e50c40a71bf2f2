#include "crucible/engine/runner.h"

#include <signal.h>
#include <unistd.h>

#include <mutex>
#include <set>
#include <thread>

#include "crucible/core/duration.h"
#include "crucible/engine/replay.h"
#include "walk.h"

namespace crucible {
namespace {

using engine_internal::Execution;
using engine_internal::Flow;

std::string default_owner() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "localhost");
  return std::string(host) + ":" + std::to_string(getpid());
}

// Whether `owner` names a process on this host that no longer exists.
bool owner_is_dead_local_process(const std::string& owner) {
  auto colon = owner.rfind(':');
  if (colon == std::string::npos) return false;
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) return false;
  if (owner.substr(0, colon) != host) return false;
  try {
    pid_t pid = static_cast<pid_t>(std::stol(owner.substr(colon + 1)));
    if (pid == getpid()) return false;
    return kill(pid, 0) != 0 && errno == ESRCH;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::optional<std::string> interrupted_because(Journal& journal, const RunSummary& run, int64_t now_ms) {
  if (run.status != RunStatus::kRunning) return std::nullopt;
  auto lease = journal.current_lease(run.run_id);
  if (!lease) return std::nullopt;
  if (!*lease || (*lease)->owner.empty()) return "no process holds the run";
  if ((*lease)->expires_ms < now_ms) return "the lease of " + (*lease)->owner + " expired";
  if (owner_is_dead_local_process((*lease)->owner)) return "its process " + (*lease)->owner + " is gone";
  return std::nullopt;
}

namespace {

// Renews a run's lease from the executor's timer thread while the run executes. Losing the lease
// (another worker took the run over, epoch fenced) stops the run.
class LeaseKeeper : public std::enable_shared_from_this<LeaseKeeper> {
 public:
  LeaseKeeper(Journal& journal, Executor& executor, Lease lease, std::chrono::milliseconds ttl)
      : journal_(journal),
        executor_(executor),
        lease_(std::move(lease)),
        ttl_(ttl),
        period_(std::max(std::chrono::milliseconds(10), ttl / 3)) {}

  void arm() {
    std::lock_guard lock(mu_);
    schedule_locked();
  }
  std::stop_token stop_token() const { return stop_.get_token(); }
  // Stops the run without counting the lease as lost (the process is being interrupted).
  void interrupt() { stop_.request_stop(); }
  // Stops the run because it must end (its deadline passed): finish() returns `why`.
  void end(Error why) {
    std::lock_guard lock(mu_);
    if (done_) return;
    if (!lost_) lost_ = std::move(why);
    stop_.request_stop();
  }
  // Stops renewing; returns why the lease was lost, if it was.
  std::optional<Error> finish() {
    std::lock_guard lock(mu_);
    done_ = true;
    executor_.cancel(timer_);
    return lost_;
  }

 private:
  void schedule_locked() {
    if (!done_) timer_ = executor_.schedule_after(period_, [self = shared_from_this()] { self->beat(); });
  }
  void beat() {
    std::lock_guard lock(mu_);
    if (done_) return;
    Status s = journal_.renew_lease(lease_, ttl_);
    if (!s) {
      // kCancelled: `crucible cancel` asked this run to end.
      lost_ =
          s.error().code() == ErrorCode::kCancelled ? s.error() : s.error().with_context("the run's lease was lost");
      stop_.request_stop();
      return;
    }
    schedule_locked();
  }

  Journal& journal_;
  Executor& executor_;
  const Lease lease_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::milliseconds period_;
  std::mutex mu_;
  bool done_ = false;          // guarded by mu_
  uint64_t timer_ = 0;         // guarded by mu_
  std::optional<Error> lost_;  // guarded by mu_
  std::stop_source stop_;
};

const Record* find_run_started(const RunLog& log) {
  for (const Record& r : log.records) {
    if (r.type == RecordType::kRunStarted) return &r;
  }
  return nullptr;
}

std::optional<int64_t> started_timeout_ms(const RunLog& log) {
  const Record* started = find_run_started(log);
  const Json* t = started != nullptr ? json_member(started->payload, "timeout_ms") : nullptr;
  if (t == nullptr || !t->is_number_integer()) return std::nullopt;
  return t->get<int64_t>();
}

Json spec_payload(const WorkflowSpec& spec, const std::string& hash) {
  Json out = {{"spec_hash", hash}, {"file", spec.file}};
  if (!spec.source_text.empty()) {
    out["format"] = "yaml";
    out["text"] = spec.source_text;
  } else {
    // A spec built in C++ is rebuilt by the program that owns it; the hash identifies it.
    out["format"] = "builder";
  }
  return out;
}

Json merged_input(const Json& defaults, const Json& overrides) {
  Json input = defaults.is_object() ? defaults : Json::object();
  for (const auto& [k, v] : overrides.items()) input[k] = v;
  return input;
}

// Where `now` differs from `was`, as dotted paths with both values, at most `limit` of them.
void describe_differences(const Json& was, const Json& now, const std::string& path, std::vector<std::string>& out,
                          size_t limit) {
  if (out.size() >= limit || was == now) return;
  if (was.is_object() && now.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, _] : was.items()) keys.insert(k);
    for (const auto& [k, _] : now.items()) keys.insert(k);
    for (const std::string& k : keys) {
      const Json* a = json_member(was, k);
      const Json* b = json_member(now, k);
      describe_differences(a ? *a : Json(), b ? *b : Json(), path.empty() ? k : path + "." + k, out, limit);
    }
    return;
  }
  auto show = [](const Json& v) {
    std::string d = v.is_null() ? "absent" : json_dump(v);
    return d.size() > 40 ? d.substr(0, 37) + "..." : d;
  };
  out.push_back(path + " was " + show(was) + ", now " + show(now));
}

}  // namespace

Json StepReport::to_json() const {
  Json out = {{"key", key},
              {"name", name},
              {"status", step_status_name(status)},
              {"attempts", attempts},
              {"duration_ms", static_cast<double>(duration_us) / 1000.0}};
  if (error) out["error"] = {{"code", error_code_name(error->code())}, {"message", error->message()}};
  return out;
}

Json RunResult::to_json() const {
  Json stages = Json::array();
  for (const StepReport& s : steps) stages.push_back(s.to_json());
  Json metrics = Json::object();
  for (const auto& [k, v] : context.metrics()) metrics[k] = v;
  Json state = Json::object();
  for (const auto& [k, v] : context.state()) state[k] = v;
  Json artifacts = Json::object();
  for (const auto& [k, v] : context.artifacts()) artifacts[k] = v;
  Json out = {{"run_id", run_id.str()},
              {"pipeline", pipeline},
              {"status", run_status_name(status)},
              {"duration_ms", static_cast<double>(duration_us) / 1000.0},
              {"executed", executed},
              {"replayed", replayed},
              {"stages", stages},
              {"metrics", metrics},
              {"state", state},
              {"artifacts", artifacts},
              {"trace", context.trace()},
              {"optional_failures", optional_failures}};
  if (error) out["error"] = {{"code", error_code_name(error->code())}, {"message", error->message()}};
  if (!waiting_on.empty()) out["waiting_on"] = waiting_on;
  if (wake_at_ms) out["deadline_ms"] = *wake_at_ms;
  if (!attention_step.empty()) out["attention_step"] = attention_step;
  return out;
}

Result<Json> journaled_spec(const RunLog& log) {
  const Record* started = find_run_started(log);
  if (started == nullptr) {
    return make_error(ErrorCode::kDataLoss, "run '" + log.summary.run_id.str() + "' has no run_started record");
  }
  const Json* first = json_member(started->payload, "spec");
  Json spec = first != nullptr ? *first : Json();
  for (const Record& r : log.records) {
    if (r.type == RecordType::kDecision && r.key.str() == "#spec") spec = r.payload;
  }
  if (!spec.is_object()) return make_error(ErrorCode::kDataLoss, "run '" + log.summary.run_id.str() + "' has no spec");
  return spec;
}

Runner::Runner(Journal& journal, Executor& executor, Clock& clock, Random& random, const StageRegistry& registry,
               EventBus* events)
    : journal_(journal),
      executor_(executor),
      clock_(clock),
      random_(random),
      registry_(registry),
      events_(events),
      owner_(default_owner()) {}

Runner::~Runner() = default;

void Runner::set_owner(std::string owner) { owner_ = std::move(owner); }

// A run id that exists continues that run: with the same spec, or with this one when the caller
// asked for a new version (journaled as a `#spec` decision).
Status Runner::check_version(const WorkflowSpec& spec, const RunLog& existing, const std::string& hash,
                             bool new_version) {
  const RunId& run_id = existing.summary.run_id;
  if (existing.summary.spec_hash == hash) return {};
  if (!new_version) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "run '" + run_id.str() + "' was started from a different pipeline (spec " +
                          existing.summary.spec_hash.substr(0, 12) + ", this file " + hash.substr(0, 12) +
                          "); pass --new-version to continue it with this one, or use another --run-id");
  }
  Record version;
  version.type = RecordType::kDecision;
  version.run_id = run_id;
  version.key = StepKey::from_string("#spec");
  version.at_ms = clock_.now_ms();
  version.payload = spec_payload(spec, hash);
  return journal_.append(std::move(version), Durability::kStrict);
}

// Inputs are part of a run's identity: the same run id with other inputs is refused, naming what
// changed, instead of replaying the old result.
Status Runner::check_inputs(const RunLog& existing, const Json& input, bool only_given) {
  const Record* started = find_run_started(existing);
  const Json* journaled = started != nullptr ? json_member(started->payload, "input") : nullptr;
  if (journaled == nullptr) return {};
  Json was = *journaled;
  if (only_given) {  // compare the given keys only
    was = Json::object();
    for (const auto& [k, _] : input.items()) {
      if (const Json* v = json_member(*journaled, k)) was[k] = *v;
    }
  }
  if (was == input) return {};
  std::vector<std::string> changes;
  describe_differences(was, input, "config", changes, 5);
  std::string list;
  for (const std::string& c : changes) list += (list.empty() ? "" : "; ") + c;
  return make_error(ErrorCode::kFailedPrecondition,
                    "run '" + existing.summary.run_id.str() + "' was started with other inputs (" + list +
                        "); a run keeps the inputs it started with: use another --run-id to run these");
}

Result<RunResult> Runner::start(const WorkflowSpec& spec, const StartOptions& options) {
  RunId run_id = options.run_id ? *options.run_id : RunId::generate(clock_, random_);
  std::string hash = spec_hash(spec);
  auto existing = journal_.read_run(run_id);
  if (existing) {
    if (existing->summary.spec_hash == hash) {
      CRUCIBLE_RETURN_IF_ERROR(check_inputs(*existing, merged_input(spec.config, options.overrides)));
      return resume(spec, run_id, {});
    }
    if (!options.new_version) return make_error(check_version(spec, *existing, hash, false).error());
    // A new version keeps the run's inputs; values given on the command line must agree with them.
    CRUCIBLE_RETURN_IF_ERROR(check_inputs(*existing, options.overrides, true));
    // A new version is journaled only once this process holds the run: a refused command
    // writes nothing.
    CRUCIBLE_ASSIGN_OR_RETURN(auto lease, take_lease(run_id, std::nullopt));
    if (Status s = check_version(spec, *existing, hash, true); !s) {
      (void)journal_.release_lease(lease);
      return make_error(s.error());
    }
    return resume_locked(spec, run_id, {}, lease);
  }
  if (existing.error().code() != ErrorCode::kNotFound) return make_error(existing.error());

  Durability durability = options.durability.value_or(spec.durability);
  Record started = run_started_record(spec, run_id, hash, options, durability);
  CRUCIBLE_ASSIGN_OR_RETURN(auto lease, journal_.start_run(started, owner_, lease_ttl_));
  RunLog log;
  log.summary.run_id = run_id;
  log.summary.pipeline = spec.name;
  log.summary.spec_hash = hash;
  log.records.push_back(std::move(started));
  return execute(spec, log, durability, {}, lease);
}

Record Runner::run_started_record(const WorkflowSpec& spec, const RunId& run_id, const std::string& hash,
                                  const StartOptions& options, Durability durability) {
  Record started;
  started.type = RecordType::kRunStarted;
  started.run_id = run_id;
  started.at_ms = clock_.now_ms();
  started.payload = {{"pipeline", spec.name},
                     {"spec_hash", hash},
                     {"spec", spec_payload(spec, hash)},
                     {"input", merged_input(spec.config, options.overrides)},
                     {"durability", durability_name(durability)}};
  if (auto timeout = options.timeout ? options.timeout : spec.timeout) started.payload["timeout_ms"] = timeout->count();
  return started;
}

Result<Submitted> Runner::submit(const WorkflowSpec& spec, const StartOptions& options, const Placement& placement) {
  if (placement.queue.empty()) return field_error("queue", "the queue name is empty");
  RunId run_id = options.run_id ? *options.run_id : RunId::generate(clock_, random_);
  const std::string hash = spec_hash(spec);
  Record started = run_started_record(spec, run_id, hash, options, options.durability.value_or(spec.durability));
  started.payload["placement"] = placement.to_json();
  Status appended = journal_.append(started, Durability::kStrict);
  if (appended) return Submitted{run_id, false};
  if (appended.error().code() != ErrorCode::kAlreadyExists) return make_error(appended.error());
  // The id exists: the same submission again is the same run.
  CRUCIBLE_ASSIGN_OR_RETURN(auto existing, journal_.read_run(run_id));
  CRUCIBLE_RETURN_IF_ERROR(check_version(spec, existing, hash, false));
  CRUCIBLE_RETURN_IF_ERROR(check_inputs(existing, merged_input(spec.config, options.overrides)));
  return Submitted{run_id, true};
}

Result<std::optional<int64_t>> Runner::run_deadline(const RunLog& log, const Lease& lease) {
  const std::optional<int64_t> timeout = started_timeout_ms(log);
  if (!timeout) return std::optional<int64_t>();
  for (const Record& r : log.records) {
    if (r.type != RecordType::kDecision || r.key.str() != "#deadline") continue;
    if (const Json* at = json_member(r.payload, "deadline_ms"); at != nullptr && at->is_number_integer()) {
      return std::optional<int64_t>(at->get<int64_t>());
    }
  }
  Record decided;
  decided.type = RecordType::kDecision;
  decided.run_id = log.summary.run_id;
  decided.key = StepKey::from_string("#deadline");
  decided.at_ms = clock_.now_ms();
  decided.fence_epoch = lease.epoch;
  const int64_t deadline = decided.at_ms + *timeout;
  decided.payload = {{"deadline_ms", deadline}};
  CRUCIBLE_RETURN_IF_ERROR(journal_.append(std::move(decided), Durability::kBatched));
  return std::optional<int64_t>(deadline);
}

Result<RunResult> Runner::end_run(const RunId& run_id, const std::string& pipeline, const Lease& lease,
                                  const Error& why) {
  const RunStatus how = why.code() == ErrorCode::kCancelled ? RunStatus::kCancelled : RunStatus::kDeadlineExceeded;
  Record end = ended_record(run_id, how, why.message(), clock_.now_ms());
  end.fence_epoch = lease.epoch;
  if (Status s = journal_.append(std::move(end), Durability::kStrict); !s) {
    (void)journal_.release_lease(lease);
    return make_error(s.error());
  }
  RunResult result;
  result.run_id = run_id;
  result.pipeline = pipeline;
  result.status = how;
  result.error = why;
  emit_run_end(EventType::kRunFailed, result);
  return result;
}

namespace {

// An operator's --rerun-step and --skip-step must each name a step the run left unfinished.
Status check_operator_steps(const RunLog& log, const ResumeOptions& options) {
  if (options.rerun_steps.empty() && options.skip_steps.empty()) return {};
  const ReplayIndex index = build_replay_index(log);
  for (const auto* steps : {&options.rerun_steps, &options.skip_steps}) {
    for (const std::string& step : *steps) {
      if (index.in_flight.contains(step)) continue;
      const char* state = index.completed.contains(step) ? "has completed"
                          : index.failed.contains(step)  ? "has failed"
                                                         : "was never started";
      return make_error(ErrorCode::kInvalidArgument,
                        "step '" + step + "' of run '" + log.summary.run_id.str() + "' " + state +
                            "; only a step left in flight (needs_attention) can be run again or skipped");
    }
  }
  return {};
}

}  // namespace

Result<RunResult> Runner::resume(const WorkflowSpec& spec, const RunId& run_id, const ResumeOptions& options) {
  return resume_locked(spec, run_id, options, options.lease);
}

Result<RunResult> Runner::resume(const WorkflowSpec& spec, const RunLog& log, const ResumeOptions& options) {
  return resume_log(spec, log, options, options.lease);
}

Result<RunResult> Runner::resume_locked(const WorkflowSpec& spec, const RunId& run_id, const ResumeOptions& options,
                                        std::optional<Lease> lease) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto log, journal_.read_run(run_id));
  return resume_log(spec, log, options, std::move(lease));
}

Result<RunResult> Runner::resume_log(const WorkflowSpec& spec, const RunLog& log, const ResumeOptions& options,
                                     std::optional<Lease> lease) {
  const RunId& run_id = log.summary.run_id;
  std::string hash = spec_hash(spec);
  if (log.summary.spec_hash != hash) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "run '" + run_id.str() + "' was started from another version of the pipeline (spec " +
                          log.summary.spec_hash.substr(0, 12) + ", given " + hash.substr(0, 12) + ")");
  }
  const Record* started = find_run_started(log);
  if (started == nullptr)
    return make_error(ErrorCode::kDataLoss, "run '" + run_id.str() + "' has no run_started record");
  CRUCIBLE_RETURN_IF_ERROR(check_operator_steps(log, options));
  auto durability =
      json_string(started->payload, "durability", "strict") == "batched" ? Durability::kBatched : Durability::kStrict;
  return execute(spec, log, durability, options, std::move(lease));
}

Result<Lease> Runner::take_lease(const RunId& run_id, std::optional<Lease> taken) {
  if (taken) return *taken;
  Result<Lease> lease = journal_.acquire_lease(run_id, owner_, lease_ttl_);
  if (lease) return lease;
  // A lease held by a process of this host that has died is taken over at once.
  auto current = journal_.current_lease(run_id);
  if (!current || !*current || !owner_is_dead_local_process((*current)->owner)) return make_error(lease.error());
  return journal_.acquire_lease(run_id, owner_, lease_ttl_, (*current)->epoch);
}

Result<RunResult> Runner::execute(const WorkflowSpec& spec, const RunLog& log, Durability durability,
                                  const ResumeOptions& options, std::optional<Lease> taken) {
  const RunId& run_id = log.summary.run_id;
  CRUCIBLE_ASSIGN_OR_RETURN(const Plan plan, bind_plan(spec, registry_));
  CRUCIBLE_ASSIGN_OR_RETURN(auto lease, take_lease(run_id, std::move(taken)));
  if (lease.cancel_requested) {
    return end_run(run_id, spec.name, lease, Error(ErrorCode::kCancelled, "the run was cancelled"));
  }
  auto deadline = run_deadline(log, lease);
  if (!deadline) {
    (void)journal_.release_lease(lease);
    return make_error(deadline.error());
  }
  auto past_deadline = [&] {
    return Error(ErrorCode::kDeadlineExceeded,
                 "the run passed its deadline (timeout " +
                     format_duration(std::chrono::milliseconds(started_timeout_ms(log).value_or(0))) + ")");
  };
  if (*deadline && clock_.now_ms() >= **deadline) return end_run(run_id, spec.name, lease, past_deadline());
  const Record* started = find_run_started(log);
  const Json* journaled_input = started != nullptr ? json_member(started->payload, "input") : nullptr;
  if (journaled_input != nullptr && !journaled_input->is_object()) {
    return make_error(ErrorCode::kDataLoss, "run '" + run_id.str() + "': its journaled input is " +
                                                json_type_name(*journaled_input) + ", not an object");
  }
  Json input = journaled_input != nullptr ? *journaled_input : Json::object();
  RunResult result;
  result.run_id = run_id;
  result.pipeline = spec.name;
  result.context = Context(spec.name, run_id, input);
  result.context.set_experiment(std::make_shared<const Json>(Json{{"name", spec.name}}));
  MonoTime t0 = clock_.monotonic();
  if (events_ != nullptr && events_->active()) {
    // A fresh run's log holds only its run_started record; anything more is a resume.
    const bool resumed = log.records.size() > 1;
    events_->emit(Event{EventType::kRunStarted, run_id.str(), "", "", clock_.now_ms(), 0, 0, "", "",
                        Json{{"pipeline", spec.name}, {"resumed", resumed}}});
  }

  auto keeper = std::make_shared<LeaseKeeper>(journal_, executor_, lease, lease_ttl_);
  keeper->arm();
  uint64_t deadline_timer = 0;
  if (*deadline) {
    deadline_timer = executor_.schedule_after(std::chrono::milliseconds(**deadline - clock_.now_ms()),
                                              [keeper, why = past_deadline()] { keeper->end(why); });
  }
  std::stop_callback on_interrupt(interrupt_, [&keeper] { keeper->interrupt(); });
  Execution exec({journal_, executor_, clock_, random_, events_, interrupt_, lease.epoch, *deadline}, spec, plan,
                 run_id, durability, log, options, {artifact_root_ + "/" + run_id.str(), blob_dir_});
  auto flow = exec.run(result.context, keeper->stop_token());
  if (deadline_timer != 0) executor_.cancel(deadline_timer);
  if (auto lost = keeper->finish()) {
    // Cancelled or past its deadline: the run ends so, fenced by the lease it still holds.
    if (lost->code() == ErrorCode::kCancelled || lost->code() == ErrorCode::kDeadlineExceeded) {
      return end_run(run_id, spec.name, lease, *lost);
    }
    (void)journal_.release_lease(lease);
    return make_error(*lost);
  }
  if (interrupt_.stop_requested() && !flow && !exec.journal_error()) {
    (void)journal_.flush();
    (void)journal_.release_lease(lease);
    return make_error(ErrorCode::kCancelled, "run '" + run_id.str() + "' was interrupted; `crucible resume " +
                                                 run_id.str() + "` continues it");
  }
  result.steps = exec.take_reports();
  result.optional_failures = exec.optional_failures();
  result.executed = exec.executed();
  result.replayed = exec.replayed();
  result.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(clock_.monotonic() - t0).count();
  if (exec.journal_error()) {
    (void)journal_.release_lease(lease);
    return make_error(*exec.journal_error());
  }
  const bool was_completed = log.summary.status == RunStatus::kCompleted;
  CRUCIBLE_RETURN_IF_ERROR(finish_run(exec, flow, result, lease, was_completed));
  return result;
}

Status Runner::finish_run(Execution& exec, const Result<Flow>& flow, RunResult& result, const Lease& lease,
                          bool was_completed) {
  Record end;
  end.run_id = result.run_id;
  end.at_ms = clock_.now_ms();
  end.fence_epoch = lease.epoch;
  EventType event = EventType::kRunCompleted;
  if (!flow) {
    result.status = RunStatus::kFailed;
    result.error = flow.error();
    end.type = RecordType::kRunFailed;
    end.error = flow.error();
    event = EventType::kRunFailed;
  } else if (*flow == Flow::kSuspended) {
    result.waiting_on = exec.waiting_on();
    result.wake_at_ms = exec.wake_at_ms();
    result.attention_step = exec.attention_step();
    result.status = result.attention_step.empty() ? RunStatus::kWaiting : RunStatus::kNeedsAttention;
    event = EventType::kRunSuspended;
  } else {
    result.status = RunStatus::kCompleted;
    end.type = RecordType::kRunCompleted;
    // Completed stages and the trace are rebuilt by replay; the values are kept for readers.
    Json final_context = result.context.to_json();
    for (const char* key : {"config", "completed_stages", "trace"}) final_context.erase(key);
    end.payload = {{"context", final_context}};
  }
  // The suspension record was appended where the run parked; a replay of a finished run adds
  // nothing. The final record releases the lease in its commit; a parked run's suspension
  // record did.
  bool append_end = event != EventType::kRunSuspended && !(was_completed && exec.replay_only());
  Status durable = append_end ? journal_.append(std::move(end), Durability::kStrict) : journal_.flush();
  if (!append_end) (void)journal_.release_lease(lease);
  CRUCIBLE_RETURN_IF_ERROR(durable);
  emit_run_end(event, result);
  return {};
}

void Runner::emit_run_end(EventType event, const RunResult& result) {
  if (events_ == nullptr || !events_->active()) return;
  Event e{event,
          result.run_id.str(),
          "",
          "",
          clock_.now_ms(),
          result.duration_us,
          0,
          std::string(run_status_name(result.status)),
          result.error ? result.error->to_string() : "",
          Json()};
  if (!result.waiting_on.empty()) e.error = "waiting for promise '" + result.waiting_on + "'";
  if (!result.attention_step.empty()) e.error = "outcome of " + result.attention_step + " is unknown";
  events_->emit(e);
}

Result<RunId> Runner::fork(const RunId& source, const StepKey& from, std::optional<RunId> new_id) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto log, journal_.read_run(source));
  size_t cut = log.records.size();
  for (size_t i = 0; i < log.records.size(); ++i) {
    const Record& r = log.records[i];
    bool step_record = r.type == RecordType::kStepStarted || r.type == RecordType::kStepCompleted ||
                       r.type == RecordType::kStepFailed || r.type == RecordType::kDecision;
    if (step_record && r.key.within(from)) {
      cut = i;
      break;
    }
  }
  if (cut == log.records.size()) {
    return make_error(ErrorCode::kNotFound, "run '" + source.str() + "' has no step '" + from.str() +
                                                "' (`crucible status " + source.str() + "` lists its steps)");
  }
  RunId id = new_id ? *new_id : RunId::generate(clock_, random_);
  std::vector<Record> copy;
  for (size_t i = 0; i < cut; ++i) {
    const Record& r = log.records[i];
    if (r.type == RecordType::kRunSuspended || r.type == RecordType::kRunCompleted ||
        r.type == RecordType::kRunFailed || r.type == RecordType::kPromiseResolved) {
      continue;
    }
    Record c = r;
    c.run_id = id;
    c.seq = 0;
    if (c.type == RecordType::kRunStarted) {
      c.at_ms = clock_.now_ms();
      c.payload["parent_run"] = source.str();
      c.payload["forked_from"] = from.str();
    }
    copy.push_back(std::move(c));
  }
  CRUCIBLE_RETURN_IF_ERROR(journal_.append(std::move(copy), Durability::kStrict));
  return id;
}

Result<RunResult> Runner::wait_and_resume(const WorkflowSpec& spec, RunResult waiting, std::stop_token stop) {
  auto delay = std::chrono::milliseconds(20);
  while (waiting.status == RunStatus::kWaiting) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto value, journal_.get_promise(waiting.run_id, waiting.waiting_on));
    bool due = waiting.wake_at_ms && clock_.now_ms() >= *waiting.wake_at_ms;
    if (value.has_value() || due) {
      auto next = resume(spec, waiting.run_id, {});
      if (!next) return next;
      waiting = std::move(*next);
      continue;
    }
    if (!clock_.sleep_for(delay, stop)) return waiting;
    delay = std::min(delay * 2, std::chrono::milliseconds(500));
  }
  return waiting;
}

}  // namespace crucible
