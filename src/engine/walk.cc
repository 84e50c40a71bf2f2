#include "walk.h"

#include <algorithm>
#include <map>

#include "crucible/experiment/branch.h"
#include "crucible/experiment/run_logger.h"
#include "crucible/core/duration.h"
#include "crucible/reliability/hedger.h"
#include "crucible/reliability/retry.h"
#include "crucible/workflow/expression.h"

namespace crucible::engine_internal {
namespace {

int64_t micros_since(Clock& clock, MonoTime start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(clock.monotonic() - start).count();
}

std::string where(const Node& node, const StepKey& key) {
  return "stage '" + node.name + "' (" + key.str() + ")";
}

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
    std::vector<std::future<void>> running;
    {
      std::lock_guard lock(background_mu_);
      if (background_.empty()) return;
      running = std::move(background_);
      background_.clear();
    }
    for (auto& f : running) f.wait();
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
  {
    std::lock_guard lock(mu_);
    if (journal_error_) return make_error(*journal_error_);
  }
  Status s = deps_.journal.append(std::move(record), durability);
  if (!s) {
    std::lock_guard lock(mu_);
    if (!journal_error_) journal_error_ = s.error().with_context("journal write failed; the run stopped to stay durable");
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
    case NodeKind::kStage:
      return exec_stage(node, key, ctx, stop);
    case NodeKind::kSequence:
      return exec_list(node.children, key, ctx, stop);
    case NodeKind::kLoop:
      return exec_loop(node, parent, key, ctx, stop);
    case NodeKind::kConditional:
      return exec_conditional(node, key, ctx, stop);
    case NodeKind::kParallel:
      return exec_parallel(node, key, ctx, stop);
    case NodeKind::kExperiment:
      return exec_experiment(node, key, ctx, stop);
  }
  return Flow::kContinue;
}

Result<Flow> Execution::replayed_stage(const Node& node, const StepKey& key, Context& ctx) {
  const Record* rec = replay_.completed.find(key.str())->second;
  ctx.apply(rec->delta);
  replayed_.fetch_add(1, std::memory_order_relaxed);
  bool skipped = rec->payload.is_object() && rec->payload.value("skipped", false);
  StepReport r{key.str(), node.name, skipped ? StepStatus::kSkipped : StepStatus::kReplayed, rec->attempts, rec->duration_us, std::nullopt};
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
      StepReport r{k, node.name, StepStatus::kOptionalFailed, f->second->attempts, f->second->duration_us, f->second->error};
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
        park.payload = {{"status", "needs_attention"}, {"step", k},
                        {"reason", "stage '" + node.name + "' is not idempotent and its outcome is unknown"}};
        CRUCIBLE_RETURN_IF_ERROR(append(std::move(park), Durability::kStrict));
        std::lock_guard lock(mu_);
        attention_step_ = k;
        return Flow::kSuspended;
      }
    }
  }

  const MonoTime start = deps_.clock.monotonic();
  // A journal failure ends the retries too: the run stops to stay durable.
  std::stop_source halt;
  std::stop_callback forward(stop, [&halt] { halt.request_stop(); });
  int attempts = 0;
  auto flow = retry_call(node.retry, deps_.clock, deps_.random, halt.get_token(), [&](int attempt) -> Result<Flow> {
    auto r = attempt_step(node, key, ctx, stop, attempt, start);
    if (!r && journal_failed()) halt.request_stop();
    return r;
  }, &attempts);
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

bool Execution::journal_failed() {
  std::lock_guard lock(mu_);
  return journal_error_.has_value();
}

Result<Flow> Execution::finish_failure(const Node& node, const StepKey& key, Context&, const Error& error,
                                       int attempts, int64_t duration_us) {
  Error located = error.with_context(where(node, key));
  Record failed = make_record(RecordType::kStepFailed, key);
  failed.attempts = attempts;
  failed.duration_us = duration_us;
  failed.error = error;
  failed.payload = {{"optional", node.optional}};
  CRUCIBLE_RETURN_IF_ERROR(append(std::move(failed), step_durability(node)));
  executed_.fetch_add(1, std::memory_order_relaxed);
  StepStatus status = node.optional                              ? StepStatus::kOptionalFailed
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
    return make_error(ErrorCode::kUnimplemented, "type " + std::string(stage_kind_name(node.stage_kind)) +
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
  auto r = hedger.hedge<Context>([&](int, std::stop_token attempt_stop) -> Result<Context> {
    Context copy = ctx;
    Status s = run_body(node, stage, copy, options, attempt_stop);
    if (!s) return make_error(s.error());
    return copy;
  }, o, stop);
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
      return make_error(ErrorCode::kOutOfRange, where(node, key) + ": " + std::to_string(n) +
                                                    " iterations exceed max " + std::to_string(max));
    }
  }
  const int64_t count = node.loop_mode == LoopMode::kUntil ? max
                        : items.is_array()                 ? static_cast<int64_t>(items.size())
                                                           : items.get<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    StepKey iter = parent.indexed(node.name, i);
    Json item = items.is_array() ? items[static_cast<size_t>(i)] : node.loop_mode == LoopMode::kCount ? Json(i) : Json();
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

Result<Flow> Execution::exec_parallel(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop) {
  const size_t n = node.branches.size();
  // A join decided before a crash replays only the winner.
  if (node.join != JoinPolicy::kAll) {
    if (auto it = replay_.decisions.find(key.str() + "#winner"); it != replay_.decisions.end()) {
      for (size_t i = 0; i < n; ++i) {
        if (node.branches[i].name != it->second.get<std::string>()) continue;
        std::vector<Context> one(n, ctx);
        auto flow = exec_list(node.branches[i].nodes, key.child(node.branches[i].name), one[i], stop);
        if (!flow || *flow == Flow::kSuspended) return flow;
        CRUCIBLE_RETURN_IF_ERROR(merge(node, ctx, {i}, one));
        return Flow::kContinue;
      }
    }
  }

  std::vector<Context> branches(n, ctx);
  std::vector<std::optional<Result<Flow>>> results(n);
  std::stop_source group;
  std::stop_callback forward(stop, [&group] { group.request_stop(); });
  std::mutex winner_mu;
  std::optional<size_t> winner;
  deps_.executor.parallel_for(n, [&](size_t i) {
    if (group.stop_requested() && node.join != JoinPolicy::kAll) {
      results[i] = make_error(ErrorCode::kCancelled, "branch '" + node.branches[i].name + "' was not started: the join was decided");
      return;
    }
    auto flow = exec_list(node.branches[i].nodes, key.child(node.branches[i].name), branches[i], group.get_token());
    bool finished_ok = flow && *flow == Flow::kContinue;
    results[i] = std::move(flow);
    if (node.join == JoinPolicy::kAll) return;
    std::lock_guard lock(winner_mu);
    if (!winner && (node.join == JoinPolicy::kRace || finished_ok)) {
      winner = i;
      group.request_stop();
    }
  }, static_cast<size_t>(node.max_concurrency.value_or(0)));

  if (journal_error_) return make_error(*journal_error_);
  if (node.join == JoinPolicy::kAll) {
    bool suspended = false;
    for (size_t i = 0; i < n; ++i) {
      if (!*results[i]) return make_error(results[i]->error());
      suspended = suspended || **results[i] == Flow::kSuspended;
    }
    if (suspended) return Flow::kSuspended;
    std::vector<size_t> all(n);
    for (size_t i = 0; i < n; ++i) all[i] = i;
    CRUCIBLE_RETURN_IF_ERROR(merge(node, ctx, all, branches));
    return Flow::kContinue;
  }
  if (!winner) {
    for (size_t i = 0; i < n; ++i) {
      if (!*results[i]) return make_error(results[i]->error());
    }
    return Flow::kSuspended;
  }
  const Result<Flow>& won = *results[*winner];
  auto decided = decide(key, "#winner", [&]() -> Result<Json> { return Json(node.branches[*winner].name); });
  if (!decided) return make_error(decided.error());
  if (!won) return make_error(won.error());
  if (*won == Flow::kSuspended) return Flow::kSuspended;
  CRUCIBLE_RETURN_IF_ERROR(merge(node, ctx, {*winner}, branches));
  return Flow::kContinue;
}

Status Execution::merge(const Node& node, Context& ctx, const std::vector<size_t>& winners,
                        const std::vector<Context>& branches) {
  struct Write {
    size_t branch;
    Json value;
  };
  std::map<std::string, Write> writes[2];  // state, artifacts
  Delta merged;
  for (size_t b : winners) {
    for (Mutation& m : branches[b].changes_since(ctx)) {
      if (m.kind == Mutation::Kind::kMetric) {
        merged.push_back({m.kind, node.branches[b].name + "." + m.key, std::move(m.value)});
        continue;
      }
      if (m.kind != Mutation::Kind::kState && m.kind != Mutation::Kind::kArtifact) {
        merged.push_back(std::move(m));
        continue;
      }
      auto& w = writes[m.kind == Mutation::Kind::kState ? 0 : 1];
      auto it = w.find(m.key);
      if (it == w.end()) {
        w.emplace(m.key, Write{b, std::move(m.value)});
      } else if (it->second.value != m.value) {
        if (node.merge == MergePolicy::kError) {
          return make_error(ErrorCode::kFailedPrecondition,
                            "parallel '" + node.name + "': branches '" + node.branches[it->second.branch].name +
                                "' and '" + node.branches[b].name + "' both wrote " +
                                (m.kind == Mutation::Kind::kState ? "state" : "artifact") + " '" + m.key +
                                "' with different values; set `merge: last_wins` or `merge: first_wins`");
        }
        if (node.merge == MergePolicy::kLastWins) it->second = Write{b, std::move(m.value)};
      }
    }
  }
  for (auto& [k, w] : writes[0]) merged.push_back({Mutation::Kind::kState, k, std::move(w.value)});
  for (auto& [k, w] : writes[1]) merged.push_back({Mutation::Kind::kArtifact, k, std::move(w.value)});
  ctx.apply(merged);
  return {};
}

namespace {

Error branch_error(const Node& node, const Json& record) {
  const Json& e = record.value("error", Json());
  ErrorCode code = ErrorCode::kUnknown;
  std::string message = "branch failed";
  if (e.is_object()) {
    code = parse_error_code(e.value("code", "unknown")).value_or(ErrorCode::kUnknown);
    message = e.value("message", message);
  }
  return Error(code, "experiment '" + node.name + "' (" + std::string(strategy_name(node.strategy)) + ") branch " +
                         record.value("config_id", std::string()) + ": " + message);
}

}  // namespace

Execution::BranchRun Execution::run_branch(const Node& node, const StepKey& key, const Context& base, size_t index,
                                           std::stop_token stop) {
  const Json& config = node.configs[index];
  const std::string id = config_id_of(config);
  const StepKey bkey = StepKey::from_string(JournalRunLogger::branch_key(key.str(), id));
  const std::string record_key = bkey.str() + "#branch";
  BranchRun out;
  auto recorded = replay_.decisions.find(record_key);
  if (recorded != replay_.decisions.end() && recorded->second.value("status", "") != "success") {
    out.record = recorded->second;  // a finished failure is not run again
    return out;
  }
  Context bctx = base;
  bctx.set_branch(std::make_shared<const Json>(Json{{"config", config}, {"config_id", id}, {"index", index}}));
  MonoTime start = deps_.clock.monotonic();
  auto flow = exec_list(node.children, bkey, bctx, stop);
  {
    std::lock_guard lock(mu_);
    if (journal_error_) {
      out.abort = *journal_error_;
      return out;
    }
  }
  if (flow && *flow == Flow::kSuspended) {
    out.suspended = true;
    return out;
  }
  if (!flow && stop.stop_requested()) {
    out.abort = flow.error();  // cancelled: not an outcome of the branch
    return out;
  }
  if (recorded != replay_.decisions.end() && flow) {
    out.record = recorded->second;
    out.context = std::move(bctx);
    return out;
  }
  Json metrics = Json::object();
  for (const Mutation& m : bctx.changes_since(base)) {
    if (m.kind == Mutation::Kind::kMetric) metrics[m.key] = m.value;
  }
  Json record{{"config_id", id},
              {"config", config},
              {"status", flow ? "success" : "failed"},
              {"duration_ms", static_cast<double>(micros_since(deps_.clock, start)) / 1000.0},
              {"metrics", std::move(metrics)},
              {"error", flow ? Json() : Json{{"code", error_code_name(flow.error().code())}, {"message", flow.error().message()}}}};
  Record r = make_record(RecordType::kDecision, StepKey::from_string(record_key));
  r.payload = record;
  if (auto s = append(std::move(r), durability_ == Durability::kStrict ? Durability::kStrict : Durability::kBatched); !s) {
    out.abort = s.error();
    return out;
  }
  out.record = std::move(record);
  if (flow) out.context = std::move(bctx);
  return out;
}

Result<Flow> Execution::exec_experiment(const Node& node, const StepKey& key, Context& ctx, std::stop_token stop) {
  const size_t n = node.configs.size();
  std::vector<size_t> selected;
  if (node.strategy == ExperimentStrategy::kRoundRobin) {
    // The rotation position is shared by every run of this pipeline; the pick is journaled so
    // that a resumed run replays the same branch.
    auto pick = decide(key, "#pick", [&]() -> Result<Json> {
      const std::string kv = "round_robin/" + spec_.name + key.str();
      CRUCIBLE_ASSIGN_OR_RETURN(auto v, deps_.journal.get_value("", kv));
      int64_t pos = v && v->is_number_integer() ? v->get<int64_t>() : 0;
      CRUCIBLE_RETURN_IF_ERROR(deps_.journal.put_value("", kv, Json(pos + 1)));
      return Json(pos % static_cast<int64_t>(n));
    });
    if (!pick) return make_error(pick.error());
    selected.push_back(pick->get<size_t>());
  } else {
    for (size_t i = 0; i < n; ++i) selected.push_back(i);
  }

  std::vector<BranchRun> runs;
  if (node.strategy == ExperimentStrategy::kShadow) {
    // Shadows start with the primary and finish in the background: the run goes on once the
    // primary is done and waits for the shadows only before it ends.
    for (size_t j = 1; j < selected.size(); ++j) {
      auto done = deps_.executor.run_in_background([this, &node, key, base = ctx, i = selected[j], stop] {
        (void)run_branch(node, key, base, i, stop);
      });
      std::lock_guard lock(background_mu_);
      background_.push_back(std::move(done));
    }
    runs.push_back(run_branch(node, key, ctx, selected[0], stop));
  } else {
    runs.resize(selected.size());
    size_t limit = static_cast<size_t>(node.max_concurrency.value_or(static_cast<int64_t>(std::min<size_t>(n, 64))));
    deps_.executor.parallel_for_blocking(selected.size(), [&](size_t j) {
      runs[j] = run_branch(node, key, ctx, selected[j], stop);
    }, limit);
  }

  bool suspended = false;
  for (const BranchRun& r : runs) {
    if (r.abort) return make_error(*r.abort);
    suspended = suspended || r.suspended;
  }
  if (suspended) return Flow::kSuspended;

  Json records = Json::array();
  int64_t succeeded = 0, failed = 0;
  for (const BranchRun& r : runs) {
    records.push_back(r.record);
    (r.record.value("status", "") == "success" ? succeeded : failed) += 1;
  }
  // Round robin and shadow hand the caller one branch: its failure is the experiment's, and its
  // changes become the run's own. A multi-branch experiment never fails for a branch.
  const bool single = node.strategy != ExperimentStrategy::kMultiBranch;
  if (single && !runs[0].context) return make_error(branch_error(node, runs[0].record));
  Delta merged;
  for (const BranchRun& r : runs) {
    if (!r.context) continue;
    Delta d = r.context->changes_since(ctx, single);
    merged.insert(merged.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
  }
  merged.push_back({Mutation::Kind::kState, node.name, Json{{"strategy", strategy_name(node.strategy)}, {"branches", std::move(records)}}});
  merged.push_back({Mutation::Kind::kMetric, node.name + ".succeeded", succeeded});
  merged.push_back({Mutation::Kind::kMetric, node.name + ".failed", failed});
  ctx.apply(merged);
  return Flow::kContinue;
}

}  // namespace crucible::engine_internal
