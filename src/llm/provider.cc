#include "crucible/llm/provider.h"

#include "crucible/core/hash.h"

namespace crucible::llm {

std::string_view role_name(Role role) { return role == Role::kUser ? "user" : "assistant"; }

std::string_view stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kEndTurn: return "end_turn";
    case StopReason::kMaxTokens: return "max_tokens";
    case StopReason::kStopSequence: return "stop_sequence";
  }
  return "end_turn";
}

std::optional<StopReason> parse_stop_reason(std::string_view name) {
  for (StopReason r : {StopReason::kEndTurn, StopReason::kMaxTokens, StopReason::kStopSequence}) {
    if (stop_reason_name(r) == name) return r;
  }
  return std::nullopt;
}

Json CompletionRequest::to_json() const {
  Json messages_json = Json::array();
  for (const Message& m : messages) messages_json.push_back({{"role", role_name(m.role)}, {"content", m.content}});
  Json j{{"model", model},
         {"system", system},
         {"messages", messages_json},
         {"max_tokens", max_tokens},
         {"stop_sequences", stop_sequences},
         {"metadata", metadata}};
  j["temperature"] = temperature ? Json(*temperature) : Json();
  return j;
}

std::string CompletionRequest::hash() const { return sha256_hex(json_dump(to_json())); }

Status validate(const CompletionRequest& r) {
  auto bad = [](const std::string& field, const std::string& what) {
    return make_error(ErrorCode::kInvalidArgument, "completion request: " + field + ": " + what);
  };
  if (r.model.empty()) return bad("model", "a model name is required");
  if (r.messages.empty()) return bad("messages", "at least one user message is required");
  if (r.messages.front().role != Role::kUser) return bad("messages[0]", "the first message must be from the user");
  for (size_t i = 0; i < r.messages.size(); ++i) {
    if (r.messages[i].content.empty()) return bad("messages[" + std::to_string(i) + "]", "empty content");
  }
  if (r.max_tokens < 1) return bad("max_tokens", "must be at least 1, got " + std::to_string(r.max_tokens));
  if (r.temperature && (*r.temperature < 0 || *r.temperature > 2)) {
    return bad("temperature", "must be between 0 and 2, got " + std::to_string(*r.temperature));
  }
  return {};
}

RequestBuilder& RequestBuilder::model(std::string m) {
  request_.model = std::move(m);
  return *this;
}
RequestBuilder& RequestBuilder::system(std::string s) {
  request_.system = std::move(s);
  return *this;
}
RequestBuilder& RequestBuilder::user(std::string text) {
  request_.messages.push_back({Role::kUser, std::move(text)});
  return *this;
}
RequestBuilder& RequestBuilder::assistant(std::string text) {
  request_.messages.push_back({Role::kAssistant, std::move(text)});
  return *this;
}
RequestBuilder& RequestBuilder::max_tokens(int n) {
  request_.max_tokens = n;
  return *this;
}
RequestBuilder& RequestBuilder::temperature(double t) {
  request_.temperature = t;
  return *this;
}
RequestBuilder& RequestBuilder::stop(std::string sequence) {
  request_.stop_sequences.push_back(std::move(sequence));
  return *this;
}
RequestBuilder& RequestBuilder::metadata(const std::string& key, Json value) {
  request_.metadata[key] = std::move(value);
  return *this;
}
Result<CompletionRequest> RequestBuilder::build() const {
  CRUCIBLE_RETURN_IF_ERROR(validate(request_));
  return request_;
}

Json Completion::to_json() const {
  return Json{{"content", content},
              {"usage", {{"input_tokens", usage.input_tokens}, {"output_tokens", usage.output_tokens}}},
              {"stop_reason", stop_reason_name(stop_reason)},
              {"model", model},
              {"latency_ms", static_cast<double>(latency.count()) / 1000.0}};
}

Result<Completion> Completion::from_json(const Json& j) {
  if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
    return make_error(ErrorCode::kDataLoss, "stored completion: expected an object with a string content");
  }
  Completion c;
  c.content = j["content"].get<std::string>();
  const Json& u = j.value("usage", Json::object());
  c.usage.input_tokens = u.value("input_tokens", int64_t{0});
  c.usage.output_tokens = u.value("output_tokens", int64_t{0});
  c.stop_reason = parse_stop_reason(j.value("stop_reason", "end_turn")).value_or(StopReason::kEndTurn);
  c.model = j.value("model", "");
  c.latency = std::chrono::microseconds(static_cast<int64_t>(j.value("latency_ms", 0.0) * 1000));
  return c;
}

Result<Completion> Provider::stream(const CompletionRequest& request, const DeltaFn& on_delta, std::stop_token stop) {
  auto c = complete(request, stop);
  if (c && on_delta) on_delta(c->content);
  return c;
}

}  // namespace crucible::llm
