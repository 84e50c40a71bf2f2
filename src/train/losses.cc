#include "crucible/train/losses.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace crucible::train {

namespace {

struct Thresholds {
  double low;
  double high;
};

Result<double> config_number(const Json& config, const char* key, double fallback) {
  if (!config.contains(key)) return fallback;
  const Json& v = config[key];
  const std::string field = std::string("loss_fn_config.") + key;
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    return field_error(field, field + ": expected a number, got " + json_dump(v));
  }
  return v.get<double>();
}

Status config_keys(const Json& config, LossFn fn, std::initializer_list<std::string_view> allowed) {
  if (config.is_null()) return {};
  if (!config.is_object()) {
    return field_error("loss_fn_config", "loss_fn_config: expected an object, got " + json_type_name(config));
  }
  for (const auto& [key, value] : config.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string expected;
    for (std::string_view k : allowed) expected += (expected.empty() ? "" : ", ") + std::string(k);
    return field_error("loss_fn_config." + key, "loss_fn_config." + key + ": " + std::string(loss_fn_name(fn)) +
                                                    " takes " + (expected.empty() ? "no configuration" : expected));
  }
  return {};
}

Result<Thresholds> clip_thresholds(const Json& config, double low, double high) {
  Thresholds t{};
  const Json c = config.is_null() ? Json::object() : config;
  CRUCIBLE_ASSIGN_OR_RETURN(t.low, config_number(c, "clip_low_threshold", low));
  CRUCIBLE_ASSIGN_OR_RETURN(t.high, config_number(c, "clip_high_threshold", high));
  if (t.low > t.high) {
    return field_error("loss_fn_config.clip_low_threshold",
                       "loss_fn_config.clip_low_threshold: expected at most clip_high_threshold");
  }
  return t;
}

Status same_shapes(const std::vector<Datum>& data, const std::vector<std::vector<float>>& logprobs, const char* what) {
  if (logprobs.size() != data.size()) {
    return field_error(what, std::string(what) + ": expected " + std::to_string(data.size()) + " sequences, got " +
                                 std::to_string(logprobs.size()));
  }
  for (size_t i = 0; i < data.size(); ++i) {
    const TensorData* targets = data[i].input("target_tokens");
    const size_t n = targets ? targets->size() : 0;
    if (logprobs[i].size() != n) {
      return field_error(what, std::string(what) + "[" + std::to_string(i) + "]: expected " + std::to_string(n) +
                                   " logprobs (one per target), got " + std::to_string(logprobs[i].size()));
    }
  }
  return {};
}

double clip(double x, const Thresholds& t) { return std::clamp(x, t.low, t.high); }

}  // namespace

Result<LossOutput> builtin_loss(LossFn fn, const std::vector<Datum>& data,
                                const std::vector<std::vector<float>>& logprobs, const Json& config) {
  CRUCIBLE_RETURN_IF_ERROR(validate_batch(data, fn));
  CRUCIBLE_RETURN_IF_ERROR(same_shapes(data, logprobs, "logprobs"));
  Thresholds clip_t{0, 0};
  double beta = 0.1;
  switch (fn) {
    case LossFn::kCrossEntropy:
    case LossFn::kImportanceSampling: CRUCIBLE_RETURN_IF_ERROR(config_keys(config, fn, {})); break;
    case LossFn::kPpo:
    case LossFn::kCispo: {
      CRUCIBLE_RETURN_IF_ERROR(config_keys(config, fn, {"clip_low_threshold", "clip_high_threshold"}));
      const bool ppo = fn == LossFn::kPpo;
      CRUCIBLE_ASSIGN_OR_RETURN(clip_t, clip_thresholds(config, ppo ? 0.8 : 0.0, ppo ? 1.2 : 4.0));
      break;
    }
    case LossFn::kDro: {
      CRUCIBLE_RETURN_IF_ERROR(config_keys(config, fn, {"beta"}));
      CRUCIBLE_ASSIGN_OR_RETURN(beta, config_number(config.is_null() ? Json::object() : config, "beta", beta));
      break;
    }
  }
  LossOutput out;
  out.grads.resize(data.size());
  double loss = 0;
  double clipped = 0, tokens = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::vector<float>& lp = logprobs[i];
    std::vector<float>& grad = out.grads[i];
    grad.assign(lp.size(), 0.0f);
    if (fn == LossFn::kCrossEntropy) {
      const TensorData& w = *data[i].input("weights");
      for (size_t t = 0; t < lp.size(); ++t) {
        loss -= w.at(t) * lp[t];
        grad[t] = static_cast<float>(-w.at(t));
      }
      continue;
    }
    const TensorData& lq = *data[i].input("logprobs");
    const TensorData& adv = *data[i].input("advantages");
    for (size_t t = 0; t < lp.size(); ++t) {
      const double a = adv.at(t);
      const double r = std::exp(static_cast<double>(lp[t]) - lq.at(t));
      double g = 0;
      switch (fn) {
        case LossFn::kImportanceSampling:
          loss -= r * a;
          g = -r * a;
          break;
        case LossFn::kPpo: {
          const double unclipped = r * a, bounded = clip(r, clip_t) * a;
          loss -= std::min(unclipped, bounded);
          // Where the clipped term is the smaller one it is constant in lp: no gradient.
          const bool is_clipped = bounded < unclipped;
          g = is_clipped ? 0.0 : -r * a;
          if (a != 0) {
            tokens += 1;
            clipped += is_clipped ? 1 : 0;
          }
          break;
        }
        case LossFn::kCispo: {
          const double weight = clip(r, clip_t);  // stop-gradient
          loss -= weight * a * lp[t];
          g = -weight * a;
          if (a != 0) {
            tokens += 1;
            clipped += weight != r ? 1 : 0;
          }
          break;
        }
        case LossFn::kDro: {
          const double d = lp[t] - lq.at(t);
          loss -= lp[t] * a - 0.5 * beta * d * d;
          g = -(a - beta * d);
          break;
        }
        case LossFn::kCrossEntropy: break;
      }
      grad[t] = static_cast<float>(g);
    }
  }
  out.loss = loss;
  out.metrics["loss:sum"] = loss;
  if (fn == LossFn::kPpo || fn == LossFn::kCispo) out.metrics["clip_fraction"] = tokens > 0 ? clipped / tokens : 0.0;
  return out;
}

Result<LossOutput> dpo_loss(const std::vector<Datum>& data, const std::vector<std::vector<float>>& logprobs,
                            const std::vector<std::vector<float>>& reference, double beta) {
  if (data.empty() || data.size() % 2 != 0) {
    return field_error("data",
                       "data: expected [chosen, rejected] pairs, got " + std::to_string(data.size()) + " sequences");
  }
  if (!(beta > 0)) return field_error("beta", "beta: expected a value > 0");
  CRUCIBLE_RETURN_IF_ERROR(validate_batch(data, LossFn::kCrossEntropy));
  CRUCIBLE_RETURN_IF_ERROR(same_shapes(data, logprobs, "logprobs"));
  CRUCIBLE_RETURN_IF_ERROR(same_shapes(data, reference, "reference"));
  auto weighted = [&](size_t i, const std::vector<float>& lp) {
    const TensorData& w = *data[i].input("weights");
    double s = 0;
    for (size_t t = 0; t < lp.size(); ++t) s += w.at(t) * lp[t];
    return s;
  };
  LossOutput out;
  out.grads.resize(data.size());
  const size_t pairs = data.size() / 2;
  double loss = 0, accuracy = 0, chosen_reward = 0, rejected_reward = 0;
  for (size_t p = 0; p < pairs; ++p) {
    const size_t c = 2 * p, r = 2 * p + 1;
    const double dc = weighted(c, logprobs[c]) - weighted(c, reference[c]);
    const double dr = weighted(r, logprobs[r]) - weighted(r, reference[r]);
    const double z = beta * (dc - dr);
    // -log sigmoid(z) = log(1 + e^-z), computed without overflow either way.
    loss += z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
    const double sigmoid = 1.0 / (1.0 + std::exp(-z));
    const double dz = (sigmoid - 1.0) / static_cast<double>(pairs);  // dL/dz of the mean
    for (size_t i : {c, r}) {
      const TensorData& w = *data[i].input("weights");
      const double sign = i == c ? 1.0 : -1.0;
      out.grads[i].resize(logprobs[i].size());
      for (size_t t = 0; t < logprobs[i].size(); ++t) {
        out.grads[i][t] = static_cast<float>(dz * beta * sign * w.at(t));
      }
    }
    accuracy += dc > dr ? 1 : 0;
    chosen_reward += beta * dc;
    rejected_reward += beta * dr;
  }
  const double n = static_cast<double>(pairs);
  out.loss = loss / n;
  out.metrics = {{"dpo_loss", loss / n},
                 {"accuracy", accuracy / n},
                 {"margin", (chosen_reward - rejected_reward) / n},
                 {"chosen_reward", chosen_reward / n},
                 {"rejected_reward", rejected_reward / n},
                 {"num_pairs", n}};
  return out;
}

std::vector<double> group_advantages(const std::vector<double>& rewards, bool normalize) {
  if (rewards.empty()) return {};
  double mean = 0;
  for (double r : rewards) mean += r;
  mean /= static_cast<double>(rewards.size());
  std::vector<double> a;
  a.reserve(rewards.size());
  for (double r : rewards) a.push_back(r - mean);
  if (normalize && rewards.size() > 1) {
    double ss = 0;
    for (double x : a) ss += x * x;
    const double sd = std::sqrt(ss / static_cast<double>(rewards.size() - 1));
    for (double& x : a) x /= sd + 1e-4;
  }
  return a;
}

Gae gae(const std::vector<double>& rewards, const std::vector<double>& values, double last_value, double gamma,
        double lambda) {
  const size_t n = std::min(rewards.size(), values.size());
  Gae g;
  g.advantages.assign(n, 0.0);
  g.returns.assign(n, 0.0);
  double next_adv = 0;
  for (size_t k = n; k-- > 0;) {
    const double next_value = k + 1 < n ? values[k + 1] : last_value;
    const double delta = rewards[k] + gamma * next_value - values[k];
    next_adv = delta + gamma * lambda * next_adv;
    g.advantages[k] = next_adv;
    g.returns[k] = next_adv + values[k];
  }
  return g;
}

double forward_kl(const std::vector<double>& teacher, const std::vector<double>& student) {
  double kl = 0;
  for (size_t v = 0; v < teacher.size() && v < student.size(); ++v) {
    if (teacher[v] > 0) kl += teacher[v] * std::log(teacher[v] / student[v]);
  }
  return kl;
}

double reverse_kl(const std::vector<double>& student, const std::vector<double>& teacher) {
  return forward_kl(student, teacher);
}

double generalized_jsd(const std::vector<double>& teacher, const std::vector<double>& student, double beta) {
  std::vector<double> mix(std::min(teacher.size(), student.size()));
  for (size_t v = 0; v < mix.size(); ++v) mix[v] = beta * teacher[v] + (1 - beta) * student[v];
  return beta * forward_kl(teacher, mix) + (1 - beta) * forward_kl(student, mix);
}

double kl_k1(double lp_student, double lp_teacher) { return lp_student - lp_teacher; }
double kl_k2(double lp_student, double lp_teacher) {
  const double k1 = lp_student - lp_teacher;
  return 0.5 * k1 * k1;
}
double kl_k3(double lp_student, double lp_teacher) {
  const double log_rho = lp_teacher - lp_student;
  return std::expm1(log_rho) - log_rho;
}

double apply_kl_penalty(std::vector<std::vector<float>>& advantages, const std::vector<std::vector<float>>& sampler,
                        const std::vector<std::vector<float>>& reference, const std::vector<std::vector<float>>& mask,
                        double coef) {
  double sum = 0, count = 0;
  for (size_t i = 0; i < advantages.size(); ++i) {
    for (size_t t = 0; t < advantages[i].size(); ++t) {
      if (mask[i][t] == 0) continue;
      sum += mask[i][t] * (sampler[i][t] - reference[i][t]);
      count += mask[i][t];
    }
  }
  const double mean = count > 0 ? sum / count : 0.0;
  for (size_t i = 0; i < advantages.size(); ++i) {
    for (size_t t = 0; t < advantages[i].size(); ++t) {
      const double d = sampler[i][t] - reference[i][t];
      advantages[i][t] += static_cast<float>(coef * mask[i][t] * (mean - d));
    }
  }
  return mean;
}

Result<LrSchedule> parse_lr_schedule(std::string_view name) {
  if (name == "linear") return LrSchedule::kLinear;
  if (name == "cosine") return LrSchedule::kCosine;
  if (name == "constant") return LrSchedule::kConstant;
  return field_error("lr_schedule",
                     "lr_schedule: expected linear, cosine or constant, got '" + std::string(name) + "'");
}

std::string_view lr_schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::kLinear: return "linear";
    case LrSchedule::kCosine: return "cosine";
    case LrSchedule::kConstant: return "constant";
  }
  return "?";
}

double lr_multiplier(LrSchedule s, int64_t step, int64_t total) {
  if (total <= 0) return 1.0;
  const double x = std::clamp(static_cast<double>(step) / static_cast<double>(total), 0.0, 1.0);
  switch (s) {
    case LrSchedule::kLinear: return 1.0 - x;
    case LrSchedule::kCosine: return 0.5 * (1.0 + std::cos(std::numbers::pi * x));
    case LrSchedule::kConstant: return 1.0;
  }
  return 1.0;
}

}  // namespace crucible::train
