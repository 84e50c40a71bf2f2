#include "crucible/engine/replay.h"

namespace crucible {

ReplayIndex build_replay_index(const RunLog& log) {
  ReplayIndex index;
  for (const Record& r : log.records) {
    const std::string& key = r.key.str();
    switch (r.type) {
      case RecordType::kStepStarted: index.in_flight[key] = r.attempts; break;
      case RecordType::kStepCompleted:
        index.completed[key] = &r;
        index.failed.erase(key);
        index.in_flight.erase(key);
        break;
      case RecordType::kStepFailed:
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
