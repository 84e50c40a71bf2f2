// The workflow IR: a validated tree of nodes (stage, sequence, loop, conditional, parallel) with
// their policies. YAML pipelines and the C++ builder both produce a WorkflowSpec.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
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

struct ParallelBranch {
  std::string name;
  std::vector<Node> nodes;
};

struct Node {
  NodeKind kind = NodeKind::kStage;
  std::string name;
  SourceLocation loc;
  // Stage: skip the stage when false. Conditional: the predicate.
  std::optional<Expression> when;

  // Stage fields.
  std::string uses;
  Json with = Json::object();
  std::optional<int64_t> order;
  std::optional<std::chrono::milliseconds> timeout;
  RetryPolicy retry;
  bool optional = false;
  std::optional<bool> idempotent;  // overrides the stage's own description
  StageKind stage_kind = StageKind::kPlain;
  Completion completion = Completion::kOnce;
  std::optional<std::chrono::milliseconds> duration;  // execute duration, hybrid max_duration
  std::optional<int64_t> expected_tasks;              // prepare/cleanup objects, hybrid tasks
  std::string command;                                // custom
  std::vector<std::string> args;                      // custom
  Json barrier;                                       // validated, kept for distributed runs
  std::shared_ptr<Stage> stage;                       // bound implementation, or null
  bool stage_idempotent = true;                       // from the stage's description
  std::optional<HedgingConfig> hedging;               // `hedging:` merged over reliability.hedging
  std::shared_ptr<HedgePolicy> hedge_policy;          // built from `hedging` by validation
  int max_hedges = 1;

  // Sequence body, loop body, conditional then-branch.
  std::vector<Node> children;
  // Conditional else-branch.
  std::vector<Node> else_children;

  // Loop fields.
  LoopMode loop_mode = LoopMode::kOver;
  std::optional<Expression> over;   // kOver: a list; kCount: an integer
  std::optional<Expression> until;  // kUntil: checked after each iteration
  std::optional<int64_t> max_iterations;

  // Parallel fields.
  std::vector<ParallelBranch> branches;
  JoinPolicy join = JoinPolicy::kAll;
  MergePolicy merge = MergePolicy::kError;
  std::optional<int64_t> max_concurrency;  // parallel and experiment

  // Experiment fields; `children` are the stages every branch runs.
  ExperimentStrategy strategy = ExperimentStrategy::kMultiBranch;
  Json configs = Json::array();    // every config, after sweep expansion
  Json sweep;                      // the `sweep:` mapping, or null
  std::optional<int64_t> samples;  // random search: configs drawn from the sweep
  int64_t sample_seed = 0;

  bool is_idempotent() const { return idempotent.value_or(stage_idempotent); }
};

struct WorkflowSpec {
  std::string name;
  std::string description;
  std::string file;  // source path, when loaded from YAML
  Durability durability = Durability::kStrict;
  Json config = Json::object();  // default input, overridden by --set
  std::vector<Node> stages;      // the root sequence
  Json distributed;              // the validated `distributed:` section, or null
  Json reliability;              // the experiment's `reliability:` defaults, or null
  Json models;                   // the `models:` section (name -> provider config), or null
  std::string source_text;       // YAML text, journaled so `resume` can reload it
  std::string hash;              // spec_hash(), set by validation
};

// Canonical JSON of the tree, without source locations: equal for a YAML pipeline and the same
// pipeline built in C++.
Json spec_to_json(const WorkflowSpec& spec);
// SHA-256 of spec_to_json(); the cached `hash` when validation set it.
std::string spec_hash(const WorkflowSpec& spec);

}  // namespace crucible
