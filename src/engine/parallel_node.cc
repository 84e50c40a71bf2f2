// The parallel node: branches on the executor's pool, join policies, and the deterministic merge.
#include <map>

#include "walk.h"

namespace crucible::engine_internal {

Result<Flow> Execution::exec_parallel(const PlanNode& pnode, const StepKey& key, Context& ctx,
                                      const std::stop_token& stop) {
  const ParallelNode& node = pnode.node->as<ParallelNode>();
  const size_t n = node.branches.size();
  // A join decided before a crash replays only the winner.
  if (node.join != JoinPolicy::kAll) {
    if (auto it = replay_.decisions.find(key.str() + "#winner"); it != replay_.decisions.end()) {
      for (size_t i = 0; i < n; ++i) {
        if (node.branches[i].name != it->second.get<std::string>()) continue;
        std::vector<std::optional<Context>> one(n);
        auto flow = exec_list(pnode.lists[i], key.child(node.branches[i].name), one[i].emplace(ctx), stop);
        if (!flow || *flow == Flow::kSuspended) return flow;
        CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, {i}, one));
        return Flow::kContinue;
      }
    }
  }

  // Each branch copies the context when it starts, on the thread that runs it.
  std::vector<std::optional<Context>> branches(n);
  std::vector<std::optional<Result<Flow>>> results(n);
  std::stop_source group;
  std::stop_callback forward(stop, [&group] { group.request_stop(); });
  std::mutex winner_mu;
  std::optional<size_t> winner;
  deps_.executor.parallel_for(
      n,
      [&](size_t i) {
        if (group.stop_requested() && node.join != JoinPolicy::kAll) {
          results[i] = make_error(ErrorCode::kCancelled,
                                  "branch '" + node.branches[i].name + "' was not started: the join was decided");
          return;
        }
        Context& branch = branches[i].emplace(ctx);
        auto flow = exec_list(pnode.lists[i], key.child(node.branches[i].name), branch, group.get_token());
        bool finished_ok = flow && *flow == Flow::kContinue;
        results[i] = std::move(flow);
        if (node.join == JoinPolicy::kAll) return;
        std::lock_guard lock(winner_mu);
        if (!winner && (node.join == JoinPolicy::kRace || finished_ok)) {
          winner = i;
          group.request_stop();
        }
      },
      static_cast<size_t>(node.max_concurrency.value_or(0)));

  if (journal_failed()) {
    std::lock_guard lock(mu_);
    return make_error(*journal_error_);
  }
  if (node.join == JoinPolicy::kAll) {
    bool suspended = false;
    for (size_t i = 0; i < n; ++i) {
      if (!*results[i]) return make_error(results[i]->error());
      suspended = suspended || **results[i] == Flow::kSuspended;
    }
    if (suspended) return Flow::kSuspended;
    std::vector<size_t> all(n);
    for (size_t i = 0; i < n; ++i) all[i] = i;
    CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, all, branches));
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
  CRUCIBLE_RETURN_IF_ERROR(merge(pnode, ctx, {*winner}, branches));
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
