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

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/executor.h"
#include "crucible/core/json.h"
#include "crucible/core/random.h"
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
[[nodiscard]] Result<CircuitBreakerOptions> circuit_options_from_json(const Json& value, const std::string& field);

struct ModelHandle {
  std::shared_ptr<llm::Provider> provider;
  std::string kind;      // anthropic, openai or scripted
  bool offline = false;  // answering with the `offline:` script because the key is not set
  std::string notice;    // why, and which environment variable to set
};

// Builds the provider stack of each configured model once and keeps it, so breakers and hedging
// statistics span runs: Caching(Retrying(CircuitBreaking(Hedged(adapter)))), each layer present
// when configured. Owned by the composition root and handed to the llm.* stages. Thread-safe.
class ModelRegistry {
 public:
  // All must outlive the registry. Hedged attempts run on `executor`; they block on the network,
  // so it should have more threads than there are cores.
  ModelRegistry(Executor& executor, Clock& clock, Random& random)
      : executor_(executor), clock_(clock), random_(random) {}

  // The stack of model `name` as configured by `config` (templates already rendered), built on
  // first use. kInvalidArgument naming the field for a bad config; kFailedPrecondition naming
  // the environment variable when a key is needed and absent and there is no offline script.
  [[nodiscard]] Result<ModelHandle> resolve(const std::string& name, const Json& config, const std::string& blob_dir);

 private:
  [[nodiscard]] Result<ModelHandle> build(const std::string& name, const Json& config, const std::string& key,
                                          const std::string& blob_dir);

  Executor& executor_;
  Clock& clock_;
  Random& random_;
  std::mutex mu_;
  std::map<std::string, ModelHandle> built_;  // guarded by mu_: by name, config, blob dir and key hash
};

}  // namespace crucible
