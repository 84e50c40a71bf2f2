// The workflow IR: a validated tree of nodes (stage, sequence, loop, conditional, parallel) with
// their policies. YAML pipelines and the C++ builder both produce a WorkflowSpec.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "crucible/core/enum_names.h"
#include "crucible/core/json.h"
#include "crucible/core/stage.h"
#include "crucible/journal/journal.h"
#include "crucible/reliability/hedging.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/reliability/retry.h"
#include "crucible/workflow/expression.h"

namespace crucible {

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown (builder)
  int column = 0;  // 1-based
  std::string to_string() const;
};

enum class NodeKind { kStage, kSequence, kLoop, kConditional, kParallel, kExperiment };

// The sai3-bench stage kinds (`type:`); kPlain is an ordinary `uses:` stage.
enum class StageKind { kPlain, kExecute, kPrepare, kCleanup, kCustom, kHybrid, kValidation };
// When a stage counts as done.
enum class Completion { kOnce, kDuration, kTasksDone, kScriptExit, kValidationPassed, kDurationOrTasks };
enum class LoopMode { kOver, kCount, kUntil };
enum class JoinPolicy { kAll, kAny, kRace };
// How parallel branches that wrote the same state or artifact key are merged.
enum class MergePolicy { kError, kLastWins, kFirstWins };

// How an experiment node runs its configs (experiment::Strategy's names).
enum class ExperimentStrategy { kMultiBranch, kRoundRobin, kShadow };

// The name tables: YAML spellings, printed names and "expected one of" lists.
inline const EnumNames<StageKind> kStageKindNames = {
    {StageKind::kPlain, "plain"},          {StageKind::kExecute, "execute"}, {StageKind::kPrepare, "prepare"},
    {StageKind::kCleanup, "cleanup"},      {StageKind::kCustom, "custom"},   {StageKind::kHybrid, "hybrid"},
    {StageKind::kValidation, "validation"}};
inline const EnumNames<Completion> kCompletionNames = {{Completion::kOnce, "once"},
                                                       {Completion::kDuration, "duration"},
                                                       {Completion::kTasksDone, "tasks_done"},
                                                       {Completion::kScriptExit, "script_exit"},
                                                       {Completion::kValidationPassed, "validation_passed"},
                                                       {Completion::kDurationOrTasks, "duration_or_tasks"}};
inline const EnumNames<JoinPolicy> kJoinNames = {
    {JoinPolicy::kAll, "all"}, {JoinPolicy::kAny, "any"}, {JoinPolicy::kRace, "race"}};
inline const EnumNames<MergePolicy> kMergeNames = {
    {MergePolicy::kError, "error"}, {MergePolicy::kLastWins, "last_wins"}, {MergePolicy::kFirstWins, "first_wins"}};
inline const EnumNames<ExperimentStrategy> kExperimentStrategyNames = {
    {ExperimentStrategy::kMultiBranch, "multi_branch"},
    {ExperimentStrategy::kRoundRobin, "round_robin"},
    {ExperimentStrategy::kShadow, "shadow"}};

inline std::string_view stage_kind_name(StageKind k) { return kStageKindNames.name(k); }
inline std::string_view completion_name(Completion c) { return kCompletionNames.name(c); }
inline std::string_view join_name(JoinPolicy j) { return kJoinNames.name(j); }
inline std::string_view merge_name(MergePolicy m) { return kMergeNames.name(m); }
inline std::string_view strategy_name(ExperimentStrategy s) { return kExperimentStrategyNames.name(s); }

struct Node;

// A stage: a registered `uses:` type, a C++ implementation, or a sai3-bench `type:`.
struct StageNode {
  std::string uses;
  Json with = Json::object();
  std::optional<int64_t> order;  // run position among siblings, when every sibling has one
  std::optional<std::chrono::milliseconds> timeout;
  RetryPolicy retry;
  bool optional = false;
  std::optional<bool> idempotent;      // overrides the stage's own description
  StageKind type = StageKind::kPlain;  // the sai3-bench `type:`
  Completion completion = Completion::kOnce;
  std::optional<std::chrono::milliseconds> duration;  // execute duration, hybrid max_duration
  std::optional<int64_t> expected_tasks;              // prepare/cleanup objects, hybrid tasks
  std::string command;                                // custom
  std::vector<std::string> args;                      // custom
  Json barrier;                                       // validated, kept for distributed runs
  std::optional<HedgingConfig> hedging;               // `hedging:` merged over reliability.hedging
  // A C++ implementation given to the builder; null for a registry type, bound per run.
  std::shared_ptr<Stage> implementation;
};

struct SequenceNode {
  std::vector<Node> nodes;
};

struct LoopNode {
  LoopMode mode = LoopMode::kOver;
  std::optional<Expression> over;   // kOver: a list; kCount: an integer
  std::optional<Expression> until;  // kUntil: checked after each iteration
  std::optional<int64_t> max_iterations;
  std::vector<Node> body;
};

struct ConditionalNode {
  std::optional<Expression> condition;
  std::vector<Node> then_nodes;
  std::vector<Node> else_nodes;
};

struct ParallelBranch {
  std::string name;
  std::vector<Node> nodes;
};

struct ParallelNode {
  std::vector<ParallelBranch> branches;
  JoinPolicy join = JoinPolicy::kAll;
  MergePolicy merge = MergePolicy::kError;
  std::optional<int64_t> max_concurrency;
};

// The same stages run once per config under a strategy.
struct ExperimentNode {
  ExperimentStrategy strategy = ExperimentStrategy::kMultiBranch;
  Json configs = Json::array();    // every config, after sweep expansion
  Json sweep;                      // the `sweep:` mapping, or null
  std::optional<int64_t> samples;  // random search: configs drawn from the sweep
  int64_t sample_seed = 0;
  std::optional<int64_t> max_concurrency;
  std::vector<Node> body;  // what every branch runs
};

// One node of the tree: a header every kind has and the kind's own fields. The variant's
// alternatives are in NodeKind's order.
struct Node {
  using Body = std::variant<StageNode, SequenceNode, LoopNode, ConditionalNode, ParallelNode, ExperimentNode>;

  std::string name;
  SourceLocation loc;
  std::optional<Expression> when;  // the node is skipped when false
  Body body;

  NodeKind kind() const { return static_cast<NodeKind>(body.index()); }
  template <class T>
  const T& as() const {
    return std::get<T>(body);
  }
  template <class T>
  T& as() {
    return std::get<T>(body);
  }
  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&body);
  }
  template <class T>
  T* get_if() {
    return std::get_if<T>(&body);
  }
};

// The node's child lists: a sequence's nodes, a loop's or an experiment's body, a conditional's
// then and else, every parallel branch. Empty for a stage.
std::vector<const std::vector<Node>*> child_lists(const Node& node);
// The nodes of `list` in the order they run: by `order` when every one is a stage with an order,
// else as written.
std::vector<const Node*> run_order(const std::vector<Node>& list);

struct WorkflowSpec {
  std::string name;
  std::string description;
  std::string file;  // source path, when loaded from YAML
  Durability durability = Durability::kStrict;
  // The run's deadline, from its first execution: durable across restarts and workers; the run
  // ends deadline_exceeded when it passes.
  std::optional<std::chrono::milliseconds> timeout;
  Json config = Json::object();  // default input, overridden by --set
  std::vector<Node> stages;      // the root sequence
  Json distributed;              // the validated `distributed:` section, or null
  Json reliability;              // the experiment's `reliability:` defaults, or null
  Json models;                   // the `models:` section (name -> provider config), or null
  std::string source_text;       // YAML text, journaled so `resume` can reload it
  std::string hash;              // spec_hash(), cached by the loader and the builder
};

// Canonical JSON of the tree, without source locations: equal for a YAML pipeline and the same
// pipeline built in C++.
Json spec_to_json(const WorkflowSpec& spec);
// SHA-256 of spec_to_json(); the cached `hash` when validation set it.
std::string spec_hash(const WorkflowSpec& spec);

}  // namespace crucible
