// What the back ends share: the token draw of their samplers (the model's distribution at a
// temperature, cut to top_k and top_p; greedy at temperature 0), the vocabulary check of a
// token sequence, and where a named checkpoint goes.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/train/types.h"

namespace crucible::train::internal {

// `logprobs` are the model's log-probabilities over the vocabulary.
int32_t draw_token(const std::vector<double>& logprobs, const SamplingParams& params, std::mt19937_64& rng);

// The generator of sample `index` of a call: seeded by the params' seed, or at random.
std::mt19937_64 sample_rng(const SamplingParams& params, uint64_t call_seed, int index);

// The sampling loop of every sampler: checks the prompt, then for each sample draws up to
// max_tokens tokens from `next` (the model's log-probabilities of the token after `context`),
// stopping after a stop token.
using NextLogprobs = std::function<void(const std::vector<int32_t>& context, std::vector<double>& logprobs)>;
Result<SampleResponse> sample_sequences(const ModelInput& prompt, int num_samples, const SamplingParams& params,
                                        int vocab, const NextLogprobs& next);

// kInvalidArgument naming `field`[i] for a token outside [0, vocab).
[[nodiscard]] Status check_vocab(const std::vector<int32_t>& tokens, int vocab, const std::string& field);

// <dir>/<kind>/<name><ext>, its folder created; a name with '/' (or "." / "..") is refused.
Result<std::string> checkpoint_path(const std::string& dir, const char* kind, const std::string& name, const char* ext);

}  // namespace crucible::train::internal
