// The plan of one run: the spec's tree in run order, with each stage node bound to a fresh stage
// instance and its hedge policy. The spec is the definition and is never changed; the runner
// binds a plan per execution and owns it.
#pragma once

#include <memory>
#include <vector>

#include "crucible/core/stage.h"
#include "crucible/reliability/hedging.h"
#include "crucible/workflow/spec.h"

namespace crucible {

struct PlanNode;
using PlanList = std::vector<PlanNode>;

struct PlanNode {
  const Node* node = nullptr;  // the definition, owned by the spec

  // Stage nodes.
  Stage* stage = nullptr;                     // null for kinds that need the distributed workload
  std::unique_ptr<Stage> owned;               // the instance made for this plan (not the builder's implementation)
  bool idempotent = true;                     // `idempotent:`, else the stage's description
  std::shared_ptr<HedgePolicy> hedge_policy;  // set when the stage is hedged
  int max_hedges = 1;

  // The child lists, in Node::child_lists order (a conditional's then and else, one per parallel
  // branch), each in run order.
  std::vector<PlanList> lists;

  const std::string& name() const { return node->name; }
  const StageNode& stage_node() const { return node->as<StageNode>(); }
  const PlanList& body() const { return lists.at(0); }
};

struct Plan {
  PlanList stages;  // the root sequence
};

// Binds `spec`, which validation accepted: a new stage instance per stage node (its C++
// implementation, its `uses:` type, or `command` for `type: custom`), a hedge policy per hedged
// stage, siblings in `order`. kNotFound or kInvalidArgument when the registry cannot create a
// stage or a policy. The spec must outlive the plan.
[[nodiscard]] Result<Plan> bind_plan(const WorkflowSpec& spec, const StageRegistry& registry);

}  // namespace crucible
