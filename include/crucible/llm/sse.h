// A server-sent events parser (the text/event-stream format of the WHATWG HTML standard):
// `event:` and `data:` fields, multi-line data, comments, events ended by a blank line.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace crucible::llm {

struct SseEvent {
  std::string event;  // empty when the stream gave no `event:` field
  std::string data;   // `data:` lines joined by '\n'
};

class SseParser {
 public:
  using Handler = std::function<bool(const SseEvent&)>;  // false stops the parse

  // Feeds bytes in any chunking; calls `on_event` for each complete event. Returns false once a
  // handler returned false.
  bool feed(std::string_view bytes, const Handler& on_event);
  // Delivers an event left without its closing blank line at the end of the stream.
  bool finish(const Handler& on_event);

 private:
  bool line(std::string_view text, const Handler& on_event);
  bool dispatch(const Handler& on_event);

  std::string partial_;
  SseEvent current_;
  bool has_data_ = false;
};

}  // namespace crucible::llm
