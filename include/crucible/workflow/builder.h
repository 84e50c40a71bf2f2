// A fluent C++ builder that produces the same WorkflowSpec as the YAML loader.
//
//   WorkflowBuilder b("seed001");
//   b.stage("step1", "noop").stage("step2", "noop")
//    .loop_items("items", Json::array({1, 2, 3}), [](SequenceBuilder& body) { body.stage("process", "noop"); })
//    .conditional("gate", "config.do_final", [](SequenceBuilder& then) { then.stage("final", "noop"); });
//   Result<WorkflowSpec> spec = b.build(registry);
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "crucible/core/stage.h"
#include "crucible/workflow/loader.h"
#include "crucible/workflow/spec.h"

namespace crucible {

class SequenceBuilder {
 public:
  using Body = std::function<void(SequenceBuilder&)>;

  // A registered stage type with options.
  SequenceBuilder& stage(std::string name, std::string uses, Json with = Json::object());
  // A stage implemented in C++ (not resumable from the CLI, which cannot rebuild it).
  SequenceBuilder& stage(std::string name, std::shared_ptr<Stage> implementation, Json with = Json::object());

  // Modifiers of the most recently added node.
  SequenceBuilder& timeout(std::chrono::milliseconds timeout);
  SequenceBuilder& retry(RetryPolicy policy);
  // Hedged attempts of the stage (HedgingConfig::from_json or fields set one by one).
  SequenceBuilder& hedging(HedgingConfig config);
  SequenceBuilder& optional(bool optional = true);
  SequenceBuilder& idempotent(bool idempotent);
  SequenceBuilder& when(const std::string& expression);
  // When the stage counts as done: once (the default), after `duration` of repeated runs, once
  // it reported `expected_tasks`, or whichever comes first (kDurationOrTasks).
  SequenceBuilder& completion(Completion completion, std::optional<std::chrono::milliseconds> duration = std::nullopt,
                              std::optional<int64_t> expected_tasks = std::nullopt);
  SequenceBuilder& order(int64_t order);

  SequenceBuilder& sequence(std::string name, const Body& body);
  SequenceBuilder& loop_items(std::string name, Json items, const Body& body);
  SequenceBuilder& loop_over(std::string name, const std::string& expression, const Body& body);
  SequenceBuilder& loop_count(std::string name, int64_t count, const Body& body);
  SequenceBuilder& loop_until(std::string name, const std::string& condition, int64_t max, const Body& body);
  SequenceBuilder& conditional(std::string name, const std::string& condition, const Body& then_body,
                               const Body& else_body = nullptr);
  // An experiment node: `body` runs once per config (each a mapping) under `strategy`.
  SequenceBuilder& experiment(std::string name, ExperimentStrategy strategy, std::vector<Json> configs,
                              const Body& body, std::optional<int64_t> max_concurrency = std::nullopt);
  // An experiment over the cross product of `sweep`'s lists (at most 10,000 configs).
  SequenceBuilder& experiment_sweep(std::string name, ExperimentStrategy strategy, Json sweep, const Body& body,
                                    std::optional<int64_t> max_concurrency = std::nullopt);
  SequenceBuilder& parallel(std::string name, std::vector<std::pair<std::string, Body>> branches,
                            JoinPolicy join = JoinPolicy::kAll, MergePolicy merge = MergePolicy::kError);

  std::vector<Node>& nodes() { return nodes_; }

 protected:
  Node& last();
  // The last node as a stage; an error (and a scratch stage to write to) when it is not one.
  StageNode& last_stage(const char* modifier);
  void record_error(std::string message) { errors_->push_back(std::move(message)); }
  std::optional<Expression> parse(const std::string& text);
  LoopNode& add_loop(std::string name, LoopMode mode, const Body& body);

  std::vector<Node> nodes_;
  StageNode scratch_;
  std::shared_ptr<std::vector<std::string>> errors_ = std::make_shared<std::vector<std::string>>();
};

class WorkflowBuilder : public SequenceBuilder {
 public:
  explicit WorkflowBuilder(std::string name);
  WorkflowBuilder& description(std::string text);
  WorkflowBuilder& durability(Durability durability);
  // The run's durable deadline (WorkflowSpec::timeout).
  WorkflowBuilder& timeout(std::chrono::milliseconds timeout);
  WorkflowBuilder& config(Json config);

  // Validates with the same rules as YAML against `registry`'s stage types. kInvalidArgument
  // listing every problem.
  [[nodiscard]] Result<WorkflowSpec> build(const StageRegistry& registry);

 private:
  WorkflowSpec spec_;
};

}  // namespace crucible
