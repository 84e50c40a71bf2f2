// The LLM provider port: one request in, one completion out, optionally streamed. Adapters
// (Anthropic, OpenAI-compatible, scripted) implement it; decorators (retry, hedging, circuit
// breaker, cache) wrap any provider and are providers themselves.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::llm {

enum class Role { kUser, kAssistant };
std::string_view role_name(Role role);

struct Message {
  Role role = Role::kUser;
  std::string content;
};

enum class StopReason { kEndTurn, kMaxTokens, kStopSequence };
std::string_view stop_reason_name(StopReason reason);
std::optional<StopReason> parse_stop_reason(std::string_view name);

struct CompletionRequest {
  std::string model;
  std::string system;  // the system prompt; empty for none
  std::vector<Message> messages;
  int max_tokens = 1024;
  std::optional<double> temperature;
  std::vector<std::string> stop_sequences;
  Json metadata = Json::object();  // passed to providers that take it (Anthropic: user_id)

  // Canonical JSON: the basis of the cache key.
  Json to_json() const;
  // SHA-256 hex of json_dump(to_json()).
  std::string hash() const;
};

// kInvalidArgument naming the field: no model, no messages, a first message that is not from
// the user, max_tokens < 1, temperature outside [0, 2].
[[nodiscard]] Status validate(const CompletionRequest& request);

// Fluent construction:
//   auto req = RequestBuilder().model("claude-sonnet-4-5").system("Be brief.")
//                  .user("Name a prime.").max_tokens(64).build();
class RequestBuilder {
 public:
  RequestBuilder& model(std::string m);
  RequestBuilder& system(std::string s);
  RequestBuilder& user(std::string text);
  RequestBuilder& assistant(std::string text);
  RequestBuilder& max_tokens(int n);
  RequestBuilder& temperature(double t);
  RequestBuilder& stop(std::string sequence);
  RequestBuilder& metadata(const std::string& key, Json value);
  [[nodiscard]] Result<CompletionRequest> build() const;

 private:
  CompletionRequest request_;
};

struct Usage {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t total() const { return input_tokens + output_tokens; }
};

struct Completion {
  std::string content;
  Usage usage;
  StopReason stop_reason = StopReason::kEndTurn;
  std::string model;
  std::chrono::microseconds latency{0};
  bool cached = false;  // served by the caching decorator

  Json to_json() const;
  [[nodiscard]] static Result<Completion> from_json(const Json& json);
};

// Called with each piece of text as it arrives.
using DeltaFn = std::function<void(std::string_view text)>;

// Implementations are thread-safe: one provider serves many steps at once.
class Provider {
 public:
  virtual ~Provider() = default;
  // A short description for logs and status: "anthropic(claude-sonnet-4-5)". Never a key.
  virtual std::string name() const = 0;
  // Stops early (kCancelled, the transfer aborted) when `stop` is requested.
  [[nodiscard]] virtual Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) = 0;
  // Streams text to `on_delta` as it arrives and returns the whole completion. The default
  // completes, then delivers the text in one piece.
  [[nodiscard]] virtual Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                                  std::stop_token stop);
};

}  // namespace crucible::llm
