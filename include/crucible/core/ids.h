// Run ids and step keys.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/random.h"

namespace crucible {

// Identifies one run of a pipeline. 1-128 characters from [A-Za-z0-9._:-]. Generated ids sort by
// creation time: "20261121-050846-3fa2c1d9". Immutable and shared: copying one (every journal
// record carries it) does not copy the text.
class RunId {
 public:
  RunId() = default;
  [[nodiscard]] static Result<RunId> parse(std::string_view text);
  static RunId generate(Clock& clock, Random& random);

  const std::string& str() const { return value_ ? *value_ : empty_; }
  bool empty() const { return str().empty(); }
  friend bool operator==(const RunId& a, const RunId& b) { return a.value_ == b.value_ || a.str() == b.str(); }
  friend auto operator<=>(const RunId& a, const RunId& b) { return a.str() <=> b.str(); }

 private:
  explicit RunId(std::string value) : value_(std::make_shared<const std::string>(std::move(value))) {}
  std::shared_ptr<const std::string> value_;
  inline static const std::string empty_;
};

// The deterministic address of a node in a run, from its path in the workflow tree:
// "/prepare", "/train[2]/eval", "/fan/left/score". Replay matches journal records by key.
class StepKey {
 public:
  StepKey() = default;
  static StepKey root() { return StepKey(); }
  static StepKey from_string(std::string text) { return StepKey(std::move(text)); }

  StepKey child(std::string_view name) const;
  StepKey indexed(std::string_view name, int64_t index) const;
  // Whether this key equals `prefix` or lies below it.
  bool within(const StepKey& prefix) const;

  // The key of one branch of the experiment node at this key: "<key>/branch[<config id>]".
  StepKey branch(std::string_view config_id) const;
  // A branch key taken apart: "<experiment>/branch[<config id>]<suffix>", where the suffix is
  // what follows the branch (a decision's "#branch", or a step below it such as "/train").
  struct BranchParts {
    std::string experiment;  // the experiment node's key
    std::string config_id;
    std::string suffix;
  };
  // The innermost branch in `key`, or nullopt when it names none.
  static std::optional<BranchParts> parse_branch(std::string_view key);

  const std::string& str() const { return value_; }
  bool empty() const { return value_.empty(); }
  friend bool operator==(const StepKey&, const StepKey&) = default;
  friend auto operator<=>(const StepKey&, const StepKey&) = default;

 private:
  explicit StepKey(std::string value) : value_(std::move(value)) {}
  std::string value_;
};

}  // namespace crucible

template <>
struct std::hash<crucible::RunId> {
  size_t operator()(const crucible::RunId& id) const noexcept { return std::hash<std::string>()(id.str()); }
};
template <>
struct std::hash<crucible::StepKey> {
  size_t operator()(const crucible::StepKey& k) const noexcept { return std::hash<std::string>()(k.str()); }
};
