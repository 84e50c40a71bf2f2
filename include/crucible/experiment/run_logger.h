// Run loggers: where an experiment's branches are recorded. One logger run per branch, so
// concurrent branches never share state (spearmint's MLflow logger shared one active run across
// branches and concurrent branches overwrote each other). Implementations are thread-safe.
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/ids.h"
#include "crucible/core/json.h"
#include "crucible/experiment/branch.h"

namespace crucible {

class Journal;

class RunLogger {
 public:
  virtual ~RunLogger() = default;
  // Opens the run of one branch and returns its id, unique within the logger.
  [[nodiscard]] virtual Result<std::string> start_run(const std::string& experiment, const std::string& config_id) = 0;
  [[nodiscard]] virtual Status log_params(const std::string& run, const Json& params) = 0;
  // `metrics` is an object of numbers; `step` orders repeated logging of the same metric.
  [[nodiscard]] virtual Status log_metrics(const std::string& run, const Json& metrics,
                                           std::optional<int64_t> step = std::nullopt) = 0;
  [[nodiscard]] virtual Status log_branch(const std::string& run, const Branch& branch) = 0;
  [[nodiscard]] virtual Status end_run(const std::string& run, BranchStatus status) = 0;
};

// Keeps everything in memory; for tests and for code that inspects an experiment afterwards.
class InMemoryRunLogger : public RunLogger {
 public:
  struct Run {
    std::string experiment;
    std::string config_id;
    Json params = Json::object();
    std::vector<Json> metrics;  // [{"step": n|null, "values": {...}}]
    Json branch;                // the logged branch, or null
    bool ended = false;
    BranchStatus status = BranchStatus::kPending;
  };

  [[nodiscard]] Result<std::string> start_run(const std::string& experiment, const std::string& config_id) override;
  [[nodiscard]] Status log_params(const std::string& run, const Json& params) override;
  [[nodiscard]] Status log_metrics(const std::string& run, const Json& metrics,
                                   std::optional<int64_t> step = std::nullopt) override;
  [[nodiscard]] Status log_branch(const std::string& run, const Branch& branch) override;
  [[nodiscard]] Status end_run(const std::string& run, BranchStatus status) override;

  std::map<std::string, Run> runs() const;
  size_t run_count() const;

 private:
  [[nodiscard]] Result<Run*> find(const std::string& run);

  mutable std::mutex mu_;
  std::map<std::string, Run> runs_;  // guarded by mu_
  size_t next_ = 0;                  // guarded by mu_
};

// Appends one JSON object per call to a file: {"event": "start_run"|"log_params"|..., "run", ...}.
class JsonlRunLogger : public RunLogger {
 public:
  // Opens `path` for appending, creating it; kInvalidArgument naming the path if it cannot.
  [[nodiscard]] static Result<std::unique_ptr<JsonlRunLogger>> open(const std::string& path);
  ~JsonlRunLogger() override;

  [[nodiscard]] Result<std::string> start_run(const std::string& experiment, const std::string& config_id) override;
  [[nodiscard]] Status log_params(const std::string& run, const Json& params) override;
  [[nodiscard]] Status log_metrics(const std::string& run, const Json& metrics,
                                   std::optional<int64_t> step = std::nullopt) override;
  [[nodiscard]] Status log_branch(const std::string& run, const Branch& branch) override;
  [[nodiscard]] Status end_run(const std::string& run, BranchStatus status) override;

 private:
  JsonlRunLogger(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  [[nodiscard]] Status write(Json line);

  std::mutex mu_;
  std::FILE* file_;  // guarded by mu_
  std::string path_;
  size_t next_ = 0;  // guarded by mu_
};

// Records branches in a run's journal, so `crucible status` and `crucible experiments show`
// list them. Each branch's outcome is one decision record `<prefix>/branch[<config_id>]#branch`
// carrying the branch, its params and its metrics.
class JournalRunLogger : public RunLogger {
 public:
  // `prefix` is the step key of the experiment in the run ("/sweep"); "/<experiment>" when empty.
  JournalRunLogger(Journal& journal, RunId run, std::string prefix = "");

  [[nodiscard]] Result<std::string> start_run(const std::string& experiment, const std::string& config_id) override;
  [[nodiscard]] Status log_params(const std::string& run, const Json& params) override;
  [[nodiscard]] Status log_metrics(const std::string& run, const Json& metrics,
                                   std::optional<int64_t> step = std::nullopt) override;
  [[nodiscard]] Status log_branch(const std::string& run, const Branch& branch) override;
  [[nodiscard]] Status end_run(const std::string& run, BranchStatus status) override;

  // The step key of a branch's outcome record.
  static std::string branch_key(const std::string& prefix, const std::string& config_id);

 private:
  struct Pending {
    Json params = Json::object();
    Json metrics = Json::object();
    Json branch;
  };
  Journal& journal_;
  RunId run_;
  std::string prefix_;
  std::mutex mu_;
  std::map<std::string, Pending> pending_;  // guarded by mu_
};

}  // namespace crucible
