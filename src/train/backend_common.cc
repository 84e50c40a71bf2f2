#include "backend_common.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "crucible/core/random.h"

namespace crucible::train::internal {

int32_t draw_token(const std::vector<double>& lp, const SamplingParams& p, std::mt19937_64& rng) {
  std::vector<int32_t> order(lp.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)]; });
  if (p.temperature == 0) return order[0];
  size_t keep = order.size();
  if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
  std::vector<double> weight(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    weight[i] = std::exp((lp[static_cast<size_t>(order[i])] - lp[static_cast<size_t>(order[0])]) / p.temperature);
    total += weight[i];
  }
  if (p.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) {
      mass += weight[i] / total;
      if (mass >= p.top_p) {
        weight.resize(i + 1);
        break;
      }
    }
  }
  // Inverse CDF over a uniform draw: the same token for the same seed with every standard library.
  double sum = 0;
  for (double w : weight) sum += w;
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
  double acc = 0;
  for (size_t i = 0; i < weight.size(); ++i) {
    acc += weight[i];
    if (u < acc) return order[i];
  }
  return order[weight.size() - 1];
}

std::mt19937_64 sample_rng(const SamplingParams& params, uint64_t call_seed, int index) {
  const uint64_t seed = params.seed ? *params.seed : call_seed;
  return std::mt19937_64(splitmix64(seed + static_cast<uint64_t>(index)));
}

Result<SampleResponse> sample_sequences(const ModelInput& prompt, int num_samples, const SamplingParams& params,
                                        int vocab, const NextLogprobs& next) {
  if (prompt.tokens.empty()) return field_error("prompt", "prompt: expected at least one token");
  if (num_samples < 1) return field_error("num_samples", "num_samples: expected at least 1");
  CRUCIBLE_RETURN_IF_ERROR(check_vocab(prompt.tokens, vocab, "prompt"));
  SampleResponse out;
  const uint64_t call_seed = system_random().next_u64();
  std::vector<double> lp;
  for (int s = 0; s < num_samples; ++s) {
    std::mt19937_64 rng = sample_rng(params, call_seed, s);
    std::vector<int32_t> context = prompt.tokens;
    SampledSequence seq;
    for (int k = 0; k < params.max_tokens; ++k) {
      next(context, lp);
      const int32_t token = draw_token(lp, params, rng);
      seq.tokens.push_back(token);
      seq.logprobs.push_back(static_cast<float>(lp[static_cast<size_t>(token)]));
      context.push_back(token);
      if (std::find(params.stop_tokens.begin(), params.stop_tokens.end(), token) != params.stop_tokens.end()) {
        seq.stop_reason = StopReason::kStop;
        break;
      }
    }
    out.sequences.push_back(std::move(seq));
  }
  return out;
}

Status check_vocab(const std::vector<int32_t>& tokens, int vocab, const std::string& field) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) {
      const std::string where = field + "[" + std::to_string(t) + "]";
      return field_error(where, where + ": token " + std::to_string(tokens[t]) + " is outside the vocabulary of " +
                                    std::to_string(vocab));
    }
  }
  return {};
}

Result<std::string> checkpoint_path(const std::string& dir, const char* kind, const std::string& name,
                                    const char* ext) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return field_error("name", "name: expected a checkpoint name without '/', got '" + name + "'");
  }
  const std::filesystem::path folder = std::filesystem::path(dir) / kind;
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot create '" + folder.string() + "': " + ec.message());
  return (folder / (name + ext)).string();
}

}  // namespace crucible::train::internal
