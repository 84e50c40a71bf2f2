// Provider adapters: the Anthropic Messages API, OpenAI-compatible chat completions (OpenAI,
// llama.cpp server, vLLM, Ollama) and a scripted provider for tests and offline demos.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crucible/llm/provider.h"

namespace crucible::llm {

struct AnthropicOptions {
  std::string base_url = "https://api.anthropic.com";
  std::string api_key;                 // sent as x-api-key; never logged
  std::string version = "2023-06-01";  // anthropic-version
  std::chrono::milliseconds timeout{120'000};
};
// POST {base_url}/v1/messages. Errors by status and error type: invalid_request_error (400) is
// kInvalidArgument, authentication_error (401) kUnauthenticated, permission_error (403)
// kPermissionDenied, not_found_error (404) kNotFound, rate_limit_error (429) kResourceExhausted
// with retry_after, api_error (500) and overloaded_error (529) kUnavailable; network failures
// kUnavailable, all of those last three retryable.
std::unique_ptr<Provider> make_anthropic_provider(AnthropicOptions options);

struct OpenAIOptions {
  std::string base_url = "https://api.openai.com";  // a trailing /v1 is accepted
  std::string api_key;                              // Authorization: Bearer; empty for local servers
  std::chrono::milliseconds timeout{120'000};
};
// POST {base_url}/v1/chat/completions; streaming reads `data:` chunks up to `[DONE]` and asks
// for the usage chunk (stream_options.include_usage).
std::unique_ptr<Provider> make_openai_provider(OpenAIOptions options);

// Maps an HTTP error answer of either API to an Error: the code by status and error type, the
// provider's message, retry_after from the Retry-After header.
Error http_error(std::string_view provider, long status, const std::string& body,
                 std::optional<std::chrono::milliseconds> retry_after);

// One canned answer. `match`: answers the requests whose text (system prompt and messages)
// contains it; the responses without `match` answer the requests no match fits.
struct ScriptedResponse {
  std::string text;
  std::string match;
  std::optional<ErrorCode> error;  // fail with this code instead of answering
  std::string error_message = "scripted failure";
  std::chrono::milliseconds delay{0};
  std::optional<std::chrono::milliseconds> retry_after;
  std::optional<int64_t> input_tokens, output_tokens;  // default: about 4 characters per token
  StopReason stop_reason = StopReason::kEndTurn;
};

// Answers in order, cycling, among the responses that fit the request. Thread-safe.
class ScriptedProvider : public Provider {
 public:
  explicit ScriptedProvider(std::vector<ScriptedResponse> responses, std::string model = "scripted");
  // From a list of strings or objects {text, match, error, message, delay_ms, retry_after_ms,
  // input_tokens, output_tokens, stop_reason}; kInvalidArgument naming `field[i].key`.
  [[nodiscard]] static Result<std::unique_ptr<ScriptedProvider>> from_json(const Json& responses,
                                                                           const std::string& field);

  std::string name() const override { return "scripted(" + model_ + ")"; }
  [[nodiscard]] Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override;
  [[nodiscard]] Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) override;

  // The next `times` calls fail with `code` before any response is used.
  void fail_next(ErrorCode code, int times = 1, std::string message = "injected failure");
  std::vector<CompletionRequest> calls() const;
  size_t call_count() const;

 private:
  std::vector<ScriptedResponse> responses_;
  std::string model_;
  mutable std::mutex mu_;
  std::vector<CompletionRequest> calls_;                     // guarded by mu_
  std::map<std::string, size_t> next_;                       // guarded by mu_: per match set, the next index
  std::vector<std::pair<ErrorCode, std::string>> injected_;  // guarded by mu_
};

}  // namespace crucible::llm
