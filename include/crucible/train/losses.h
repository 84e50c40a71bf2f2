// The training losses as functions of the learner's per-token target logprobs, each with its
// gradient with respect to those logprobs: a back end computes the logprobs, asks for dL/dlp and
// back-propagates that one tensor, so one backward rule serves every loss (built-in or custom).
// Also the pieces of the cookbook loops: group-relative advantages, GAE, the KL estimators and
// penalty, DPO, and the learning-rate schedules. Formulas and worked numbers: docs/training.md.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/train/types.h"

namespace crucible::train {

// A loss over a batch: its value, dL/dlp for every target logprob (shaped like the logprobs), and
// metrics. Built-in losses report "loss:sum"; every loss may add its own.
struct LossOutput {
  double loss = 0;
  std::vector<std::vector<float>> grads;
  std::map<std::string, double> metrics;
};

// A loss computed by the caller from the learner's logprobs (forward_backward_custom).
using CustomLoss =
    std::function<Result<LossOutput>(const std::vector<Datum>&, const std::vector<std::vector<float>>& logprobs)>;

// The built-in losses, per-token sums (never means):
//   cross_entropy        L = -sum w * lp                  (targets and weights may be {n, k})
//   importance_sampling  L = -sum r * A,  r = exp(lp - lq)
//   ppo                  L = -sum min(r * A, clip(r, lo, hi) * A)   lo, hi default 0.8, 1.2
//   cispo                L = -sum sg(clip(r, lo, hi)) * A * lp      lo, hi default 0, 4
//   dro                  L = -sum (lp * A - beta / 2 * (lp - lq)^2)  beta defaults to 0.1
// `config` holds clip_low_threshold, clip_high_threshold (ppo, cispo) or beta (dro); any other
// key, or a key the loss does not take, is an error naming it. The batch must pass validate_batch.
Result<LossOutput> builtin_loss(LossFn fn, const std::vector<Datum>& data,
                                const std::vector<std::vector<float>>& logprobs, const Json& config = Json::object());

// DPO over a batch of [chosen, rejected, chosen, rejected, ...] pairs (an odd tail is an error).
// A sequence's logprob is sum w * lp over its targets (prompt tokens weigh 0); `reference` holds
// the reference model's per-token logprobs of the same targets.
//   L = mean over pairs of -log sigmoid(beta * ((pc - refc) - (pr - refr)))
// Metrics: dpo_loss, accuracy, margin, chosen_reward, rejected_reward, num_pairs.
Result<LossOutput> dpo_loss(const std::vector<Datum>& data, const std::vector<std::vector<float>>& logprobs,
                            const std::vector<std::vector<float>>& reference, double beta);

// Group-relative advantages of one prompt's samples: reward - mean (the cookbook's, no std
// division), or with normalize (GRPO as in TRL) divided by the unbiased std + 1e-4.
std::vector<double> group_advantages(const std::vector<double>& rewards, bool normalize = false);

// Generalized advantage estimation: delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma
// lambda A_{t+1}; returns = A + V. `values` has one entry per reward; `last_value` is V after
// the last step.
struct Gae {
  std::vector<double> advantages;
  std::vector<double> returns;
};
Gae gae(const std::vector<double>& rewards, const std::vector<double>& values, double last_value, double gamma,
        double lambda);

// KL divergences of two distributions over the same support (probabilities, each summing to 1).
double forward_kl(const std::vector<double>& teacher, const std::vector<double>& student);  // KL(T || S)
double reverse_kl(const std::vector<double>& student, const std::vector<double>& teacher);  // KL(S || T)
// beta KL(T || M) + (1 - beta) KL(S || M), M = beta T + (1 - beta) S (TRL's GKD).
double generalized_jsd(const std::vector<double>& teacher, const std::vector<double>& student, double beta);
// Per-token estimators of KL(S || T) at a token sampled from S: k1 = lpS - lpT, k2 = k1^2 / 2,
// k3 = (rho - 1) - log rho with rho = exp(lpT - lpS).
double kl_k1(double lp_student, double lp_teacher);
double kl_k2(double lp_student, double lp_teacher);
double kl_k3(double lp_student, double lp_teacher);

// The cookbook's KL penalty toward a reference: with d_t = lq_t - lref_t over the masked tokens,
// A_t += coef * mask_t * (mean(d) - d_t). Returns mean(d) (logged as kl_policy_base).
double apply_kl_penalty(std::vector<std::vector<float>>& advantages, const std::vector<std::vector<float>>& sampler,
                        const std::vector<std::vector<float>>& reference, const std::vector<std::vector<float>>& mask,
                        double coef);

// Learning-rate multipliers at step / total: linear 1 - step/total, cosine
// (1 + cos(pi step/total)) / 2, constant 1.
enum class LrSchedule { kLinear, kCosine, kConstant };
Result<LrSchedule> parse_lr_schedule(std::string_view name);
std::string_view lr_schedule_name(LrSchedule s);
double lr_multiplier(LrSchedule s, int64_t step, int64_t total);

}  // namespace crucible::train
