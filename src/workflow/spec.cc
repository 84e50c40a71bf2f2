#include "crucible/workflow/spec.h"

#include <algorithm>

#include "crucible/core/hash.h"

namespace crucible {

std::string SourceLocation::to_string() const {
  std::string out = file.empty() ? "<builder>" : file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  return out;
}

std::vector<const std::vector<Node>*> child_lists(const Node& node) {
  struct Visit {
    std::vector<const std::vector<Node>*> operator()(const StageNode&) const { return {}; }
    std::vector<const std::vector<Node>*> operator()(const SequenceNode& s) const { return {&s.nodes}; }
    std::vector<const std::vector<Node>*> operator()(const LoopNode& l) const { return {&l.body}; }
    std::vector<const std::vector<Node>*> operator()(const ConditionalNode& c) const {
      return {&c.then_nodes, &c.else_nodes};
    }
    std::vector<const std::vector<Node>*> operator()(const ParallelNode& p) const {
      std::vector<const std::vector<Node>*> out;
      for (const ParallelBranch& b : p.branches) out.push_back(&b.nodes);
      return out;
    }
    std::vector<const std::vector<Node>*> operator()(const ExperimentNode& e) const { return {&e.body}; }
  };
  return std::visit(Visit{}, node.body);
}

std::vector<const Node*> run_order(const std::vector<Node>& list) {
  std::vector<const Node*> out;
  out.reserve(list.size());
  for (const Node& n : list) out.push_back(&n);
  auto order_of = [](const Node* n) {
    const StageNode* s = n->get_if<StageNode>();
    return s != nullptr ? s->order : std::nullopt;
  };
  if (!out.empty() && std::all_of(out.begin(), out.end(), [&](const Node* n) { return order_of(n).has_value(); })) {
    std::stable_sort(out.begin(), out.end(), [&](const Node* a, const Node* b) { return *order_of(a) < *order_of(b); });
  }
  return out;
}

namespace {

Json nodes_to_json(const std::vector<Node>& nodes);

void stage_to_json(const StageNode& s, Json& out) {
  out["node"] = "stage";
  out["uses"] = s.uses;
  out["with"] = s.with;
  if (s.order) out["order"] = *s.order;
  if (s.timeout) out["timeout_ms"] = s.timeout->count();
  out["retry"] = s.retry.to_json();
  out["optional"] = s.optional;
  if (s.idempotent) out["idempotent"] = *s.idempotent;
  out["type"] = stage_kind_name(s.type);
  out["completion"] = completion_name(s.completion);
  if (s.duration) out["duration_ms"] = s.duration->count();
  if (s.expected_tasks) out["expected_tasks"] = *s.expected_tasks;
  if (!s.command.empty()) out["command"] = s.command;
  if (!s.args.empty()) out["args"] = s.args;
  if (!s.barrier.is_null()) out["barrier"] = s.barrier;
  if (s.hedging) out["hedging"] = s.hedging->written;
}

void loop_to_json(const LoopNode& l, Json& out) {
  out["node"] = "loop";
  out["mode"] = l.mode == LoopMode::kOver ? "over" : l.mode == LoopMode::kCount ? "count" : "until";
  if (l.over) out["over"] = l.over->text();
  if (l.until) out["until"] = l.until->text();
  if (l.max_iterations) out["max"] = *l.max_iterations;
  out["stages"] = nodes_to_json(l.body);
}

void parallel_to_json(const ParallelNode& p, Json& out) {
  out["node"] = "parallel";
  out["join"] = join_name(p.join);
  out["merge"] = merge_name(p.merge);
  if (p.max_concurrency) out["max_concurrency"] = *p.max_concurrency;
  Json branches = Json::array();
  for (const ParallelBranch& b : p.branches) branches.push_back({{"name", b.name}, {"stages", nodes_to_json(b.nodes)}});
  out["branches"] = branches;
}

void experiment_to_json(const ExperimentNode& e, Json& out) {
  out["node"] = "experiment";
  out["strategy"] = strategy_name(e.strategy);
  out["configs"] = e.configs;
  if (!e.sweep.is_null()) out["sweep"] = e.sweep;
  if (e.samples) out["samples"] = *e.samples;
  if (e.samples) out["seed"] = e.sample_seed;
  if (e.max_concurrency) out["max_concurrency"] = *e.max_concurrency;
  out["stages"] = nodes_to_json(e.body);
}

// The canonical form: kind-specific fields, lists in run order; a conditional's predicate is
// its "when".
Json node_to_json(const Node& n) {
  Json out = {{"name", n.name}};
  if (n.when) out["when"] = n.when->text();
  if (const auto* s = n.get_if<StageNode>()) stage_to_json(*s, out);
  if (const auto* s = n.get_if<SequenceNode>()) {
    out["node"] = "sequence";
    out["stages"] = nodes_to_json(s->nodes);
  }
  if (const auto* l = n.get_if<LoopNode>()) loop_to_json(*l, out);
  if (const auto* c = n.get_if<ConditionalNode>()) {
    out["node"] = "conditional";
    if (c->condition) out["when"] = c->condition->text();
    out["then"] = nodes_to_json(c->then_nodes);
    out["else"] = nodes_to_json(c->else_nodes);
  }
  if (const auto* p = n.get_if<ParallelNode>()) parallel_to_json(*p, out);
  if (const auto* e = n.get_if<ExperimentNode>()) experiment_to_json(*e, out);
  return out;
}

Json nodes_to_json(const std::vector<Node>& nodes) {
  Json out = Json::array();
  for (const Node* n : run_order(nodes)) out.push_back(node_to_json(*n));
  return out;
}

}  // namespace

Json spec_to_json(const WorkflowSpec& spec) {
  Json out = {{"name", spec.name},
              {"durability", durability_name(spec.durability)},
              {"config", spec.config},
              {"stages", nodes_to_json(spec.stages)}};
  if (!spec.distributed.is_null()) out["distributed"] = spec.distributed;
  if (spec.timeout) out["timeout_ms"] = spec.timeout->count();
  if (!spec.reliability.is_null()) out["reliability"] = spec.reliability;
  if (!spec.models.is_null()) out["models"] = spec.models;
  return out;
}

std::string spec_hash(const WorkflowSpec& spec) {
  if (!spec.hash.empty()) return spec.hash;
  return sha256_hex(json_dump(spec_to_json(spec)));
}

}  // namespace crucible
