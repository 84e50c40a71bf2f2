// The experiment node: its branches run through experiment::Strategy, each journaled as one
// decision record so a finished branch never runs again.
#include <map>

#include "crucible/experiment/branch.h"
#include "crucible/experiment/run_logger.h"
#include "crucible/experiment/strategy.h"
#include "walk.h"

namespace crucible::engine_internal {

namespace {

Error branch_error(const PlanNode& node, const Json& record) {
  const Json& e = record.value("error", Json());
  ErrorCode code = ErrorCode::kUnknown;
  std::string message = "branch failed";
  if (e.is_object()) {
    code = parse_error_code(e.value("code", "unknown")).value_or(ErrorCode::kUnknown);
    message = e.value("message", message);
  }
  const ExperimentStrategy strategy = node.node->as<ExperimentNode>().strategy;
  return Error(code, "experiment '" + node.name() + "' (" + std::string(strategy_name(strategy)) + ") branch " +
                         record.value("config_id", std::string()) + ": " + message);
}

// A finished branch's outcome, journaled as one decision: its config, status, duration, the
// metrics it recorded and its error.
Json branch_record(const Json& config, const std::string& id, const Result<Flow>& flow, const Delta& changes,
                   int64_t duration_us) {
  Json metrics = Json::object();
  for (const Mutation& m : changes) {
    if (m.kind == Mutation::Kind::kMetric) metrics[m.key] = m.value;
  }
  return Json{
      {"config_id", id},
      {"config", config},
      {"status", flow ? "success" : "failed"},
      {"duration_ms", static_cast<double>(duration_us) / 1000.0},
      {"metrics", std::move(metrics)},
      {"error",
       flow ? Json() : Json{{"code", error_code_name(flow.error().code())}, {"message", flow.error().message()}}}};
}

}  // namespace

Execution::BranchRun Execution::run_branch(const PlanNode& node, const StepKey& key, const Context& base, size_t index,
                                           const std::stop_token& stop) {
  const Json& config = node.node->as<ExperimentNode>().configs[index];
  const std::string id = config_id_of(config);
  const StepKey bkey = key.branch(id);
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
  auto flow = exec_list(node.body(), bkey, bctx, stop);
  if (journal_failed()) {
    std::lock_guard lock(mu_);
    out.abort = *journal_error_;
    return out;
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
  Json record = branch_record(config, id, flow, bctx.changes_since(base), micros_since(deps_.clock, start));
  return journal_branch(record_key, std::move(record), flow ? std::optional<Context>(std::move(bctx)) : std::nullopt);
}

// A branch's outcome is one decision record: once journaled, the branch never runs again.
Execution::BranchRun Execution::journal_branch(const std::string& record_key, Json record,
                                               std::optional<Context> context) {
  BranchRun out;
  Record r = make_record(RecordType::kDecision, StepKey::from_string(record_key));
  r.payload = record;
  if (auto s = append(std::move(r), durability_ == Durability::kStrict ? Durability::kStrict : Durability::kBatched);
      !s) {
    out.abort = s.error();
    return out;
  }
  out.record = std::move(record);
  out.context = std::move(context);
  return out;
}

namespace {

// Options for the strategy that picks and runs an experiment node's branches. The name keys
// round robin's rotation in the journal: round_robin/<pipeline><node's step key>, shared by every
// run of the pipeline.
StrategyOptions node_strategy_options(const ExperimentNode& node, const StepKey& key, const std::string& pipeline,
                                      Deps& deps) {
  StrategyOptions o;
  o.experiment = pipeline + key.str();
  o.executor = &deps.executor;
  o.clock = &deps.clock;
  o.journal = &deps.journal;
  o.max_concurrency = static_cast<size_t>(
      node.max_concurrency.value_or(static_cast<int64_t>(std::min<size_t>(node.configs.size(), 64))));
  return o;
}

}  // namespace

// The branches run through experiment::Strategy: it decides which configs run and how (one in
// rotation, all at once, or a primary with shadows in the background); each branch is the node's
// stages on a copy of the context, journaled by run_branch(). Results are collected by config.
Result<Flow> Execution::exec_experiment(const PlanNode& pnode, const StepKey& key, Context& ctx,
                                        const std::stop_token& stop) {
  const ExperimentNode& node = pnode.node->as<ExperimentNode>();
  const size_t n = node.configs.size();
  auto runs = std::make_shared<std::vector<std::optional<BranchRun>>>(n);
  std::vector<size_t> selected;
  ctx.share_history();  // every branch starts from a copy
  if (auto pick = replay_.decisions.find(key.str() + "#pick"); pick != replay_.decisions.end()) {
    // A round-robin pick made before a crash replays that branch, never the next in rotation.
    size_t i = pick->second.get<size_t>();
    (*runs)[i] = run_branch(pnode, key, ctx, i, stop);
    selected.push_back(i);
  } else {
    selected = run_strategy(pnode, key, ctx, runs, stop);
  }
  if (selected.empty()) {
    std::lock_guard lock(mu_);
    return make_error(
        journal_error_.value_or(Error(ErrorCode::kInternal, "experiment '" + pnode.name() + "' ran no branch")));
  }
  return finish_experiment(pnode, ctx, *runs, selected);
}

// Runs the branches through the node's strategy; returns the branches whose outcome is the
// node's (every one that ran; the primary alone for shadow).
std::vector<size_t> Execution::run_strategy(const PlanNode& pnode, const StepKey& key, const Context& ctx,
                                            const std::shared_ptr<std::vector<std::optional<BranchRun>>>& runs,
                                            const std::stop_token& stop) {
  const ExperimentNode& node = pnode.node->as<ExperimentNode>();
  const size_t n = node.configs.size();
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < n; ++i) index_of.emplace(config_id_of(node.configs[i]), i);
  std::vector<size_t> selected;
  auto base = std::make_shared<const Context>(ctx);  // shadows outlive this call
  const bool round_robin = node.strategy == ExperimentStrategy::kRoundRobin;
  BranchFn fn = [this, &pnode, key, base, runs, index_of, stop, round_robin](const Json& config,
                                                                             std::stop_token) -> Result<Json> {
    const size_t i = index_of.at(config_id_of(config));
    if (round_robin) {
      CRUCIBLE_RETURN_IF_ERROR(decide(key, "#pick", [i]() -> Result<Json> { return Json(i); }));
    }
    BranchRun r = run_branch(pnode, key, *base, i, stop);
    Json record = r.record;
    (*runs)[i] = std::move(r);
    return record;
  };
  const StrategyOptions options = node_strategy_options(node, key, spec_.name, deps_);
  const std::vector<Json> configs = node.configs.get<std::vector<Json>>();
  // Each strategy's own result is ignored: the outcomes are in `runs`.
  if (node.strategy == ExperimentStrategy::kShadow) {
    auto shadow = std::make_unique<Shadow>(options);
    (void)shadow->run(fn, configs, nullptr);
    selected.push_back(0);
    std::lock_guard lock(background_mu_);
    background_.push_back(std::move(shadow));  // joined before the run ends
  } else if (node.strategy == ExperimentStrategy::kRoundRobin) {
    (void)RoundRobin(options).run(fn, configs, nullptr);
  } else {
    (void)MultiBranch(options).run(fn, configs, nullptr);
  }
  for (size_t i = 0; i < n && node.strategy != ExperimentStrategy::kShadow; ++i) {
    if ((*runs)[i]) selected.push_back(i);
  }
  return selected;
}

Result<Flow> Execution::finish_experiment(const PlanNode& pnode, Context& ctx,
                                          const std::vector<std::optional<BranchRun>>& all,
                                          const std::vector<size_t>& selected) {
  const ExperimentNode& node = pnode.node->as<ExperimentNode>();
  const std::string& name = pnode.name();
  std::vector<const BranchRun*> runs;
  for (size_t i : selected) {
    if (!all[i]) return make_error(ErrorCode::kInternal, "experiment '" + name + "': a branch has no outcome");
    runs.push_back(&*all[i]);
  }
  bool suspended = false;
  for (const BranchRun* r : runs) {
    if (r->abort) return make_error(*r->abort);
    suspended = suspended || r->suspended;
  }
  if (suspended) return Flow::kSuspended;

  Json records = Json::array();
  int64_t succeeded = 0, failed = 0;
  for (const BranchRun* r : runs) {
    records.push_back(r->record);
    (r->record.value("status", "") == "success" ? succeeded : failed) += 1;
  }
  // Round robin and shadow hand the caller one branch: its failure is the experiment's, and its
  // changes become the run's own. A multi-branch experiment never fails for a branch.
  const bool single = node.strategy != ExperimentStrategy::kMultiBranch;
  if (single && !runs[0]->context) return make_error(branch_error(pnode, runs[0]->record));
  Delta merged;
  for (const BranchRun* r : runs) {
    if (!r->context) continue;
    Delta d = r->context->changes_since(ctx, single);
    merged.insert(merged.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
  }
  merged.push_back({Mutation::Kind::kState, name,
                    Json{{"strategy", strategy_name(node.strategy)}, {"branches", std::move(records)}}});
  merged.push_back({Mutation::Kind::kMetric, name + ".succeeded", succeeded});
  merged.push_back({Mutation::Kind::kMetric, name + ".failed", failed});
  ctx.apply(merged);
  return Flow::kContinue;
}

}  // namespace crucible::engine_internal
