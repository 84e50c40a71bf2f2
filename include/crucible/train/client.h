// The training ports. A TrainingBackend does the work synchronously (a local model, or a remote
// service); a TrainingClient puts it behind Tinker's contract: every call returns a future at
// once, and the calls on one client execute in submission order, so a loop submits
// forward_backward and optim_step back to back and then awaits both. Gradients accumulate across
// forward_backward calls until optim_step. Nothing here assumes one process or a local disk:
// checkpoints are named by the strings the backend returns.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/train/losses.h"
#include "crucible/train/types.h"

namespace crucible::train {

template <class T>
using Future = std::shared_future<Result<T>>;

// Samples from a fixed snapshot of the weights. Safe to call from several threads.
class SamplingClient {
 public:
  virtual ~SamplingClient() = default;
  // num_samples continuations of `prompt`, each with the logprob of every sampled token and why
  // it stopped (a stop token, or max_tokens).
  virtual Result<SampleResponse> sample(const ModelInput& prompt, int num_samples, const SamplingParams& params) = 0;
  // The logprob of each token of `tokens` given the ones before it; the first entry, which has no
  // context, is 0.
  virtual Result<std::vector<float>> compute_logprobs(const ModelInput& tokens) = 0;
};

class TrainingBackend {
 public:
  virtual ~TrainingBackend() = default;
  // The learner's logprob of every target (shaped like target_tokens), without gradients.
  virtual Result<std::vector<std::vector<float>>> forward(const std::vector<Datum>& data) = 0;
  // Back-propagates dL/dlp (one entry per target logprob) into the accumulated gradients and
  // returns the logprobs the gradient was taken at. `grad_of` receives those logprobs and returns
  // the loss; the backend calls it exactly once.
  virtual Result<ForwardBackwardOutput> forward_backward(
      const std::vector<Datum>& data,
      const std::function<Result<LossOutput>(const std::vector<std::vector<float>>&)>& grad_of) = 0;
  // One AdamW step with the accumulated gradients, which it then clears.
  virtual Result<OptimStepOutput> optim_step(const AdamParams& params) = 0;
  // Weights and optimizer moments under `name`; returns where (a path or a URI).
  virtual Result<std::string> save_state(const std::string& name) = 0;
  // Restores weights, and the optimizer's moments and step with `with_optimizer` (otherwise the
  // optimizer starts fresh).
  virtual Status load_state(const std::string& path, bool with_optimizer) = 0;
  // Weights only, for a sampler; returns where.
  virtual Result<std::string> save_weights_for_sampler(const std::string& name) = 0;
  virtual Result<std::shared_ptr<SamplingClient>> sampling_client(const std::string& path) = 0;
};

class TrainingClient {
 public:
  explicit TrainingClient(std::unique_ptr<TrainingBackend> backend);
  // Waits for the calls already submitted.
  ~TrainingClient();
  TrainingClient(const TrainingClient&) = delete;
  TrainingClient& operator=(const TrainingClient&) = delete;

  // Logprobs and the loss's value, no gradients (evaluation).
  Future<ForwardBackwardOutput> forward(std::vector<Datum> data, LossFn loss, Json config = Json::object());
  Future<ForwardBackwardOutput> forward_backward(std::vector<Datum> data, LossFn loss, Json config = Json::object());
  // A loss computed from the learner's logprobs (DPO, ...) through the surrogate: a forward pass,
  // then the loss and its dL/dlp, then a cross-entropy pass weighted by -dL/dlp, whose gradient is
  // the custom loss's.
  Future<ForwardBackwardOutput> forward_backward_custom(std::vector<Datum> data, CustomLoss loss);
  Future<OptimStepOutput> optim_step(AdamParams params);
  Future<std::string> save_state(std::string name);
  Future<void> load_state(std::string path);
  Future<void> load_state_with_optimizer(std::string path);
  Future<std::string> save_weights_for_sampler(std::string name);
  // A sampler of weights saved by save_weights_for_sampler (after the calls before it).
  Future<std::shared_ptr<SamplingClient>> sampling_client(std::string path);

 private:
  template <class T>
  Future<T> submit(std::function<Result<T>()> work);
  void loop();

  std::unique_ptr<TrainingBackend> backend_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace crucible::train
