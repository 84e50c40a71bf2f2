// A dependency-free training back end: a bigram language model (one row of logits per previous
// token) with exact gradients and AdamW, in plain C++. Fast enough for unit tests of every loop,
// real enough that a loss falls. It logs each call in order and can fail a chosen call, so tests
// can check the client's ordering and a loop's error handling.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crucible/train/client.h"

namespace crucible::train {

struct BigramOptions {
  int vocab = 256;
  uint64_t seed = 0;         // the initial weights
  float init_scale = 0.02f;  // uniform in [-scale, scale]
  std::string dir;           // where save_state and save_weights_for_sampler write
};

class BigramBackend : public TrainingBackend {
 public:
  explicit BigramBackend(BigramOptions options);

  Result<std::vector<std::vector<float>>> forward(const std::vector<Datum>& data) override;
  Result<ForwardBackwardOutput> forward_backward(
      const std::vector<Datum>& data,
      const std::function<Result<LossOutput>(const std::vector<std::vector<float>>&)>& grad_of) override;
  Result<OptimStepOutput> optim_step(const AdamParams& params) override;
  Result<std::string> save_state(const std::string& name) override;
  Status load_state(const std::string& path, bool with_optimizer) override;
  Result<std::string> save_weights_for_sampler(const std::string& name) override;
  Result<std::shared_ptr<SamplingClient>> sampling_client(const std::string& path) override;

  // The calls so far, in execution order ("forward_backward", "optim_step", ...).
  std::vector<std::string> calls() const;
  // The next call named `call` fails with `error` and changes nothing.
  void fail_next(const std::string& call, Error error);
  int64_t step() const { return step_; }
  const std::vector<float>& weights() const { return w_; }

 private:
  Status enter(const std::string& call);
  Status check_tokens(const std::vector<Datum>& data) const;
  Result<std::string> write(const std::string& name, const char* kind, bool with_optimizer);

  BigramOptions options_;
  std::vector<float> w_, grad_, m_, v_;
  int64_t step_ = 0;
  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::map<std::string, Error> failures_;
};

// A sampler of a bigram weights file (save_weights_for_sampler's or save_state's).
Result<std::shared_ptr<SamplingClient>> open_bigram_sampler(const std::string& path);

}  // namespace crucible::train
