// The only translation unit that includes libtorch.
#include "crucible/train/torch_backend.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>

#include "backend_common.h"
#include "crucible/core/file.h"
#include "crucible/core/random.h"

namespace crucible::train {

namespace {

struct BlockImpl : torch::nn::Module {
  BlockImpl(int width, int heads) : heads_(heads) {
    ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    qkv = register_module("qkv", torch::nn::Linear(width, 3 * width));
    proj = register_module("proj", torch::nn::Linear(width, width));
    ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    fc1 = register_module("fc1", torch::nn::Linear(width, 4 * width));
    fc2 = register_module("fc2", torch::nn::Linear(4 * width, width));
  }

  // x: [B, T, C]; future: [T, T], true above the diagonal.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& future) {
    const int64_t b = x.size(0), t = x.size(1), c = x.size(2), d = c / heads_;
    auto parts = qkv(ln1(x)).view({b, t, 3, heads_, d}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, D]
    auto att = torch::matmul(parts[0], parts[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
    att = torch::softmax(att.masked_fill(future, -std::numeric_limits<float>::infinity()), -1);
    auto y = torch::matmul(att, parts[2]).transpose(1, 2).contiguous().view({b, t, c});
    x = x + proj(y);
    return x + fc2(torch::gelu(fc1(ln2(x))));
  }

  int64_t heads_;
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Block);

// Token and position embeddings, pre-norm blocks, a final norm and a head tied to the token
// embedding.
struct LmImpl : torch::nn::Module {
  explicit LmImpl(const TransformerOptions& o) {
    tok = register_module("tok", torch::nn::Embedding(o.vocab, o.width));
    pos = register_module("pos", torch::nn::Embedding(o.context, o.width));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int i = 0; i < o.depth; ++i) blocks->push_back(Block(o.width, o.heads));
    lnf = register_module("lnf", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.width})));
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(tok->weight, 0.0, 0.02);
    torch::nn::init::normal_(pos->weight, 0.0, 0.02);
    future = torch::triu(torch::ones({o.context, o.context}, torch::kBool), 1);
  }

  // ids: [B, T] -> logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& ids) {
    const int64_t t = ids.size(1);
    auto x = tok(ids) + pos(torch::arange(t, torch::kLong));
    const auto mask = future.slice(0, 0, t).slice(1, 0, t);
    for (const auto& block : *blocks) x = block->as<BlockImpl>()->forward(x, mask);
    return torch::matmul(lnf(x), tok->weight.t());
  }

  torch::nn::Embedding tok{nullptr}, pos{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm lnf{nullptr};
  torch::Tensor future;
};
TORCH_MODULE(Lm);

// Global RNG seeding and thread settings are process-wide in libtorch.
std::mutex& torch_mutex() {
  static std::mutex mu;
  return mu;
}

Lm build_model(const TransformerOptions& o) {
  std::lock_guard lock(torch_mutex());
  torch::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  return Lm(o);
}

// Runs libtorch code, turning its exceptions into errors that say what was being done.
template <class F>
auto guarded(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return make_error(ErrorCode::kInternal, what + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, what + ": " + e.what());
  }
}

// A batch padded to its longest sequence: ids [B, T], targets [B, T, K].
struct Padded {
  torch::Tensor ids, targets;
  std::vector<int64_t> lengths;
  int64_t k = 1;
};

Result<Padded> pad(const std::vector<Datum>& data, const TransformerOptions& o) {
  Padded p;
  int64_t longest = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string at = "data[" + std::to_string(i) + "]";
    const TensorData* targets = data[i].input("target_tokens");
    if (!targets) {
      return field_error(at + ".loss_fn_inputs.target_tokens", at + ".loss_fn_inputs.target_tokens: missing");
    }
    const int64_t n = static_cast<int64_t>(data[i].model_input.length());
    if (n == 0 || n > o.context) {
      return field_error(at + ".model_input", at + ".model_input: expected 1 to " + std::to_string(o.context) +
                                                  " tokens (the model's context), got " + std::to_string(n));
    }
    if (targets->rows() != n) {
      return field_error(at + ".loss_fn_inputs.target_tokens",
                         at + ".loss_fn_inputs.target_tokens: expected one row per input token");
    }
    if (i == 0) p.k = targets->cols();
    if (targets->cols() != p.k) {
      return field_error(at + ".loss_fn_inputs.target_tokens", at + ".loss_fn_inputs.target_tokens: expected " +
                                                                   std::to_string(p.k) +
                                                                   " targets per position, like data[0]");
    }
    for (int32_t t : data[i].model_input.tokens) {
      if (t < 0 || t >= o.vocab) {
        return field_error(at + ".model_input", at + ".model_input: token " + std::to_string(t) +
                                                    " is outside the vocabulary of " + std::to_string(o.vocab));
      }
    }
    for (int64_t t : targets->ints) {
      if (t < 0 || t >= o.vocab) {
        return field_error(at + ".loss_fn_inputs.target_tokens",
                           at + ".loss_fn_inputs.target_tokens: token " + std::to_string(t) +
                               " is outside the vocabulary of " + std::to_string(o.vocab));
      }
    }
    longest = std::max(longest, n);
    p.lengths.push_back(n);
  }
  const int64_t b = static_cast<int64_t>(data.size());
  p.ids = torch::zeros({b, longest}, torch::kLong);
  p.targets = torch::zeros({b, longest, p.k}, torch::kLong);
  auto ids = p.ids.accessor<int64_t, 2>();
  auto targets = p.targets.accessor<int64_t, 3>();
  for (int64_t i = 0; i < b; ++i) {
    const Datum& d = data[static_cast<size_t>(i)];
    const TensorData& t = *d.input("target_tokens");
    for (int64_t s = 0; s < p.lengths[static_cast<size_t>(i)]; ++s) {
      ids[i][s] = d.model_input.tokens[static_cast<size_t>(s)];
      for (int64_t j = 0; j < p.k; ++j) targets[i][s][j] = t.ints[static_cast<size_t>(s * p.k + j)];
    }
  }
  return p;
}

// Per-datum target logprobs out of a [B, T, K] tensor.
std::vector<std::vector<float>> unpad(const torch::Tensor& tlp, const Padded& p) {
  auto cpu = tlp.detach().contiguous();
  auto a = cpu.accessor<float, 3>();
  std::vector<std::vector<float>> out(p.lengths.size());
  for (size_t i = 0; i < p.lengths.size(); ++i) {
    out[i].reserve(static_cast<size_t>(p.lengths[i] * p.k));
    for (int64_t s = 0; s < p.lengths[i]; ++s) {
      for (int64_t j = 0; j < p.k; ++j) out[i].push_back(a[static_cast<int64_t>(i)][s][j]);
    }
  }
  return out;
}

torch::Tensor target_logprobs(Lm& model, const Padded& p) {
  return torch::log_softmax(model->forward(p.ids), -1).gather(2, p.targets);
}

Result<std::string> archive_bytes(torch::serialize::OutputArchive& archive) {
  std::string bytes;
  archive.save_to([&](const void* data, size_t size) -> size_t {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  return bytes;
}

struct Loaded {
  TransformerOptions options;
  int64_t step = 0;
  bool has_optimizer = false;
  torch::serialize::InputArchive archive;
};

Result<std::unique_ptr<Loaded>> load_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return make_error(ErrorCode::kNotFound, "checkpoint '" + path + "' does not exist");
  }
  auto loaded = std::make_unique<Loaded>();
  try {
    loaded->archive.load_from(path);
    c10::IValue config, step, has_optimizer;
    loaded->archive.read("crucible_config", config);
    loaded->archive.read("crucible_step", step);
    loaded->archive.read("crucible_has_optimizer", has_optimizer);
    auto j = parse_json(config.toStringRef());
    if (!j) return make_error(ErrorCode::kDataLoss, "checkpoint '" + path + "' has a damaged configuration");
    CRUCIBLE_ASSIGN_OR_RETURN(loaded->options, TransformerOptions::from_json(*j, "checkpoint"));
    loaded->step = step.toInt();
    loaded->has_optimizer = has_optimizer.toBool();
  } catch (const c10::Error& e) {
    return make_error(ErrorCode::kDataLoss,
                      "checkpoint '" + path + "' is not a crucible libtorch checkpoint: " + e.what_without_backtrace());
  }
  return loaded;
}

class TorchSampler : public SamplingClient {
 public:
  TorchSampler(TransformerOptions options, Lm model) : options_(std::move(options)), model_(std::move(model)) {
    model_->eval();
  }

  Result<SampleResponse> sample(const ModelInput& prompt, int num_samples, const SamplingParams& params) override {
    return guarded("sampling", [&]() -> Result<SampleResponse> {
      torch::NoGradGuard no_grad;
      return internal::sample_sequences(
          prompt, num_samples, params, options_.vocab,
          [&](const std::vector<int32_t>& context, std::vector<double>& lp) {
            // The last `context` tokens the model can see.
            const size_t from = context.size() > static_cast<size_t>(options_.context)
                                    ? context.size() - static_cast<size_t>(options_.context)
                                    : 0;
            std::vector<int64_t> window(context.begin() + static_cast<std::ptrdiff_t>(from), context.end());
            auto ids = torch::tensor(window, torch::kLong).unsqueeze(0);
            auto last = torch::log_softmax(model_->forward(ids)[0][static_cast<int64_t>(window.size()) - 1], -1);
            auto a = last.accessor<float, 1>();
            lp.resize(static_cast<size_t>(options_.vocab));
            for (int v = 0; v < options_.vocab; ++v) lp[static_cast<size_t>(v)] = a[v];
          });
    });
  }

  Result<std::vector<float>> compute_logprobs(const ModelInput& tokens) override {
    CRUCIBLE_RETURN_IF_ERROR(internal::check_vocab(tokens.tokens, options_.vocab, "tokens"));
    if (tokens.tokens.size() > static_cast<size_t>(options_.context) + 1) {
      return field_error("tokens", "tokens: expected at most " + std::to_string(options_.context + 1) +
                                       " tokens (the model's context + 1)");
    }
    if (tokens.tokens.size() < 2) return std::vector<float>(tokens.tokens.size(), 0.0f);
    return guarded("computing logprobs", [&]() -> Result<std::vector<float>> {
      torch::NoGradGuard no_grad;
      std::vector<int64_t> ids(tokens.tokens.begin(), tokens.tokens.end() - 1);
      std::vector<int64_t> next(tokens.tokens.begin() + 1, tokens.tokens.end());
      auto lp = torch::log_softmax(model_->forward(torch::tensor(ids, torch::kLong).unsqueeze(0))[0], -1)
                    .gather(1, torch::tensor(next, torch::kLong).unsqueeze(1))
                    .squeeze(1);
      auto a = lp.accessor<float, 1>();
      std::vector<float> out{0.0f};
      for (int64_t t = 0; t < a.size(0); ++t) out.push_back(a[t]);
      return out;
    });
  }

 private:
  TransformerOptions options_;
  Lm model_;
};

class TorchBackend : public TrainingBackend {
 public:
  explicit TorchBackend(TransformerOptions options)
      : options_(std::move(options)), model_(build_model(options_)), optimizer_(fresh_optimizer()) {}

  Result<std::vector<std::vector<float>>> forward(const std::vector<Datum>& data) override {
    CRUCIBLE_ASSIGN_OR_RETURN(Padded p, pad(data, options_));
    return guarded("forward", [&]() -> Result<std::vector<std::vector<float>>> {
      torch::NoGradGuard no_grad;
      return unpad(target_logprobs(model_, p), p);
    });
  }

  Result<ForwardBackwardOutput> forward_backward(
      const std::vector<Datum>& data,
      const std::function<Result<LossOutput>(const std::vector<std::vector<float>>&)>& grad_of) override {
    CRUCIBLE_ASSIGN_OR_RETURN(Padded p, pad(data, options_));
    return guarded("forward_backward", [&]() -> Result<ForwardBackwardOutput> {
      torch::Tensor tlp = target_logprobs(model_, p);
      std::vector<std::vector<float>> logprobs = unpad(tlp, p);
      CRUCIBLE_ASSIGN_OR_RETURN(LossOutput loss, grad_of(logprobs));
      // One backward rule for every loss: back-propagate dL/dlp; padding gets no gradient.
      torch::Tensor grad = torch::zeros_like(tlp);
      auto g = grad.accessor<float, 3>();
      for (size_t i = 0; i < p.lengths.size(); ++i) {
        for (int64_t s = 0; s < p.lengths[i]; ++s) {
          for (int64_t j = 0; j < p.k; ++j) {
            g[static_cast<int64_t>(i)][s][j] = loss.grads[i][static_cast<size_t>(s * p.k + j)];
          }
        }
      }
      tlp.backward(grad);  // gradients accumulate until optim_step
      return ForwardBackwardOutput{std::move(logprobs), std::move(loss.metrics)};
    });
  }

  Result<OptimStepOutput> optim_step(const AdamParams& params) override {
    return guarded("optim_step", [&]() -> Result<OptimStepOutput> {
      for (auto& group : optimizer_->param_groups()) {
        auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
        o.lr(params.learning_rate);
        o.betas(std::make_tuple(params.beta1, params.beta2));
        o.eps(params.eps);
        o.weight_decay(params.weight_decay);
      }
      double norm2 = 0;
      for (const auto& p : model_->parameters()) {
        if (p.grad().defined()) norm2 += p.grad().pow(2).sum().item<double>();
      }
      const double norm = std::sqrt(norm2);
      if (params.grad_clip_norm > 0 && norm > params.grad_clip_norm) {
        torch::NoGradGuard no_grad;
        const double scale = params.grad_clip_norm / (norm + 1e-6);
        for (auto& p : model_->parameters()) {
          if (p.grad().defined()) p.mutable_grad().mul_(scale);
        }
      }
      optimizer_->step();
      optimizer_->zero_grad();
      ++step_;
      return OptimStepOutput{
          {{"grad_norm", norm}, {"learning_rate", params.learning_rate}, {"step", static_cast<double>(step_)}}};
    });
  }

  Result<std::string> save_state(const std::string& name) override { return write(name, "weights", true); }
  Result<std::string> save_weights_for_sampler(const std::string& name) override {
    return write(name, "sampler_weights", false);
  }

  Status load_state(const std::string& path, bool with_optimizer) override {
    CRUCIBLE_ASSIGN_OR_RETURN(auto loaded, load_archive(path));
    if (loaded->options.to_json() != options_.to_json()) {
      return make_error(ErrorCode::kFailedPrecondition, "checkpoint '" + path + "' is of another model (" +
                                                            json_dump(loaded->options.to_json()) + "), not " +
                                                            json_dump(options_.to_json()));
    }
    if (with_optimizer && !loaded->has_optimizer) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "checkpoint '" + path + "' holds weights only; load it with load_state");
    }
    return guarded("loading '" + path + "'", [&]() -> Status {
      model_->load(loaded->archive);
      optimizer_ = fresh_optimizer();
      step_ = 0;
      if (with_optimizer) {
        torch::serialize::InputArchive state;
        loaded->archive.read("crucible_optimizer", state);
        optimizer_->load(state);
        step_ = loaded->step;
      }
      return {};
    });
  }

  Result<std::shared_ptr<SamplingClient>> sampling_client(const std::string& path) override {
    return open_torch_sampler(path, options_.threads);
  }

 private:
  std::unique_ptr<torch::optim::AdamW> fresh_optimizer() {
    return std::make_unique<torch::optim::AdamW>(
        model_->parameters(),
        torch::optim::AdamWOptions(1e-4).betas(std::make_tuple(0.9, 0.95)).eps(1e-12).weight_decay(0));
  }

  Result<std::string> write(const std::string& name, const char* kind, bool with_optimizer) {
    CRUCIBLE_ASSIGN_OR_RETURN(std::string path, internal::checkpoint_path(options_.dir, kind, name, ".pt"));
    CRUCIBLE_ASSIGN_OR_RETURN(std::string bytes, guarded("saving '" + name + "'", [&]() -> Result<std::string> {
                                torch::serialize::OutputArchive archive;
                                model_->save(archive);
                                archive.write("crucible_config", c10::IValue(json_dump(options_.to_json())));
                                archive.write("crucible_step", c10::IValue(step_));
                                archive.write("crucible_has_optimizer", c10::IValue(with_optimizer));
                                if (with_optimizer) {
                                  torch::serialize::OutputArchive state;
                                  optimizer_->save(state);
                                  archive.write("crucible_optimizer", state);
                                }
                                return archive_bytes(archive);
                              }));
    CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(path, bytes));
    return path;
  }

  TransformerOptions options_;
  Lm model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t step_ = 0;
};

}  // namespace

Json TransformerOptions::to_json() const {
  return Json{{"vocab", vocab}, {"context", context}, {"width", width},
              {"depth", depth}, {"heads", heads},     {"seed", seed}};
}

Result<TransformerOptions> TransformerOptions::from_json(const Json& j, const std::string& field) {
  if (!j.is_object()) return field_error(field, field + ": expected an object, got " + json_type_name(j));
  TransformerOptions o;
  for (const auto& [key, value] : j.items()) {
    const std::string where = field + "." + key;
    int* into = key == "vocab"     ? &o.vocab
                : key == "context" ? &o.context
                : key == "width"   ? &o.width
                : key == "depth"   ? &o.depth
                : key == "heads"   ? &o.heads
                : key == "threads" ? &o.threads
                                   : nullptr;
    if (key == "seed") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0) {
        return field_error(where, where + ": expected an integer >= 0, got " + json_dump(value));
      }
      o.seed = value.get<uint64_t>();
      continue;
    }
    if (!into) {
      return field_error(where,
                         where + ": unknown field; expected vocab, context, width, depth, heads, seed or threads");
    }
    if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1'000'000) {
      return field_error(where, where + ": expected an integer from 1 to 1000000, got " + json_dump(value));
    }
    *into = value.get<int>();
  }
  if (o.width % o.heads != 0) {
    return field_error(field + ".heads", field + ".heads: expected a divisor of width " + std::to_string(o.width) +
                                             ", got " + std::to_string(o.heads));
  }
  return o;
}

Result<std::unique_ptr<TrainingBackend>> make_torch_backend(const TransformerOptions& options) {
  CRUCIBLE_RETURN_IF_ERROR(TransformerOptions::from_json(options.to_json(), "model"));
  return guarded("building the model", [&]() -> Result<std::unique_ptr<TrainingBackend>> {
    return std::unique_ptr<TrainingBackend>(std::make_unique<TorchBackend>(options));
  });
}

Result<std::shared_ptr<SamplingClient>> open_torch_sampler(const std::string& path, int threads) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto loaded, load_archive(path));
  loaded->options.threads = threads;
  return guarded("loading '" + path + "'", [&]() -> Result<std::shared_ptr<SamplingClient>> {
    Lm model = build_model(loaded->options);
    model->load(loaded->archive);
    return std::shared_ptr<SamplingClient>(std::make_shared<TorchSampler>(loaded->options, std::move(model)));
  });
}

int64_t transformer_parameters(const TransformerOptions& o) {
  const int64_t v = o.vocab, t = o.context, c = o.width;
  const int64_t block = 2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
  return v * c + t * c + o.depth * block + 2 * c;
}

}  // namespace crucible::train
