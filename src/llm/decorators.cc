#include "crucible/llm/decorators.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "crucible/core/file.h"
#include "crucible/core/hash.h"
#include "crucible/reliability/hedger.h"

namespace crucible::llm {

// Retrying -------------------------------------------------------------------------------------

RetryingProvider::RetryingProvider(std::shared_ptr<Provider> inner, RetryPolicy policy, Clock& clock, Random& random)
    : inner_(std::move(inner)), policy_(std::move(policy)), clock_(clock), random_(random) {}

template <typename Call>
Result<Completion> RetryingProvider::with_retries(const Call& call, std::stop_token stop) {
  return retry_call(policy_, clock_, random_, stop, [&](int attempt) -> Result<Completion> {
    if (attempt > 1) retries_.fetch_add(1, std::memory_order_relaxed);
    return call();
  });
}

Result<Completion> RetryingProvider::complete(const CompletionRequest& request, std::stop_token stop) {
  return with_retries([&] { return inner_->complete(request, stop); }, stop);
}

Result<Completion> RetryingProvider::stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                            std::stop_token stop) {
  // Text from a failed attempt is not delivered: each attempt buffers and the survivor's
  // pieces are replayed in order.
  return with_retries(
      [&]() -> Result<Completion> {
        std::vector<std::string> pieces;
        auto r = inner_->stream(
            request, [&](std::string_view t) { pieces.emplace_back(t); }, stop);
        if (r && on_delta) {
          for (const std::string& p : pieces) on_delta(p);
        }
        return r;
      },
      stop);
}

// Hedged ---------------------------------------------------------------------------------------

HedgedProvider::HedgedProvider(std::shared_ptr<Provider> inner, std::shared_ptr<HedgePolicy> policy, Executor& executor,
                               Clock& clock, int max_hedges, std::string key)
    : inner_(std::move(inner)),
      policy_(std::move(policy)),
      executor_(executor),
      clock_(clock),
      max_hedges_(max_hedges),
      key_(std::move(key)) {}

Result<Completion> HedgedProvider::complete(const CompletionRequest& request, std::stop_token stop) {
  Hedger hedger(executor_, clock_, *policy_);
  HedgeCallOptions options;
  options.key = key_;
  options.max_hedges = max_hedges_;
  // No deadline of its own: the adapters' timeouts bound each attempt.
  options.size = static_cast<double>(request.max_tokens);
  // Attempts may outlive this call (losers are told to stop, not awaited): they own copies.
  auto shared_request = std::make_shared<const CompletionRequest>(request);
  auto inner = inner_;
  auto r = hedger.hedge<Completion>(
      [inner, shared_request](int, std::stop_token s) { return inner->complete(*shared_request, s); }, options, stop);
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (!r) return make_error(r.error());
  attempts_.fetch_add(r->meta.attempts, std::memory_order_relaxed);
  if (r->meta.hedged) hedged_.fetch_add(1, std::memory_order_relaxed);
  if (r->meta.hedge_won) hedge_won_.fetch_add(1, std::memory_order_relaxed);
  if (r->meta.budget_denied) budget_denied_.fetch_add(1, std::memory_order_relaxed);
  Completion c = std::move(r->value);
  c.latency = std::chrono::microseconds(static_cast<int64_t>(r->meta.total_latency_ms * 1000));
  return c;
}

Result<Completion> HedgedProvider::stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                          std::stop_token stop) {
  auto c = complete(request, stop);
  if (c && on_delta) on_delta(c->content);
  return c;
}

Json HedgedProvider::stats() const {
  return Json{{"calls", calls_.load()},
              {"hedged", hedged_.load()},
              {"hedge_won", hedge_won_.load()},
              {"attempts", attempts_.load()},
              {"budget_denied", budget_denied_.load()},
              {"policy", policy_->stats()}};
}

// Circuit breaking -----------------------------------------------------------------------------

CircuitBreakingProvider::CircuitBreakingProvider(std::shared_ptr<Provider> inner, Clock& clock,
                                                 CircuitBreakerOptions options)
    : inner_(std::move(inner)), breaker_(clock, options) {}

template <typename Call>
Result<Completion> CircuitBreakingProvider::guarded(const Call& call) {
  if (auto allowed = breaker_.allow(); !allowed) {
    Error e = allowed.error().with_context("circuit breaker of " + inner_->name());
    if (allowed.error().retry_after()) e.with_retry_after(*allowed.error().retry_after());
    return make_error(e);
  }
  Result<Completion> r = call();
  // Failures of the service count; a caller's mistake (a bad request) or a cancellation does not.
  if (!r && is_retryable(r.error()))
    breaker_.record_failure();
  else
    breaker_.record_success();
  return r;
}

Result<Completion> CircuitBreakingProvider::complete(const CompletionRequest& request, std::stop_token stop) {
  return guarded([&] { return inner_->complete(request, stop); });
}

Result<Completion> CircuitBreakingProvider::stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                                   std::stop_token stop) {
  return guarded([&] { return inner_->stream(request, on_delta, stop); });
}

// Caching --------------------------------------------------------------------------------------

BlobCompletionStore::BlobCompletionStore(std::string blob_dir)
    : index_dir_((std::filesystem::path(blob_dir) / "llm-cache").string()), blobs_(std::move(blob_dir)) {}

Result<std::optional<Completion>> BlobCompletionStore::get(const std::string& key) {
  std::ifstream in(std::filesystem::path(index_dir_) / key);
  if (!in) return std::optional<Completion>();
  std::string ref;
  std::getline(in, ref);
  auto bytes = blobs_.get(ref);
  if (!bytes) {
    if (bytes.error().code() == ErrorCode::kNotFound) return std::optional<Completion>();
    return make_error(bytes.error());
  }
  Json j = parse_json_or_discarded(*bytes);
  CRUCIBLE_ASSIGN_OR_RETURN(auto c, Completion::from_json(j));
  return std::optional<Completion>(std::move(c));
}

Status BlobCompletionStore::put(const std::string& key, const Completion& completion) {
  Json j = completion.to_json();
  CRUCIBLE_ASSIGN_OR_RETURN(auto ref, blobs_.put(json_dump(j)));
  std::error_code ec;
  std::filesystem::create_directories(index_dir_, ec);
  if (ec) return make_error(ErrorCode::kInternal, "llm cache: cannot create " + index_dir_ + ": " + ec.message());
  std::filesystem::path final_path = std::filesystem::path(index_dir_) / key;
  Status written = write_file_atomically(final_path.string(), ref + "\n", FileDurability::kFileAndDirectory);
  if (!written) return make_error(written.error().with_context("llm cache"));
  return {};
}

CachingProvider::CachingProvider(std::shared_ptr<Provider> inner, std::shared_ptr<CompletionStore> store,
                                 std::string scope)
    : inner_(std::move(inner)), store_(std::move(store)), scope_(std::move(scope)) {}

std::string CachingProvider::key_of(const CompletionRequest& request) const {
  return sha256_hex(scope_ + "\n" + json_dump(request.to_json()));
}

Result<Completion> CachingProvider::complete(const CompletionRequest& request, std::stop_token stop) {
  return stream(request, nullptr, stop);
}

Result<Completion> CachingProvider::stream(const CompletionRequest& request, const DeltaFn& on_delta,
                                           std::stop_token stop) {
  const std::string key = key_of(request);
  auto hit = store_->get(key);
  if (hit && *hit) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    Completion c = std::move(**hit);
    c.cached = true;
    if (on_delta) on_delta(c.content);
    return c;
  }
  auto r = on_delta ? inner_->stream(request, on_delta, stop) : inner_->complete(request, stop);
  if (r) CRUCIBLE_RETURN_IF_ERROR(store_->put(key, *r));
  return r;
}

}  // namespace crucible::llm
