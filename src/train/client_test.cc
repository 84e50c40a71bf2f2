// The training client's contract on the bigram back end: futures in submission order, gradients
// that accumulate until optim_step, the custom-loss surrogate, checkpoints that restore exactly,
// and a sampler with logprobs and stop reasons.
#include "crucible/train/client.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "crucible/train/bigram.h"
#include "scratch_dir_test.h"

namespace crucible::train {
namespace {

namespace fs = std::filesystem;

class ClientTest : public ScratchDirTest {
 protected:
  // A client over a fresh bigram model; `backend` points at it for inspection.
  std::unique_ptr<TrainingClient> client(BigramBackend** backend = nullptr, uint64_t seed = 7, int vocab = 16) {
    auto b = std::make_unique<BigramBackend>(BigramOptions{vocab, seed, 0.02f, dir_});
    if (backend) *backend = b.get();
    return std::make_unique<TrainingClient>(std::move(b));
  }

  static std::vector<Datum> batch() {
    return {next_token_datum({1, 2, 3, 1, 2, 3, 1}), next_token_datum({4, 5, 6, 4, 5, 6}, 2)};
  }
};

TEST_F(ClientTest, CallsRunInSubmissionOrderAndTheLossFalls) {
  BigramBackend* backend = nullptr;
  auto c = client(&backend);
  AdamParams adam;
  adam.learning_rate = 0.1;
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    auto fb = c->forward_backward(batch(), LossFn::kCrossEntropy);
    auto opt = c->optim_step(adam);  // submitted before either is awaited
    ASSERT_TRUE(fb.get()) << fb.get().error().to_string();
    ASSERT_TRUE(opt.get());
    const double loss = fb.get()->metrics.at("loss:sum");
    if (step == 0) first = loss;
    last = loss;
    EXPECT_EQ(opt.get()->metrics.at("step"), step + 1);
  }
  EXPECT_LT(last, first / 3) << "the loss fell from " << first << " to " << last;
  auto calls = backend->calls();
  ASSERT_EQ(calls.size(), 60u);
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i], i % 2 == 0 ? "forward_backward" : "optim_step");
}

TEST_F(ClientTest, GradientsAccumulateUntilOptimStep) {
  // Two half batches then one step equal one full batch then one step.
  BigramBackend *split = nullptr, *whole = nullptr;
  auto a = client(&split);
  auto b = client(&whole);
  std::vector<Datum> all = batch();
  ASSERT_TRUE(a->forward_backward({all[0]}, LossFn::kCrossEntropy).get());
  ASSERT_TRUE(a->forward_backward({all[1]}, LossFn::kCrossEntropy).get());
  ASSERT_TRUE(b->forward_backward(all, LossFn::kCrossEntropy).get());
  ASSERT_TRUE(a->optim_step({}).get());
  auto stepped = b->optim_step({});
  ASSERT_TRUE(stepped.get());
  EXPECT_GT(stepped.get()->metrics.at("grad_norm"), 0);
  ASSERT_EQ(split->weights().size(), whole->weights().size());
  for (size_t i = 0; i < split->weights().size(); ++i) EXPECT_NEAR(split->weights()[i], whole->weights()[i], 1e-7);
}

TEST_F(ClientTest, ForwardChangesNothingAndReportsTheLoss) {
  BigramBackend* backend = nullptr;
  auto c = client(&backend);
  std::vector<float> before = backend->weights();
  auto out = c->forward(batch(), LossFn::kCrossEntropy);
  ASSERT_TRUE(out.get());
  EXPECT_EQ(out.get()->logprobs.size(), 2u);
  EXPECT_NEAR(out.get()->metrics.at("loss:sum"), 10 * std::log(16.0), 0.5);  // 10 weighted targets, near uniform
  ASSERT_TRUE(c->optim_step({}).get());
  EXPECT_EQ(backend->weights(), before);  // no gradient was accumulated
}

// The surrogate's gradient is the custom loss's: a custom cross-entropy steps exactly as the
// built-in one does.
TEST_F(ClientTest, ACustomLossStepsLikeTheBuiltInOne) {
  BigramBackend *builtin = nullptr, *custom = nullptr;
  auto a = client(&builtin);
  auto b = client(&custom);
  ASSERT_TRUE(a->forward_backward(batch(), LossFn::kCrossEntropy).get());
  auto out = b->forward_backward_custom(
      batch(), [](const std::vector<Datum>& data, const std::vector<std::vector<float>>& lp) -> Result<LossOutput> {
        auto ce = builtin_loss(LossFn::kCrossEntropy, data, lp);
        if (ce) ce->metrics["custom"] = 1;
        return ce;
      });
  ASSERT_TRUE(out.get()) << out.get().error().to_string();
  EXPECT_EQ(out.get()->metrics.at("custom"), 1);
  ASSERT_TRUE(a->optim_step({}).get());
  ASSERT_TRUE(b->optim_step({}).get());
  for (size_t i = 0; i < builtin->weights().size(); ++i) {
    EXPECT_NEAR(builtin->weights()[i], custom->weights()[i], 1e-7);
  }
  EXPECT_EQ(custom->calls(), (std::vector<std::string>{"forward", "forward_backward", "optim_step"}));
}

TEST_F(ClientTest, DpoThroughTheSurrogatePrefersTheChosenSequence) {
  auto c = client();
  // Chosen continues 1 -> 2, rejected 1 -> 3; the reference is the initial model.
  std::vector<Datum> pair{next_token_datum({1, 2, 2}, 1), next_token_datum({1, 3, 3}, 1)};
  auto ref = c->forward(pair, LossFn::kCrossEntropy).get();
  ASSERT_TRUE(ref);
  std::vector<std::vector<float>> reference = ref->logprobs;
  AdamParams adam;
  adam.learning_rate = 0.05;
  double accuracy = 0, first_loss = 0, loss = 0;
  for (int step = 0; step < 10; ++step) {
    auto out = c->forward_backward_custom(pair, [&](const std::vector<Datum>& data,
                                                    const std::vector<std::vector<float>>& lp) {
                  return dpo_loss(data, lp, reference, 0.1);
                }).get();
    ASSERT_TRUE(out) << out.error().to_string();
    ASSERT_TRUE(c->optim_step(adam).get());
    if (step == 0) first_loss = out->metrics.at("dpo_loss");
    loss = out->metrics.at("dpo_loss");
    accuracy = out->metrics.at("accuracy");
  }
  EXPECT_NEAR(first_loss, std::log(2.0), 1e-6);  // equal to the reference: -log sigmoid(0)
  EXPECT_LT(loss, first_loss);
  EXPECT_EQ(accuracy, 1.0);
}

TEST_F(ClientTest, AStateCheckpointRestoresWeightsAndOptimizerExactly) {
  BigramBackend *a_backend = nullptr, *b_backend = nullptr;
  auto a = client(&a_backend);
  AdamParams adam;
  adam.learning_rate = 0.05;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(a->forward_backward(batch(), LossFn::kCrossEntropy).get());
    ASSERT_TRUE(a->optim_step(adam).get());
  }
  auto path = a->save_state("step-3").get();
  ASSERT_TRUE(path) << path.error().to_string();
  EXPECT_TRUE(fs::exists(*path));
  // A different model resumes from the checkpoint and takes the same next step as the original.
  auto b = client(&b_backend, /*seed=*/99);
  ASSERT_TRUE(b->load_state_with_optimizer(*path).get());
  EXPECT_EQ(b_backend->step(), 3);
  for (auto* c : {a.get(), b.get()}) {
    ASSERT_TRUE(c->forward_backward(batch(), LossFn::kCrossEntropy).get());
    ASSERT_TRUE(c->optim_step(adam).get());
  }
  EXPECT_EQ(a_backend->weights(), b_backend->weights());
  // load_state takes the weights and starts a fresh optimizer.
  auto fresh = client(&b_backend, 5);
  ASSERT_TRUE(fresh->load_state(*path).get());
  EXPECT_EQ(b_backend->step(), 0);
}

TEST_F(ClientTest, BadCheckpointsAndNamesAreClearErrors) {
  auto c = client();
  auto missing = c->load_state(dir_ + "/nothing.bin").get();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto path = c->save_weights_for_sampler("w").get();
  ASSERT_TRUE(path);
  auto weights_only = c->load_state_with_optimizer(*path).get();
  ASSERT_FALSE(weights_only);
  EXPECT_NE(weights_only.error().message().find("holds weights only"), std::string::npos);
  {
    std::string bytes;
    {
      std::ifstream in(*path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(*path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 7);
  }
  auto truncated = c->load_state(*path).get();
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(truncated.error().message().find(*path), std::string::npos);
  auto bad_name = c->save_state("../escape").get();
  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().field(), "name");
  auto other_vocab = client(nullptr, 1, 32);
  auto state = c->save_state("s").get();
  ASSERT_TRUE(state);
  auto mismatch = other_vocab->load_state(*state).get();
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message().find("vocab 16"), std::string::npos);
}

TEST_F(ClientTest, AFailedCallFailsItsFutureAndTheNextCallsRun) {
  BigramBackend* backend = nullptr;
  auto c = client(&backend);
  backend->fail_next("forward_backward", Error(ErrorCode::kUnavailable, "the back end is restarting"));
  auto failed = c->forward_backward(batch(), LossFn::kCrossEntropy);
  auto next = c->forward_backward(batch(), LossFn::kCrossEntropy);
  ASSERT_FALSE(failed.get());
  EXPECT_EQ(failed.get().error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(next.get());
  std::vector<Datum> out_of_vocab{next_token_datum({1, 40})};
  auto bad = c->forward_backward(out_of_vocab, LossFn::kCrossEntropy).get();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "data[0].loss_fn_inputs.target_tokens");
  auto no_weights = next_token_datum({1, 2});
  no_weights.loss_fn_inputs.erase("weights");
  auto missing = c->forward_backward({no_weights}, LossFn::kCrossEntropy).get();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "data[0].loss_fn_inputs.weights");
}

TEST_F(ClientTest, TheSamplerIsSeededAndReportsLogprobsAndStops) {
  auto c = client();
  AdamParams adam;
  adam.learning_rate = 0.2;
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(c->forward_backward({next_token_datum({1, 2, 3, 1, 2, 3, 1, 2, 3})}, LossFn::kCrossEntropy).get());
    ASSERT_TRUE(c->optim_step(adam).get());
  }
  auto path = c->save_weights_for_sampler("s").get();
  ASSERT_TRUE(path);
  auto sampler = c->sampling_client(*path).get();
  ASSERT_TRUE(sampler) << sampler.error().to_string();
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_tokens = 5;
  auto g = (*sampler)->sample(ModelInput{{1}}, 1, greedy);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->sequences[0].tokens, (std::vector<int32_t>{2, 3, 1, 2, 3}));
  EXPECT_EQ(g->sequences[0].stop_reason, StopReason::kLength);
  SamplingParams stop = greedy;
  stop.stop_tokens = {3};
  auto s = (*sampler)->sample(ModelInput{{1}}, 1, stop);
  EXPECT_EQ(s->sequences[0].tokens, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(s->sequences[0].stop_reason, StopReason::kStop);
  SamplingParams seeded;
  seeded.seed = 11;
  seeded.max_tokens = 20;
  auto x = (*sampler)->sample(ModelInput{{1}}, 3, seeded);
  auto y = (*sampler)->sample(ModelInput{{1}}, 3, seeded);
  ASSERT_TRUE(x && y);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(x->sequences[i].tokens, y->sequences[i].tokens);
  auto lp = (*sampler)->compute_logprobs(ModelInput{{1, 2, 3}});
  ASSERT_TRUE(lp);
  ASSERT_EQ(lp->size(), 3u);
  EXPECT_EQ((*lp)[0], 0.0f);
  EXPECT_NEAR((*lp)[1], g->sequences[0].logprobs[0], 1e-6);
  EXPECT_GT((*lp)[1], std::log(0.5));  // it learned 1 -> 2
  EXPECT_FALSE((*sampler)->sample(ModelInput{}, 1, seeded));
  EXPECT_EQ((*sampler)->sample(ModelInput{{99}}, 1, seeded).error().field(), "prompt[0]");
}

}  // namespace
}  // namespace crucible::train

namespace crucible::train {
namespace {

TEST_F(ClientTest, ACustomLossThatBreaksTheContractIsAnError) {
  auto c = client();
  auto no_targets = next_token_datum({1, 2});
  no_targets.loss_fn_inputs.clear();
  auto missing = c->forward_backward_custom({no_targets}, [](const auto&, const auto&) -> Result<LossOutput> {
                    return LossOutput{};
                  }).get();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "data[0].loss_fn_inputs.target_tokens");
  auto too_few = c->forward_backward_custom(batch(), [](const auto&, const auto&) -> Result<LossOutput> {
                    return LossOutput{};
                  }).get();
  ASSERT_FALSE(too_few);
  EXPECT_NE(too_few.error().message().find("gradients for 0 sequences, not 2"), std::string::npos);
  auto short_grads = c->forward_backward_custom(batch(), [](const auto& data, const auto&) -> Result<LossOutput> {
                        LossOutput out;
                        out.grads.assign(data.size(), std::vector<float>{1.0f});
                        return out;
                      }).get();
  ASSERT_FALSE(short_grads);
  EXPECT_NE(short_grads.error().message().find("returned 1 gradients for sequence 0"), std::string::npos);
  auto failing = c->forward_backward_custom(batch(), [](const auto&, const auto&) -> Result<LossOutput> {
                    return make_error(ErrorCode::kInvalidArgument, "no reference logprobs");
                  }).get();
  ASSERT_FALSE(failing);
  EXPECT_EQ(failing.error().message(), "no reference logprobs");
}

TEST_F(ClientTest, TopKAndTopPCutTheDistribution) {
  auto c = client();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(c->forward_backward({next_token_datum({1, 2, 1, 2, 1, 2})}, LossFn::kCrossEntropy).get());
    ASSERT_TRUE(c->optim_step(AdamParams{0.2}).get());
  }
  auto sampler = *c->sampling_client(*c->save_weights_for_sampler("s").get()).get();
  for (SamplingParams p : {SamplingParams{}, SamplingParams{}}) {
    p.max_tokens = 1;
    p.seed = 1;
    p.top_k = 1;
    EXPECT_EQ(sampler->sample(ModelInput{{1}}, 5, p)->sequences[4].tokens, std::vector<int32_t>{2});
    p.top_k = -1;
    p.top_p = 0.05;
    EXPECT_EQ(sampler->sample(ModelInput{{1}}, 5, p)->sequences[3].tokens, std::vector<int32_t>{2});
  }
  SamplingParams any;
  any.max_tokens = 3;
  EXPECT_EQ(sampler->sample(ModelInput{{1}}, 2, any)->sequences.size(), 2u);
  EXPECT_EQ(sampler->sample(ModelInput{{1}}, 0, any).error().field(), "num_samples");
}

TEST_F(ClientTest, TheBackEndChecksWhatItIsGivenAndDamagedFiles) {
  BigramBackend backend(BigramOptions{16, 1, 0.02f, dir_});
  Datum no_targets = next_token_datum({1, 2});
  no_targets.loss_fn_inputs.erase("target_tokens");
  EXPECT_EQ(backend.forward({no_targets}).error().field(), "data[0].loss_fn_inputs.target_tokens");
  Datum mismatch = next_token_datum({1, 2, 3});
  mismatch.loss_fn_inputs["target_tokens"] = TensorData::of_ints({2});
  EXPECT_EQ(backend.forward({mismatch}).error().field(), "data[0].loss_fn_inputs.target_tokens");
  EXPECT_EQ(backend.forward({next_token_datum({30, 1})}).error().field(), "data[0].model_input");
  auto state = backend.save_state("s");
  ASSERT_TRUE(state);
  std::string bytes;
  {
    std::ifstream in(*state, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t header_end = bytes.find('\n', bytes.find('\n') + 1) + 1;
  std::ofstream(*state, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.find('\n') + 1) << "{}\n";
  EXPECT_NE(backend.load_state(*state, false).error().message().find("header"), std::string::npos);
  std::ofstream(*state, std::ios::binary | std::ios::trunc)
      << bytes.substr(0, header_end + 16 * 16 * sizeof(float) + 10);
  EXPECT_NE(backend.load_state(*state, true).error().message().find("fewer optimizer moments"), std::string::npos);
  std::ofstream(*state, std::ios::binary | std::ios::trunc) << bytes << "x";
  EXPECT_NE(backend.load_state(*state, true).error().message().find("bytes after"), std::string::npos);
  std::ofstream(*state, std::ios::binary | std::ios::trunc) << "something else\n";
  EXPECT_NE(backend.load_state(*state, true).error().message().find("does not start with"), std::string::npos);
}

}  // namespace
}  // namespace crucible::train
