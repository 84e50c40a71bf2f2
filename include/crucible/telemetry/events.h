// Run and stage lifecycle events, the EventBus that fans them out, and the built-in sinks
// (console progress and JSONL file).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

enum class EventType {
  kRunStarted,
  kStageStarted,
  kStageCompleted,
  kStageFailed,
  kRunCompleted,
  kRunFailed,
  kRunSuspended,
};

// "run.started", "stage.completed", ...
std::string_view event_name(EventType type);

struct Event {
  EventType type;
  std::string run_id;
  std::string step_key;
  std::string stage;
  int64_t at_ms = 0;        // wall time
  int64_t duration_us = 0;  // for *.completed / *.failed
  int attempts = 0;
  std::string status;  // "completed", "replayed", "skipped", "optional_failed", ...
  std::string error;
  Json data;  // extra fields, e.g. the run's pipeline name

  Json to_json() const;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Called under the bus's lock, one event at a time.
  virtual void on_event(const Event& event) = 0;
};

// Fans events out to sinks. Thread-safe. With no sinks, emit is a cheap no-op; callers that
// build costly events check active() first.
class EventBus {
 public:
  void add_sink(std::shared_ptr<EventSink> sink);
  bool active() const { return active_; }
  void emit(const Event& event);

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<EventSink>> sinks_;  // guarded by mu_
  bool active_ = false;
};

// A live progress line per stage on a terminal; one plain line per finished stage otherwise.
// `out` must outlive the sink.
std::shared_ptr<EventSink> make_console_sink(std::FILE* out, bool tty);

// Appends one JSON object per event to `path`. kUnavailable if the file cannot be opened.
[[nodiscard]] Result<std::shared_ptr<EventSink>> make_jsonl_sink(const std::string& path);

}  // namespace crucible
