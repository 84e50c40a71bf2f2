#include "walk.h"

#include <algorithm>
#include <map>

#include "crucible/core/duration.h"
#include "crucible/core/process_group.h"
#include "crucible/experiment/branch.h"
#include "crucible/experiment/run_logger.h"
#include "crucible/reliability/hedger.h"
#include "crucible/reliability/retry.h"
#include "crucible/workflow/expression.h"

namespace crucible::engine_internal {
namespace {

std::string where(const PlanNode& node, const StepKey& key) {
  return "stage '" + node.name() + "' (" + key.str() + ")";
}

// Durable helpers handed to a running stage.
class StageServicesImpl : public StageServices {
  static const Json& or_empty(const Json& section) { return section.is_object() ? section : empty_object(); }

 public:
  StageServicesImpl(Execution& exec, const StepKey& key, int attempt) : exec_(exec), key_(key), attempt_(attempt) {}
  Result<Json> memo(std::string_view name, const std::function<Json()>& compute) override {
    return exec_.decide(key_, "#memo:" + std::string(name), [&]() -> Result<Json> { return compute(); });
  }
  Result<std::optional<Json>> poll_promise(std::string_view name) override {
    return exec_.journal().get_promise(exec_.run_id(), std::string(name));
  }
  Clock& clock() override { return exec_.clock(); }
  Executor& executor() override { return exec_.executor(); }
  const Json& reliability() override { return or_empty(exec_.spec().reliability); }
  const Json& models() override { return or_empty(exec_.spec().models); }
  const std::string& artifact_dir() override { return exec_.dirs().artifact_dir; }
  const std::string& blob_dir() override { return exec_.dirs().blob_dir; }
  Status hold_process_group(const Json& group) override { return exec_.hold_process_group(key_, attempt_, group); }

 private:
  Execution& exec_;
  const StepKey& key_;
  int attempt_;
};

}  // namespace

Execution::Execution(Deps deps, const WorkflowSpec& spec, const Plan& plan, RunId run_id, Durability durability,
                     const RunLog& log, const ResumeOptions& options, RunDirs dirs)
    : deps_(deps),
      spec_(spec),
      plan_(plan),
      run_id_(std::move(run_id)),
      durability_(durability),
      replay_(build_replay_index(log)),
      options_(options),
      dirs_(std::move(dirs)) {}

Result<Flow> Execution::run(Context& ctx, const std::stop_token& stop) {
  CRUCIBLE_RETURN_IF_ERROR(stop_leftover_processes());
  auto flow = exec_list(plan_.stages, StepKey::root(), ctx, stop);
  join_background();
  return flow;
}

void Execution::join_background() {
  while (true) {
    std::vector<std::unique_ptr<Shadow>> running;
    {
      std::lock_guard lock(background_mu_);
      if (background_.empty()) return;
      running = std::move(background_);
      background_.clear();
    }
    for (auto& shadow : running) (void)shadow->gather_shadows();
  }
}

std::vector<StepReport> Execution::take_reports() {
  std::lock_guard lock(mu_);
  return std::move(reports_);
}

std::vector<std::string> Execution::optional_failures() {
  std::lock_guard lock(mu_);
  return optional_failures_;
}

Record Execution::make_record(RecordType type, const StepKey& key, std::optional<int64_t> at_ms) {
  Record r;
  r.type = type;
  r.run_id = run_id_;
  r.key = key;
  r.at_ms = at_ms ? *at_ms : deps_.clock.now_ms();
  return r;
}

Status Execution::append(Record record, Durability durability) {
  std::vector<Record> one;
  one.push_back(std::move(record));
  return append(std::move(one), durability);
}

Status Execution::append(std::vector<Record> records, Durability durability) {
  if (journal_failed()) {
    std::lock_guard lock(mu_);
    return make_error(*journal_error_);
  }
  for (Record& r : records) r.fence_epoch = deps_.fence_epoch;
  Status s = records.size() == 1 ? deps_.journal.append(std::move(records[0]), durability)
                                 : deps_.journal.append(std::move(records), durability);
  if (!s) {
    std::lock_guard lock(mu_);
    if (!journal_error_) {
      journal_error_ = s.error().with_context("journal write failed; the run stopped to stay durable");
      journal_failed_.store(true, std::memory_order_release);
    }
    return make_error(*journal_error_);
  }
  return {};
}

Result<Json> Execution::decide(const StepKey& key, const std::string& suffix,
                               const std::function<Result<Json>()>& compute) {
  std::string k = key.str() + suffix;
  if (auto it = replay_.decisions.find(k); it != replay_.decisions.end()) return it->second;
  auto value = compute();
  if (!value) return value;
  Record r = make_record(RecordType::kDecision, StepKey::from_string(k));
  r.payload = *value;
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(r), lazy_durability()));
  return value;
}

Status Execution::hold_process_group(const StepKey& key, int attempt, const Json& group) {
  Record r = make_record(RecordType::kStepStarted, key);
  r.attempts = attempt;
  r.payload = {{"process_group", group}};
  return append(std::move(r), Durability::kStrict);
}

Status Execution::stop_leftover_processes() {
  for (const auto& [key, groups] : replay_.process_groups) {
    for (const Json& g : groups) {
      auto group = ProcessGroupRef::from_json(g);
      if (!group) return make_error(group.error().with_context("step " + key));
      auto stopped = stop_process_group(*group);
      if (!stopped) {
        return make_error(stopped.error().with_context("step " + key + " of an earlier execution left processes"));
      }
    }
  }
  return {};
}

void Execution::report(StepReport r) {
  std::lock_guard lock(mu_);
  reports_.push_back(std::move(r));
}

void Execution::emit(EventType type, const PlanNode& node, const StepKey& key, const StepReport* r, Json data) {
  if (deps_.events == nullptr || !deps_.events->active()) return;
  Event e{type, run_id_.str(), key.str(), node.name(), deps_.clock.now_ms(), 0, 0, "", "", std::move(data)};
  if (r != nullptr) {
    e.duration_us = r->duration_us;
    e.attempts = r->attempts;
    e.status = std::string(step_status_name(r->status));
    if (r->error) e.error = r->error->to_string();
  }
  deps_.events->emit(e);
}

Durability Execution::step_durability(const PlanNode&) const { return durability_; }

// Records whose loss in a crash changes nothing (an intent, a decision not yet acted upon) ride
// along with the next commit in strict mode; batched mode commits everything promptly.
Durability Execution::lazy_durability() const {
  return durability_ == Durability::kStrict ? Durability::kDeferred : Durability::kBatched;
}

Result<Flow> Execution::exec_list(const PlanList& nodes, const StepKey& parent, Context& ctx,
                                  const std::stop_token& stop) {
  for (const PlanNode& node : nodes) {
    auto flow = exec_node(node, parent, ctx, stop);
    if (!flow || *flow == Flow::kSuspended) return flow;
  }
  return Flow::kContinue;
}

Result<bool> Execution::skipped_by_when(const PlanNode& node, const StepKey& key, Context& ctx) {
  const std::optional<Expression>& when = node.node->when;
  if (!when) return false;
  CRUCIBLE_ASSIGN_OR_RETURN(Json run, decide(key, "#when", [&]() -> Result<Json> {
                              auto v = when->evaluate_bool(ctx);
                              if (!v) return make_error(v.error().with_context(where(node, key) + " when"));
                              return Json(*v);
                            }));
  if (run.get<bool>()) return false;
  StepReport r{key.str(), node.name(), StepStatus::kSkipped, 0, 0, std::nullopt};
  emit(EventType::kStageCompleted, node, key, &r);
  report(std::move(r));
  return true;
}

Result<Flow> Execution::exec_node(const PlanNode& node, const StepKey& parent, Context& ctx,
                                  const std::stop_token& stop) {
  const StepKey key = parent.child(node.name());
  CRUCIBLE_ASSIGN_OR_RETURN(bool skipped, skipped_by_when(node, key, ctx));
  if (skipped) return Flow::kContinue;
  switch (node.node->kind()) {
    case NodeKind::kStage: return exec_stage(node, key, ctx, stop);
    case NodeKind::kSequence: return exec_list(node.body(), key, ctx, stop);
    case NodeKind::kLoop: return exec_loop(node, parent, key, ctx, stop);
    case NodeKind::kConditional: return exec_conditional(node, key, ctx, stop);
    case NodeKind::kParallel: return exec_parallel(node, key, ctx, stop);
    case NodeKind::kExperiment: return exec_experiment(node, key, ctx, stop);
  }
  return Flow::kContinue;
}

Result<Flow> Execution::replayed_stage(const PlanNode& node, const StepKey& key, Context& ctx) {
  const Record* rec = replay_.completed.find(key.str())->second;
  ctx.apply(rec->delta);
  replayed_.fetch_add(1, std::memory_order_relaxed);
  bool skipped = rec->payload.is_object() && rec->payload.value("skipped", false);
  StepReport r{key.str(),     node.name(),      skipped ? StepStatus::kSkipped : StepStatus::kReplayed,
               rec->attempts, rec->duration_us, std::nullopt};
  emit(EventType::kStageCompleted, node, key, &r);
  report(std::move(r));
  return Flow::kContinue;
}

std::optional<Result<Flow>> Execution::replay_outcome(const PlanNode& node, const StepKey& key, Context& ctx) {
  const std::string& k = key.str();
  if (replay_.completed.contains(k)) return replayed_stage(node, key, ctx);
  if (auto f = replay_.failed.find(k); f != replay_.failed.end() && node.stage_node().optional) {
    replayed_.fetch_add(1, std::memory_order_relaxed);
    StepReport r{
        k, node.name(), StepStatus::kOptionalFailed, f->second->attempts, f->second->duration_us, f->second->error};
    emit(EventType::kStageFailed, node, key, &r);
    report(std::move(r));
    std::lock_guard lock(mu_);
    optional_failures_.push_back(k);
    return Flow::kContinue;
  }
  if (!replay_.in_flight.contains(k) || node.idempotent || options_.rerun_steps.contains(k)) return std::nullopt;
  if (options_.skip_steps.contains(k)) {
    Record done = make_record(RecordType::kStepCompleted, key);
    done.payload = {{"skipped", true}, {"reason", "skipped by the operator after an unknown outcome"}};
    CRUCIBLE_RETURN_IF_ERROR(append(std::move(done), Durability::kStrict));
    StepReport r{k, node.name(), StepStatus::kSkipped, 0, 0, std::nullopt};
    emit(EventType::kStageCompleted, node, key, &r);
    report(std::move(r));
    return Flow::kContinue;
  }
  // A non-idempotent step that may or may not have acted waits for the operator.
  Record park = make_record(RecordType::kRunSuspended, key);
  park.payload = {{"status", "needs_attention"},
                  {"step", k},
                  {"reason", "stage '" + node.name() + "' is not idempotent and its outcome is unknown"}};
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(park), Durability::kStrict));
  std::lock_guard lock(mu_);
  attention_step_ = k;
  return Flow::kSuspended;
}

Result<Flow> Execution::exec_stage(const PlanNode& node, const StepKey& key, Context& ctx,
                                   const std::stop_token& stop) {
  if (!replay_.empty()) {
    if (auto replayed = replay_outcome(node, key, ctx)) return std::move(*replayed);
  }
  const MonoTime start = deps_.clock.monotonic();
  int attempts = 0;
  // A journal failure ends the retries too: the run stops to stay durable.
  auto flow = retry_call(
      node.stage_node().retry, deps_.clock, deps_.random, stop,
      [&](int attempt) { return attempt_step(node, key, ctx, stop, attempt, start); }, &attempts,
      [this] { return journal_failed(); });
  // A journal failure stops the run to stay durable; an interrupted process leaves the step
  // unfinished, for resume.
  if (flow || journal_failed() || deps_.interrupt.stop_requested()) return flow;
  return finish_failure(node, key, ctx, flow.error(), attempts, micros_since(deps_.clock, start));
}

Result<Flow> Execution::park_on_promise(const StepKey& key, const SuspendRequest& suspend,
                                        std::optional<Record> intent) {
  Record park = make_record(RecordType::kRunSuspended, key);
  park.payload = {{"status", "waiting"}, {"step", key.str()}, {"promise", suspend.promise}};
  if (suspend.deadline_ms) park.payload["deadline_ms"] = *suspend.deadline_ms;
  if (deps_.run_deadline_ms) park.payload["run_deadline_ms"] = *deps_.run_deadline_ms;
  const std::optional<int64_t> wake = wake_time(park);
  CRUCIBLE_RETURN_IF_ERROR(append(with_intent(std::move(intent), std::move(park)), Durability::kStrict));
  std::lock_guard lock(mu_);
  waiting_on_ = suspend.promise;
  wake_at_ms_ = wake;
  return Flow::kSuspended;
}

std::vector<Record> Execution::with_intent(std::optional<Record> intent, Record outcome) {
  std::vector<Record> out;
  out.reserve(2);
  if (intent) out.push_back(std::move(*intent));
  out.push_back(std::move(outcome));
  return out;
}

Result<Flow> Execution::attempt_step(const PlanNode& node, const StepKey& key, Context& ctx,
                                     const std::stop_token& stop, int attempt, MonoTime start) {
  std::optional<Record> intent = make_record(RecordType::kStepStarted, key);
  intent->attempts = attempt;
  const int64_t begin_at_ms = intent->at_ms;
  // A non-idempotent step's intent must be durable before it acts, so a crash can be detected.
  // An idempotent one's may be lost in a crash anyway (it is deferred), so in strict mode it
  // travels with the outcome in one append; batched mode journals it at once, for watchers.
  if (!node.idempotent || durability_ != Durability::kStrict) {
    CRUCIBLE_RETURN_IF_ERROR(append(std::move(*intent), node.idempotent ? lazy_durability() : Durability::kStrict));
    intent.reset();
  }
  emit(EventType::kStageStarted, node, key, nullptr);
  Status status = run_attempt(node, key, ctx, stop, attempt);
  if (!status) {
    ctx.discard_delta();
    (void)ctx.take_suspend();
    if (intent) CRUCIBLE_RETURN_IF_ERROR(append(std::move(*intent), lazy_durability()));
    return make_error(status.error());
  }
  if (auto suspend = ctx.take_suspend()) {
    ctx.discard_delta();
    return park_on_promise(key, *suspend, std::move(intent));
  }
  ctx.mark_stage_complete(node.name());
  ctx.add_trace(node.name());
  // Watchers (the server's metrics) learn what hedging did from the completion event.
  Json event_data;
  if (node.hedge_policy && deps_.events != nullptr && deps_.events->active()) {
    if (const Json* meta = ctx.get_metric(node.name() + ".hedging")) event_data = {{"hedging", *meta}};
  }
  Record done = make_record(RecordType::kStepCompleted, key, begin_at_ms);
  done.attempts = attempt;
  done.duration_us = micros_since(deps_.clock, start);
  done.at_ms += done.duration_us / 1000;  // one clock read for both timestamps
  done.delta = ctx.take_delta();
  int64_t duration = done.duration_us;
  CRUCIBLE_RETURN_IF_ERROR(append(with_intent(std::move(intent), std::move(done)), step_durability(node)));
  executed_.fetch_add(1, std::memory_order_relaxed);
  StepReport r{key.str(), node.name(), StepStatus::kCompleted, attempt, duration, std::nullopt};
  emit(EventType::kStageCompleted, node, key, &r, std::move(event_data));
  report(std::move(r));
  return Flow::kContinue;
}

bool Execution::journal_failed() const { return journal_failed_.load(std::memory_order_acquire); }

Result<Flow> Execution::finish_failure(const PlanNode& node, const StepKey& key, Context&, const Error& error,
                                       int attempts, int64_t duration_us) {
  const bool optional = node.stage_node().optional;
  // Say why the retries stopped: the policy's attempts ran out.
  const Error last =
      attempts > 1 ? error.with_context("gave up after " + std::to_string(attempts) + " attempts") : error;
  Error located = last.with_context(where(node, key));
  Record failed = make_record(RecordType::kStepFailed, key);
  failed.attempts = attempts;
  failed.duration_us = duration_us;
  failed.error = last;
  failed.payload = {{"optional", optional}};
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(failed), step_durability(node)));
  executed_.fetch_add(1, std::memory_order_relaxed);
  StepStatus status = optional                                ? StepStatus::kOptionalFailed
                      : error.code() == ErrorCode::kCancelled ? StepStatus::kCancelled
                                                              : StepStatus::kFailed;
  StepReport r{key.str(), node.name(), status, attempts, duration_us, last};
  emit(EventType::kStageFailed, node, key, &r);
  report(std::move(r));
  if (!optional) return make_error(located);
  std::lock_guard lock(mu_);
  optional_failures_.push_back(key.str());
  return Flow::kContinue;
}

namespace {

// What the stage is called with: `type: custom`'s argv, or `with:` with its templates rendered.
Result<StageOptions> stage_options(const StageNode& s, const Context& ctx) {
  if (s.type == StageKind::kCustom) {
    Json argv = Json::array({s.command});
    for (const std::string& a : s.args) argv.push_back(a);
    if (!has_templates(argv)) return StageOptions(Json{{"argv", argv}});
    CRUCIBLE_ASSIGN_OR_RETURN(auto rendered, render_templates(argv, ctx));
    return StageOptions(Json{{"argv", std::move(rendered)}});
  }
  if (s.with.empty()) return StageOptions();
  if (!has_templates(s.with)) return StageOptions(s.with);
  CRUCIBLE_ASSIGN_OR_RETURN(auto rendered, render_templates(s.with, ctx));
  return StageOptions(std::move(rendered));
}

}  // namespace

Status Execution::run_attempt(const PlanNode& node, const StepKey& key, Context& ctx, const std::stop_token& stop,
                              int attempt) {
  StageServicesImpl services(*this, key, attempt);
  ctx.set_services(&services);
  ctx.set_current(&node.name(), &key.str());
  struct Reset {
    Context& c;
    ~Reset() {
      c.set_services(nullptr);
      c.set_current(nullptr, nullptr);
    }
  } reset{ctx};

  const StageNode& s = node.stage_node();
  if (node.stage == nullptr) {
    return make_error(ErrorCode::kUnimplemented,
                      "type " + std::string(stage_kind_name(s.type)) +
                          " needs the distributed storage workload, which Crucible cannot run yet");
  }
  CRUCIBLE_ASSIGN_OR_RETURN(StageOptions options, stage_options(s, ctx));
  if (node.hedge_policy) return run_hedged(node, *node.stage, ctx, options, stop);
  if (!s.timeout) return run_body(node, *node.stage, ctx, options, stop);
  return run_with_timeout(node, ctx, options, stop);
}

Status Execution::run_with_timeout(const PlanNode& node, Context& ctx, const StageOptions& options,
                                   const std::stop_token& stop) {
  const std::chrono::milliseconds timeout = *node.stage_node().timeout;
  // The timer flips `timed_out` and stops the attempt; shared state outlives a late timer.
  struct TimeoutState {
    std::stop_source source;
    std::atomic<bool> timed_out{false};
  };
  auto state = std::make_shared<TimeoutState>();
  std::stop_callback forward(stop, [state] { state->source.request_stop(); });
  uint64_t timer = deps_.executor.schedule_after(timeout, [state] {
    state->timed_out.store(true);
    state->source.request_stop();
  });
  Status status = run_body(node, *node.stage, ctx, options, state->source.get_token());
  deps_.executor.cancel(timer);
  if (state->timed_out.load()) {
    return make_error(ErrorCode::kDeadlineExceeded, "timed out after " + format_duration(timeout));
  }
  return status;
}

// Runs the stage under the node's hedging policy: each attempt works on its own copy of the
// context; the first success is kept and becomes the step's delta, the others are cancelled and
// their copies dropped, so exactly one result is journaled.
Status Execution::run_hedged(const PlanNode& node, Stage& stage, Context& ctx, const StageOptions& options,
                             const std::stop_token& stop) {
  const StageNode& s = node.stage_node();
  Hedger hedger(deps_.executor, deps_.clock, *node.hedge_policy);
  HedgeCallOptions o;
  o.key = s.uses + "/" + node.name();
  o.max_hedges = node.max_hedges;
  o.wait_for_losers = true;
  if (s.timeout) o.timeout = *s.timeout;
  ctx.share_history();  // each attempt works on a copy
  auto r = hedger.hedge<Context>(
      [&](int, std::stop_token attempt_stop) -> Result<Context> {
        Context copy = ctx;
        Status status = run_body(node, stage, copy, options, attempt_stop);
        if (!status) return make_error(status.error());
        return copy;
      },
      o, stop);
  if (!r) return make_error(r.error());
  // The winner's changes become this step's own, recorded in its delta.
  ctx.record(r->value.take_delta());
  ctx.put_metric(node.name() + ".hedging", r->meta.to_json());
  if (auto suspend = r->value.take_suspend()) ctx.request_suspend(*suspend);
  return {};
}

namespace {

Status call_stage(Stage& stage, Context& ctx, const StageOptions& options, const std::stop_token& stop) {
  try {
    return stage.run(ctx, options, stop);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, std::string("the stage threw an exception: ") + e.what());
  } catch (...) {
    return make_error(ErrorCode::kInternal, "the stage threw a non-standard exception");
  }
}

}  // namespace

Status Execution::run_body(const PlanNode& node, Stage& stage, Context& ctx, const StageOptions& options,
                           const std::stop_token& stop) {
  const StageNode& s = node.stage_node();
  const bool by_time = s.completion == Completion::kDuration || s.completion == Completion::kDurationOrTasks;
  const bool by_tasks = s.completion == Completion::kTasksDone || s.completion == Completion::kDurationOrTasks;
  if (!by_time && !by_tasks) return call_stage(stage, ctx, options, stop);

  // Completion criteria: the stage runs again until its time is up or its tasks are done.
  MonoTime deadline = deps_.clock.monotonic() + s.duration.value_or(std::chrono::milliseconds(0));
  const int64_t expected = s.expected_tasks.value_or(0);
  ctx.reset_tasks();
  while (true) {
    int64_t before = ctx.tasks_done();
    CRUCIBLE_RETURN_IF_ERROR(call_stage(stage, ctx, options, stop));
    if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "cancelled");
    if (by_tasks && ctx.tasks_done() >= expected) break;
    if (by_time && deps_.clock.monotonic() >= deadline) break;
    if (!by_time && ctx.tasks_done() == before) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "completion tasks_done: the stage reported no progress (" + std::to_string(ctx.tasks_done()) +
                            " of " + std::to_string(expected) + " tasks); it must call report_tasks()");
    }
  }
  if (by_tasks) ctx.put_metric(node.name() + ".tasks_done", ctx.tasks_done());
  return {};
}

// A loop's items (kOver: the list; kCount: the count), decided once and journaled.
Result<Json> Execution::loop_items(const PlanNode& node, const StepKey& key, Context& ctx) {
  const LoopNode& loop = node.node->as<LoopNode>();
  return decide(key, "#items", [&]() -> Result<Json> {
    auto v = loop.over->evaluate(ctx);
    if (!v) return make_error(v.error().with_context(where(node, key)));
    if (loop.mode == LoopMode::kCount) {
      if (!v->is_number_integer() || v->get<int64_t>() < 0) {
        return make_error(ErrorCode::kInvalidArgument, where(node, key) + ": count '" + loop.over->text() +
                                                           "' must be a non-negative integer, got " + json_dump(*v));
      }
      return Json(v->get<int64_t>());
    }
    if (!v->is_array()) {
      return make_error(ErrorCode::kInvalidArgument, where(node, key) + ": over '" + loop.over->text() +
                                                         "' must be a list, got " + json_type_name(*v));
    }
    return *v;
  });
}

Result<Flow> Execution::exec_loop(const PlanNode& node, const StepKey& parent, const StepKey& key, Context& ctx,
                                  const std::stop_token& stop) {
  const LoopNode& loop = node.node->as<LoopNode>();
  const int64_t max = loop.max_iterations.value_or(std::numeric_limits<int64_t>::max());
  Json items;
  int64_t count = max;
  if (loop.mode != LoopMode::kUntil) {
    CRUCIBLE_ASSIGN_OR_RETURN(items, loop_items(node, key, ctx));
    count = items.is_array() ? static_cast<int64_t>(items.size()) : items.get<int64_t>();
    if (count > max) {
      return make_error(ErrorCode::kOutOfRange, where(node, key) + ": " + std::to_string(count) +
                                                    " iterations exceed max " + std::to_string(max));
    }
  }
  for (int64_t i = 0; i < count; ++i) {
    StepKey iter = parent.indexed(node.name(), i);
    Json item = items.is_array() ? items[static_cast<size_t>(i)] : loop.mode == LoopMode::kCount ? Json(i) : Json();
    ctx.push_loop(std::move(item), i);
    auto flow = exec_list(node.body(), iter, ctx, stop);
    Result<Json> done = false;
    if (flow && *flow == Flow::kContinue && loop.mode == LoopMode::kUntil) {
      done = decide(iter, "#until", [&]() -> Result<Json> {
        auto v = loop.until->evaluate_bool(ctx);
        if (!v) return make_error(v.error().with_context(where(node, key)));
        return Json(*v);
      });
    }
    ctx.pop_loop();
    if (!flow || *flow == Flow::kSuspended) return flow;
    if (!done) return make_error(done.error());
    if (done->get<bool>()) return Flow::kContinue;
  }
  if (loop.mode == LoopMode::kUntil) {
    return make_error(ErrorCode::kOutOfRange, "loop '" + node.name() + "' (" + key.str() + ") reached its max of " +
                                                  std::to_string(max) + " iterations and '" + loop.until->text() +
                                                  "' is still false");
  }
  return Flow::kContinue;
}

Result<Flow> Execution::exec_conditional(const PlanNode& node, const StepKey& key, Context& ctx,
                                         const std::stop_token& stop) {
  const ConditionalNode& cond = node.node->as<ConditionalNode>();
  auto branch = decide(key, "#branch", [&]() -> Result<Json> {
    auto v = cond.condition->evaluate_bool(ctx);
    if (!v) return make_error(v.error().with_context("conditional '" + node.name() + "' (" + key.str() + ")"));
    return Json(*v ? "then" : "else");
  });
  if (!branch) return make_error(branch.error());
  return exec_list(node.lists.at(*branch == "then" ? 0 : 1), key, ctx, stop);
}

}  // namespace crucible::engine_internal
