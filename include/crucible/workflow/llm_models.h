// The `models:` section of a pipeline: named LLM providers with their decorators, built into
// provider stacks the llm.* stages call.
//
//   models:
//     writer:
//       provider: anthropic            # anthropic, openai (any OpenAI-compatible server) or scripted
//       model: claude-sonnet-4-5
//       api_key_env: ANTHROPIC_API_KEY # keys come only from the environment
//       base_url: https://api.anthropic.com
//       timeout: 60s
//       retry: {attempts: 4, backoff: 1s}
//       hedging: {strategy: percentile, percentile: 95, budget_percent: 5}
//       circuit_breaker: {failures: 5, window: 60s, cooldown: 30s}
//       cache: true                    # reuse completions of identical requests across runs
//       offline: {responses: [...]}    # answers when the key is not set, with a notice
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crucible/core/json.h"
#include "crucible/llm/provider.h"
#include "crucible/reliability/circuit_breaker.h"
#include "crucible/reliability/retry.h"

namespace crucible {

struct ModelProblem {
  std::string field;  // below the model, e.g. "retry.attempts"; empty for the model itself
  std::string message;
};

// Every problem of one `models:` entry; empty when it is valid. `retry` is expected in the form
// of RetryPolicy::to_json(): the loader parses the YAML `retry:` with the stages' parser.
std::vector<ModelProblem> check_model_config(const Json& config);

// A `circuit_breaker:` value (true, or {failures, window, cooldown, probes}).
Result<CircuitBreakerOptions> circuit_options_from_json(const Json& value, const std::string& field);

struct ModelHandle {
  std::shared_ptr<llm::Provider> provider;
  std::string kind;    // anthropic, openai or scripted
  bool offline = false;  // answering with the `offline:` script because the key is not set
  std::string notice;    // why, and which environment variable to set
};

// The provider stack of model `name` as configured by `config` (templates already rendered):
// Caching(Retrying(CircuitBreaking(Hedged(adapter)))), each layer present when configured. Built
// once per distinct configuration and kept for the process, so breakers and hedging statistics
// span runs. kFailedPrecondition naming the environment variable when a key is needed and absent
// and there is no offline script.
Result<ModelHandle> resolve_model(const std::string& name, const Json& config, const std::string& blob_dir);

}  // namespace crucible
