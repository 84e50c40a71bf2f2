#include "crucible/workflow/spec.h"

#include "crucible/core/hash.h"

namespace crucible {

std::string SourceLocation::to_string() const {
  std::string out = file.empty() ? "<builder>" : file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  return out;
}

namespace {

Json nodes_to_json(const std::vector<Node>& nodes);

Json node_to_json(const Node& n) {
  Json out = {{"name", n.name}};
  if (n.when) out["when"] = n.when->text();
  switch (n.kind) {
    case NodeKind::kStage:
      out["node"] = "stage";
      out["uses"] = n.uses;
      out["with"] = n.with;
      if (n.order) out["order"] = *n.order;
      if (n.timeout) out["timeout_ms"] = n.timeout->count();
      out["retry"] = n.retry.to_json();
      out["optional"] = n.optional;
      if (n.idempotent) out["idempotent"] = *n.idempotent;
      out["type"] = stage_kind_name(n.stage_kind);
      out["completion"] = completion_name(n.completion);
      if (n.duration) out["duration_ms"] = n.duration->count();
      if (n.expected_tasks) out["expected_tasks"] = *n.expected_tasks;
      if (!n.command.empty()) out["command"] = n.command;
      if (!n.args.empty()) out["args"] = n.args;
      if (!n.barrier.is_null()) out["barrier"] = n.barrier;
      if (n.hedging) out["hedging"] = n.hedging->written;
      break;
    case NodeKind::kSequence:
      out["node"] = "sequence";
      out["stages"] = nodes_to_json(n.children);
      break;
    case NodeKind::kLoop:
      out["node"] = "loop";
      out["mode"] = n.loop_mode == LoopMode::kOver ? "over" : n.loop_mode == LoopMode::kCount ? "count" : "until";
      if (n.over) out["over"] = n.over->text();
      if (n.until) out["until"] = n.until->text();
      if (n.max_iterations) out["max"] = *n.max_iterations;
      out["stages"] = nodes_to_json(n.children);
      break;
    case NodeKind::kConditional:
      out["node"] = "conditional";
      out["then"] = nodes_to_json(n.children);
      out["else"] = nodes_to_json(n.else_children);
      break;
    case NodeKind::kParallel: {
      out["node"] = "parallel";
      out["join"] = join_name(n.join);
      out["merge"] = merge_name(n.merge);
      if (n.max_concurrency) out["max_concurrency"] = *n.max_concurrency;
      Json branches = Json::array();
      for (const ParallelBranch& b : n.branches)
        branches.push_back({{"name", b.name}, {"stages", nodes_to_json(b.nodes)}});
      out["branches"] = branches;
      break;
    }
    case NodeKind::kExperiment:
      out["node"] = "experiment";
      out["strategy"] = strategy_name(n.strategy);
      out["configs"] = n.configs;
      if (!n.sweep.is_null()) out["sweep"] = n.sweep;
      if (n.samples) out["samples"] = *n.samples;
      if (n.samples) out["seed"] = n.sample_seed;
      if (n.max_concurrency) out["max_concurrency"] = *n.max_concurrency;
      out["stages"] = nodes_to_json(n.children);
      break;
  }
  return out;
}

Json nodes_to_json(const std::vector<Node>& nodes) {
  Json out = Json::array();
  for (const Node& n : nodes) out.push_back(node_to_json(n));
  return out;
}

}  // namespace

Json spec_to_json(const WorkflowSpec& spec) {
  Json out = {{"name", spec.name},
              {"durability", durability_name(spec.durability)},
              {"config", spec.config},
              {"stages", nodes_to_json(spec.stages)}};
  if (!spec.distributed.is_null()) out["distributed"] = spec.distributed;
  if (!spec.reliability.is_null()) out["reliability"] = spec.reliability;
  if (!spec.models.is_null()) out["models"] = spec.models;
  return out;
}

std::string spec_hash(const WorkflowSpec& spec) {
  if (!spec.hash.empty()) return spec.hash;
  return sha256_hex(spec_to_json(spec).dump());
}

}  // namespace crucible
