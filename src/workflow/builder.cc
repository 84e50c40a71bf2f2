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

StageNode& SequenceBuilder::last_stage(const char* modifier) {
  Node& n = last();
  if (StageNode* s = n.get_if<StageNode>()) return *s;
  record_error(std::string(modifier) + "() applies to a stage; '" + n.name + "' is not one");
  return scratch_;
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
  n.name = std::move(name);
  StageNode& s = n.body.emplace<StageNode>();
  s.uses = std::move(uses);
  s.with = std::move(with);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::stage(std::string name, std::shared_ptr<Stage> implementation, Json with) {
  stage(std::move(name), implementation ? implementation->describe().name : "", std::move(with));
  nodes_.back().as<StageNode>().implementation = std::move(implementation);
  return *this;
}

SequenceBuilder& SequenceBuilder::timeout(std::chrono::milliseconds timeout) {
  last_stage("timeout").timeout = timeout;
  return *this;
}

SequenceBuilder& SequenceBuilder::hedging(HedgingConfig config) {
  last_stage("hedging").hedging = std::move(config);
  return *this;
}

SequenceBuilder& SequenceBuilder::retry(RetryPolicy policy) {
  last_stage("retry").retry = std::move(policy);
  return *this;
}

SequenceBuilder& SequenceBuilder::optional(bool optional) {
  last_stage("optional").optional = optional;
  return *this;
}

SequenceBuilder& SequenceBuilder::idempotent(bool idempotent) {
  last_stage("idempotent").idempotent = idempotent;
  return *this;
}

SequenceBuilder& SequenceBuilder::when(const std::string& expression) {
  last().when = parse(expression);
  return *this;
}

SequenceBuilder& SequenceBuilder::order(int64_t order) {
  last_stage("order").order = order;
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
  StageNode& n = last_stage("completion");
  n.completion = completion;
  n.duration = duration;
  n.expected_tasks = expected_tasks;
  return *this;
}

SequenceBuilder& SequenceBuilder::experiment(std::string name, ExperimentStrategy strategy, std::vector<Json> configs,
                                             const Body& body, std::optional<int64_t> max_concurrency) {
  Node n;
  n.name = std::move(name);
  ExperimentNode& e = n.body.emplace<ExperimentNode>();
  e.strategy = strategy;
  for (Json& c : configs) {
    if (!c.is_object()) record_error("experiment '" + n.name + "': a config must be a mapping, got " + json_dump(c));
    e.configs.push_back(std::move(c));
  }
  if (e.configs.empty()) record_error("experiment '" + n.name + "' has no configs");
  e.max_concurrency = max_concurrency;
  e.body = build_body(body, errors_);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::experiment_sweep(std::string name, ExperimentStrategy strategy, Json sweep,
                                                   const Body& body, std::optional<int64_t> max_concurrency) {
  auto configs = expand_sweep(sweep, 10'000);
  if (!configs) record_error("experiment '" + name + "': " + configs.error().message());
  experiment(std::move(name), strategy, configs ? std::move(*configs) : std::vector<Json>{}, body, max_concurrency);
  nodes_.back().as<ExperimentNode>().sweep = std::move(sweep);
  return *this;
}

SequenceBuilder& SequenceBuilder::sequence(std::string name, const Body& body) {
  Node n;
  n.name = std::move(name);
  n.body = SequenceNode{build_body(body, errors_)};
  nodes_.push_back(std::move(n));
  return *this;
}

LoopNode& SequenceBuilder::add_loop(std::string name, LoopMode mode, const Body& body) {
  Node n;
  n.name = std::move(name);
  LoopNode& loop = n.body.emplace<LoopNode>();
  loop.mode = mode;
  loop.body = build_body(body, errors_);
  nodes_.push_back(std::move(n));
  return nodes_.back().as<LoopNode>();
}

SequenceBuilder& SequenceBuilder::loop_items(std::string name, Json items, const Body& body) {
  add_loop(std::move(name), LoopMode::kOver, body).over = Expression::from_value(std::move(items));
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_over(std::string name, const std::string& expression, const Body& body) {
  std::optional<Expression> over = parse(expression);
  add_loop(std::move(name), LoopMode::kOver, body).over = std::move(over);
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_count(std::string name, int64_t count, const Body& body) {
  std::optional<Expression> over = parse(std::to_string(count));
  add_loop(std::move(name), LoopMode::kCount, body).over = std::move(over);
  return *this;
}

SequenceBuilder& SequenceBuilder::loop_until(std::string name, const std::string& condition, int64_t max,
                                             const Body& body) {
  std::optional<Expression> until = parse(condition);
  LoopNode& loop = add_loop(std::move(name), LoopMode::kUntil, body);
  loop.until = std::move(until);
  loop.max_iterations = max;
  return *this;
}

SequenceBuilder& SequenceBuilder::conditional(std::string name, const std::string& condition, const Body& then_body,
                                              const Body& else_body) {
  Node n;
  n.name = std::move(name);
  ConditionalNode& c = n.body.emplace<ConditionalNode>();
  c.condition = parse(condition);
  c.then_nodes = build_body(then_body, errors_);
  c.else_nodes = build_body(else_body, errors_);
  nodes_.push_back(std::move(n));
  return *this;
}

SequenceBuilder& SequenceBuilder::parallel(std::string name, std::vector<std::pair<std::string, Body>> branches,
                                           JoinPolicy join, MergePolicy merge) {
  Node n;
  n.name = std::move(name);
  ParallelNode& p = n.body.emplace<ParallelNode>();
  p.join = join;
  p.merge = merge;
  for (auto& [branch_name, body] : branches)
    p.branches.push_back(ParallelBranch{branch_name, build_body(body, errors_)});
  nodes_.push_back(std::move(n));
  return *this;
}

WorkflowBuilder::WorkflowBuilder(std::string name) { spec_.name = std::move(name); }

WorkflowBuilder& WorkflowBuilder::description(std::string text) {
  spec_.description = std::move(text);
  return *this;
}

WorkflowBuilder& WorkflowBuilder::timeout(std::chrono::milliseconds timeout) {
  spec_.timeout = timeout;
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
  spec.hash = spec_hash(spec);
  return spec;
}

}  // namespace crucible
