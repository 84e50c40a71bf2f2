#include "crucible/train/bigram.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "backend_common.h"
#include "crucible/core/file.h"
#include "crucible/core/random.h"

namespace crucible::train {

namespace {

constexpr const char* kMagic = "crucible-bigram 1";

// log-softmax of one row of logits.
void log_softmax(const float* row, int n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double mx = row[0];
  for (int v = 1; v < n; ++v) mx = std::max(mx, static_cast<double>(row[v]));
  double sum = 0;
  for (int v = 0; v < n; ++v) sum += std::exp(row[v] - mx);
  const double lse = mx + std::log(sum);
  for (int v = 0; v < n; ++v) out[static_cast<size_t>(v)] = row[v] - lse;
}

struct WeightsFile {
  int vocab = 0;
  int64_t step = 0;
  std::vector<float> w, m, v;
};

Result<WeightsFile> read_weights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "checkpoint '" + path + "' cannot be opened");
  std::string magic, header;
  std::getline(in, magic);
  std::getline(in, header);
  auto damaged = [&](const std::string& why) {
    return make_error(ErrorCode::kDataLoss, "checkpoint '" + path + "' is damaged: " + why);
  };
  if (magic != kMagic) return damaged("it does not start with '" + std::string(kMagic) + "'");
  auto h = parse_json(header);
  if (!h || !h->is_object() || !(*h)["vocab"].is_number_integer() || !(*h)["step"].is_number_integer() ||
      !(*h)["optimizer"].is_boolean()) {
    return damaged("its header is not {vocab, step, optimizer}");
  }
  WeightsFile f;
  f.vocab = (*h)["vocab"].get<int>();
  f.step = (*h)["step"].get<int64_t>();
  if (f.vocab < 1 || f.vocab > 65536) return damaged("vocab " + std::to_string(f.vocab) + " is out of range");
  const size_t n = static_cast<size_t>(f.vocab) * static_cast<size_t>(f.vocab);
  auto read = [&](std::vector<float>& into) {
    into.resize(n);
    in.read(reinterpret_cast<char*>(into.data()), static_cast<std::streamsize>(n * sizeof(float)));
    return static_cast<size_t>(in.gcount()) == n * sizeof(float);
  };
  if (!read(f.w)) return damaged("it holds fewer weights than its header says");
  if ((*h)["optimizer"].get<bool>() && (!read(f.m) || !read(f.v))) {
    return damaged("it holds fewer optimizer moments than its header says");
  }
  if (in.peek() != std::char_traits<char>::eof()) return damaged("it has bytes after its last value");
  return f;
}

class BigramSampler : public SamplingClient {
 public:
  BigramSampler(int vocab, std::vector<float> w) : vocab_(vocab), w_(std::move(w)) {}

  Result<SampleResponse> sample(const ModelInput& prompt, int num_samples, const SamplingParams& params) override {
    return internal::sample_sequences(prompt, num_samples, params, vocab_,
                                      [&](const std::vector<int32_t>& context, std::vector<double>& lp) {
                                        const size_t row = static_cast<size_t>(context.back());
                                        log_softmax(&w_[row * static_cast<size_t>(vocab_)], vocab_, lp);
                                      });
  }

  Result<std::vector<float>> compute_logprobs(const ModelInput& tokens) override {
    CRUCIBLE_RETURN_IF_ERROR(internal::check_vocab(tokens.tokens, vocab_, "tokens"));
    std::vector<float> out;
    std::vector<double> lp;
    for (size_t t = 0; t < tokens.tokens.size(); ++t) {
      if (t == 0) {
        out.push_back(0.0f);
        continue;
      }
      log_softmax(&w_[static_cast<size_t>(tokens.tokens[t - 1]) * static_cast<size_t>(vocab_)], vocab_, lp);
      out.push_back(static_cast<float>(lp[static_cast<size_t>(tokens.tokens[t])]));
    }
    return out;
  }

 private:
  int vocab_;
  std::vector<float> w_;
};

}  // namespace

BigramBackend::BigramBackend(BigramOptions options) : options_(std::move(options)) {
  const size_t n = static_cast<size_t>(options_.vocab) * static_cast<size_t>(options_.vocab);
  w_.resize(n);
  SeededRandom rng(options_.seed);
  for (float& x : w_) x = options_.init_scale * static_cast<float>(2 * rng.uniform01() - 1);
  grad_.assign(n, 0.0f);
  m_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
}

std::vector<std::string> BigramBackend::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

void BigramBackend::fail_next(const std::string& call, Error error) {
  std::lock_guard lock(mu_);
  failures_.insert_or_assign(call, std::move(error));
}

Status BigramBackend::enter(const std::string& call) {
  std::lock_guard lock(mu_);
  calls_.push_back(call);
  auto it = failures_.find(call);
  if (it == failures_.end()) return {};
  Error e = it->second;
  failures_.erase(it);
  return make_error(std::move(e));
}

Status BigramBackend::check_tokens(const std::vector<Datum>& data) const {
  for (size_t i = 0; i < data.size(); ++i) {
    auto bad = [&](const std::string& field, int64_t t) {
      return field_error(field, field + ": token " + std::to_string(t) + " is outside the vocabulary of " +
                                    std::to_string(options_.vocab));
    };
    const std::string at = "data[" + std::to_string(i) + "]";
    for (int32_t t : data[i].model_input.tokens) {
      if (t < 0 || t >= options_.vocab) return bad(at + ".model_input", t);
    }
    const TensorData* targets = data[i].input("target_tokens");
    if (!targets) {
      return field_error(at + ".loss_fn_inputs.target_tokens", at + ".loss_fn_inputs.target_tokens: missing");
    }
    if (targets->rows() != static_cast<int64_t>(data[i].model_input.length())) {
      return field_error(at + ".loss_fn_inputs.target_tokens",
                         at + ".loss_fn_inputs.target_tokens: expected one row per input token");
    }
    for (int64_t t : targets->ints) {
      if (t < 0 || t >= options_.vocab) return bad(at + ".loss_fn_inputs.target_tokens", t);
    }
  }
  return {};
}

Result<std::vector<std::vector<float>>> BigramBackend::forward(const std::vector<Datum>& data) {
  CRUCIBLE_RETURN_IF_ERROR(enter("forward"));
  CRUCIBLE_RETURN_IF_ERROR(check_tokens(data));
  std::vector<std::vector<float>> out(data.size());
  std::vector<double> lp;
  const size_t vocab = static_cast<size_t>(options_.vocab);
  for (size_t i = 0; i < data.size(); ++i) {
    const TensorData& targets = *data[i].input("target_tokens");
    const size_t k = static_cast<size_t>(targets.cols());
    out[i].resize(targets.size());
    for (size_t t = 0; t < data[i].model_input.length(); ++t) {
      log_softmax(&w_[static_cast<size_t>(data[i].model_input.tokens[t]) * vocab], options_.vocab, lp);
      for (size_t j = 0; j < k; ++j) {
        out[i][t * k + j] = static_cast<float>(lp[static_cast<size_t>(targets.ints[t * k + j])]);
      }
    }
  }
  return out;
}

Result<ForwardBackwardOutput> BigramBackend::forward_backward(
    const std::vector<Datum>& data,
    const std::function<Result<LossOutput>(const std::vector<std::vector<float>>&)>& grad_of) {
  CRUCIBLE_RETURN_IF_ERROR(enter("forward_backward"));
  CRUCIBLE_RETURN_IF_ERROR(check_tokens(data));
  std::vector<std::vector<float>> logprobs(data.size());
  std::vector<double> lp;
  const size_t vocab = static_cast<size_t>(options_.vocab);
  for (size_t i = 0; i < data.size(); ++i) {
    const TensorData& targets = *data[i].input("target_tokens");
    const size_t k = static_cast<size_t>(targets.cols());
    logprobs[i].resize(targets.size());
    for (size_t t = 0; t < data[i].model_input.length(); ++t) {
      log_softmax(&w_[static_cast<size_t>(data[i].model_input.tokens[t]) * vocab], options_.vocab, lp);
      for (size_t j = 0; j < k; ++j) {
        logprobs[i][t * k + j] = static_cast<float>(lp[static_cast<size_t>(targets.ints[t * k + j])]);
      }
    }
  }
  CRUCIBLE_ASSIGN_OR_RETURN(LossOutput loss, grad_of(logprobs));
  // d lp(y | x) / d W[x][v] = onehot(y)[v] - softmax(W[x])[v]; accumulate g * that.
  for (size_t i = 0; i < data.size(); ++i) {
    const TensorData& targets = *data[i].input("target_tokens");
    const size_t k = static_cast<size_t>(targets.cols());
    for (size_t t = 0; t < data[i].model_input.length(); ++t) {
      const size_t row = static_cast<size_t>(data[i].model_input.tokens[t]) * vocab;
      double g_sum = 0;
      for (size_t j = 0; j < k; ++j) {
        const double g = loss.grads[i][t * k + j];
        g_sum += g;
        grad_[row + static_cast<size_t>(targets.ints[t * k + j])] += static_cast<float>(g);
      }
      if (g_sum == 0) continue;
      log_softmax(&w_[row], options_.vocab, lp);
      for (size_t v = 0; v < vocab; ++v) grad_[row + v] -= static_cast<float>(g_sum * std::exp(lp[v]));
    }
  }
  return ForwardBackwardOutput{std::move(logprobs), std::move(loss.metrics)};
}

Result<OptimStepOutput> BigramBackend::optim_step(const AdamParams& p) {
  CRUCIBLE_RETURN_IF_ERROR(enter("optim_step"));
  double norm2 = 0;
  for (float g : grad_) norm2 += static_cast<double>(g) * g;
  const double norm = std::sqrt(norm2);
  const double scale = p.grad_clip_norm > 0 && norm > p.grad_clip_norm ? p.grad_clip_norm / (norm + 1e-6) : 1.0;
  ++step_;
  const double bc1 = 1 - std::pow(p.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(p.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < w_.size(); ++i) {
    const double g = grad_[i] * scale;
    double w = w_[i] * (1 - p.learning_rate * p.weight_decay);
    const double m = p.beta1 * m_[i] + (1 - p.beta1) * g;
    const double v = p.beta2 * v_[i] + (1 - p.beta2) * g * g;
    w -= p.learning_rate * (m / bc1) / (std::sqrt(v / bc2) + p.eps);
    w_[i] = static_cast<float>(w);
    m_[i] = static_cast<float>(m);
    v_[i] = static_cast<float>(v);
    grad_[i] = 0.0f;
  }
  return OptimStepOutput{
      {{"grad_norm", norm}, {"learning_rate", p.learning_rate}, {"step", static_cast<double>(step_)}}};
}

Result<std::string> BigramBackend::write(const std::string& name, const char* kind, bool with_optimizer) {
  CRUCIBLE_ASSIGN_OR_RETURN(std::string path, internal::checkpoint_path(options_.dir, kind, name, ".bin"));
  std::string bytes = std::string(kMagic) + "\n" +
                      json_dump(Json{{"vocab", options_.vocab}, {"step", step_}, {"optimizer", with_optimizer}}) + "\n";
  auto append = [&](const std::vector<float>& values) {
    bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  };
  append(w_);
  if (with_optimizer) {
    append(m_);
    append(v_);
  }
  CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(path, bytes));
  return path;
}

Result<std::string> BigramBackend::save_state(const std::string& name) {
  CRUCIBLE_RETURN_IF_ERROR(enter("save_state"));
  return write(name, "weights", true);
}

Result<std::string> BigramBackend::save_weights_for_sampler(const std::string& name) {
  CRUCIBLE_RETURN_IF_ERROR(enter("save_weights_for_sampler"));
  return write(name, "sampler_weights", false);
}

Status BigramBackend::load_state(const std::string& path, bool with_optimizer) {
  CRUCIBLE_RETURN_IF_ERROR(enter(with_optimizer ? "load_state_with_optimizer" : "load_state"));
  CRUCIBLE_ASSIGN_OR_RETURN(WeightsFile f, read_weights(path));
  if (f.vocab != options_.vocab) {
    return make_error(ErrorCode::kFailedPrecondition, "checkpoint '" + path + "' has vocab " + std::to_string(f.vocab) +
                                                          ", this model " + std::to_string(options_.vocab));
  }
  if (with_optimizer && f.m.empty()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "checkpoint '" + path + "' holds weights only; load it with load_state");
  }
  w_ = std::move(f.w);
  std::fill(grad_.begin(), grad_.end(), 0.0f);
  if (with_optimizer) {
    m_ = std::move(f.m);
    v_ = std::move(f.v);
    step_ = f.step;
  } else {
    std::fill(m_.begin(), m_.end(), 0.0f);
    std::fill(v_.begin(), v_.end(), 0.0f);
    step_ = 0;
  }
  return {};
}

Result<std::shared_ptr<SamplingClient>> BigramBackend::sampling_client(const std::string& path) {
  CRUCIBLE_RETURN_IF_ERROR(enter("sampling_client"));
  return open_bigram_sampler(path);
}

Result<std::shared_ptr<SamplingClient>> open_bigram_sampler(const std::string& path) {
  CRUCIBLE_ASSIGN_OR_RETURN(WeightsFile f, read_weights(path));
  return std::shared_ptr<SamplingClient>(std::make_shared<BigramSampler>(f.vocab, std::move(f.w)));
}

}  // namespace crucible::train
