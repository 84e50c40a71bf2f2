#include "crucible/train/client.h"

namespace crucible::train {

TrainingClient::TrainingClient(std::unique_ptr<TrainingBackend> backend)
    : backend_(std::move(backend)), worker_([this] { loop(); }) {}

TrainingClient::~TrainingClient() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void TrainingClient::loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every submitted call has run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

template <class T>
Future<T> TrainingClient::submit(std::function<Result<T>()> work) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  Future<T> future = promise->get_future().share();
  {
    std::lock_guard lock(mu_);
    queue_.push_back([promise, work = std::move(work)] { promise->set_value(work()); });
  }
  cv_.notify_one();
  return future;
}

Future<ForwardBackwardOutput> TrainingClient::forward(std::vector<Datum> data, LossFn loss, Json config) {
  return submit<ForwardBackwardOutput>(
      [this, data = std::move(data), loss, config = std::move(config)]() -> Result<ForwardBackwardOutput> {
        CRUCIBLE_RETURN_IF_ERROR(validate_batch(data, loss));
        CRUCIBLE_ASSIGN_OR_RETURN(auto logprobs, backend_->forward(data));
        CRUCIBLE_ASSIGN_OR_RETURN(auto value, builtin_loss(loss, data, logprobs, config));
        return ForwardBackwardOutput{std::move(logprobs), std::move(value.metrics)};
      });
}

Future<ForwardBackwardOutput> TrainingClient::forward_backward(std::vector<Datum> data, LossFn loss, Json config) {
  return submit<ForwardBackwardOutput>(
      [this, data = std::move(data), loss, config = std::move(config)]() -> Result<ForwardBackwardOutput> {
        CRUCIBLE_RETURN_IF_ERROR(validate_batch(data, loss));
        return backend_->forward_backward(
            data, [&](const std::vector<std::vector<float>>& lp) { return builtin_loss(loss, data, lp, config); });
      });
}

Future<ForwardBackwardOutput> TrainingClient::forward_backward_custom(std::vector<Datum> data, CustomLoss loss) {
  return submit<ForwardBackwardOutput>(
      [this, data = std::move(data), loss = std::move(loss)]() -> Result<ForwardBackwardOutput> {
        for (size_t i = 0; i < data.size(); ++i) {
          if (!data[i].input("target_tokens")) {
            const std::string field = "data[" + std::to_string(i) + "].loss_fn_inputs.target_tokens";
            return field_error(field, field + ": missing (a custom loss needs the targets)");
          }
        }
        CRUCIBLE_ASSIGN_OR_RETURN(auto logprobs, backend_->forward(data));
        CRUCIBLE_ASSIGN_OR_RETURN(LossOutput custom, loss(data, logprobs));
        if (custom.grads.size() != data.size()) {
          return make_error(ErrorCode::kInvalidArgument, "the custom loss returned gradients for " +
                                                             std::to_string(custom.grads.size()) + " sequences, not " +
                                                             std::to_string(data.size()));
        }
        // The surrogate: cross-entropy with weights -dL/dlp has the custom loss's gradient.
        std::vector<Datum> surrogate = data;
        for (size_t i = 0; i < surrogate.size(); ++i) {
          const TensorData& targets = *surrogate[i].input("target_tokens");
          if (custom.grads[i].size() != targets.size()) {
            return make_error(ErrorCode::kInvalidArgument,
                              "the custom loss returned " + std::to_string(custom.grads[i].size()) +
                                  " gradients for sequence " + std::to_string(i) + ", which has " +
                                  std::to_string(targets.size()) + " targets");
          }
          std::vector<float> weights(custom.grads[i].size());
          for (size_t t = 0; t < weights.size(); ++t) weights[t] = -custom.grads[i][t];
          TensorData w = TensorData::of_floats(std::move(weights));
          w.shape = targets.shape;
          surrogate[i].loss_fn_inputs["weights"] = std::move(w);
        }
        CRUCIBLE_ASSIGN_OR_RETURN(auto out,
                                  backend_->forward_backward(surrogate, [&](const std::vector<std::vector<float>>& lp) {
                                    return builtin_loss(LossFn::kCrossEntropy, surrogate, lp);
                                  }));
        out.metrics = custom.metrics;
        out.metrics["loss:sum"] = custom.loss;
        return out;
      });
}

Future<OptimStepOutput> TrainingClient::optim_step(AdamParams params) {
  return submit<OptimStepOutput>([this, params] { return backend_->optim_step(params); });
}

Future<std::string> TrainingClient::save_state(std::string name) {
  return submit<std::string>([this, name = std::move(name)] { return backend_->save_state(name); });
}

Future<void> TrainingClient::load_state(std::string path) {
  return submit<void>([this, path = std::move(path)] { return backend_->load_state(path, false); });
}

Future<void> TrainingClient::load_state_with_optimizer(std::string path) {
  return submit<void>([this, path = std::move(path)] { return backend_->load_state(path, true); });
}

Future<std::string> TrainingClient::save_weights_for_sampler(std::string name) {
  return submit<std::string>([this, name = std::move(name)] { return backend_->save_weights_for_sampler(name); });
}

Future<std::shared_ptr<SamplingClient>> TrainingClient::sampling_client(std::string path) {
  return submit<std::shared_ptr<SamplingClient>>(
      [this, path = std::move(path)] { return backend_->sampling_client(path); });
}

}  // namespace crucible::train
