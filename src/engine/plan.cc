#include "crucible/engine/plan.h"

#include <unordered_map>

namespace crucible {
namespace {

class Binder {
 public:
  explicit Binder(const StageRegistry& registry) : registry_(registry) {}

  Result<PlanList> bind_list(const std::vector<Node>& nodes) {
    PlanList out;
    out.reserve(nodes.size());
    for (const Node* n : run_order(nodes)) {
      CRUCIBLE_ASSIGN_OR_RETURN(PlanNode bound, bind_node(*n));
      out.push_back(std::move(bound));
    }
    return out;
  }

 private:
  Result<PlanNode> bind_node(const Node& n) {
    PlanNode p;
    p.node = &n;
    if (const StageNode* s = n.get_if<StageNode>()) CRUCIBLE_RETURN_IF_ERROR(bind_stage(*s, p));
    for (const std::vector<Node>* list : child_lists(n)) {
      CRUCIBLE_ASSIGN_OR_RETURN(PlanList bound, bind_list(*list));
      p.lists.push_back(std::move(bound));
    }
    return p;
  }

  Status bind_stage(const StageNode& s, PlanNode& p) {
    const bool custom = s.uses.empty() && s.type == StageKind::kCustom;
    if (s.implementation) {
      p.stage = s.implementation.get();
      p.idempotent = p.stage->describe().idempotent;
    } else if (!s.uses.empty() || custom) {
      CRUCIBLE_ASSIGN_OR_RETURN(const TypeInfo info, type_info(custom ? kCommand : s.uses));
      p.owned = (*info.factory)();
      p.stage = p.owned.get();
      p.idempotent = info.idempotent;
    }
    if (s.idempotent) p.idempotent = *s.idempotent;
    if (s.hedging) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto policy, HedgePolicy::create(*s.hedging));
      p.hedge_policy = std::shared_ptr<HedgePolicy>(std::move(policy));
      p.max_hedges = s.hedging->max_hedges;
    }
    return {};
  }

  // What every stage of one type shares: its factory and whether it is idempotent (a type
  // describes itself the same way every time). Looked up once per type and plan.
  struct TypeInfo {
    const StageFactory* factory = nullptr;
    bool idempotent = true;
  };

  Result<TypeInfo> type_info(const std::string& type) {
    if (last_ != nullptr && last_->first == type) return last_->second;
    auto it = types_.find(type);
    if (it == types_.end()) {
      const StageFactory* factory = registry_.factory(type);
      if (factory == nullptr) return make_error(registry_.create(type).error());
      std::unique_ptr<Stage> probe = (*factory)();
      it = types_.emplace(type, TypeInfo{factory, probe->describe().idempotent}).first;
    }
    last_ = &*it;
    return it->second;
  }

  inline static const std::string kCommand = "command";
  const StageRegistry& registry_;
  std::unordered_map<std::string, TypeInfo> types_;
  const std::pair<const std::string, TypeInfo>* last_ = nullptr;
};

}  // namespace

Result<Plan> bind_plan(const WorkflowSpec& spec, const StageRegistry& registry) {
  CRUCIBLE_ASSIGN_OR_RETURN(PlanList stages, Binder(registry).bind_list(spec.stages));
  return Plan{std::move(stages)};
}

}  // namespace crucible
