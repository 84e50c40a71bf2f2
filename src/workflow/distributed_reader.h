// The loader's reader of sai3-bench's `distributed:` section and stage barriers: validated with
// locations and kept as JSON for distributed runs. Private to workflow.
#pragma once

#include <string>
#include <vector>

#include "crucible/workflow/spec.h"
#include "yaml_reader.h"

namespace crucible::workflow_internal {

inline const std::vector<std::string> kBarrierKeys = {"type",          "heartbeat_interval", "missed_threshold",
                                                      "query_timeout", "query_retries",      "agent_barrier_timeout"};
inline const std::vector<std::string> kDistributedKeys = {"agents",
                                                          "shared_filesystem",
                                                          "tree_creation_mode",
                                                          "path_selection",
                                                          "partition_overlap",
                                                          "path_template",
                                                          "start_delay",
                                                          "grpc_keepalive_interval",
                                                          "grpc_keepalive_timeout",
                                                          "agent_ready_timeout",
                                                          "barrier_sync",
                                                          "stages",
                                                          "ssh",
                                                          "deployment",
                                                          "kv_cache_dir"};
inline const std::vector<std::string> kAgentKeys = {
    "address",       "id",          "target_override", "concurrency_override", "env", "volumes",
    "path_template", "listen_port", "multi_endpoint",  "kv_cache_dir"};
inline const std::vector<std::string> kBarrierSyncKeys = {"enabled",
                                                          "default_heartbeat_interval",
                                                          "default_missed_threshold",
                                                          "default_query_timeout",
                                                          "default_query_retries",
                                                          "validation",
                                                          "prepare",
                                                          "execute",
                                                          "cleanup"};

class DistributedReader : public YamlReader {
 public:
  using YamlReader::YamlReader;
  virtual ~DistributedReader() = default;

 protected:
  // The stage list of a `distributed:` section, read by the loader.
  virtual std::vector<Node> parse_nodes(const YAML::Node& seq, const std::string& field) = 0;

  void parse_distributed(const YAML::Node& d, WorkflowSpec& spec) {
    const std::string f = "distributed";
    if (!check_map(d, f, kDistributedKeys)) return;
    Json out = Json::object();
    if (YAML::Node agents = d["agents"]) {
      if (!agents.IsSequence()) {
        error(agents, f + ".agents", "expected a list of agents, found " + describe(agents));
      } else {
        size_t i = 0;
        for (const auto& a : agents) {
          std::string af = f + ".agents[" + std::to_string(i++) + "]";
          if (!check_map(a, af, kAgentKeys)) continue;
          get_string(a, "address", af, true);
          get_int(a, "listen_port", af);
          get_int(a, "concurrency_override", af);
        }
        out["agents"] = to_json(agents, f + ".agents");
      }
    }
    if (auto b = get_bool(d, "shared_filesystem", f))
      out["shared_filesystem"] = *b;
    else if (!d["shared_filesystem"])
      error(d, f, "missing required key 'shared_filesystem' (true or false)");
    if (auto t = get_choice(d, "tree_creation_mode", f, {"isolated", "coordinator", "concurrent"}, true)) {
      out["tree_creation_mode"] = *t;
    }
    if (auto p = get_choice(d, "path_selection", f, {"random", "partitioned", "exclusive", "weighted"}, true)) {
      out["path_selection"] = *p;
    }
    if (auto o = get_number(d, "partition_overlap", f)) {
      if (*o < 0 || *o > 1) error(d["partition_overlap"], f + ".partition_overlap", "must be between 0 and 1");
      out["partition_overlap"] = *o;
    }
    for (const char* key :
         {"start_delay", "grpc_keepalive_interval", "grpc_keepalive_timeout", "agent_ready_timeout"}) {
      if (auto v = get_duration(d, key, f)) out[key] = v->count();
    }
    if (YAML::Node bs = d["barrier_sync"]) {
      std::string bf = f + ".barrier_sync";
      if (check_map(bs, bf, kBarrierSyncKeys)) {
        get_bool(bs, "enabled", bf);
        for (const char* key : {"default_heartbeat_interval", "default_missed_threshold", "default_query_timeout",
                                "default_query_retries"}) {
          get_int(bs, key, bf);
        }
        for (const char* phase : {"validation", "prepare", "execute", "cleanup"}) {
          if (YAML::Node p = bs[phase]) parse_barrier(p, bf + "." + phase);
        }
        out["barrier_sync"] = to_json(bs, bf);
      }
    }
    for (const char* key : {"ssh", "deployment"}) {
      if (YAML::Node n = d[key]) {
        if (!n.IsMap())
          error(n, f + "." + key, "expected a mapping, found " + describe(n));
        else
          out[key] = to_json(n, f + "." + key);
      }
    }
    if (auto p = get_string(d, "path_template", f)) out["path_template"] = *p;
    if (auto k = get_string(d, "kv_cache_dir", f)) out["kv_cache_dir"] = *k;
    if (YAML::Node stages = d["stages"]) {
      spec.stages = parse_nodes(stages, f + ".stages");
      if (stages.IsSequence() && stages.size() == 0) {
        error(stages, f + ".stages",
              "the stage list is empty; remove it to get the defaults preflight, prepare, execute, cleanup");
      }
    } else {
      spec.stages = default_stages();
    }
    out["agent_count"] = d["agents"] && d["agents"].IsSequence() ? d["agents"].size() : 0;
    spec.distributed = out;
  }

  // sai3-bench's defaults for a staged pipeline without a stage list.
  std::vector<Node> default_stages() const {
    auto make = [&](const char* name, int64_t order, StageKind kind, Completion completion) {
      Node n;
      n.name = name;
      n.loc = {file_, 0, 0};
      StageNode& s = n.body.emplace<StageNode>();
      s.order = order;
      s.type = kind;
      s.completion = completion;
      return n;
    };
    std::vector<Node> out;
    out.push_back(make("preflight", 1, StageKind::kValidation, Completion::kValidationPassed));
    out.back().as<StageNode>().timeout = std::chrono::seconds(300);
    out.push_back(make("prepare", 2, StageKind::kPrepare, Completion::kTasksDone));
    out.push_back(make("execute", 3, StageKind::kExecute, Completion::kDuration));
    out.back().as<StageNode>().duration = std::chrono::seconds(60);
    out.push_back(make("cleanup", 4, StageKind::kCleanup, Completion::kTasksDone));
    return out;
  }

  Json parse_barrier(const YAML::Node& b, const std::string& f) {
    if (!check_map(b, f, kBarrierKeys)) return Json();
    get_choice(b, "type", f, {"all_or_nothing", "majority", "best_effort"});
    for (const char* key :
         {"heartbeat_interval", "missed_threshold", "query_timeout", "query_retries", "agent_barrier_timeout"}) {
      if (auto v = get_int(b, key, f)) {
        if (*v < 0) error(b[key], f + "." + key, "must not be negative");
      }
    }
    return to_json(b, f);
  }
};

}  // namespace crucible::workflow_internal
