// The parallel node: branches on the executor's pool, join policies, and the deterministic merge.
#include <map>

#include "walk.h"

namespace crucible::engine_internal {

// A join decided before a crash replays only the winner; nullopt when there is no such decision.
std::optional<Result<Flow>> Execution::replay_parallel_winner(const PlanNode& pnode, const StepKey& key, Context& ctx,
                                                              const std::stop_token& stop) {
  const ParallelNode& node = pnode.node->as<ParallelNode>();
  auto it = replay_.decisions.find(key.str() + "#winner");
  if (node.join == JoinPolicy::kAll || it == replay_.decisions.end()) return std::nullopt;
  const size_t n = node.branches.size();
  for (size_t i = 0; i < n; ++i) {
    if (node.branches[i].name != it->second.get<std::string>()) continue;
    std::vector<std::optional<Context>> one(n);
    ctx.share_history();
    auto flow = exec_list(pnode.lists[i], key.child(node.branches[i].name), one[i].emplace(ctx), stop);
    if (!flow || *flow == Flow::kSuspended) return flow;
    CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, {i}, one));
    return Flow::kContinue;
  }
  return std::nullopt;
}

Result<Flow> Execution::exec_parallel(const PlanNode& pnode, const StepKey& key, Context& ctx,
                                      const std::stop_token& stop) {
  if (!replay_.empty()) {
    if (auto replayed = replay_parallel_winner(pnode, key, ctx, stop)) return std::move(*replayed);
  }
  const ParallelNode& node = pnode.node->as<ParallelNode>();
  const size_t n = node.branches.size();
  ParallelRun run(n);
  ctx.share_history();  // each branch's copy then costs what the branch adds, not the whole run
  std::stop_callback forward(stop, [&run] { run.group.request_stop(); });
  // Each branch copies the context when it starts, on the thread that runs it.
  deps_.executor.parallel_for(
      n, [&](size_t i) { run_parallel_branch(pnode, key, ctx, i, run); },
      static_cast<size_t>(node.max_concurrency.value_or(0)));
  if (journal_failed()) {
    std::lock_guard lock(mu_);
    return make_error(*journal_error_);
  }
  return node.join == JoinPolicy::kAll ? join_all(pnode, ctx, run) : join_first(pnode, key, ctx, run);
}

void Execution::run_parallel_branch(const PlanNode& pnode, const StepKey& key, const Context& ctx, size_t i,
                                    ParallelRun& run) {
  const ParallelNode& node = pnode.node->as<ParallelNode>();
  const ParallelBranch& b = node.branches[i];
  if (run.group.stop_requested() && node.join != JoinPolicy::kAll) {
    run.results[i] = make_error(ErrorCode::kCancelled, "branch '" + b.name + "' was not started: the join was decided");
    return;
  }
  Context& branch = run.contexts[i].emplace(ctx);
  auto flow = exec_list(pnode.lists[i], key.child(b.name), branch, run.group.get_token());
  bool finished_ok = flow && *flow == Flow::kContinue;
  run.results[i] = std::move(flow);
  if (node.join == JoinPolicy::kAll) return;
  std::lock_guard lock(run.winner_mu);
  if (!run.winner && (node.join == JoinPolicy::kRace || finished_ok)) {
    run.winner = i;
    run.group.request_stop();
  }
}

Result<Flow> Execution::join_all(const PlanNode& pnode, Context& ctx, ParallelRun& run) {
  const size_t n = run.results.size();
  bool suspended = false;
  for (size_t i = 0; i < n; ++i) {
    if (!*run.results[i]) return make_error(run.results[i]->error());
    suspended = suspended || **run.results[i] == Flow::kSuspended;
  }
  if (suspended) return Flow::kSuspended;
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, all, run.contexts));
  return Flow::kContinue;
}

// join: any or race. The winner is journaled, so a replay takes the same branch.
Result<Flow> Execution::join_first(const PlanNode& pnode, const StepKey& key, Context& ctx, ParallelRun& run) {
  if (!run.winner) {
    for (auto& r : run.results) {
      if (!*r) return make_error(r->error());
    }
    return Flow::kSuspended;
  }
  const size_t w = *run.winner;
  const Result<Flow>& won = *run.results[w];
  const std::string& name = pnode.node->as<ParallelNode>().branches[w].name;
  auto decided = decide(key, "#winner", [&]() -> Result<Json> { return Json(name); });
  if (!decided) return make_error(decided.error());
  if (!won) return make_error(won.error());
  if (*won == Flow::kSuspended) return Flow::kSuspended;
  CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, {w}, run.contexts));
  return Flow::kContinue;
}

Status Execution::merge(const PlanNode& pnode, Context& ctx, const std::vector<size_t>& winners,
                        const std::vector<std::optional<Context>>& branches) {
  struct Write {
    size_t branch;
    Json value;
  };
  const ParallelNode& node = pnode.node->as<ParallelNode>();
  std::map<std::string, Write> writes[2];  // state, artifacts
  Delta merged;
  for (size_t b : winners) {
    for (Mutation& m : branches[b]->changes_since(ctx)) {
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
                            "parallel '" + pnode.name() + "': branches '" + node.branches[it->second.branch].name +
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

}  // namespace crucible::engine_internal
