#include <algorithm>
#include <map>
#include <set>

#include "crucible/core/suggest.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/workflow/loader.h"
#include "validate_internal.h"

namespace crucible {
namespace validate_internal {

std::string suggest(const std::string& word, const std::vector<std::string>& candidates) {
  return closest_match(word, candidates);
}

Completion default_completion(StageKind kind) {
  switch (kind) {
    case StageKind::kPlain: return Completion::kOnce;
    case StageKind::kExecute: return Completion::kDuration;
    case StageKind::kPrepare:
    case StageKind::kCleanup: return Completion::kTasksDone;
    case StageKind::kCustom: return Completion::kScriptExit;
    case StageKind::kHybrid: return Completion::kDurationOrTasks;
    case StageKind::kValidation: return Completion::kValidationPassed;
  }
  return Completion::kOnce;
}

std::vector<Completion> allowed_completions(StageKind kind) {
  switch (kind) {
    case StageKind::kPlain:
      return {Completion::kOnce, Completion::kDuration, Completion::kTasksDone, Completion::kDurationOrTasks};
    case StageKind::kExecute: return {Completion::kDuration, Completion::kDurationOrTasks};
    case StageKind::kPrepare:
    case StageKind::kCleanup: return {Completion::kTasksDone, Completion::kDurationOrTasks};
    case StageKind::kCustom: return {Completion::kScriptExit, Completion::kDurationOrTasks};
    case StageKind::kHybrid: return {Completion::kDurationOrTasks};
    case StageKind::kValidation: return {Completion::kValidationPassed};
  }
  return {};
}

}  // namespace validate_internal

namespace {

using validate_internal::allowed_completions;

class Validator {
 public:
  explicit Validator(const StageRegistry& registry) : registry_(registry) {}

  std::vector<Diagnostic> run(const WorkflowSpec& spec) {
    models_ = spec.models;
    if (spec.name.empty()) add(SourceLocation{spec.file, 0, 0}, "name", "a pipeline needs a name");
    if (spec.stages.empty()) add(SourceLocation{spec.file, 1, 1}, "stages", "the pipeline has no stages");
    check_list(spec.stages, "stages");
    return std::move(diags_);
  }

 private:
  void add(const SourceLocation& loc, const std::string& field, std::string msg,
           Diagnostic::Severity sev = Diagnostic::Severity::kError) {
    diags_.push_back({sev, loc, field, std::move(msg)});
  }

  void check_list(const std::vector<Node>& nodes, const std::string& field, std::set<std::string>* names = nullptr) {
    std::set<std::string> local;
    std::set<std::string>& seen = names != nullptr ? *names : local;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const Node& n = nodes[i];
      std::string f = field + "[" + std::to_string(i) + "] '" + n.name + "'";
      if (n.name.empty()) {
        add(n.loc, field + "[" + std::to_string(i) + "]", "a stage needs a name");
      } else if (!seen.insert(n.name).second) {
        add(n.loc, f + ".name", "duplicate stage name '" + n.name + "'; names must be unique among siblings");
      }
      check_node(n, f);
    }
    check_order(nodes, field);
  }

  // Stages run by `order` when given: every sibling needs one, values are unique, gaps warn.
  void check_order(const std::vector<Node>& nodes, const std::string& field) {
    auto order_of = [](const Node& n) {
      const StageNode* s = n.get_if<StageNode>();
      return s != nullptr ? s->order : std::nullopt;
    };
    size_t with_order = static_cast<size_t>(
        std::count_if(nodes.begin(), nodes.end(), [&](const Node& n) { return order_of(n).has_value(); }));
    if (with_order == 0) return;
    std::map<int64_t, const Node*> by_order;
    for (const Node& n : nodes) {
      std::optional<int64_t> order = order_of(n);
      if (!order) {
        add(n.loc, field, "stage '" + n.name + "' has no 'order' while its siblings do; give every sibling an order");
        continue;
      }
      auto [it, inserted] = by_order.emplace(*order, &n);
      if (!inserted) {
        add(n.loc, field,
            "duplicate order " + std::to_string(*order) + ": stages '" + it->second->name + "' and '" + n.name + "'");
      }
    }
    if (with_order != nodes.size()) return;
    int64_t expected = by_order.begin()->first;
    for (const auto& [order, node] : by_order) {
      if (order != expected) {
        add(node->loc, field,
            "gap in order before stage '" + node->name + "' (order " + std::to_string(order) + ", previous " +
                std::to_string(expected - 1) + ")",
            Diagnostic::Severity::kWarning);
      }
      expected = order + 1;
    }
  }

  void check_node(const Node& n, const std::string& f) {
    if (const auto* s = n.get_if<StageNode>()) check_stage(n, *s, f);
    if (const auto* s = n.get_if<SequenceNode>()) check_list(s->nodes, f + ".sequence");
    if (const auto* l = n.get_if<LoopNode>()) {
      if (l->mode == LoopMode::kUntil && !l->max_iterations) add(n.loc, f + ".loop", "an 'until' loop needs 'max'");
      if (l->body.empty()) add(n.loc, f + ".loop.stages", "the loop body is empty");
      check_list(l->body, f + ".loop.stages");
    }
    if (const auto* c = n.get_if<ConditionalNode>()) {
      if (!c->condition) add(n.loc, f + ".conditional", "a conditional needs 'when'");
      std::set<std::string> names;
      check_list(c->then_nodes, f + ".conditional.then", &names);
      check_list(c->else_nodes, f + ".conditional.else", &names);
    }
    if (const auto* p = n.get_if<ParallelNode>()) check_parallel(n, *p, f);
    if (const auto* e = n.get_if<ExperimentNode>()) {
      if (e->body.empty()) add(n.loc, f + ".experiment.stages", "the experiment has no stages");
      check_list(e->body, f + ".experiment.stages");
    }
  }

  void check_parallel(const Node& n, const ParallelNode& p, const std::string& f) {
    if (p.branches.empty()) add(n.loc, f + ".parallel.branches", "a parallel node needs at least one branch");
    if (p.max_concurrency && *p.max_concurrency < 1) add(n.loc, f + ".parallel.max_concurrency", "must be at least 1");
    std::set<std::string> names;
    for (size_t i = 0; i < p.branches.size(); ++i) {
      const ParallelBranch& b = p.branches[i];
      std::string bf = f + ".parallel.branches[" + std::to_string(i) + "]";
      if (b.name.empty())
        add(n.loc, bf, "a branch needs a name");
      else if (!names.insert(b.name).second)
        add(n.loc, bf, "duplicate branch name '" + b.name + "'");
      if (b.nodes.empty()) add(n.loc, bf + ".stages", "the branch has no stages");
      check_list(b.nodes, bf + ".stages");
    }
  }

  // llm.* stages name a model of the `models:` section.
  void check_model_reference(const Node& n, const StageNode& s, const std::string& f) {
    if (s.uses.rfind("llm.", 0) != 0 || !s.with.is_object() || !s.with.contains("model")) return;
    const Json& m = s.with["model"];
    if (!m.is_string() || m.get<std::string>().find("${") != std::string::npos) return;
    if (models_.is_object() && models_.contains(m.get<std::string>())) return;
    std::string known;
    if (models_.is_object()) {
      for (const auto& [k, _] : models_.items()) known += (known.empty() ? "" : ", ") + k;
    }
    add(n.loc, f + ".with.model",
        "no model '" + m.get<std::string>() + "' in the pipeline's models: section" +
            (known.empty() ? " (add a models: section)" : " (it has: " + known + ")"));
  }

  void check_stage(const Node& n, const StageNode& s, const std::string& f) {
    check_model_reference(n, s, f);
    check_completion(n, s, f);
    std::optional<StageDescription> d = describe(n, s, f);
    if (d && !s.uses.empty()) check_options(n, s, *d, f);
    if (s.hedging) check_hedging(n, s, s.idempotent.value_or(d ? d->idempotent : true), f);
  }

  void check_completion(const Node& n, const StageNode& s, const std::string& f) {
    auto allowed = allowed_completions(s.type);
    const std::string type_text = s.type == StageKind::kPlain ? std::string("a stage without 'type'")
                                                              : "type " + std::string(stage_kind_name(s.type));
    if (std::find(allowed.begin(), allowed.end(), s.completion) == allowed.end()) {
      std::string names;
      for (Completion c : allowed) names += std::string(names.empty() ? "" : ", ") + std::string(completion_name(c));
      std::string msg = "completion " + std::string(completion_name(s.completion)) + " does not fit " + type_text +
                        " (it accepts " + names + ")";
      if (s.type == StageKind::kHybrid && s.completion == Completion::kValidationPassed) {
        msg += "; use `type: validation` for a validation stage, or `completion: duration_or_tasks` for a hybrid one";
      }
      add(n.loc, f + ".completion", msg);
    }
    const bool local = !s.uses.empty() || s.type == StageKind::kCustom;
    if (!local) return;
    if ((s.completion == Completion::kDuration || s.completion == Completion::kDurationOrTasks) && !s.duration) {
      add(n.loc, f,
          "completion " + std::string(completion_name(s.completion)) + " needs '" +
              (s.type == StageKind::kHybrid ? "max_duration" : "duration") + "'");
    }
    if (s.completion == Completion::kTasksDone && !s.expected_tasks) {
      add(n.loc, f,
          "completion tasks_done needs '" +
              std::string(s.type == StageKind::kPlain || s.type == StageKind::kHybrid ? "expected_tasks"
                                                                                      : "expected_objects") +
              "'");
    }
  }

  // A hedged stage runs several attempts at once and keeps one: it must be idempotent.
  void check_hedging(const Node& n, const StageNode& s, bool idempotent, const std::string& f) {
    if (!idempotent) {
      add(n.loc, f + ".hedging", "stage '" + n.name + "' is not idempotent; only idempotent stages can be hedged");
      return;
    }
    if (Status checked = s.hedging->check(); !checked) add(n.loc, f + ".hedging", checked.error().to_string());
  }

  // What the stage node runs: its C++ implementation, its `uses:` type, or for `type: custom` the
  // registry's `command` stage. nullopt (reported) when the registry lacks it, and for kinds
  // that need the distributed workload.
  std::optional<StageDescription> describe(const Node& n, const StageNode& s, const std::string& f) {
    if (s.implementation) return s.implementation->describe();
    if (!s.uses.empty()) {
      auto d = registry_.describe(s.uses);
      if (d) return *d;
      std::string hint = validate_internal::suggest(s.uses, registry_.names());
      add(n.loc, f + ".uses",
          "unknown stage type '" + s.uses + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") +
              " (`crucible stages` lists them)");
      return std::nullopt;
    }
    if (s.type != StageKind::kCustom) return std::nullopt;
    auto d = registry_.describe("command");
    if (d) return *d;
    add(n.loc, f + ".command", "type custom runs through the `command` stage, which this build does not register");
    return std::nullopt;
  }

  // Every string (or string in a list) of an expression option must parse.
  void check_expressions(const Node& n, const std::string& field, const Json& value) {
    std::vector<std::string> texts;
    if (value.is_string()) texts.push_back(value.get<std::string>());
    if (value.is_array()) {
      for (const Json& v : value) {
        if (v.is_string()) texts.push_back(v.get<std::string>());
      }
    }
    for (const std::string& t : texts) {
      if (t.find("${") != std::string::npos) continue;
      auto e = Expression::parse(t);
      if (!e) add(n.loc, field, "bad expression '" + t + "': " + e.error().to_string());
    }
  }

  // The node's `with:` against the stage's options: required ones present, no unknown ones,
  // types that fit, expressions that parse.
  void check_options(const Node& n, const StageNode& s, const StageDescription& d, const std::string& f) {
    const OptionSpec* wildcard = d.option("*");
    for (const OptionSpec& o : d.options) {
      if (o.required && !s.with.contains(o.name)) {
        add(n.loc, f + ".with",
            "stage type '" + s.uses + "' needs option '" + o.name + "' (" + o.type + ": " + o.description + ")");
      }
    }
    for (const auto& [key, value] : s.with.items()) {
      const std::string field = f + ".with." + key;
      if (key.empty()) {
        add(n.loc, f + ".with", "an option name is empty");
        continue;
      }
      const OptionSpec* o = d.option(key);
      const bool empty =
          (o != nullptr && o->type == "string" && value.is_string() && value.get<std::string>().empty()) ||
          (o != nullptr && o->type == "array" && value.is_array() && value.empty());
      if (o != nullptr && o->required && empty) {
        add(n.loc, field, "option '" + key + "' must not be empty");
        continue;
      }
      if (o == nullptr && wildcard != nullptr) {
        if (wildcard->type == "expression") check_expressions(n, field, value);
      } else if (o == nullptr) {
        std::vector<std::string> names;
        for (const OptionSpec& x : d.options) names.push_back(x.name);
        std::string hint = validate_internal::suggest(key, names);
        add(n.loc, field,
            "stage type '" + s.uses + "' has no option '" + key + "'" +
                (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      } else if (o->type == "expression") {
        check_expressions(n, field, value);
      } else {
        check_option_type(n, field, *o, key, value);
      }
    }
  }

  void check_option_type(const Node& n, const std::string& field, const OptionSpec& o, const std::string& key,
                         const Json& value) {
    if (has_templates(value) || o.type == "any") return;
    std::string found = json_type_name(value);
    bool fits = found == o.type || (o.type == "number" && found == "integer") ||
                (o.type == "duration" && (found == "string" || found == "integer" || found == "number"));
    if (o.type == "duration" && value.is_string() && !parse_duration(value.get<std::string>())) fits = false;
    if (!fits)
      add(n.loc, field, "option '" + key + "' must be " + o.type + ", found " + found + " " + json_dump(value));
  }

  const StageRegistry& registry_;
  std::vector<Diagnostic> diags_;
  Json models_;
};

bool needs_remote(const Node& n) {
  const StageNode* s = n.get_if<StageNode>();
  return s != nullptr && s->uses.empty() && s->type != StageKind::kCustom && s->type != StageKind::kPlain;
}

const Node* find_unsupported(const std::vector<Node>& nodes) {
  for (const Node& n : nodes) {
    if (needs_remote(n)) return &n;
    for (const std::vector<Node>* list : child_lists(n)) {
      if (const Node* c = find_unsupported(*list)) return c;
    }
  }
  return nullptr;
}

}  // namespace

std::vector<Diagnostic> validate_spec(const WorkflowSpec& spec, const StageRegistry& registry) {
  return Validator(registry).run(spec);
}

std::optional<std::string> unsupported_reason(const WorkflowSpec& spec) {
  if (!spec.distributed.is_null() && spec.distributed.value("agent_count", 0) > 0) {
    int agents = spec.distributed.value("agent_count", 0);
    return "this pipeline runs across " + std::to_string(agents) +
           (agents == 1 ? " distributed agent" : " distributed agents") +
           ", which Crucible cannot do yet (the `distributed:` section is validated "
           "but not executed); remove the agents to run its stages on this machine";
  }
  if (const Node* n = find_unsupported(spec.stages)) {
    return "stage '" + n->name + "' (type " + std::string(stage_kind_name(n->as<StageNode>().type)) + ", " +
           n->loc.to_string() +
           ") needs the distributed storage workload, which Crucible cannot run yet; give it a `uses:` "
           "body to run it on this machine";
  }
  return std::nullopt;
}

}  // namespace crucible
