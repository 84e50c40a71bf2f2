#include "crucible/llm/adapters.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "crucible/http/client.h"
#include "crucible/llm/sse.h"

namespace crucible::llm {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
}

std::string trim_base(std::string base) {
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0) base.resize(base.size() - 3);
  return base;
}

Error malformed(std::string_view provider, const std::string& what) {
  return Error(ErrorCode::kUnavailable, std::string(provider) + ": malformed response: " + what);
}

// The body of a 200 answer as JSON (discarded when it is not JSON: callers check its shape);
// other statuses become errors.
Result<Json> post_json(http::Client& http, std::string_view provider, const http::Request& post, std::stop_token stop) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto reply, http.send(post, stop));
  if (reply.status != 200) return make_error(http_error(provider, reply.status, reply.body, reply.retry_after));
  return parse_json_or_discarded(reply.body);
}

// Posts a streaming request and hands each server-sent event to `handle`; a handler that stops
// the stream leaves its reason in `stream_error`, which wins over the transfer's own error.
Status post_stream(http::Client& http, std::string_view provider, const http::Request& post,
                   const SseParser::Handler& handle, const std::optional<Error>& stream_error, std::stop_token stop) {
  SseParser parser;
  auto reply = http.send(
      post, [&](std::string_view bytes) { return parser.feed(bytes, handle); }, stop);
  if (stream_error) return make_error(*stream_error);
  if (!reply) return make_error(reply.error());
  if (reply->status != 200) return make_error(http_error(provider, reply->status, reply->body, reply->retry_after));
  parser.finish(handle);
  if (stream_error) return make_error(*stream_error);
  return {};
}

// Anthropic -------------------------------------------------------------------------------------

class AnthropicProvider : public Provider {
 public:
  explicit AnthropicProvider(AnthropicOptions o) : o_(std::move(o)) { o_.base_url = trim_base(o_.base_url); }

  std::string name() const override { return "anthropic"; }

  Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override {
    CRUCIBLE_RETURN_IF_ERROR(validate(request));
    auto t0 = Clock::now();
    CRUCIBLE_ASSIGN_OR_RETURN(auto body, post_json(http_, "anthropic", post(request, false), stop));
    const Json& j = body;
    if (!j.is_object() || !j.contains("content") || !j["content"].is_array()) {
      return make_error(malformed("anthropic", "expected a message with a content list"));
    }
    Completion c;
    for (const Json& block : j["content"]) {
      if (block.value("type", "") == "text") c.content += block.value("text", "");
    }
    c.stop_reason = stop_reason_of(j.value("stop_reason", Json()));
    c.model = j.value("model", request.model);
    const Json& u = j.value("usage", Json::object());
    c.usage.input_tokens = u.value("input_tokens", int64_t{0});
    c.usage.output_tokens = u.value("output_tokens", int64_t{0});
    c.latency = since(t0);
    return c;
  }

  Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta, std::stop_token stop) override {
    CRUCIBLE_RETURN_IF_ERROR(validate(request));
    auto t0 = Clock::now();
    Completion c;
    c.model = request.model;
    std::optional<Error> stream_error;
    bool stopped = false;
    SseParser::Handler handle = [&](const SseEvent& e) -> bool {
      Json d = parse_json_or_discarded(e.data);
      if (!d.is_object()) {
        stream_error = malformed("anthropic", "an event whose data is not JSON");
        return false;
      }
      std::string type = d.value("type", e.event);
      if (type == "message_start") {
        const Json& m = d.value("message", Json::object());
        c.model = m.value("model", c.model);
        c.usage.input_tokens = m.value("usage", Json::object()).value("input_tokens", int64_t{0});
      } else if (type == "content_block_delta") {
        const Json& delta = d.value("delta", Json::object());
        if (delta.value("type", "") == "text_delta") {
          std::string text = delta.value("text", "");
          c.content += text;
          if (on_delta) on_delta(text);
        }
      } else if (type == "message_delta") {
        c.stop_reason = stop_reason_of(d.value("delta", Json::object()).value("stop_reason", Json()));
        const Json& u = d.value("usage", Json::object());
        if (u.contains("output_tokens")) c.usage.output_tokens = u.value("output_tokens", int64_t{0});
        if (u.contains("input_tokens") && u["input_tokens"].is_number())
          c.usage.input_tokens = u["input_tokens"].get<int64_t>();
      } else if (type == "message_stop") {
        stopped = true;
      } else if (type == "error") {
        const Json& err = d.value("error", Json::object());
        stream_error =
            http_error("anthropic", err.value("type", "") == "overloaded_error" ? 529 : 500, e.data, std::nullopt);
        return false;
      }
      return true;
    };
    CRUCIBLE_RETURN_IF_ERROR(post_stream(http_, "anthropic", post(request, true), handle, stream_error, stop));
    if (!stopped) return make_error(malformed("anthropic", "the stream ended before message_stop"));
    c.latency = since(t0);
    return c;
  }

 private:
  static StopReason stop_reason_of(const Json& v) {
    if (!v.is_string()) return StopReason::kEndTurn;
    return parse_stop_reason(v.get<std::string>()).value_or(StopReason::kEndTurn);
  }

  http::Request post(const CompletionRequest& r, bool streaming) const {
    Json body{{"model", r.model}, {"max_tokens", r.max_tokens}, {"messages", Json::array()}};
    for (const Message& m : r.messages)
      body["messages"].push_back({{"role", role_name(m.role)}, {"content", m.content}});
    if (!r.system.empty()) body["system"] = r.system;
    if (r.temperature) body["temperature"] = *r.temperature;
    if (!r.stop_sequences.empty()) body["stop_sequences"] = r.stop_sequences;
    if (r.metadata.is_object() && r.metadata.contains("user_id"))
      body["metadata"] = {{"user_id", r.metadata["user_id"]}};
    if (streaming) body["stream"] = true;
    http::Request p;
    p.method = "POST";
    p.url = o_.base_url + "/v1/messages";
    p.headers = {"x-api-key: " + o_.api_key, "anthropic-version: " + o_.version, "content-type: application/json",
                 streaming ? "accept: text/event-stream" : "accept: application/json"};
    p.body = json_dump(body);
    p.timeout = o_.timeout;
    return p;
  }

  AnthropicOptions o_;
  http::Client http_;
};

// OpenAI-compatible -----------------------------------------------------------------------------

class OpenAIProvider : public Provider {
 public:
  explicit OpenAIProvider(OpenAIOptions o) : o_(std::move(o)) { o_.base_url = trim_base(o_.base_url); }

  std::string name() const override { return "openai"; }

  Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override {
    CRUCIBLE_RETURN_IF_ERROR(validate(request));
    auto t0 = Clock::now();
    CRUCIBLE_ASSIGN_OR_RETURN(auto body, post_json(http_, "openai", post(request, false), stop));
    const Json& j = body;
    if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) {
      return make_error(malformed("openai", "expected a chat completion with choices"));
    }
    const Json& choice = j["choices"][0];
    Completion c;
    const Json& content = choice.value("message", Json::object()).value("content", Json());
    c.content = content.is_string() ? content.get<std::string>() : "";
    c.stop_reason = finish_reason_of(choice.value("finish_reason", Json()));
    c.model = j.value("model", request.model);
    usage_of(j.value("usage", Json()), c.usage);
    c.latency = since(t0);
    return c;
  }

  Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta, std::stop_token stop) override {
    CRUCIBLE_RETURN_IF_ERROR(validate(request));
    auto t0 = Clock::now();
    Completion c;
    c.model = request.model;
    bool done = false;
    std::optional<Error> stream_error;
    SseParser::Handler handle = [&](const SseEvent& e) -> bool {
      if (e.data == "[DONE]") {
        done = true;
        return true;
      }
      Json d = parse_json_or_discarded(e.data);
      if (!d.is_object()) {
        stream_error = malformed("openai", "a chunk that is not JSON");
        return false;
      }
      if (d.contains("error")) {
        stream_error = http_error("openai", 500, e.data, std::nullopt);
        return false;
      }
      c.model = d.value("model", c.model);
      if (d.contains("choices") && d["choices"].is_array() && !d["choices"].empty()) {
        const Json& choice = d["choices"][0];
        const Json& text = choice.value("delta", Json::object()).value("content", Json());
        if (text.is_string() && !text.get<std::string>().empty()) {
          c.content += text.get<std::string>();
          if (on_delta) on_delta(text.get<std::string>());
        }
        if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
          c.stop_reason = finish_reason_of(choice["finish_reason"]);
        }
      }
      usage_of(d.value("usage", Json()), c.usage);
      return true;
    };
    CRUCIBLE_RETURN_IF_ERROR(post_stream(http_, "openai", post(request, true), handle, stream_error, stop));
    if (!done) return make_error(malformed("openai", "the stream ended before [DONE]"));
    c.latency = since(t0);
    return c;
  }

 private:
  static StopReason finish_reason_of(const Json& v) {
    if (v.is_string() && v.get<std::string>() == "length") return StopReason::kMaxTokens;
    return StopReason::kEndTurn;
  }
  static void usage_of(const Json& u, Usage& usage) {
    if (!u.is_object()) return;
    usage.input_tokens = u.value("prompt_tokens", usage.input_tokens);
    usage.output_tokens = u.value("completion_tokens", usage.output_tokens);
  }

  http::Request post(const CompletionRequest& r, bool streaming) const {
    Json messages = Json::array();
    if (!r.system.empty()) messages.push_back({{"role", "system"}, {"content", r.system}});
    for (const Message& m : r.messages) messages.push_back({{"role", role_name(m.role)}, {"content", m.content}});
    Json body{{"model", r.model}, {"messages", messages}, {"max_tokens", r.max_tokens}};
    if (r.temperature) body["temperature"] = *r.temperature;
    if (!r.stop_sequences.empty()) body["stop"] = r.stop_sequences;
    if (streaming) {
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
    }
    http::Request p;
    p.method = "POST";
    p.url = o_.base_url + "/v1/chat/completions";
    p.headers = {"content-type: application/json",
                 streaming ? "accept: text/event-stream" : "accept: application/json"};
    if (!o_.api_key.empty()) p.headers.push_back("authorization: Bearer " + o_.api_key);
    p.body = json_dump(body);
    p.timeout = o_.timeout;
    return p;
  }

  OpenAIOptions o_;
  http::Client http_;
};

// Scripted --------------------------------------------------------------------------------------

std::string request_text(const CompletionRequest& r) {
  std::string text = r.system;
  for (const Message& m : r.messages) text += "\n" + m.content;
  return text;
}

// Anthropic's error types that say more than the status.
std::optional<ErrorCode> code_for_error_type(const std::string& type) {
  if (type == "overloaded_error" || type == "api_error") return ErrorCode::kUnavailable;
  if (type == "rate_limit_error") return ErrorCode::kResourceExhausted;
  if (type == "authentication_error") return ErrorCode::kUnauthenticated;
  if (type == "permission_error") return ErrorCode::kPermissionDenied;
  if (type == "not_found_error") return ErrorCode::kNotFound;
  return std::nullopt;
}

int64_t estimate_tokens(size_t chars) { return static_cast<int64_t>(chars / 4 + 1); }

}  // namespace

Error http_error(std::string_view provider, long status, const std::string& body,
                 std::optional<std::chrono::milliseconds> retry_after) {
  std::string type, message;
  Json j = parse_json_or_discarded(body);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const Json& e = j["error"];
    type = e.value("type", Json()).is_string() ? e["type"].get<std::string>() : "";
    message = e.value("message", Json()).is_string() ? e["message"].get<std::string>() : "";
  }
  if (message.empty()) message = body.size() > 300 ? body.substr(0, 300) + "..." : body;
  ErrorCode code = ErrorCode::kUnknown;
  if (auto by_type = code_for_error_type(type)) {
    code = *by_type;
  } else {
    // OpenAI-style APIs label most client errors invalid_request_error: the status says more.
    code = http::error_code_for_status(status).value_or(ErrorCode::kUnknown);
    if (code == ErrorCode::kUnknown && (type == "invalid_request_error" || type == "request_too_large")) {
      code = ErrorCode::kInvalidArgument;
    }
  }
  std::string text = std::string(provider) + ": HTTP " + std::to_string(status) + (type.empty() ? "" : " " + type) +
                     (message.empty() ? "" : ": " + message);
  Error error(code, text);
  if (retry_after) error.with_retry_after(*retry_after);
  return error;
}

std::unique_ptr<Provider> make_anthropic_provider(AnthropicOptions options) {
  return std::make_unique<AnthropicProvider>(std::move(options));
}

std::unique_ptr<Provider> make_openai_provider(OpenAIOptions options) {
  return std::make_unique<OpenAIProvider>(std::move(options));
}

ScriptedProvider::ScriptedProvider(std::vector<ScriptedResponse> responses, std::string model)
    : responses_(std::move(responses)), model_(std::move(model)) {}

Result<std::unique_ptr<ScriptedProvider>> ScriptedProvider::from_json(const Json& list, const std::string& field) {
  if (!list.is_array() || list.empty()) {
    return field_error(field, "expected a non-empty list of responses");
  }
  static const std::vector<std::string> kKeys = {"text",         "match",         "error",
                                                 "message",      "delay_ms",      "retry_after_ms",
                                                 "input_tokens", "output_tokens", "stop_reason"};
  std::vector<ScriptedResponse> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& item = list[i];
    std::string f = field + "[" + std::to_string(i) + "]";
    ScriptedResponse r;
    if (item.is_string()) {
      r.text = item.get<std::string>();
      out.push_back(std::move(r));
      continue;
    }
    if (!item.is_object()) return field_error(f, "expected text or a mapping");
    for (const auto& [k, _] : item.items()) {
      if (std::find(kKeys.begin(), kKeys.end(), k) == kKeys.end()) {
        return field_error(f + "." + k,
                           "unknown key (expected text, match, error, message, "
                           "delay_ms, retry_after_ms, input_tokens, output_tokens or stop_reason)");
      }
    }
    auto str = [&](const char* k) -> Result<std::string> {
      if (!item.contains(k)) return std::string();
      if (!item[k].is_string()) return field_error(f + "." + k, "expected text");
      return item[k].get<std::string>();
    };
    auto num = [&](const char* k) -> Result<std::optional<int64_t>> {
      if (!item.contains(k)) return std::optional<int64_t>();
      if (!item[k].is_number_integer() || item[k].get<int64_t>() < 0) {
        return field_error(f + "." + k, "expected a non-negative integer");
      }
      return std::optional<int64_t>(item[k].get<int64_t>());
    };
    auto text = str("text");
    auto match = str("match");
    auto message = str("message");
    auto error = str("error");
    auto stop_reason = str("stop_reason");
    auto delay = num("delay_ms");
    auto retry_after = num("retry_after_ms");
    auto in = num("input_tokens");
    auto outt = num("output_tokens");
    for (auto* s : {&text, &match, &message, &error, &stop_reason}) {
      if (!*s) return make_error(s->error());
    }
    for (auto* n : {&delay, &retry_after, &in, &outt}) {
      if (!*n) return make_error(n->error());
    }
    r.text = *text;
    r.match = *match;
    if (!error->empty()) {
      auto code = parse_error_code(*error);
      if (!code) return field_error(f + ".error", "unknown error code '" + *error + "'");
      r.error = *code;
      if (!message->empty()) r.error_message = *message;
    } else if (!item.contains("text")) {
      return field_error(f, "needs 'text' or 'error'");
    }
    if (!stop_reason->empty()) {
      auto sr = parse_stop_reason(*stop_reason);
      if (!sr) return field_error(f + ".stop_reason", "expected end_turn, max_tokens or stop_sequence");
      r.stop_reason = *sr;
    }
    if (*delay) r.delay = std::chrono::milliseconds(**delay);
    if (*retry_after) r.retry_after = std::chrono::milliseconds(**retry_after);
    r.input_tokens = *in;
    r.output_tokens = *outt;
    out.push_back(std::move(r));
  }
  return std::make_unique<ScriptedProvider>(std::move(out));
}

void ScriptedProvider::fail_next(ErrorCode code, int times, std::string message) {
  std::lock_guard lock(mu_);
  for (int i = 0; i < times; ++i) injected_.emplace_back(code, message);
}

std::vector<CompletionRequest> ScriptedProvider::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

size_t ScriptedProvider::call_count() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

Result<Completion> ScriptedProvider::complete(const CompletionRequest& request, std::stop_token stop) {
  CRUCIBLE_RETURN_IF_ERROR(validate(request));
  auto t0 = Clock::now();
  ScriptedResponse chosen;
  {
    std::lock_guard lock(mu_);
    calls_.push_back(request);
    if (!injected_.empty()) {
      auto [code, message] = injected_.front();
      injected_.erase(injected_.begin());
      return make_error(code, "scripted: " + message);
    }
    // Responses whose `match` the request contains come first; the unconditional ones answer
    // everything else.
    const std::string text = request_text(request);
    std::vector<size_t> candidates;
    for (size_t i = 0; i < responses_.size(); ++i) {
      if (!responses_[i].match.empty() && text.find(responses_[i].match) != std::string::npos) candidates.push_back(i);
    }
    if (candidates.empty()) {
      for (size_t i = 0; i < responses_.size(); ++i) {
        if (responses_[i].match.empty()) candidates.push_back(i);
      }
    }
    std::string group;
    for (size_t i : candidates) group += std::to_string(i) + ",";
    if (candidates.empty()) {
      return make_error(ErrorCode::kNotFound, "scripted: no response matches this request (the script has " +
                                                  std::to_string(responses_.size()) + " responses)");
    }
    size_t& next = next_[group];
    chosen = responses_[candidates[next % candidates.size()]];
    ++next;
  }
  for (auto waited = std::chrono::milliseconds(0); waited < chosen.delay; waited += std::chrono::milliseconds(1)) {
    if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "scripted: cancelled");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "scripted: cancelled");
  if (chosen.error) {
    Error e(*chosen.error, "scripted: " + chosen.error_message);
    if (chosen.retry_after) e.with_retry_after(*chosen.retry_after);
    return make_error(e);
  }
  Completion c;
  c.content = chosen.text;
  c.model = request.model.empty() ? model_ : request.model;
  c.stop_reason = chosen.stop_reason;
  c.usage.input_tokens = chosen.input_tokens.value_or(estimate_tokens(request_text(request).size()));
  c.usage.output_tokens = chosen.output_tokens.value_or(estimate_tokens(chosen.text.size()));
  c.latency = since(t0);
  return c;
}

Result<Completion> ScriptedProvider::stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                            std::stop_token stop) {
  auto c = complete(request, stop);
  if (!c || !on_delta) return c;
  size_t start = 0;
  while (start < c->content.size()) {
    size_t space = c->content.find(' ', start);
    size_t end = space == std::string::npos ? c->content.size() : space + 1;
    on_delta(std::string_view(c->content).substr(start, end - start));
    start = end;
  }
  return c;
}

}  // namespace crucible::llm
