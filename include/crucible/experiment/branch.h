// Branches: one config's run inside an experiment, and the set of them a strategy returns.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// The config's own "config_id" (a string, or any scalar as text), else the first 16 hex digits
// of SHA-256 over the key-sorted JSON of the config. Stable across runs and processes.
std::string config_id_of(const Json& config);

enum class BranchStatus { kPending, kSuccess, kFailed, kSkipped };
std::string_view branch_status_name(BranchStatus status);
std::optional<BranchStatus> parse_branch_status(std::string_view name);

class Branch {
 public:
  Branch() = default;
  // Starts a branch: pending, start stamped from `clock`. An empty `config_id` is derived.
  Branch(Json config, Clock& clock, std::string config_id = "");

  const std::string& config_id() const { return config_id_; }
  const Json& config() const { return config_; }
  BranchStatus status() const { return status_; }
  bool finished() const { return status_ != BranchStatus::kPending; }
  MonoTime start() const { return start_; }
  std::optional<MonoTime> end() const { return end_; }
  // end - start; nullopt while pending.
  std::optional<std::chrono::microseconds> duration() const;
  const Json& output() const { return output_; }
  const std::optional<Error>& error() const { return error_; }

  // Exactly one finaliser may run; a second returns kFailedPrecondition and changes nothing.
  [[nodiscard]] Status mark_success(Json output, Clock& clock);
  [[nodiscard]] Status mark_failure(Error error, Clock& clock);
  [[nodiscard]] Status mark_skipped(std::string reason, Clock& clock);

  // {"config_id", "config", "status", "duration_ms", "output", "error": {code, message}}
  Json to_json() const;
  // A branch restored from to_json() (a journaled outcome); times are not restored.
  [[nodiscard]] static Result<Branch> from_json(const Json& json);

 private:
  [[nodiscard]] Status finalize(BranchStatus status, Clock& clock);

  std::string config_id_;
  Json config_ = Json::object();
  BranchStatus status_ = BranchStatus::kPending;
  MonoTime start_{};
  std::optional<MonoTime> end_;
  int64_t restored_duration_us_ = -1;  // set by from_json
  Json output_;
  std::optional<Error> error_;
};

// The branches of one experiment, in config order.
class BranchSet {
 public:
  BranchSet() = default;
  explicit BranchSet(std::vector<Branch> branches) : branches_(std::move(branches)) {}

  void add(Branch branch) { branches_.push_back(std::move(branch)); }
  size_t size() const { return branches_.size(); }
  bool empty() const { return branches_.empty(); }
  const Branch& operator[](size_t i) const { return branches_[i]; }
  auto begin() const { return branches_.begin(); }
  auto end() const { return branches_.end(); }

  std::vector<const Branch*> successful() const;
  std::vector<const Branch*> failed() const;
  // The first branch with this config id, or nullptr.
  const Branch* by_config_id(std::string_view id) const;

  Json to_json() const;

 private:
  std::vector<Branch> branches_;
};

}  // namespace crucible
