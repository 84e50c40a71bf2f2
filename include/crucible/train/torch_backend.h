// The local training back end on libtorch: a small causal transformer over a token vocabulary
// (bytes by default) on the CPU, trained with torch::optim::AdamW. Deterministic for a given seed
// and thread count. Every libtorch include stays in torch_backend.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/train/client.h"

namespace crucible::train {

struct TransformerOptions {
  int vocab = 257;    // the byte tokenizer's
  int context = 128;  // the longest sequence
  int width = 64;     // model dimension
  int depth = 2;      // blocks
  int heads = 4;      // attention heads; must divide width
  uint64_t seed = 0;  // the initial weights
  int threads = 2;    // intra-op threads (results depend on it)
  std::string dir;    // where save_state and save_weights_for_sampler write

  Json to_json() const;  // the architecture, without dir
  // Missing fields keep the defaults; bad values name the field ("model.heads").
  static Result<TransformerOptions> from_json(const Json& j, const std::string& field);
};

Result<std::unique_ptr<TrainingBackend>> make_torch_backend(const TransformerOptions& options);

// A sampler of a file written by save_weights_for_sampler or save_state; the architecture is read
// from the file.
Result<std::shared_ptr<SamplingClient>> open_torch_sampler(const std::string& path, int threads = 2);

// The number of trainable parameters of a model of these options.
int64_t transformer_parameters(const TransformerOptions& options);

}  // namespace crucible::train
