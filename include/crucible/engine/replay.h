// The replay index: what a run's journal says about each step key, built once per resume so the
// walk finds completed steps, failures, in-flight intents and decisions in constant time.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "crucible/journal/journal.h"

namespace crucible {

// Points into the RunLog it was built from, which must outlive it.
struct ReplayIndex {
  std::unordered_map<std::string, const Record*> completed;
  std::unordered_map<std::string, const Record*> failed;
  std::unordered_map<std::string, int> in_flight;  // started, no outcome: the attempt number
  std::unordered_map<std::string, Json> decisions;
  // In-flight steps' process groups (ProcessGroupRef JSON), which may still be running.
  std::unordered_map<std::string, std::vector<Json>> process_groups;
  bool empty() const { return completed.empty() && failed.empty() && in_flight.empty() && decisions.empty(); }
};

// The index of `log`; a later record for a key replaces an earlier one.
ReplayIndex build_replay_index(const RunLog& log);

}  // namespace crucible
