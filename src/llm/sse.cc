#include "crucible/llm/sse.h"

namespace crucible::llm {

bool SseParser::feed(std::string_view bytes, const Handler& on_event) {
  for (char c : bytes) {
    if (c != '\n') {
      partial_.push_back(c);
      continue;
    }
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    std::string text = std::move(partial_);
    partial_.clear();
    if (!line(text, on_event)) return false;
  }
  return true;
}

bool SseParser::finish(const Handler& on_event) {
  if (!partial_.empty()) {
    std::string text = std::move(partial_);
    partial_.clear();
    if (!line(text, on_event)) return false;
  }
  return dispatch(on_event);
}

bool SseParser::line(std::string_view text, const Handler& on_event) {
  if (text.empty()) return dispatch(on_event);
  if (text.front() == ':') return true;  // a comment (keep-alive)
  size_t colon = text.find(':');
  std::string_view field = text.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "event") {
    current_.event = std::string(value);
  } else if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  }
  return true;  // id, retry and unknown fields are ignored
}

bool SseParser::dispatch(const Handler& on_event) {
  if (!has_data_ && current_.event.empty()) return true;
  SseEvent e = std::move(current_);
  current_ = SseEvent{};
  has_data_ = false;
  return on_event(e);
}

}  // namespace crucible::llm
