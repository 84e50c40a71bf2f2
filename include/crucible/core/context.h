// Context: what flows through the stages of a run. Every mutation is appended to the current
// stage's delta, which is what the journal stores and what replay applies.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/executor.h"
#include "crucible/core/ids.h"
#include "crucible/core/json.h"
#include "crucible/core/name_log.h"

namespace crucible {

// One recorded change to a Context.
struct Mutation {
  enum class Kind : uint8_t { kMetric, kArtifact, kState, kComplete, kTrace };
  Kind kind;
  std::string key;
  Json value;  // null for kComplete and kTrace

  friend bool operator==(const Mutation&, const Mutation&) = default;
};
using Delta = std::vector<Mutation>;

// [{"op":"metric","key":"loss","value":0.3}, {"op":"complete","key":"train"}, ...]
Json delta_to_json(const Delta& delta);
[[nodiscard]] Result<Delta> delta_from_json(const Json& json);

// What the runner hands a running stage: durable helpers, its clock and executor, the pipeline's
// defaults and the run's directories. The runner installs one per step; a Context outside a
// runner has none.
class StageServices {
 public:
  virtual ~StageServices() = default;
  // Returns the journaled value named `name` for this step, computing and journaling it on first
  // execution. Replay returns the recorded value and never calls `compute`.
  [[nodiscard]] virtual Result<Json> memo(std::string_view name, const std::function<Json()>& compute) = 0;
  // The value of the run's durable promise `name`, or nullopt while unresolved.
  [[nodiscard]] virtual Result<std::optional<Json>> poll_promise(std::string_view name) = 0;
  // The runner's clock, for durable sleeps and deadlines.
  virtual Clock& clock() = 0;
  // The runner's executor, for stages that run work concurrently (hedged requests).
  virtual Executor& executor() = 0;
  // The pipeline's `reliability:` defaults: an object, empty when there are none.
  virtual const Json& reliability() { return empty_object(); }
  // The pipeline's `models:` section (model name -> config): an object, empty when there is none.
  virtual const Json& models() { return empty_object(); }
  // Where this run's files go (reports, charts): <artifact root>/<run id>; empty when none.
  virtual const std::string& artifact_dir() { return empty_string(); }
  // The journal's blob directory, where the LLM completion cache lives; empty when none.
  virtual const std::string& blob_dir() { return empty_string(); }
  // Journals, durably, that this step's attempt started the process group `group` (a
  // ProcessGroupRef's JSON), so that a resume after this process died stops what is left of it
  // before it runs the step again.
  [[nodiscard]] virtual Status hold_process_group(const Json& group) {
    (void)group;
    return {};
  }

 protected:
  static const Json& empty_object();
  static const std::string& empty_string();
};

// A request from a stage to park the run until a promise resolves or a deadline passes.
struct SuspendRequest {
  std::string promise;
  std::optional<int64_t> deadline_ms;  // wall time in ms since the epoch
};

// Not thread-safe: a Context belongs to one stage at a time. Parallel branches get copies.
class Context {
 public:
  using Map = std::map<std::string, Json, std::less<>>;

  Context() : config_(std::make_shared<const Json>(Json::object())) {}
  Context(std::string experiment_id, RunId run_id, Json config);

  const std::string& experiment_id() const { return experiment_id_; }
  const RunId& run_id() const { return run_id_; }
  // The run's read-only input.
  const Json& config() const { return *config_; }
  // The experiment's read-only settings: {"name", "reliability": {...}} (empty object outside a
  // runner).
  const Json& experiment() const { return experiment_ ? *experiment_ : empty_json_; }
  void set_experiment(std::shared_ptr<const Json> experiment) { experiment_ = std::move(experiment); }

  // Metrics.
  void put_metric(std::string key, Json value);
  const Json* get_metric(std::string_view key) const;
  bool has_metric(std::string_view key) const { return get_metric(key) != nullptr; }
  // Puts every member of `values` (an object). kInvalidArgument if it is not an object.
  [[nodiscard]] Status merge_metrics(const Json& values);
  // Replaces metric `key` with fn(current). kNotFound if there is no such metric.
  [[nodiscard]] Status update_metric(std::string_view key, const std::function<Json(const Json&)>& fn);
  const Map& metrics() const { return *metrics_; }

  // Artifacts.
  void put_artifact(std::string key, Json value);
  const Json* get_artifact(std::string_view key) const;
  bool has_artifact(std::string_view key) const { return get_artifact(key) != nullptr; }
  const Map& artifacts() const { return *artifacts_; }

  // State (user key/values, "assigns").
  void assign(std::string key, Json value);
  const Json* get(std::string_view key) const;
  const Map& state() const { return *state_; }

  // Completed stages: ordered, no duplicates.
  void mark_stage_complete(std::string_view name);
  bool stage_completed(std::string_view name) const;
  std::vector<std::string> completed_stages() const { return completed_.to_vector(); }

  // Trace: the stages executed, in order.
  void add_trace(std::string_view name);
  std::vector<std::string> trace() const { return trace_.to_vector(); }

  // Makes the completed stages and the trace so far a history that copies share, so copying
  // costs what is added later, not the whole run. The runner calls it before fanning out.
  void share_history();

  // Loop scope: stages inside a loop see the current item and index.
  void push_loop(Json item, int64_t index);
  void pop_loop();
  const Json* item() const { return loops_.empty() ? nullptr : &loops_.back().item; }
  std::optional<int64_t> index() const;

  // Experiment branch scope: stages inside an experiment branch see {"config", "config_id",
  // "index"} as `branch`; null elsewhere.
  const Json* branch() const { return branch_.get(); }
  void set_branch(std::shared_ptr<const Json> branch) { branch_ = std::move(branch); }

  // Progress a stage reports for the tasks_done completion criterion.
  void report_tasks(int64_t count) { tasks_done_ += count; }
  int64_t tasks_done() const { return tasks_done_; }
  void reset_tasks() { tasks_done_ = 0; }

  // The mutations since the last take_delta().
  const Delta& delta() const { return delta_; }
  Delta take_delta();
  // Reverts the mutations since the last take_delta() (a failed attempt leaves no trace).
  void discard_delta();
  // Applies recorded mutations (replay) without recording them again.
  void apply(const Delta& delta);
  // Makes `delta` this context's own changes, recorded (and undoable) as if a stage had made them:
  // how a hedge winner's or a branch's work on a copy becomes the step's.
  void record(Delta delta);
  // What this context changed relative to `base`, a context it was copied from: metrics,
  // artifacts and state whose values differ (only when `values`), then newly completed stages
  // and trace entries, in order. The one context-diff routine.
  Delta changes_since(const Context& base, bool values = true) const;

  // The name and step key of the running stage ("" outside a runner). The strings must outlive
  // the stage call; the runner points them at its own.
  void set_current(const std::string* stage, const std::string* step_key) {
    current_stage_ = stage;
    current_key_ = step_key;
  }
  const std::string& current_stage() const { return current_stage_ ? *current_stage_ : empty_; }
  const std::string& current_step_key() const { return current_key_ ? *current_key_ : empty_; }

  // Durable runtime services for the running step, or nullptr.
  StageServices* services() const { return services_; }
  void set_services(StageServices* services) { services_ = services; }
  void request_suspend(SuspendRequest request) { suspend_ = std::move(request); }
  std::optional<SuspendRequest> take_suspend();

  // {"run_id", "experiment_id", "config", "metrics", "artifacts", "state", "completed_stages",
  // "trace"}
  Json to_json() const;

 private:
  struct LoopFrame {
    Json item;
    int64_t index;
  };
  void apply_one(const Mutation& m);
  // Records a mutation in the delta with the value it replaced (nullopt: none), for undo.
  void note(Mutation m, std::optional<Json> previous);

  std::string experiment_id_;
  RunId run_id_;
  std::shared_ptr<const Json> config_;
  std::shared_ptr<const Json> experiment_;
  std::shared_ptr<const Json> branch_;
  inline static const Json empty_json_ = Json::object();
  // Copy on write: copies share a map until one of them writes to it.
  static Map& writable(std::shared_ptr<Map>& map);
  std::shared_ptr<Map> metrics_ = std::make_shared<Map>();
  std::shared_ptr<Map> artifacts_ = std::make_shared<Map>();
  std::shared_ptr<Map> state_ = std::make_shared<Map>();
  NameLog completed_{true};
  NameLog trace_;
  std::vector<LoopFrame> loops_;
  Delta delta_;
  // undo_[i] is the value delta_[i] replaced (nullopt: the key was absent).
  std::vector<std::optional<Json>> undo_;
  int64_t tasks_done_ = 0;
  StageServices* services_ = nullptr;
  const std::string* current_stage_ = nullptr;
  const std::string* current_key_ = nullptr;
  inline static const std::string empty_;
  std::optional<SuspendRequest> suspend_;
};

}  // namespace crucible
