// The losses against the worked numbers of docs/training.md, their gradients against finite
// differences, and the errors a malformed batch gets.
#include "crucible/train/losses.h"

#include <cmath>

#include <gtest/gtest.h>

namespace crucible::train {
namespace {

constexpr double kTol = 1e-5;

Datum one_token_rl(float lp_sampler, float advantage) {
  Datum d;
  d.model_input.tokens = {1};
  d.loss_fn_inputs["target_tokens"] = TensorData::of_ints({2});
  d.loss_fn_inputs["logprobs"] = TensorData::of_floats({lp_sampler});
  d.loss_fn_inputs["advantages"] = TensorData::of_floats({advantage});
  return d;
}

Datum weighted(std::vector<float> weights) {
  Datum d;
  d.model_input.tokens.assign(weights.size(), 1);
  d.loss_fn_inputs["target_tokens"] = TensorData::of_ints(std::vector<int64_t>(weights.size(), 2));
  d.loss_fn_inputs["weights"] = TensorData::of_floats(std::move(weights));
  return d;
}

TEST(Losses, CrossEntropyIsATokenSumAndItsMeanNllFollows) {
  auto out = builtin_loss(LossFn::kCrossEntropy, {weighted({0, 1, 1})}, {{-0.1f, -2.3f, -0.7f}});
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_NEAR(out->loss, 3.0, kTol);
  EXPECT_NEAR(out->metrics["loss:sum"], 3.0, kTol);
  EXPECT_NEAR(out->loss / 2.0, 1.5, kTol);  // mean nll over the weighted tokens
  EXPECT_EQ(out->grads[0], (std::vector<float>{-0.0f, -1.0f, -1.0f}));
}

// The PPO table: loss, importance-sampling loss, and where the gradient is zero.
TEST(Losses, PpoAndImportanceSamplingMatchTheTable) {
  struct Row {
    double lp, lq, a, ppo, is;
    bool zero_grad;
  };
  const Row rows[] = {{-1.0, -1.5, +1, -1.200000, -1.648721, true},
                      {-1.0, -1.5, -1, +1.648721, +1.648721, false},
                      {std::log(0.5), 0, +1, -0.500000, -0.500000, false},
                      {std::log(0.5), 0, -1, +0.800000, +0.500000, true},
                      {-1.0, -1.0, +2, -2.000000, -2.000000, false}};
  for (const Row& r : rows) {
    std::vector<Datum> batch{one_token_rl(static_cast<float>(r.lq), static_cast<float>(r.a))};
    std::vector<std::vector<float>> lp{{static_cast<float>(r.lp)}};
    auto ppo = builtin_loss(LossFn::kPpo, batch, lp);
    auto is = builtin_loss(LossFn::kImportanceSampling, batch, lp);
    ASSERT_TRUE(ppo && is);
    EXPECT_NEAR(ppo->loss, r.ppo, kTol) << r.lp << " " << r.a;
    EXPECT_NEAR(is->loss, r.is, kTol) << r.lp << " " << r.a;
    EXPECT_EQ(ppo->grads[0][0] == 0.0f, r.zero_grad) << r.lp << " " << r.a;
    EXPECT_NEAR(is->grads[0][0], -std::exp(r.lp - r.lq) * r.a, kTol);
  }
}

TEST(Losses, PpoClipThresholdsComeFromTheConfig) {
  std::vector<Datum> batch{one_token_rl(-1.5f, 1)};
  auto wide = builtin_loss(LossFn::kPpo, batch, {{-1.0f}}, Json{{"clip_high_threshold", 2.0}});
  ASSERT_TRUE(wide);
  EXPECT_NEAR(wide->loss, -1.648721, kTol);  // r = 1.6487 is inside [0.8, 2.0]
  EXPECT_NE(wide->grads[0][0], 0.0f);
  auto unknown = builtin_loss(LossFn::kPpo, batch, {{-1.0f}}, Json{{"clip_high", 2.0}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field(), "loss_fn_config.clip_high");
  auto inverted =
      builtin_loss(LossFn::kPpo, batch, {{-1.0f}}, Json{{"clip_low_threshold", 1.5}, {"clip_high_threshold", 1.2}});
  ASSERT_FALSE(inverted);
  auto none = builtin_loss(LossFn::kCrossEntropy, {weighted({1})}, {{-1.0f}}, Json{{"beta", 1}});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("cross_entropy takes no configuration"), std::string::npos);
}

TEST(Losses, CispoWeighsLogprobsByTheStoppedClippedRatio) {
  // r = e^0.5 = 1.6487 inside [0, 4]: L = -r * A * lp, dL/dlp = -r * A.
  auto out = builtin_loss(LossFn::kCispo, {one_token_rl(-1.5f, 2)}, {{-1.0f}});
  ASSERT_TRUE(out);
  EXPECT_NEAR(out->loss, -(1.648721 * 2 * -1.0), 1e-5);
  EXPECT_NEAR(out->grads[0][0], -1.648721 * 2, 1e-5);
  // r = e^2 = 7.39 is clipped to 4.
  auto clipped = builtin_loss(LossFn::kCispo, {one_token_rl(-3.0f, 1)}, {{-1.0f}});
  ASSERT_TRUE(clipped);
  EXPECT_NEAR(clipped->grads[0][0], -4.0, 1e-6);
  EXPECT_NEAR(clipped->metrics["clip_fraction"], 1.0, 1e-12);
}

TEST(Losses, DroPenalizesDistanceFromTheSampler) {
  // L = -(lp A - beta/2 (lp - lq)^2) with lp -1, lq -1.5, A 1, beta 0.2: -(−1 − 0.025) = 1.025.
  auto out = builtin_loss(LossFn::kDro, {one_token_rl(-1.5f, 1)}, {{-1.0f}}, Json{{"beta", 0.2}});
  ASSERT_TRUE(out);
  EXPECT_NEAR(out->loss, 1.025, kTol);
  EXPECT_NEAR(out->grads[0][0], -(1 - 0.2 * 0.5), kTol);
}

// Every built-in gradient agrees with a central finite difference of its loss.
TEST(Losses, GradientsMatchFiniteDifferences) {
  for (LossFn fn : {LossFn::kImportanceSampling, LossFn::kPpo, LossFn::kCispo, LossFn::kDro}) {
    for (float lp0 : {-2.0f, -1.2f, -0.9f, -0.3f}) {
      std::vector<Datum> batch{one_token_rl(-1.0f, fn == LossFn::kPpo ? -0.7f : 0.9f)};
      auto at = builtin_loss(fn, batch, {{lp0}});
      ASSERT_TRUE(at);
      if (fn == LossFn::kCispo) continue;  // its ratio is stopped: checked in closed form above
      const float h = 1e-3f;
      auto up = builtin_loss(fn, batch, {{lp0 + h}});
      auto down = builtin_loss(fn, batch, {{lp0 - h}});
      EXPECT_NEAR(at->grads[0][0], (up->loss - down->loss) / (2 * h), 2e-3) << loss_fn_name(fn) << " at " << lp0;
    }
  }
}

TEST(Losses, SoftTargetsAreCrossEntropyOverEveryColumn) {
  // Teacher p = [0.7, 0.2, 0.1] as weights over three candidate targets of one position.
  Datum d;
  d.model_input.tokens = {5};
  d.loss_fn_inputs["target_tokens"] = TensorData::of_ints({0, 1, 2}, 1, 3);
  d.loss_fn_inputs["weights"] = TensorData::of_floats({0.7f, 0.2f, 0.1f}, 1, 3);
  std::vector<float> student{static_cast<float>(std::log(0.5)), static_cast<float>(std::log(0.3)),
                             static_cast<float>(std::log(0.2))};
  auto out = builtin_loss(LossFn::kCrossEntropy, {d}, {student});
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_NEAR(out->loss, 0.886941, 1e-5);  // CE(pT, pS) = forward KL 0.085123 + H(pT) 0.801819
}

TEST(Losses, DpoMatchesTheWorkedExample) {
  // pi_c = -10, pi_r = -12, both references -11, beta 0.1: L = 0.598139.
  std::vector<Datum> pair{weighted({1, 1}), weighted({1, 1})};
  std::vector<std::vector<float>> lp{{-4.0f, -6.0f}, {-5.0f, -7.0f}};
  std::vector<std::vector<float>> ref{{-5.0f, -6.0f}, {-5.0f, -6.0f}};
  auto out = dpo_loss(pair, lp, ref, 0.1);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_NEAR(out->loss, 0.598139, 1e-6);
  EXPECT_NEAR(out->metrics["chosen_reward"], 0.1, 1e-6);
  EXPECT_NEAR(out->metrics["rejected_reward"], -0.1, 1e-6);
  EXPECT_NEAR(out->metrics["margin"], 0.2, 1e-6);
  EXPECT_EQ(out->metrics["accuracy"], 1.0);
  EXPECT_NEAR(out->grads[0][0], -0.045017, 1e-6);  // dL/dpi_c
  EXPECT_NEAR(out->grads[1][0], 0.045017, 1e-6);
  auto swapped = dpo_loss({pair[1], pair[0]}, {lp[1], lp[0]}, ref, 0.1);
  ASSERT_TRUE(swapped);
  EXPECT_NEAR(swapped->loss, 0.798139, 1e-6);
  EXPECT_EQ(swapped->metrics["accuracy"], 0.0);
  auto odd = dpo_loss({pair[0]}, {lp[0]}, {ref[0]}, 0.1);
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message().find("pairs"), std::string::npos);
  // Prompt tokens weigh 0 and do not count.
  std::vector<Datum> prompted{weighted({0, 1}), weighted({0, 1})};
  auto masked = dpo_loss(prompted, {{-100.0f, -10.0f}, {-1.0f, -12.0f}}, {{0, -11}, {0, -11}}, 0.1);
  ASSERT_TRUE(masked);
  EXPECT_NEAR(masked->loss, 0.598139, 1e-6);
  EXPECT_EQ(masked->grads[0][0], 0.0f);
}

TEST(Losses, GroupAdvantagesCenterAndOptionallyNormalize) {
  auto centered = group_advantages({1, 0, 0, 1});
  EXPECT_EQ(centered, (std::vector<double>{0.5, -0.5, -0.5, 0.5}));
  auto normalized = group_advantages({1, 0, 0, 1}, true);
  for (double a : normalized) EXPECT_NEAR(std::abs(a), 0.865875, 1e-6);
  auto spread = group_advantages({0, 0.25, 0.5, 1}, true);
  const double want[] = {-1.024455, -0.439052, 0.146351, 1.317157};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(spread[i], want[i], 1e-6);
  for (double a : group_advantages({0.3, 0.3, 0.3}, true)) EXPECT_EQ(a, 0.0);  // a constant group: no signal
}

TEST(Losses, GaeMatchesTheWorkedExample) {
  Gae g = gae({0, 0, 1}, {0.5, 0.6, 0.7}, 0, 1.0, 0.95);
  const double adv[] = {0.46575, 0.385, 0.3};
  const double ret[] = {0.96575, 0.985, 1.0};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(g.advantages[i], adv[i], 1e-9);
    EXPECT_NEAR(g.returns[i], ret[i], 1e-9);
  }
}

TEST(Losses, KlDivergencesMatchTheWorkedExample) {
  std::vector<double> teacher{0.7, 0.2, 0.1}, student{0.5, 0.3, 0.2};
  EXPECT_NEAR(forward_kl(teacher, student), 0.085123, 1e-6);
  EXPECT_NEAR(reverse_kl(student, teacher), 0.092033, 1e-6);
  EXPECT_NEAR(generalized_jsd(teacher, student, 0.5), 0.021901, 1e-6);
  EXPECT_NEAR(kl_k1(-0.5, -1.0), 0.5, 1e-12);
  EXPECT_NEAR(kl_k2(-0.5, -1.0), 0.125, 1e-12);
  EXPECT_NEAR(kl_k3(-0.5, -1.0), 0.106531, 1e-6);
}

TEST(Losses, KlPenaltyMovesAdvantagesTowardTheMeanDifference) {
  std::vector<std::vector<float>> adv{{1.0f, 1.0f, 0.0f}};
  // d = [0.2, -0.2, (masked)], mean 0: A += coef * (0 - d).
  double mean = apply_kl_penalty(adv, {{-1.0f, -1.4f, -3.0f}}, {{-1.2f, -1.2f, -1.0f}}, {{1, 1, 0}}, 0.5);
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(adv[0][0], 0.9, 1e-6);
  EXPECT_NEAR(adv[0][1], 1.1, 1e-6);
  EXPECT_EQ(adv[0][2], 0.0f);
}

TEST(Losses, LearningRateSchedules) {
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::kLinear, 25, 100), 0.75);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::kCosine, 50, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::kCosine, 0, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::kConstant, 99, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::kLinear, 200, 100), 0.0);
  ASSERT_TRUE(parse_lr_schedule("cosine"));
  auto bad = parse_lr_schedule("warmup");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("linear, cosine or constant"), std::string::npos);
}

TEST(Losses, AMalformedBatchNamesTheDatumAndInput) {
  Datum missing = one_token_rl(-1.0f, 1);
  missing.loss_fn_inputs.erase("advantages");
  auto a = builtin_loss(LossFn::kPpo, {one_token_rl(-1.0f, 1), missing}, {{-1.0f}, {-1.0f}});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().field(), "data[1].loss_fn_inputs.advantages");
  Datum short_weights = weighted({1, 1});
  short_weights.loss_fn_inputs["weights"] = TensorData::of_floats({1});
  auto b = builtin_loss(LossFn::kCrossEntropy, {short_weights}, {{-1.0f, -1.0f}});
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().field(), "data[0].loss_fn_inputs.weights");
  auto c = builtin_loss(LossFn::kCrossEntropy, {weighted({1, 1})}, {{-1.0f}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("expected 2 logprobs"), std::string::npos);
  Datum soft_rl = one_token_rl(-1.0f, 1);
  soft_rl.loss_fn_inputs["target_tokens"] = TensorData::of_ints({1, 2}, 1, 2);
  auto d = builtin_loss(LossFn::kImportanceSampling, {soft_rl}, {{-1.0f, -1.0f}});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().field(), "data[0].loss_fn_inputs.target_tokens");
  EXPECT_FALSE(builtin_loss(LossFn::kCrossEntropy, {}, {}));
}

TEST(Types, DataRoundTripThroughJsonAndBadJsonNamesTheField) {
  Datum d = next_token_datum({10, 11, 12, 13}, 2);
  EXPECT_EQ(d.model_input.tokens, (std::vector<int32_t>{10, 11, 12}));
  EXPECT_EQ(d.input("target_tokens")->ints, (std::vector<int64_t>{11, 12, 13}));
  EXPECT_EQ(d.input("weights")->floats, (std::vector<float>{0, 1, 1}));
  auto back = Datum::from_json(d.to_json(), "d");
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->to_json(), d.to_json());
  auto plain = Datum::from_json(Json::parse(R"({"model_input": [1, 2], "loss_fn_inputs": {
      "target_tokens": [2, 3], "weights": [0.5, 1]}})"),
                                "data[0]");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->input("target_tokens")->dtype, TensorData::Dtype::kInt64);
  EXPECT_EQ(plain->input("weights")->dtype, TensorData::Dtype::kFloat32);
  struct Bad {
    const char* json;
    const char* field;
  };
  const Bad cases[] = {
      {R"({"model_input": [1, -2]})", "data[0].model_input[1]"},
      {R"({"model_input": [1, 2.5]})", "data[0].model_input[1]"},
      {R"({"model_input": [1], "extra": 1})", "data[0].extra"},
      {R"({"loss_fn_inputs": {}})", "data[0].model_input"},
      {R"({"model_input": [1], "loss_fn_inputs": {"weights": [[1, 2], [3]]}})", "data[0].loss_fn_inputs.weights[1]"},
      {R"({"model_input": [1], "loss_fn_inputs": {"weights": {"data": [1, 2], "shape": [3]}}})",
       "data[0].loss_fn_inputs.weights.shape"},
      {R"({"model_input": [1], "loss_fn_inputs": {"weights": {"dtype": "int8", "data": [1]}}})",
       "data[0].loss_fn_inputs.weights.dtype"},
  };
  for (const Bad& b : cases) {
    auto r = Datum::from_json(Json::parse(b.json), "data[0]");
    ASSERT_FALSE(r) << b.json;
    EXPECT_EQ(r.error().field(), b.field) << b.json << ": " << r.error().message();
  }
}

TEST(Types, AdamAndSamplingParamsValidateEveryField) {
  auto adam = AdamParams::from_json(Json{{"learning_rate", 2e-4}, {"eps", 1e-8}}, "adam");
  ASSERT_TRUE(adam);
  EXPECT_EQ(adam->learning_rate, 2e-4);
  EXPECT_EQ(adam->beta2, 0.95);
  EXPECT_EQ(adam->weight_decay, 0.0);
  EXPECT_EQ(AdamParams::from_json(Json{{"beta1", 1.0}}, "adam").error().field(), "adam.beta1");
  EXPECT_EQ(AdamParams::from_json(Json{{"lr", 1.0}}, "adam").error().field(), "adam.lr");
  EXPECT_EQ(AdamParams::from_json(Json{{"eps", "small"}}, "adam").error().field(), "adam.eps");
  auto sampling = SamplingParams::from_json(Json{{"max_tokens", 8}, {"seed", 3}, {"stop", {10}}}, "sampling");
  ASSERT_TRUE(sampling);
  EXPECT_EQ(*sampling->seed, 3u);
  EXPECT_EQ(sampling->stop_tokens, std::vector<int32_t>{10});
  EXPECT_EQ(SamplingParams::from_json(Json{{"max_tokens", 0}}, "s").error().field(), "s.max_tokens");
  EXPECT_EQ(SamplingParams::from_json(Json{{"top_p", 0}}, "s").error().field(), "s.top_p");
  EXPECT_EQ(SamplingParams::from_json(Json{{"temperature", -1}}, "s").error().field(), "s.temperature");
  ASSERT_TRUE(parse_loss_fn("cispo"));
  EXPECT_NE(parse_loss_fn("dpo").error().message().find("cross_entropy, importance_sampling"), std::string::npos);
  EXPECT_EQ(AdamParams::from_json(adam->to_json(), "a")->to_json(), adam->to_json());
  EXPECT_EQ(SamplingParams::from_json(sampling->to_json(), "s")->to_json(), sampling->to_json());
}

}  // namespace
}  // namespace crucible::train

namespace crucible::train {
namespace {

TEST(Losses, MalformedConfigurationsAndShapesAreNamed) {
  std::vector<Datum> batch{one_token_rl(-1.0f, 1)};
  EXPECT_EQ(builtin_loss(LossFn::kPpo, batch, {{-1.0f}}, Json::array()).error().field(), "loss_fn_config");
  EXPECT_EQ(builtin_loss(LossFn::kPpo, batch, {{-1.0f}}, Json{{"clip_low_threshold", "low"}}).error().field(),
            "loss_fn_config.clip_low_threshold");
  EXPECT_TRUE(builtin_loss(LossFn::kCispo, batch, {{-1.0f}}, Json()));  // null: the defaults
  auto count = builtin_loss(LossFn::kCrossEntropy, {weighted({1})}, {});
  ASSERT_FALSE(count);
  EXPECT_NE(count.error().message().find("expected 1 sequences, got 0"), std::string::npos);
  EXPECT_FALSE(dpo_loss({weighted({1}), weighted({1})}, {{-1.0f}, {-1.0f}}, {{-1.0f}, {-1.0f}}, 0.0));
  for (LrSchedule s : {LrSchedule::kLinear, LrSchedule::kCosine, LrSchedule::kConstant}) {
    EXPECT_EQ(*parse_lr_schedule(lr_schedule_name(s)), s);
  }
  EXPECT_EQ(lr_multiplier(LrSchedule::kLinear, 5, 0), 1.0);
  EXPECT_EQ(stop_reason_name(StopReason::kStop), "stop");
  EXPECT_EQ(stop_reason_name(StopReason::kLength), "length");
}

TEST(Types, TensorsInEveryFormAndTheirErrors) {
  auto plain = TensorData::from_json(Json::array({1.5, 2}), "t");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->floats, (std::vector<float>{1.5f, 2.0f}));
  auto matrix = TensorData::from_json(Json{{"dtype", "int64"}, {"data", {{1, 2}, {3, 4}}}}, "t");
  ASSERT_TRUE(matrix);
  EXPECT_EQ(matrix->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(matrix->rows(), 2);
  EXPECT_EQ(matrix->cols(), 2);
  EXPECT_EQ(TensorData::from_json(Json{{"data", {1, 2}}, {"shape", {-2}}}, "t").error().field(), "t.shape");
  EXPECT_EQ(TensorData::from_json(Json{{"shape", {1}}}, "t").error().field(), "t.data");
  EXPECT_EQ(TensorData::from_json(Json{{"data", {1, "x"}}}, "t").error().field(), "t.data[1]");
  EXPECT_EQ(TensorData::from_json(Json(3), "t").error().field(), "t");
  EXPECT_EQ(Datum::from_json(Json{{"model_input", {{1}}}}, "d").error().field(), "d.model_input");
  EXPECT_EQ(Datum::from_json(Json{{"model_input", {1}}, {"loss_fn_inputs", 3}}, "d").error().field(),
            "d.loss_fn_inputs");
  EXPECT_EQ(
      Datum::from_json(Json{{"model_input", {1}}, {"loss_fn_inputs", {{"weights", {0.5, "x"}}}}}, "d").error().field(),
      "d.loss_fn_inputs.weights[1]");
  EXPECT_EQ(next_token_datum({7}).model_input.length(), 0u);  // one token predicts nothing
}

}  // namespace
}  // namespace crucible::train
