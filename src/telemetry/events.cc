#include "crucible/telemetry/events.h"

#include <cerrno>
#include <cstring>

namespace crucible {

std::string_view event_name(EventType type) {
  switch (type) {
    case EventType::kRunStarted: return "run.started";
    case EventType::kStageStarted: return "stage.started";
    case EventType::kStageCompleted: return "stage.completed";
    case EventType::kStageFailed: return "stage.failed";
    case EventType::kRunCompleted: return "run.completed";
    case EventType::kRunFailed: return "run.failed";
    case EventType::kRunSuspended: return "run.suspended";
  }
  return "unknown";
}

Json Event::to_json() const {
  Json out = {{"event", event_name(type)}, {"run_id", run_id}, {"at_ms", at_ms}};
  if (!step_key.empty()) out["step_key"] = step_key;
  if (!stage.empty()) out["stage"] = stage;
  if (type != EventType::kRunStarted && type != EventType::kStageStarted) {
    out["duration_us"] = duration_us;
  }
  if (attempts > 0) out["attempts"] = attempts;
  if (!status.empty()) out["status"] = status;
  if (!error.empty()) out["error"] = error;
  if (!data.is_null()) out["data"] = data;
  return out;
}

void EventBus::add_sink(std::shared_ptr<EventSink> sink) {
  std::lock_guard lock(mu_);
  sinks_.push_back(std::move(sink));
  active_ = true;
}

void EventBus::emit(const Event& event) {
  if (!active_) return;
  std::lock_guard lock(mu_);
  for (auto& sink : sinks_) sink->on_event(event);
}

namespace {

std::string format_duration(int64_t us) {
  char buf[32];
  if (us < 1000) {
    std::snprintf(buf, sizeof(buf), "%lld us", static_cast<long long>(us));
  } else if (us < 10'000'000) {
    std::snprintf(buf, sizeof(buf), "%.1f ms", static_cast<double>(us) / 1000.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(us) / 1e6);
  }
  return buf;
}

class ConsoleSink : public EventSink {
 public:
  ConsoleSink(std::FILE* out, bool tty) : out_(out), tty_(tty) {}

  void on_event(const Event& e) override {
    switch (e.type) {
      case EventType::kRunStarted:
        std::fprintf(out_, "run %s %s\n", e.run_id.c_str(),
                     e.data.is_object() && e.data.value("resumed", false) ? "resumed" : "started");
        break;
      case EventType::kStageStarted:
        if (tty_) std::fprintf(out_, "\r\033[K  .. %s running", e.step_key.c_str());
        break;
      case EventType::kStageCompleted:
        finish_line();
        std::fprintf(out_, "  %s %-40s %s%s\n", mark(e.status), e.step_key.c_str(),
                     format_duration(e.duration_us).c_str(), suffix(e).c_str());
        break;
      case EventType::kStageFailed:
        finish_line();
        std::fprintf(out_, "  %s %-40s %s  %s\n", e.status == "optional_failed" ? "~" : "x", e.step_key.c_str(),
                     format_duration(e.duration_us).c_str(), e.error.c_str());
        break;
      case EventType::kRunCompleted:
      case EventType::kRunFailed:
      case EventType::kRunSuspended:
        finish_line();
        std::fprintf(out_, "run %s %s in %s%s%s\n", e.run_id.c_str(), e.status.c_str(),
                     format_duration(e.duration_us).c_str(), e.error.empty() ? "" : ": ", e.error.c_str());
        break;
    }
    std::fflush(out_);
  }

 private:
  void finish_line() {
    if (tty_) std::fprintf(out_, "\r\033[K");
  }
  static const char* mark(const std::string& status) {
    if (status == "replayed") return "=";
    if (status == "skipped") return "-";
    return "+";
  }
  static std::string suffix(const Event& e) {
    std::string s;
    if (e.status == "replayed") s += "  (replayed from journal)";
    if (e.status == "skipped") s += "  (skipped)";
    if (e.attempts > 1) s += "  (" + std::to_string(e.attempts) + " attempts)";
    return s;
  }

  std::FILE* out_;
  bool tty_;
};

class JsonlSink : public EventSink {
 public:
  explicit JsonlSink(std::FILE* file) : file_(file) {}
  ~JsonlSink() override { std::fclose(file_); }
  void on_event(const Event& e) override {
    std::string line = json_dump(e.to_json());
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fflush(file_);
  }

 private:
  std::FILE* file_;
};

}  // namespace

std::shared_ptr<EventSink> make_console_sink(std::FILE* out, bool tty) {
  return std::make_shared<ConsoleSink>(out, tty);
}

Result<std::shared_ptr<EventSink>> make_jsonl_sink(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    return make_error(ErrorCode::kUnavailable, "cannot open event file '" + path + "': " + std::strerror(errno));
  }
  return std::shared_ptr<EventSink>(std::make_shared<JsonlSink>(file));
}

}  // namespace crucible
