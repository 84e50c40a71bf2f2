#include "crucible/workflow/loader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include <yaml-cpp/yaml.h>

#include "crucible/experiment/branch.h"
#include "crucible/experiment/sweep.h"
#include "crucible/llm/models.h"
#include "crucible/reliability/hedging_config.h"
#include "distributed_reader.h"
#include "validate_internal.h"
#include "yaml_limits.h"
#include "yaml_reader.h"

namespace crucible {

std::string Diagnostic::to_string() const {
  std::string out = loc.to_string();
  out += severity == Severity::kError ? ": error: " : ": warning: ";
  if (!field.empty()) out += field + ": ";
  out += message;
  return out;
}

std::string LoadResult::report() const {
  std::string out;
  for (const Diagnostic& d : diagnostics) out += d.to_string() + "\n";
  return out;
}

size_t LoadResult::error_count() const {
  return static_cast<size_t>(std::count_if(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::kError;
  }));
}

namespace {

using workflow_internal::DistributedReader;
using workflow_internal::YamlLimits;

constexpr size_t kMaxFileBytes = size_t{8} << 20;
constexpr size_t kMaxNameLength = 128;
using workflow_internal::join;

// Keys each kind of mapping accepts.
const std::vector<std::string> kTopKeys = {"name",        "description", "durability", "timeout",    "config",
                                           "reliability", "models",      "stages",     "distributed"};
const std::vector<std::string> kStageKeys = {
    "name",           "uses",         "with",    "order",      "timeout",     "retry",    "optional",
    "completion",     "barrier",      "when",    "idempotent", "type",        "duration", "expected_objects",
    "expected_tasks", "max_duration", "command", "args",       "description", "hedging"};
const std::vector<std::string> kLoopNodeKeys = {"name", "loop", "when", "description"};
const std::vector<std::string> kLoopKeys = {"over", "count", "until", "max", "stages"};
const std::vector<std::string> kCondNodeKeys = {"name", "conditional", "description"};
const std::vector<std::string> kCondKeys = {"when", "then", "else"};
const std::vector<std::string> kParNodeKeys = {"name", "parallel", "when", "description"};
const std::vector<std::string> kParKeys = {"join", "merge", "max_concurrency", "branches"};
const std::vector<std::string> kBranchKeys = {"name", "stages"};
const std::vector<std::string> kExpNodeKeys = {"name", "experiment", "when", "description"};
const std::vector<std::string> kExpKeys = {"strategy", "configs",         "sweep", "samples",
                                           "seed",     "max_concurrency", "stages"};
const std::vector<std::string> kSeqNodeKeys = {"name", "sequence", "when", "description"};
const std::vector<std::string> kRetryKeys = {"attempts", "backoff", "max_backoff", "multiplier",
                                             "jitter",   "on",      "max_elapsed"};

// The error for a file whose byte `at` is not UTF-8 (a Latin-1 file, say), at its line and column.
Diagnostic not_utf8(std::string_view text, size_t at, const std::string& file) {
  size_t line_start = text.rfind('\n', at == 0 ? 0 : at - 1);
  line_start = line_start == std::string_view::npos || at == 0 ? 0 : line_start + 1;
  const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(at), '\n'));
  char byte[8];
  std::snprintf(byte, sizeof(byte), "0x%02X", static_cast<unsigned char>(text[at]));
  return {Diagnostic::Severity::kError,
          {file, line, static_cast<int>(at - line_start) + 1},
          "",
          std::string("byte ") + byte +
              " is not UTF-8; pipelines are UTF-8 text (convert it, e.g. iconv -f latin1 -t utf-8)"};
}

class Loader : public DistributedReader {
 public:
  Loader(const StageRegistry& registry, std::string file) : DistributedReader(std::move(file)), registry_(registry) {}

  LoadResult load(std::string_view text) {
    LoadResult result;
    if (text.size() > kMaxFileBytes) {
      result.diagnostics.push_back({Diagnostic::Severity::kError,
                                    {file_, 1, 1},
                                    "",
                                    "the pipeline is " + std::to_string(text.size()) +
                                        " bytes; pipelines are limited to " + std::to_string(kMaxFileBytes >> 20) +
                                        " MiB"});
      return result;
    }
    if (size_t bad = invalid_utf8_at(text); bad != std::string_view::npos) {
      result.diagnostics.push_back(not_utf8(text, bad, file_));
      return result;
    }
    YAML::Node root;
    try {
      if (auto v = YamlLimits::check(std::string(text))) {
        result.diagnostics.push_back(
            {Diagnostic::Severity::kError, {file_, v->mark.line + 1, v->mark.column + 1}, "", v->message});
        return result;
      }
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      Diagnostic d;
      d.loc = {file_, e.mark.line + 1, e.mark.column + 1};
      d.message = "malformed YAML: " + e.msg;
      result.diagnostics.push_back(d);
      return result;
    }
    WorkflowSpec spec;
    spec.file = file_;
    spec.source_text = std::string(text);
    // A node of a shape no check foresaw must still give an error, never an exception.
    try {
      parse_top(root, spec);
      if (!root.IsNull() && root.IsMap()) {
        auto more = validate_spec(spec, registry_);
        diags_.insert(diags_.end(), more.begin(), more.end());
      }
    } catch (const YAML::Exception& e) {
      diags_.push_back({Diagnostic::Severity::kError,
                        {file_, e.mark.line + 1, e.mark.column + 1},
                        "",
                        "unexpected YAML here: " + e.msg});
    } catch (const std::exception& e) {
      diags_.push_back({Diagnostic::Severity::kError, {file_, 1, 1}, "", std::string("cannot load: ") + e.what()});
    }
    result.diagnostics = std::move(diags_);
    std::stable_sort(result.diagnostics.begin(), result.diagnostics.end(),
                     [](const Diagnostic& a, const Diagnostic& b) {
                       return std::tie(a.loc.line, a.loc.column) < std::tie(b.loc.line, b.loc.column);
                     });
    if (result.error_count() == 0) {
      spec.hash = spec_hash(spec);
      result.spec = std::move(spec);
    }
    return result;
  }

 private:
  // Top level ---------------------------------------------------------------------------------

  void parse_top(const YAML::Node& root, WorkflowSpec& spec) {
    if (!root || root.IsNull()) {
      diags_.push_back({Diagnostic::Severity::kError, {file_, 1, 1}, "", "the pipeline file is empty"});
      return;
    }
    if (!check_map(root, "", kTopKeys)) return;
    if (auto name = get_string(root, "name", "")) {
      spec.name = *name;
    } else if (!root["name"]) {
      spec.name = name_from_file();
    }
    if (auto d = get_string(root, "description", "")) spec.description = *d;
    if (auto d = get_enum(root, "durability", "", kDurabilityNames, Durability::kDeferred)) {
      spec.durability = *d;
    }
    spec.timeout = get_duration(root, "timeout", "");
    if (spec.timeout && spec.timeout->count() <= 0) {
      error(root["timeout"], "timeout", "must be longer than 0 (leave it out for no run deadline)");
    }
    if (YAML::Node c = root["config"]) {
      if (!c.IsMap())
        error(c, "config", "expected a mapping, found " + describe(c));
      else
        spec.config = to_json(c, "config");
    }
    known_config_ = &spec.config;
    if (YAML::Node r = root["reliability"]) parse_reliability(r, spec);
    if (YAML::Node m = root["models"]) parse_models(m, spec);
    YAML::Node stages = root["stages"];
    YAML::Node distributed = root["distributed"];
    if (distributed) {
      parse_distributed(distributed, spec);
      if (stages && distributed.IsMap() && distributed["stages"]) {
        error(stages, "stages", "stages are given both at the top level and under distributed; keep one list");
      }
    }
    if (stages) {
      spec.stages = parse_nodes(stages, "stages");
    } else if (!distributed) {
      error(root, "", "missing required key 'stages' (the list of stages to run)");
    }
  }

  // `reliability:` defaults; `reliability.hedging` is typed here, before the stages merge over it.
  void parse_reliability(const YAML::Node& r, WorkflowSpec& spec) {
    if (!r.IsMap()) {
      error(r, "reliability", "expected a mapping, found " + describe(r));
      return;
    }
    spec.reliability = to_json(r, "reliability");
    if (YAML::Node h = r["hedging"]) hedging_defaults_ = parse_hedging(h, "reliability.hedging");
  }

  // A pipeline without `name:` is named after its file, without directory and extension.
  std::string name_from_file() const {
    std::string stem = file_;
    if (auto slash = stem.find_last_of('/'); slash != std::string::npos) stem = stem.substr(slash + 1);
    if (auto dot = stem.find_last_of('.'); dot != std::string::npos) stem = stem.substr(0, dot);
    return stem.empty() ? "pipeline" : stem;
  }

  void parse_models(const YAML::Node& m, WorkflowSpec& spec) {
    if (!m.IsMap()) {
      error(m, "models", "expected a mapping of model names to providers, found " + describe(m));
      return;
    }
    spec.models = Json::object();
    for (const auto& entry : m) {
      std::string name = entry.first.as<std::string>();
      std::string f = "models." + name;
      Json config = to_json(entry.second, f);
      // `retry:` means the same as on a stage, parsed by the same code, kept in canonical form.
      if (entry.second.IsMap() && entry.second["retry"]) {
        config["retry"] = parse_retry(entry.second["retry"], f + ".retry").to_json();
      }
      for (const ModelProblem& p : check_model_config(config)) {
        // Point at the offending key when it is there, else at the model.
        std::string first = p.field.substr(0, p.field.find_first_of(".["));
        YAML::Node at =
            entry.second.IsMap() && !first.empty() && entry.second[first] ? entry.second[first] : entry.second;
        error(at, p.field.empty() ? f : f + "." + p.field, p.message);
      }
      spec.models[name] = std::move(config);
    }
  }

  // Nodes -------------------------------------------------------------------------------------

  std::vector<Node> parse_nodes(const YAML::Node& seq, const std::string& field) override {
    std::vector<Node> out;
    if (!seq.IsSequence()) {
      error(seq, field, "expected a list of stages, found " + describe(seq));
      return out;
    }
    size_t i = 0;
    for (const auto& item : seq) {
      std::string f = field + "[" + std::to_string(i++) + "]";
      if (auto n = parse_node(item, f)) out.push_back(std::move(*n));
    }
    return out;
  }

  std::optional<Node> parse_node(const YAML::Node& n, const std::string& field) {
    if (!n.IsMap()) {
      error(n, field, "expected a stage (a mapping with name and uses), found " + describe(n));
      return std::nullopt;
    }
    Node node;
    node.loc = loc(n);
    if (auto name = get_string(n, "name", field, true)) {
      node.name = *name;
      if (name->size() > kMaxNameLength) {
        error(n["name"], field + ".name",
              "stage name is " + std::to_string(name->size()) + " characters; at most " +
                  std::to_string(kMaxNameLength) + " are allowed");
      } else if (!std::all_of(name->begin(), name->end(), [](char c) {
                   return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                 })) {
        error(n["name"], field + ".name",
              "stage name '" + *name + "' may contain only letters, digits, '_', '-' and '.'");
      }
    }
    std::string f = node.name.empty() ? field : field + " '" + node.name + "'";
    if (n["loop"]) return parse_loop(n, f, std::move(node));
    if (n["conditional"]) return parse_conditional(n, f, std::move(node));
    if (n["parallel"]) return parse_parallel(n, f, std::move(node));
    if (n["experiment"]) return parse_experiment(n, f, std::move(node));
    if (n["sequence"]) {
      check_map(n, f, kSeqNodeKeys);
      node.when = get_expression(n, "when", f);
      node.body = SequenceNode{parse_nodes(n["sequence"], f + ".sequence")};
      return node;
    }
    return parse_stage(n, f, std::move(node));
  }

  std::optional<Node> parse_loop(const YAML::Node& n, const std::string& f, Node node) {
    LoopNode& loop = node.body.emplace<LoopNode>();
    check_map(n, f, kLoopNodeKeys);
    node.when = get_expression(n, "when", f);
    YAML::Node l = n["loop"];
    std::string lf = f + ".loop";
    if (!check_map(l, lf, kLoopKeys)) return node;
    int modes = (l["over"] ? 1 : 0) + (l["count"] ? 1 : 0) + (l["until"] ? 1 : 0);
    if (modes != 1) {
      error(l, lf, "a loop needs exactly one of 'over' (a list), 'count' (a number) or 'until' (a condition)");
    }
    if (YAML::Node over = l["over"]) {
      loop.mode = LoopMode::kOver;
      if (over.IsSequence()) {
        loop.over = Expression::from_value(to_json(over, lf + ".over"));
      } else {
        loop.over = get_expression(l, "over", lf);
      }
    } else if (YAML::Node count = l["count"]) {
      loop.mode = LoopMode::kCount;
      loop.over = get_expression(l, "count", lf);
      int64_t literal = 0;
      if (count.IsScalar() && YAML::convert<int64_t>::decode(count, literal) && literal < 0) {
        error(count, lf + ".count", "must be a non-negative number of iterations, got " + std::to_string(literal));
      }
    } else if (l["until"]) {
      loop.mode = LoopMode::kUntil;
      loop.until = get_expression(l, "until", lf);
      if (!l["max"]) error(l, lf, "an 'until' loop needs 'max', the most iterations it may run");
    }
    loop.max_iterations = get_int(l, "max", lf);
    if (loop.max_iterations && *loop.max_iterations < 1) error(l["max"], lf + ".max", "must be at least 1");
    if (!l["stages"])
      error(l, lf, "missing required key 'stages' (the loop body)");
    else
      loop.body = parse_nodes(l["stages"], lf + ".stages");
    return node;
  }

  std::optional<Node> parse_conditional(const YAML::Node& n, const std::string& f, Node node) {
    ConditionalNode& cond = node.body.emplace<ConditionalNode>();
    check_map(n, f, kCondNodeKeys);
    YAML::Node c = n["conditional"];
    std::string cf = f + ".conditional";
    if (!check_map(c, cf, kCondKeys)) return node;
    cond.condition = get_expression(c, "when", cf);
    if (!c["when"]) error(c, cf, "missing required key 'when' (the condition)");
    if (!c["then"])
      error(c, cf, "missing required key 'then' (stages to run when the condition holds)");
    else
      cond.then_nodes = parse_nodes(c["then"], cf + ".then");
    if (c["else"]) cond.else_nodes = parse_nodes(c["else"], cf + ".else");
    return node;
  }

  std::optional<Node> parse_parallel(const YAML::Node& n, const std::string& f, Node node) {
    ParallelNode& par = node.body.emplace<ParallelNode>();
    check_map(n, f, kParNodeKeys);
    node.when = get_expression(n, "when", f);
    YAML::Node p = n["parallel"];
    std::string pf = f + ".parallel";
    if (!check_map(p, pf, kParKeys)) return node;
    if (auto j = get_enum(p, "join", pf, kJoinNames)) par.join = *j;
    if (auto m = get_enum(p, "merge", pf, kMergeNames)) par.merge = *m;
    par.max_concurrency = get_int(p, "max_concurrency", pf);
    YAML::Node branches = p["branches"];
    if (!branches) {
      error(p, pf, "missing required key 'branches'");
      return node;
    }
    if (!branches.IsSequence()) {
      error(branches, pf + ".branches", "expected a list of branches, found " + describe(branches));
      return node;
    }
    size_t i = 0;
    for (const auto& b : branches) {
      std::string bf = pf + ".branches[" + std::to_string(i++) + "]";
      if (!check_map(b, bf, kBranchKeys)) continue;
      ParallelBranch branch;
      if (auto name = get_string(b, "name", bf, true)) branch.name = *name;
      if (!b["stages"])
        error(b, bf, "missing required key 'stages'");
      else
        branch.nodes = parse_nodes(b["stages"], bf + ".stages");
      par.branches.push_back(std::move(branch));
    }
    return node;
  }

  std::optional<Node> parse_experiment(const YAML::Node& n, const std::string& f, Node node) {
    ExperimentNode& exp = node.body.emplace<ExperimentNode>();
    check_map(n, f, kExpNodeKeys);
    node.when = get_expression(n, "when", f);
    YAML::Node e = n["experiment"];
    std::string ef = f + ".experiment";
    if (!check_map(e, ef, kExpKeys)) return node;
    if (auto s = get_string(e, "strategy", ef)) {
      if (auto strategy = kExperimentStrategyNames.parse(*s)) {
        exp.strategy = *strategy;
      } else {
        const std::vector<std::string> names = kExperimentStrategyNames.names();
        std::string hint = suggest(*s, names);
        error(e["strategy"], ef + ".strategy",
              "unknown strategy '" + *s + "' (expected " + join(names, ", ") + ")" +
                  (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
    }
    exp.max_concurrency = get_int(e, "max_concurrency", ef);
    if (exp.max_concurrency && (*exp.max_concurrency < 1 || *exp.max_concurrency > 1024)) {
      error(e["max_concurrency"], ef + ".max_concurrency", "must be between 1 and 1024");
    }
    exp.samples = get_int(e, "samples", ef);
    if (auto seed = get_int(e, "seed", ef)) exp.sample_seed = *seed;
    if (e["seed"] && !e["samples"]) error(e["seed"], ef + ".seed", "'seed' draws random samples; it needs 'samples'");
    const bool has_configs = static_cast<bool>(e["configs"]), has_sweep = static_cast<bool>(e["sweep"]);
    if (has_configs == has_sweep) {
      error(e, ef, "an experiment needs exactly one of 'configs' (a list of configs) or 'sweep' (values to cross)");
    }
    if (has_configs) parse_configs(e, ef, exp);
    if (!has_configs && has_sweep) parse_sweep(e, ef, exp);
    check_config_ids(e, ef, exp);
    if (!e["stages"])
      error(e, ef, "missing required key 'stages' (what each branch runs)");
    else
      exp.body = parse_nodes(e["stages"], ef + ".stages");
    return node;
  }

  // Every branch is journaled under its config id, so no two configs may share one.
  void check_config_ids(const YAML::Node& e, const std::string& ef, const ExperimentNode& exp) {
    std::map<std::string, size_t> ids;
    for (size_t i = 0; i < exp.configs.size(); ++i) {
      auto [it, inserted] = ids.emplace(config_id_of(exp.configs[i]), i);
      if (!inserted) {
        error(e, ef,
              "configs " + std::to_string(it->second) + " and " + std::to_string(i) + " have the same config_id '" +
                  it->first + "'; every branch needs its own");
        return;
      }
    }
  }

  // `configs:`, a list of config mappings.
  void parse_configs(const YAML::Node& e, const std::string& ef, ExperimentNode& node) {
    YAML::Node c = e["configs"];
    if (!c.IsSequence() || c.size() == 0) {
      error(c, ef + ".configs", "expected a non-empty list of config mappings, found " + describe(c));
    } else {
      size_t i = 0;
      for (const auto& item : c) {
        std::string cf = ef + ".configs[" + std::to_string(i++) + "]";
        if (!item.IsMap())
          error(item, cf, "expected a config mapping, found " + describe(item));
        else
          node.configs.push_back(to_json(item, cf));
      }
    }
    if (e["samples"])
      error(e["samples"], ef + ".samples", "'samples' draws from a 'sweep'; it does not apply to 'configs'");
  }

  // `sweep:`, every list an axis: the full grid, or `samples` configs drawn from it with `seed`.
  void parse_sweep(const YAML::Node& e, const std::string& ef, ExperimentNode& node) {
    YAML::Node sw = e["sweep"];
    if (!sw.IsMap()) {
      error(sw, ef + ".sweep", "expected a mapping whose lists are the values to try, found " + describe(sw));
      return;
    }
    node.sweep = to_json(sw, ef + ".sweep");
    Result<std::vector<Json>> expanded = std::vector<Json>{};
    if (node.samples) {
      if (*node.samples < 1)
        error(e["samples"], ef + ".samples", "must be at least 1");
      else
        expanded =
            random_search(node.sweep, static_cast<size_t>(*node.samples), static_cast<uint64_t>(node.sample_seed));
    } else {
      expanded = expand_sweep(node.sweep, 10'000);
    }
    if (!expanded)
      error(sw, ef + ".sweep", expanded.error().message());
    else
      for (Json& c : *expanded) node.configs.push_back(std::move(c));
  }

  // A stage's `hedging:` over the pipeline's `reliability.hedging`, key by key.
  std::optional<HedgingConfig> parse_stage_hedging(const YAML::Node& h, const std::string& f) {
    auto own = parse_hedging(h, f);
    if (!own || !hedging_defaults_) return own;
    auto merged = HedgingConfig::merge(*hedging_defaults_, *own);
    if (!merged) {
      error(h, sub(f, merged.error().field().value_or("")), merged.error().message());
      return std::nullopt;
    }
    return std::move(*merged);
  }

  RetryPolicy parse_retry(const YAML::Node& r, const std::string& f) {
    RetryPolicy policy;
    policy.initial_backoff = std::chrono::milliseconds(200);
    if (r.IsScalar()) {
      YAML::Node wrapper;
      wrapper["attempts"] = r;
      if (auto a = get_int(wrapper, "attempts", f)) {
        if (*a < 1 || *a > 1000) error(r, f, "attempts must be between 1 and 1000, got " + std::to_string(*a));
        policy.max_attempts = static_cast<int>(std::clamp<int64_t>(*a, 1, 1000));
      } else {
        error(r, f, "expected a number of attempts or a mapping, found " + describe(r));
      }
      return policy;
    }
    if (!check_map(r, f, kRetryKeys)) return policy;
    if (auto a = get_int(r, "attempts", f)) {
      if (*a < 1 || *a > 1000) error(r["attempts"], f + ".attempts", "must be between 1 and 1000");
      policy.max_attempts = static_cast<int>(*a);
    }
    if (auto b = get_duration(r, "backoff", f)) policy.initial_backoff = *b;
    if (auto b = get_duration(r, "max_backoff", f)) policy.max_backoff = *b;
    if (auto m = get_number(r, "multiplier", f)) {
      if (*m < 1.0) error(r["multiplier"], f + ".multiplier", "must be at least 1.0");
      policy.multiplier = *m;
    }
    if (auto j = get_bool(r, "jitter", f)) policy.jitter = *j;
    if (auto e = get_duration(r, "max_elapsed", f)) policy.max_elapsed = *e;
    if (YAML::Node on = r["on"]) policy.retry_on = parse_error_codes(on, f + ".on");
    return policy;
  }

  // `retry.on`: the error codes worth another attempt.
  std::vector<ErrorCode> parse_error_codes(const YAML::Node& on, const std::string& f) {
    std::vector<ErrorCode> out;
    if (!on.IsSequence()) {
      error(on, f, "expected a list of error codes, found " + describe(on));
      return out;
    }
    for (const auto& c : on) {
      auto code = c.IsScalar() ? parse_error_code(c.Scalar()) : std::nullopt;
      if (!code) {
        error(c, f,
              "unknown error code " + describe(c) +
                  " (expected e.g. unavailable, deadline_exceeded, resource_exhausted, internal)");
      } else {
        out.push_back(*code);
      }
    }
    return out;
  }

  std::optional<Node> parse_stage(const YAML::Node& n, const std::string& f, Node node) {
    StageNode& stage = node.body.emplace<StageNode>();
    check_map(n, f, kStageKeys);
    node.when = get_expression(n, "when", f);
    parse_stage_fields(n, f, stage);
    return node;
  }

  void parse_stage_fields(const YAML::Node& n, const std::string& f, StageNode& node) {
    if (auto uses = get_string(n, "uses", f)) node.uses = *uses;
    if (YAML::Node with = n["with"]) {
      if (!with.IsMap()) {
        error(with, f + ".with", "expected a mapping of options, found " + describe(with));
      } else {
        node.with = to_json(with, f + ".with");
        check_templates(with, f + ".with");
      }
    }
    node.order = get_int(n, "order", f);
    node.timeout = get_duration(n, "timeout", f);
    if (node.timeout && node.timeout->count() <= 0) {
      error(n["timeout"], f + ".timeout", "must be longer than 0 (leave it out for no timeout)");
    }
    if (YAML::Node r = n["retry"]) node.retry = parse_retry(r, f + ".retry");
    if (auto o = get_bool(n, "optional", f)) node.optional = *o;
    if (auto i = get_bool(n, "idempotent", f)) node.idempotent = *i;
    if (YAML::Node b = n["barrier"]) node.barrier = parse_barrier(b, f + ".barrier");
    if (YAML::Node h = n["hedging"]) node.hedging = parse_stage_hedging(h, f + ".hedging");

    auto kind = get_enum(n, "type", f, kStageKindNames, StageKind::kPlain);
    if (n["type"] && !kind) return;
    node.type = kind.value_or(StageKind::kPlain);
    if (!n["type"] && !n["uses"]) {
      error(n, f,
            "a stage needs 'uses' (a registered stage type, see `crucible stages`) or 'type' "
            "(execute, prepare, cleanup, custom, hybrid, validation)");
    }
    parse_kind_fields(n, f, node);
    auto completion = get_enum(n, "completion", f, kCompletionNames, Completion::kOnce);
    node.completion = completion.value_or(validate_internal::default_completion(node.type));
  }

  // Fields that belong to one stage kind only.
  void parse_kind_fields(const YAML::Node& n, const std::string& f, StageNode& node) {
    struct FieldRule {
      const char* key;
      std::vector<StageKind> kinds;
    };
    const std::vector<FieldRule> rules = {
        {"duration",
         {StageKind::kExecute, StageKind::kPlain, StageKind::kPrepare, StageKind::kCleanup, StageKind::kCustom}},
        {"expected_objects", {StageKind::kPrepare, StageKind::kCleanup}},
        {"expected_tasks", {StageKind::kHybrid, StageKind::kPlain}},
        {"max_duration", {StageKind::kHybrid}},
        {"command", {StageKind::kCustom}},
        {"args", {StageKind::kCustom}},
    };
    for (const auto& rule : rules) {
      if (!n[rule.key]) continue;
      if (std::find(rule.kinds.begin(), rule.kinds.end(), node.type) == rule.kinds.end()) {
        std::string kinds;
        for (StageKind k : rule.kinds) {
          if (k != StageKind::kPlain)
            kinds += std::string(kinds.empty() ? "" : " or ") + std::string(stage_kind_name(k));
        }
        error(n[rule.key], f + "." + rule.key,
              "'" + std::string(rule.key) + "' does not apply to " +
                  (node.type == StageKind::kPlain ? std::string("a stage without 'type'")
                                                  : "type " + std::string(stage_kind_name(node.type))) +
                  "; it belongs to type " + kinds);
      }
    }
    if (node.type == StageKind::kExecute) {
      node.duration = get_duration(n, "duration", f, true);
    } else if (auto d = get_duration(n, "duration", f)) {
      node.duration = d;
    }
    if (auto d = get_duration(n, "max_duration", f)) node.duration = d;
    if (auto e = get_int(n, "expected_objects", f)) node.expected_tasks = e;
    if (auto e = get_int(n, "expected_tasks", f)) node.expected_tasks = e;
    if (node.expected_tasks && *node.expected_tasks < 0) {
      error(n, f, "expected task count must not be negative");
    }
    if (node.type == StageKind::kCustom) {
      if (auto c = get_string(n, "command", f, !n["uses"])) node.command = *c;
      if (YAML::Node args = n["args"]) {
        if (!args.IsSequence()) {
          error(args, f + ".args", "expected a list of arguments, found " + describe(args));
        } else {
          for (const auto& a : args) {
            if (!a.IsScalar())
              error(a, f + ".args", "expected a string argument, found " + describe(a));
            else
              node.args.push_back(a.Scalar());
          }
        }
      }
    }
  }

  const StageRegistry& registry_;
  std::optional<HedgingConfig> hedging_defaults_;  // `reliability.hedging`, parsed before the stages
};

}  // namespace

LoadResult load_pipeline_text(std::string_view text, const std::string& file_label, const StageRegistry& registry) {
  return Loader(registry, file_label).load(text);
}

LoadResult load_pipeline_file(const std::string& path, const StageRegistry& registry) {
  auto fail = [&](std::string message) {
    LoadResult result;
    result.diagnostics.push_back({Diagnostic::Severity::kError, {path, 0, 0}, "", std::move(message)});
    return result;
  };
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) return fail("cannot read the pipeline file: no such file");
  if (std::filesystem::is_directory(status)) return fail("is a directory, not a pipeline file");
  if (!std::filesystem::is_regular_file(status)) return fail("is not a regular file (a device or a pipe?)");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot read the pipeline file");
  // Read one byte past the limit, so a file that grows while it is read is still refused.
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return load_pipeline_text(text, path, registry);
}

}  // namespace crucible
