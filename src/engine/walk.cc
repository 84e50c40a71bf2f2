#include "walk.h"

#include <algorithm>
#include <map>

#include "crucible/core/duration.h"
#include "crucible/experiment/branch.h"
#include "crucible/experiment/run_logger.h"
#include "crucible/reliability/hedger.h"
#include "crucible/reliability/retry.h"
#include "crucible/workflow/expression.h"

namespace crucible::engine_internal {
namespace {

std::string where(const Node& node, const StepKey& key) { return "stage '" + node.name + "' (" + key.str() + ")"; }

// Durable helpers handed to a running stage.
class StageServicesImpl : public StageServices {
  static const Json& or_empty(const Json& section) { return section.is_object() ? section : empty_object(); }

 public:
  StageServicesImpl(Execution& exec, const StepKey& key) : exec_(exec), key_(key) {}
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

 private:
  Execution& exec_;
  const StepKey& key_;
};

}  // namespace

Execution::Execution(Deps deps, const WorkflowSpec& spec, RunId run_id, Durability durability, const RunLog& log,
                     const ResumeOptions& options, RunDirs dirs)
    : deps_(deps),
      spec_(spec),
      run_id_(std::move(run_id)),
      durability_(durability),
      replay_(build_replay_index(log)),
      options_(options),
      dirs_(std::move(dirs)) {}

Result<Flow> Execution::run(Context& ctx, std::stop_token stop) {
  auto flow = exec_list(spec_.stages, StepKey::root(), ctx, stop);
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

Record Execution::make_record(RecordType type, const StepKey& key) {
  Record r;
  r.type = type;
  r.run_id = run_id_;
  r.key = key;
  r.at_ms = deps_.clock.now_ms();
  return r;
}

Status Execution::append(Record record, Durability durability) {
  if (journal_failed()) {
    std::lock_guard lock(mu_);
    return make_error(*journal_error_);
  }
  Status s = deps_.journal.append(std::move(record), durability);
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

void Execution::report(StepReport r) {
  std::lock_guard lock(mu_);
  reports_.push_back(std::move(r));
}

void Execution::emit(EventType type, const Node& node, const StepKey& key, const StepReport* r) {
  if (deps_.events == nullptr || !deps_.events->active()) return;
  Event e{type, run_id_.str(), key.str(), node.name, deps_.clock.now_ms(), 0, 0, "", "", Json()};
  if (r != nullptr) {
    e.duration_us = r->duration_us;
    e.attempts = r->attempts;
    e.status = std::string(step_status_name(r->status));
    if (r->error) e.error = r->error->to_string();
  }
  deps_.events->emit(e);
}

Durability Execution::step_durability(const Node&) const { return durability_; }

// Records whose loss in a crash changes nothing (an intent, a decision not yet acted upon) ride
// along with the next commit in strict mode; batched mode commits everything promptly.
Durability Execution::lazy_durability() const {
  return durability_ == Durability::kStrict ? Durability::kDeferred : Durability::kBatched;
}

Result<Flow> Execution::exec_list(const std::vector<Node>& nodes, const StepKey& parent, Context& ctx,
                                  std::stop_token stop) {
  for (const Node& node : nodes) {
    auto flow = exec_node(node, parent, ctx, stop);
    if (!flow || *flow == Flow::kSuspended) return flow;
  }
  return Flow::kContinue;
}

Result<Flow> Execution::exec_node(const Node& node, const StepKey& parent, Context& ctx, std::stop_token stop) {
  const StepKey key = parent.child(node.name);
  if (node.when && node.kind != NodeKind::kConditional) {
    auto decided = decide(key, "#when", [&]() -> Result<Json> {
      auto v = node.when->evaluate_bool(ctx);
      if (!v) return make_error(v.error().with_context(where(node, key) + " when"));
      return Json(*v);
    });
    if (!decided) return make_error(decided.error());
    if (!decided->get<bool>()) {
      StepReport r{key.str(), node.name, StepStatus::kSkipped, 0, 0, std::nullopt};
      emit(EventType::kStageCompleted, node, key, &r);
      report(std::move(r));
      return Flow::kContinue;
    }
  }
  switch (node.kind) {
    case NodeKind::kStage: return exec_stage(node, key, ctx, stop);
    case NodeKind::kSequence: return exec_list(node.children, key, ctx, stop);
    case NodeKind::kLoop: return exec_loop(node, parent, key, ctx, stop);
    case NodeKind::kConditional: return exec_conditional(node, key, ctx, stop);
    case NodeKind::kParallel: return exec_parallel(node, key, ctx, stop);
    case NodeKind::kExperiment: return exec_experiment(node, key, ctx, stop);
  }
  return Flow::kContinue;
}

Result<Flow> Execution::replayed_stage(const Node& node, const StepKey& key, Context& ctx) {
  const Record* rec = replay_.completed.find(key.str())->second;
  ctx.apply(rec->delta);
  replayed_.fetch_add(1, std::memory_order_relaxed);
  bool skipped = rec->payload.is_object() && rec->payload.value("skipped", false);
  StepReport r{key.str(),     node.name,        skipped ? StepStatus::kSkipped : StepStatus::kReplayed,
               rec->attempts, rec->duration_us, std::nullopt};
  emit(EventType::kStageCompleted, node, key, &r);
  report(std::move(r));
  return Flow::kContinue;
}

Result<Flow> Execution::exec_stage(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop) {
  if (!replay_.empty()) {
    const std::string& k = key.str();
    if (replay_.completed.contains(k)) return replayed_stage(node, key, ctx);
    if (auto f = replay_.failed.find(k); f != replay_.failed.end() && node.optional) {
      replayed_.fetch_add(1, std::memory_order_relaxed);
      StepReport r{
          k, node.name, StepStatus::kOptionalFailed, f->second->attempts, f->second->duration_us, f->second->error};
      emit(EventType::kStageFailed, node, key, &r);
      report(std::move(r));
      std::lock_guard lock(mu_);
      optional_failures_.push_back(k);
      return Flow::kContinue;
    }
    if (replay_.in_flight.contains(k) && !node.is_idempotent()) {
      if (options_.skip_steps.contains(k)) {
        Record done = make_record(RecordType::kStepCompleted, key);
        done.payload = {{"skipped", true}, {"reason", "skipped by the operator after an unknown outcome"}};
        CRUCIBLE_RETURN_IF_ERROR(append(std::move(done), Durability::kStrict));
        StepReport r{k, node.name, StepStatus::kSkipped, 0, 0, std::nullopt};
        emit(EventType::kStageCompleted, node, key, &r);
        report(std::move(r));
        return Flow::kContinue;
      }
      if (!options_.rerun_steps.contains(k)) {
        Record park = make_record(RecordType::kRunSuspended, key);
        park.payload = {{"status", "needs_attention"},
                        {"step", k},
                        {"reason", "stage '" + node.name + "' is not idempotent and its outcome is unknown"}};
        CRUCIBLE_RETURN_IF_ERROR(append(std::move(park), Durability::kStrict));
        std::lock_guard lock(mu_);
        attention_step_ = k;
        return Flow::kSuspended;
      }
    }
  }

  const MonoTime start = deps_.clock.monotonic();
  int attempts = 0;
  // A journal failure ends the retries too: the run stops to stay durable.
  auto flow = retry_call(
      node.retry, deps_.clock, deps_.random, stop,
      [&](int attempt) { return attempt_step(node, key, ctx, stop, attempt, start); }, &attempts,
      [this] { return journal_failed(); });
  if (flow || journal_failed()) return flow;
  return finish_failure(node, key, ctx, flow.error(), attempts, micros_since(deps_.clock, start));
}

Result<Flow> Execution::attempt_step(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop,
                                     int attempt, MonoTime start) {
  Record begin = make_record(RecordType::kStepStarted, key);
  begin.attempts = attempt;
  // A non-idempotent step's intent must be durable before it acts, so a crash can be detected.
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(begin), node.is_idempotent() ? lazy_durability() : Durability::kStrict));
  emit(EventType::kStageStarted, node, key, nullptr);
  Status status = run_attempt(node, key, ctx, stop);
  if (!status) {
    ctx.discard_delta();
    (void)ctx.take_suspend();
    return make_error(status.error());
  }
  if (auto suspend = ctx.take_suspend()) {
    ctx.discard_delta();
    Record park = make_record(RecordType::kRunSuspended, key);
    park.payload = {{"status", "waiting"}, {"step", key.str()}, {"promise", suspend->promise}};
    if (suspend->deadline_ms) park.payload["deadline_ms"] = *suspend->deadline_ms;
    CRUCIBLE_RETURN_IF_ERROR(append(std::move(park), Durability::kStrict));
    std::lock_guard lock(mu_);
    waiting_on_ = suspend->promise;
    wake_at_ms_ = suspend->deadline_ms;
    return Flow::kSuspended;
  }
  ctx.mark_stage_complete(node.name);
  ctx.add_trace(node.name);
  Record done = make_record(RecordType::kStepCompleted, key);
  done.attempts = attempt;
  done.duration_us = micros_since(deps_.clock, start);
  done.delta = ctx.take_delta();
  int64_t duration = done.duration_us;
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(done), step_durability(node)));
  executed_.fetch_add(1, std::memory_order_relaxed);
  StepReport r{key.str(), node.name, StepStatus::kCompleted, attempt, duration, std::nullopt};
  emit(EventType::kStageCompleted, node, key, &r);
  report(std::move(r));
  return Flow::kContinue;
}

bool Execution::journal_failed() const { return journal_failed_.load(std::memory_order_acquire); }

Result<Flow> Execution::finish_failure(const Node& node, const StepKey& key, Context&, const Error& error, int attempts,
                                       int64_t duration_us) {
  Error located = error.with_context(where(node, key));
  Record failed = make_record(RecordType::kStepFailed, key);
  failed.attempts = attempts;
  failed.duration_us = duration_us;
  failed.error = error;
  failed.payload = {{"optional", node.optional}};
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(failed), step_durability(node)));
  executed_.fetch_add(1, std::memory_order_relaxed);
  StepStatus status = node.optional                           ? StepStatus::kOptionalFailed
                      : error.code() == ErrorCode::kCancelled ? StepStatus::kCancelled
                                                              : StepStatus::kFailed;
  StepReport r{key.str(), node.name, status, attempts, duration_us, error};
  emit(EventType::kStageFailed, node, key, &r);
  report(std::move(r));
  if (node.optional) {
    std::lock_guard lock(mu_);
    optional_failures_.push_back(key.str());
    return Flow::kContinue;
  }
  return make_error(located);
}

Status Execution::run_attempt(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop) {
  StageServicesImpl services(*this, key);
  ctx.set_services(&services);
  ctx.set_current(&node.name, &key.str());
  struct Reset {
    Context& c;
    ~Reset() {
      c.set_services(nullptr);
      c.set_current(nullptr, nullptr);
    }
  } reset{ctx};

  Stage* stage = node.stage.get();
  StageOptions options;
  if (stage != nullptr && node.stage_kind == StageKind::kCustom) {
    Json argv = Json::array({node.command});
    for (const std::string& a : node.args) argv.push_back(a);
    options = StageOptions(Json{{"argv", argv}});
  } else if (stage == nullptr) {
    return make_error(ErrorCode::kUnimplemented,
                      "type " + std::string(stage_kind_name(node.stage_kind)) +
                          " needs the distributed storage workload, which Crucible cannot run yet");
  } else if (!node.with.empty()) {
    if (has_templates(node.with)) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto rendered, render_templates(node.with, ctx));
      options = StageOptions(std::move(rendered));
    } else {
      options = StageOptions(node.with);
    }
  }

  if (node.hedge_policy) return run_hedged(node, *stage, ctx, options, stop);
  if (!node.timeout) return run_body(node, *stage, ctx, options, stop);

  // The timer flips `timed_out` and stops the attempt; shared state outlives a late timer.
  struct TimeoutState {
    std::stop_source source;
    std::atomic<bool> timed_out{false};
  };
  auto state = std::make_shared<TimeoutState>();
  std::stop_callback forward(stop, [state] { state->source.request_stop(); });
  uint64_t timer = deps_.executor.schedule_after(*node.timeout, [state] {
    state->timed_out.store(true);
    state->source.request_stop();
  });
  Status status = run_body(node, *stage, ctx, options, state->source.get_token());
  deps_.executor.cancel(timer);
  if (state->timed_out.load()) {
    return make_error(ErrorCode::kDeadlineExceeded, "timed out after " + format_duration(*node.timeout));
  }
  return status;
}

// Runs the stage under the node's hedging policy: each attempt works on its own copy of the
// context; the first success is kept and becomes the step's delta, the others are cancelled and
// their copies dropped, so exactly one result is journaled.
Status Execution::run_hedged(const Node& node, Stage& stage, Context& ctx, const StageOptions& options,
                             std::stop_token stop) {
  Hedger hedger(deps_.executor, deps_.clock, *node.hedge_policy);
  HedgeCallOptions o;
  o.key = node.uses + "/" + node.name;
  o.max_hedges = node.max_hedges;
  o.wait_for_losers = true;
  if (node.timeout) o.timeout = *node.timeout;
  auto r = hedger.hedge<Context>(
      [&](int, std::stop_token attempt_stop) -> Result<Context> {
        Context copy = ctx;
        Status s = run_body(node, stage, copy, options, attempt_stop);
        if (!s) return make_error(s.error());
        return copy;
      },
      o, stop);
  if (!r) return make_error(r.error());
  // The winner's changes become this step's own, recorded in its delta.
  ctx.record(r->value.take_delta());
  ctx.put_metric(node.name + ".hedging", r->meta.to_json());
  if (auto suspend = r->value.take_suspend()) ctx.request_suspend(*suspend);
  return {};
}

Status Execution::run_body(const Node& node, Stage& stage, Context& ctx, const StageOptions& options,
                           std::stop_token stop) {
  auto call = [&]() -> Status {
    try {
      return stage.run(ctx, options, stop);
    } catch (const std::exception& e) {
      return make_error(ErrorCode::kInternal, std::string("the stage threw an exception: ") + e.what());
    } catch (...) {
      return make_error(ErrorCode::kInternal, "the stage threw a non-standard exception");
    }
  };
  const bool by_time = node.completion == Completion::kDuration || node.completion == Completion::kDurationOrTasks;
  const bool by_tasks = node.completion == Completion::kTasksDone || node.completion == Completion::kDurationOrTasks;
  if (!by_time && !by_tasks) return call();

  MonoTime deadline = deps_.clock.monotonic() + node.duration.value_or(std::chrono::milliseconds(0));
  const int64_t expected = node.expected_tasks.value_or(0);
  ctx.reset_tasks();
  while (true) {
    int64_t before = ctx.tasks_done();
    CRUCIBLE_RETURN_IF_ERROR(call());
    if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "cancelled");
    if (by_tasks && ctx.tasks_done() >= expected) break;
    if (by_time && deps_.clock.monotonic() >= deadline) break;
    if (!by_time && ctx.tasks_done() == before) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "completion tasks_done: the stage reported no progress (" + std::to_string(ctx.tasks_done()) +
                            " of " + std::to_string(expected) + " tasks); it must call report_tasks()");
    }
  }
  if (by_tasks) ctx.put_metric(node.name + ".tasks_done", ctx.tasks_done());
  return {};
}

Result<Flow> Execution::exec_loop(const Node& node, const StepKey& parent, const StepKey& key, Context& ctx,
                                  std::stop_token stop) {
  const int64_t max = node.max_iterations.value_or(std::numeric_limits<int64_t>::max());
  Json items;
  if (node.loop_mode != LoopMode::kUntil) {
    auto decided = decide(key, "#items", [&]() -> Result<Json> {
      auto v = node.over->evaluate(ctx);
      if (!v) return make_error(v.error().with_context(where(node, key)));
      if (node.loop_mode == LoopMode::kCount) {
        if (!v->is_number_integer() || v->get<int64_t>() < 0) {
          return make_error(ErrorCode::kInvalidArgument, where(node, key) + ": count '" + node.over->text() +
                                                             "' must be a non-negative integer, got " + v->dump());
        }
        return Json(v->get<int64_t>());
      }
      if (!v->is_array()) {
        return make_error(ErrorCode::kInvalidArgument, where(node, key) + ": over '" + node.over->text() +
                                                           "' must be a list, got " + json_type_name(*v));
      }
      return *v;
    });
    if (!decided) return make_error(decided.error());
    items = std::move(*decided);
    int64_t n = items.is_array() ? static_cast<int64_t>(items.size()) : items.get<int64_t>();
    if (n > max) {
      return make_error(ErrorCode::kOutOfRange,
                        where(node, key) + ": " + std::to_string(n) + " iterations exceed max " + std::to_string(max));
    }
  }
  const int64_t count = node.loop_mode == LoopMode::kUntil ? max
                        : items.is_array()                 ? static_cast<int64_t>(items.size())
                                                           : items.get<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    StepKey iter = parent.indexed(node.name, i);
    Json item = items.is_array()                     ? items[static_cast<size_t>(i)]
                : node.loop_mode == LoopMode::kCount ? Json(i)
                                                     : Json();
    ctx.push_loop(std::move(item), i);
    auto flow = exec_list(node.children, iter, ctx, stop);
    if (!flow || *flow == Flow::kSuspended) {
      ctx.pop_loop();
      return flow;
    }
    if (node.loop_mode == LoopMode::kUntil) {
      auto done = decide(iter, "#until", [&]() -> Result<Json> {
        auto v = node.until->evaluate_bool(ctx);
        if (!v) return make_error(v.error().with_context(where(node, key)));
        return Json(*v);
      });
      ctx.pop_loop();
      if (!done) return make_error(done.error());
      if (done->get<bool>()) return Flow::kContinue;
    } else {
      ctx.pop_loop();
    }
  }
  if (node.loop_mode == LoopMode::kUntil) {
    return make_error(ErrorCode::kOutOfRange, "loop '" + node.name + "' (" + key.str() + ") reached its max of " +
                                                  std::to_string(max) + " iterations and '" + node.until->text() +
                                                  "' is still false");
  }
  return Flow::kContinue;
}

Result<Flow> Execution::exec_conditional(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop) {
  auto branch = decide(key, "#branch", [&]() -> Result<Json> {
    auto v = node.when->evaluate_bool(ctx);
    if (!v) return make_error(v.error().with_context("conditional '" + node.name + "' (" + key.str() + ")"));
    return Json(*v ? "then" : "else");
  });
  if (!branch) return make_error(branch.error());
  return exec_list(*branch == "then" ? node.children : node.else_children, key, ctx, stop);
}

}  // namespace crucible::engine_internal
