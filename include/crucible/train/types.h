// The training port's values, after Tinker's contract: a Datum is model input tokens plus named
// loss inputs; built-in losses are per-token sums over a datum's targets; AdamParams carries the
// whole optimizer step; a sample carries per-token logprobs and why it stopped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::train {

// A dense tensor of int64 or float32 values, row-major. `shape` is {n} or {n, k}.
struct TensorData {
  enum class Dtype { kInt64, kFloat32 };
  Dtype dtype = Dtype::kFloat32;
  std::vector<int64_t> shape;
  std::vector<int64_t> ints;  // the values when dtype is kInt64
  std::vector<float> floats;  // the values when dtype is kFloat32

  static TensorData of_ints(std::vector<int64_t> values);
  static TensorData of_floats(std::vector<float> values);
  // A {rows, cols} matrix; values.size() must be rows * cols.
  static TensorData of_ints(std::vector<int64_t> values, int64_t rows, int64_t cols);
  static TensorData of_floats(std::vector<float> values, int64_t rows, int64_t cols);

  size_t size() const { return dtype == Dtype::kInt64 ? ints.size() : floats.size(); }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
  // Element i as a double, whatever the dtype.
  double at(size_t i) const { return dtype == Dtype::kInt64 ? static_cast<double>(ints[i]) : floats[i]; }

  Json to_json() const;
  // `field` names the tensor in errors ("data[3].loss_fn_inputs.weights").
  static Result<TensorData> from_json(const Json& j, const std::string& field);
};

// Token ids of one sequence.
struct ModelInput {
  std::vector<int32_t> tokens;
  size_t length() const { return tokens.size(); }
};

// One training example. Position t of model_input predicts target_tokens[t] (the targets are the
// input shifted by one). loss_fn_inputs holds target_tokens and what the loss needs: weights,
// logprobs (the sampler's), advantages, ...
struct Datum {
  ModelInput model_input;
  std::map<std::string, TensorData> loss_fn_inputs;

  const TensorData* input(std::string_view name) const;
  Json to_json() const;
  static Result<Datum> from_json(const Json& j, const std::string& field);
};

enum class LossFn { kCrossEntropy, kImportanceSampling, kPpo, kCispo, kDro };
std::string_view loss_fn_name(LossFn fn);
// kInvalidArgument naming the known losses for anything else.
Result<LossFn> parse_loss_fn(std::string_view name);

// torch.optim.AdamW's parameters with Tinker's defaults; grad_clip_norm 0 turns clipping off.
struct AdamParams {
  double learning_rate = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-12;
  double weight_decay = 0.0;  // decoupled, as in AdamW
  double grad_clip_norm = 0.0;

  Json to_json() const;
  // Missing fields keep the defaults; a wrong type or a value out of range names the field.
  static Result<AdamParams> from_json(const Json& j, const std::string& field);
};

struct SamplingParams {
  int max_tokens = 64;
  std::optional<uint64_t> seed;
  std::vector<int32_t> stop_tokens;  // sampling stops after emitting any of them
  double temperature = 1.0;          // 0 is greedy
  int top_k = -1;                    // -1 keeps every token
  double top_p = 1.0;

  Json to_json() const;
  static Result<SamplingParams> from_json(const Json& j, const std::string& field);
};

// One forward or forward_backward call: per datum, the learner's logprob of each target
// (shaped like target_tokens) and, for forward_backward, the loss's metrics ("loss:sum", ...).
struct ForwardBackwardOutput {
  std::vector<std::vector<float>> logprobs;
  std::map<std::string, double> metrics;
};

struct OptimStepOutput {
  std::map<std::string, double> metrics;  // "grad_norm", "learning_rate", "step"
};

enum class StopReason { kLength, kStop };
std::string_view stop_reason_name(StopReason reason);

struct SampledSequence {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // the sampler's logprob of each sampled token
  StopReason stop_reason = StopReason::kLength;
};

struct SampleResponse {
  std::vector<SampledSequence> sequences;
};

// Checks a batch against a loss before any work: every datum has target_tokens of the input's
// length (or {length, k} for cross_entropy's soft targets), and the loss's inputs of the same
// shape. Errors name the datum and the input ("data[2].loss_fn_inputs.advantages").
[[nodiscard]] Status validate_batch(const std::vector<Datum>& data, LossFn fn);

// Cross-entropy's training datum for next-token prediction on `tokens`: input tokens[0..n-1),
// targets tokens[1..n), weights 0 for the first `prompt_len - 1` targets (the prompt) and 1 after.
Datum next_token_datum(const std::vector<int32_t>& tokens, size_t prompt_len = 0);

}  // namespace crucible::train
