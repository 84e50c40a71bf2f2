#include "crucible/engine/replay.h"

namespace crucible {

ReplayIndex build_replay_index(const RunLog& log) {
  ReplayIndex index;
  for (const Record& r : log.records) {
    const std::string& key = r.key.str();
    switch (r.type) {
      case RecordType::kStepStarted:
        index.in_flight[key] = r.attempts;
        if (const Json* group = json_member(r.payload, "process_group")) index.process_groups[key].push_back(*group);
        break;
      case RecordType::kStepCompleted:
        index.process_groups.erase(key);
        index.completed[key] = &r;
        index.failed.erase(key);
        index.in_flight.erase(key);
        break;
      case RecordType::kStepFailed:
        index.process_groups.erase(key);
        index.failed[key] = &r;
        index.in_flight.erase(key);
        break;
      case RecordType::kDecision: index.decisions[key] = r.payload; break;
      default: break;
    }
  }
  return index;
}

}  // namespace crucible
