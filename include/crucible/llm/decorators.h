// Decorators over any Provider, each a Provider itself:
//   Retrying        retries retryable failures with the RetryPolicy's backoff (honours retry_after)
//   Hedged          sends a backup when an answer is slow (the Hedger); the loser's transfer is
//                   aborted and one completion is returned
//   CircuitBreaking fails fast while the provider keeps failing (retryable failures count)
//   Caching         request hash -> completion in a CompletionStore, reused across runs
// Pipelines stack them as Caching(Retrying(CircuitBreaking(Hedged(adapter)))), each present
// when configured.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "crucible/core/clock.h"
#include "crucible/core/executor.h"
#include "crucible/core/random.h"
#include "crucible/journal/blob_store.h"
#include "crucible/llm/provider.h"
#include "crucible/reliability/circuit_breaker.h"
#include "crucible/reliability/hedging.h"
#include "crucible/reliability/retry.h"

namespace crucible::llm {

class RetryingProvider : public Provider {
 public:
  // `clock` and `random` must outlive the provider.
  RetryingProvider(std::shared_ptr<Provider> inner, RetryPolicy policy, Clock& clock, Random& random);
  std::string name() const override { return "retrying(" + inner_->name() + ")"; }
  [[nodiscard]] Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override;
  [[nodiscard]] Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) override;
  int64_t retries() const { return retries_.load(); }

 private:
  template <typename Call>
  [[nodiscard]] Result<Completion> with_retries(const Call& call, std::stop_token stop);

  std::shared_ptr<Provider> inner_;
  RetryPolicy policy_;
  Clock& clock_;
  Random& random_;
  std::atomic<int64_t> retries_{0};
};

class HedgedProvider : public Provider {
 public:
  // `executor` and `clock` must outlive the provider; attempts run on the executor.
  HedgedProvider(std::shared_ptr<Provider> inner, std::shared_ptr<HedgePolicy> policy, Executor& executor, Clock& clock,
                 int max_hedges = 1, std::string key = "llm");
  std::string name() const override { return "hedged(" + inner_->name() + ")"; }
  [[nodiscard]] Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override;
  // Hedging happens before the first byte: the winning attempt's text is delivered in one piece.
  [[nodiscard]] Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) override;
  // {"calls", "hedged", "hedge_won", "attempts", "budget_denied", "policy"}
  Json stats() const;

 private:
  std::shared_ptr<Provider> inner_;
  std::shared_ptr<HedgePolicy> policy_;
  Executor& executor_;
  Clock& clock_;
  int max_hedges_;
  std::string key_;
  std::atomic<int64_t> calls_{0}, hedged_{0}, hedge_won_{0}, attempts_{0}, budget_denied_{0};
};

class CircuitBreakingProvider : public Provider {
 public:
  CircuitBreakingProvider(std::shared_ptr<Provider> inner, Clock& clock, CircuitBreakerOptions options = {});
  std::string name() const override { return "circuit(" + inner_->name() + ")"; }
  // kUnavailable with retry_after while the circuit is open.
  [[nodiscard]] Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override;
  [[nodiscard]] Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) override;
  CircuitBreaker& breaker() { return breaker_; }

 private:
  template <typename Call>
  [[nodiscard]] Result<Completion> guarded(const Call& call);

  std::shared_ptr<Provider> inner_;
  CircuitBreaker breaker_;
};

// Where cached completions live.
class CompletionStore {
 public:
  virtual ~CompletionStore() = default;
  [[nodiscard]] virtual Result<std::optional<Completion>> get(const std::string& key) = 0;
  [[nodiscard]] virtual Status put(const std::string& key, const Completion& completion) = 0;
};

// Completions as blobs in the journal's content-addressed store; an index file per key
// (`<blob dir>/llm-cache/<key>`, written atomically) names the blob.
class BlobCompletionStore : public CompletionStore {
 public:
  explicit BlobCompletionStore(std::string blob_dir);
  [[nodiscard]] Result<std::optional<Completion>> get(const std::string& key) override;
  [[nodiscard]] Status put(const std::string& key, const Completion& completion) override;

 private:
  std::string index_dir_;
  BlobStore blobs_;
};

class CachingProvider : public Provider {
 public:
  // `scope` separates caches of different providers or endpoints sharing one store.
  CachingProvider(std::shared_ptr<Provider> inner, std::shared_ptr<CompletionStore> store, std::string scope);
  std::string name() const override { return "cached(" + inner_->name() + ")"; }
  // A hit returns the stored completion with cached = true and no call.
  [[nodiscard]] Result<Completion> complete(const CompletionRequest& request, std::stop_token stop) override;
  [[nodiscard]] Result<Completion> stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) override;
  int64_t hits() const { return hits_.load(); }
  std::string key_of(const CompletionRequest& request) const;

 private:
  std::shared_ptr<Provider> inner_;
  std::shared_ptr<CompletionStore> store_;
  std::string scope_;
  std::atomic<int64_t> hits_{0};
};

}  // namespace crucible::llm
