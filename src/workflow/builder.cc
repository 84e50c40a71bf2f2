#include "crucible/workflow/builder.h"

#include "crucible/experiment/sweep.h"

namespace crucible {

Node& SequenceBuilder::last() {
  if (nodes_.empty()) {
    record_error("a modifier was called before any stage was added");
    nodes_.emplace_back();
  }
  return nodes_.back();
}

std::optional<Expression> SequenceBuilder::parse(const std::string& text) {
  auto e = Expression::parse(text);
  if (!e) {
    record_error("bad expression '" + text + "': " + e.error().to_string());
    return std::nullopt;
  }
  return *e;
}

SequenceBuilder& SequenceBuilder::stage(std::string name, std::string uses, Json with) {
  Node n;
  n.kind = NodeKind::kStage;
  n.name = std::move(name);
  n.uses = std::move(uses);
  n.with = std::move(with);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::stage(std::string name, std::shared_ptr<Stage> implementation, Json with) {
  Node n;
  n.kind = NodeKind::kStage;
  n.name = std::move(name);
  n.uses = implementation ? implementation->describe().name : "";
  n.stage_idempotent = implementation ? implementation->describe().idempotent : true;
  n.stage = std::move(implementation);
  n.with = std::move(with);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::timeout(std::chrono::milliseconds timeout) {
  last().timeout = timeout;
  return *this;
}

SequenceBuilder& SequenceBuilder::hedging(HedgingConfig config) {
  last().hedging = std::move(config);
  return *this;
}

SequenceBuilder& SequenceBuilder::retry(RetryPolicy policy) {
  last().retry = std::move(policy);
  return *this;
}

SequenceBuilder& SequenceBuilder::optional(bool optional) {
  last().optional = optional;
  return *this;
}

SequenceBuilder& SequenceBuilder::idempotent(bool idempotent) {
  last().idempotent = idempotent;
  return *this;
}

SequenceBuilder& SequenceBuilder::when(const std::string& expression) {
  last().when = parse(expression);
  return *this;
}

SequenceBuilder& SequenceBuilder::order(int64_t order) {
  last().order = order;
  return *this;
}

namespace {

std::vector<Node> build_body(const SequenceBuilder::Body& body,
                             const std::shared_ptr<std::vector<std::string>>& errors) {
  struct Child : SequenceBuilder {
    explicit Child(std::shared_ptr<std::vector<std::string>> e) { errors_ = std::move(e); }
  } child(errors);
  if (body) body(child);
  return std::move(child.nodes());
}

}  // namespace

SequenceBuilder& SequenceBuilder::completion(Completion completion, std::optional<std::chrono::milliseconds> duration,
                                             std::optional<int64_t> expected_tasks) {
  Node& n = last();
  n.completion = completion;
  n.duration = duration;
  n.expected_tasks = expected_tasks;
  return *this;
}

SequenceBuilder& SequenceBuilder::experiment(std::string name, ExperimentStrategy strategy, std::vector<Json> configs,
                                             const Body& body, std::optional<int64_t> max_concurrency) {
  Node n;
  n.kind = NodeKind::kExperiment;
  n.name = std::move(name);
  n.strategy = strategy;
  n.configs = Json::array();
  for (Json& c : configs) {
    if (!c.is_object()) record_error("experiment '" + n.name + "': a config must be a mapping, got " + c.dump());
    n.configs.push_back(std::move(c));
  }
  if (n.configs.empty()) record_error("experiment '" + n.name + "' has no configs");
  n.max_concurrency = max_concurrency;
  n.children = build_body(body, errors_);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::experiment_sweep(std::string name, ExperimentStrategy strategy, Json sweep,
                                                   const Body& body, std::optional<int64_t> max_concurrency) {
  auto configs = expand_sweep(sweep, 10'000);
  if (!configs) record_error("experiment '" + name + "': " + configs.error().message());
  experiment(std::move(name), strategy, configs ? std::move(*configs) : std::vector<Json>{}, body, max_concurrency);
  last().sweep = std::move(sweep);
  return *this;
}

SequenceBuilder& SequenceBuilder::sequence(std::string name, const Body& body) {
  Node n;
  n.kind = NodeKind::kSequence;
  n.name = std::move(name);
  n.children = build_body(body, errors_);
  nodes_.push_back(std::move(n));
  return *this;
}

Node SequenceBuilder::loop_node(std::string name, LoopMode mode, const Body& body) {
  Node n;
  n.kind = NodeKind::kLoop;
  n.name = std::move(name);
  n.loop_mode = mode;
  n.children = build_body(body, errors_);
  return n;
}

SequenceBuilder& SequenceBuilder::loop_items(std::string name, Json items, const Body& body) {
  Node n = loop_node(std::move(name), LoopMode::kOver, body);
  n.over = Expression::from_value(std::move(items));
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_over(std::string name, const std::string& expression, const Body& body) {
  Node n = loop_node(std::move(name), LoopMode::kOver, body);
  n.over = parse(expression);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_count(std::string name, int64_t count, const Body& body) {
  Node n = loop_node(std::move(name), LoopMode::kCount, body);
  n.over = parse(std::to_string(count));
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_until(std::string name, const std::string& condition, int64_t max,
                                             const Body& body) {
  Node n = loop_node(std::move(name), LoopMode::kUntil, body);
  n.until = parse(condition);
  n.max_iterations = max;
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::conditional(std::string name, const std::string& condition, const Body& then_body,
                                              const Body& else_body) {
  Node n;
  n.kind = NodeKind::kConditional;
  n.name = std::move(name);
  n.when = parse(condition);
  n.children = build_body(then_body, errors_);
  n.else_children = build_body(else_body, errors_);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::parallel(std::string name, std::vector<std::pair<std::string, Body>> branches,
                                           JoinPolicy join, MergePolicy merge) {
  Node n;
  n.kind = NodeKind::kParallel;
  n.name = std::move(name);
  n.join = join;
  n.merge = merge;
  for (auto& [branch_name, body] : branches)
    n.branches.push_back(ParallelBranch{branch_name, build_body(body, errors_)});
  nodes_.push_back(std::move(n));
  return *this;
}

WorkflowBuilder::WorkflowBuilder(std::string name) { spec_.name = std::move(name); }

WorkflowBuilder& WorkflowBuilder::description(std::string text) {
  spec_.description = std::move(text);
  return *this;
}

WorkflowBuilder& WorkflowBuilder::durability(Durability durability) {
  spec_.durability = durability;
  return *this;
}

WorkflowBuilder& WorkflowBuilder::config(Json config) {
  spec_.config = std::move(config);
  return *this;
}

Result<WorkflowSpec> WorkflowBuilder::build(const StageRegistry& registry) {
  WorkflowSpec spec = spec_;
  spec.stages = nodes_;
  std::string report;
  for (const std::string& e : *errors_) report += "\n  " + e;
  for (const Diagnostic& d : validate_spec(spec, registry)) {
    if (d.severity == Diagnostic::Severity::kError) report += "\n  " + d.to_string();
  }
  if (!report.empty()) return make_error(ErrorCode::kInvalidArgument, "invalid workflow '" + spec.name + "':" + report);
  CRUCIBLE_RETURN_IF_ERROR(bind_spec(spec, registry));
  return spec;
}

}  // namespace crucible
