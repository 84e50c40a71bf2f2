// The libtorch back end through the training client: it learns, accumulates gradients, resumes
// bit for bit from a checkpoint, is deterministic for a seed, and refuses bad input clearly.
#include "crucible/train/torch_backend.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "crucible/train/tokenizer.h"
#include "scratch_dir_test.h"

namespace crucible::train {
namespace {

namespace fs = std::filesystem;

class TorchBackendTest : public ScratchDirTest {
 protected:
  TransformerOptions small(uint64_t seed = 3) {
    TransformerOptions o;
    o.context = 32;
    o.width = 32;
    o.depth = 1;
    o.heads = 2;
    o.seed = seed;
    o.threads = 1;
    o.dir = dir_;
    return o;
  }
  std::unique_ptr<TrainingClient> client(const TransformerOptions& o) {
    auto backend = make_torch_backend(o);
    EXPECT_TRUE(backend) << backend.error().to_string();
    return std::make_unique<TrainingClient>(std::move(*backend));
  }
  static std::vector<Datum> text_batch() {
    auto t = byte_tokenizer();
    std::vector<Datum> batch;
    for (const char* s : {"the cat sat on the mat", "the dog sat on the log", "a cat and a dog"}) {
      batch.push_back(next_token_datum(t->encode(s)));
    }
    return batch;
  }
  static double loss_of(TrainingClient& c) {
    auto out = c.forward(text_batch(), LossFn::kCrossEntropy).get();
    EXPECT_TRUE(out);
    return out ? out->metrics.at("loss:sum") : 0.0;
  }
  static AdamParams adam() {
    AdamParams a;
    a.learning_rate = 3e-3;
    a.eps = 1e-8;
    return a;
  }
};

TEST_F(TorchBackendTest, TheTransformerLearnsText) {
  auto c = client(small());
  const double before = loss_of(*c);
  for (int step = 0; step < 40; ++step) {
    auto fb = c->forward_backward(text_batch(), LossFn::kCrossEntropy);
    auto opt = c->optim_step(adam());
    ASSERT_TRUE(fb.get()) << fb.get().error().to_string();
    ASSERT_TRUE(opt.get()) << opt.get().error().to_string();
  }
  const double after = loss_of(*c);
  EXPECT_LT(after, before / 2) << "the loss fell from " << before << " to " << after;
  EXPECT_GT(transformer_parameters(small()), 10'000);
}

TEST_F(TorchBackendTest, TheSameSeedGivesTheSameModelAndAnotherDoesNot) {
  auto a = client(small(3));
  auto b = client(small(3));
  auto other = client(small(4));
  for (auto* c : {a.get(), b.get(), other.get()}) {
    for (int step = 0; step < 3; ++step) {
      ASSERT_TRUE(c->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
      ASSERT_TRUE(c->optim_step(adam()).get());
    }
  }
  auto la = a->forward(text_batch(), LossFn::kCrossEntropy).get();
  auto lb = b->forward(text_batch(), LossFn::kCrossEntropy).get();
  auto lo = other->forward(text_batch(), LossFn::kCrossEntropy).get();
  EXPECT_EQ(la->logprobs, lb->logprobs);
  EXPECT_NE(la->logprobs, lo->logprobs);
}

TEST_F(TorchBackendTest, GradientsAccumulateUntilOptimStep) {
  auto split = client(small());
  auto whole = client(small());
  std::vector<Datum> all = text_batch();
  ASSERT_TRUE(split->forward_backward({all[0]}, LossFn::kCrossEntropy).get());
  ASSERT_TRUE(split->forward_backward({all[1], all[2]}, LossFn::kCrossEntropy).get());
  ASSERT_TRUE(whole->forward_backward(all, LossFn::kCrossEntropy).get());
  auto s = split->optim_step(adam()).get();
  auto w = whole->optim_step(adam()).get();
  ASSERT_TRUE(s && w);
  EXPECT_NEAR(s->metrics.at("grad_norm"), w->metrics.at("grad_norm"), 1e-4 * w->metrics.at("grad_norm"));
  auto ls = split->forward(all, LossFn::kCrossEntropy).get();
  auto lw = whole->forward(all, LossFn::kCrossEntropy).get();
  for (size_t i = 0; i < all.size(); ++i) {
    for (size_t t = 0; t < ls->logprobs[i].size(); ++t) EXPECT_NEAR(ls->logprobs[i][t], lw->logprobs[i][t], 1e-4);
  }
}

// Saved after three steps, a fresh client restores weights and Adam moments and takes the same
// fourth step, bit for bit.
TEST_F(TorchBackendTest, AStateCheckpointResumesBitForBit) {
  auto a = client(small());
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(a->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
    ASSERT_TRUE(a->optim_step(adam()).get());
  }
  auto path = a->save_state("step-3").get();
  ASSERT_TRUE(path) << path.error().to_string();
  auto b = client(small());
  ASSERT_TRUE(b->load_state_with_optimizer(*path).get());
  for (auto* c : {a.get(), b.get()}) {
    ASSERT_TRUE(c->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
    auto opt = c->optim_step(adam()).get();
    ASSERT_TRUE(opt);
    EXPECT_EQ(opt->metrics.at("step"), 4);
  }
  EXPECT_EQ(a->forward(text_batch(), LossFn::kCrossEntropy).get()->logprobs,
            b->forward(text_batch(), LossFn::kCrossEntropy).get()->logprobs);
  // Weights only: the same weights, a fresh optimizer, a different next step.
  auto c = client(small());
  ASSERT_TRUE(c->load_state(*path).get());
  ASSERT_TRUE(c->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
  EXPECT_EQ(c->optim_step(adam()).get()->metrics.at("step"), 1);
}

TEST_F(TorchBackendTest, ACustomLossMatchesTheBuiltInGradient) {
  auto builtin = client(small());
  auto custom = client(small());
  ASSERT_TRUE(builtin->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
  ASSERT_TRUE(
      custom
          ->forward_backward_custom(text_batch(),
                                    [](const std::vector<Datum>& data, const std::vector<std::vector<float>>& lp) {
                                      return builtin_loss(LossFn::kCrossEntropy, data, lp);
                                    })
          .get());
  auto g1 = builtin->optim_step(adam()).get();
  auto g2 = custom->optim_step(adam()).get();
  EXPECT_NEAR(g1->metrics.at("grad_norm"), g2->metrics.at("grad_norm"), 1e-5 * g1->metrics.at("grad_norm"));
}

TEST_F(TorchBackendTest, TheSamplerContinuesWhatItLearned) {
  auto c = client(small());
  auto t = byte_tokenizer();
  std::vector<Datum> batch{next_token_datum(t->encode("abcabcabcabcabcabcabcabc"))};
  AdamParams a = adam();
  a.learning_rate = 1e-2;
  for (int step = 0; step < 60; ++step) {
    ASSERT_TRUE(c->forward_backward(batch, LossFn::kCrossEntropy).get());
    ASSERT_TRUE(c->optim_step(a).get());
  }
  auto path = c->save_weights_for_sampler("s").get();
  ASSERT_TRUE(path);
  auto sampler = c->sampling_client(*path).get();
  ASSERT_TRUE(sampler) << sampler.error().to_string();
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_tokens = 6;
  auto out = (*sampler)->sample(ModelInput{t->encode("abcab")}, 1, greedy);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(*t->decode(out->sequences[0].tokens), "cabcab");
  SamplingParams seeded;
  seeded.seed = 5;
  seeded.max_tokens = 8;
  seeded.stop_tokens = {'c'};
  auto x = (*sampler)->sample(ModelInput{t->encode("ab")}, 2, seeded);
  auto y = (*sampler)->sample(ModelInput{t->encode("ab")}, 2, seeded);
  ASSERT_TRUE(x && y);
  EXPECT_EQ(x->sequences[0].tokens, y->sequences[0].tokens);
  EXPECT_EQ(x->sequences[0].stop_reason, StopReason::kStop);
  auto lp = (*sampler)->compute_logprobs(ModelInput{t->encode("abc")});
  ASSERT_TRUE(lp);
  EXPECT_EQ(lp->size(), 3u);
  EXPECT_GT((*lp)[2], std::log(0.5));
  auto after_ab = (*sampler)->sample(ModelInput{t->encode("ab")}, 1, greedy);
  ASSERT_TRUE(after_ab);
  EXPECT_NEAR((*lp)[2], after_ab->sequences[0].logprobs[0], 1e-5);  // 'c' after "ab", both ways
}

TEST_F(TorchBackendTest, BadInputAndCheckpointsAreClearErrors) {
  auto c = client(small());
  std::vector<int32_t> long_text(40, 'a');
  auto too_long = c->forward_backward({next_token_datum(long_text)}, LossFn::kCrossEntropy).get();
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().field(), "data[0].model_input");
  EXPECT_NE(too_long.error().message().find("1 to 32 tokens"), std::string::npos);
  auto out_of_vocab = c->forward({next_token_datum({1, 300})}, LossFn::kCrossEntropy).get();
  ASSERT_FALSE(out_of_vocab);
  EXPECT_EQ(out_of_vocab.error().field(), "data[0].loss_fn_inputs.target_tokens");
  EXPECT_EQ(c->load_state(dir_ + "/absent.pt").get().error().code(), ErrorCode::kNotFound);
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/junk.pt") << "not a checkpoint";
  EXPECT_EQ(c->load_state(dir_ + "/junk.pt").get().error().code(), ErrorCode::kDataLoss);
  TransformerOptions wider = small();
  wider.width = 64;
  auto other = client(wider);
  auto path = other->save_state("w").get();
  ASSERT_TRUE(path);
  auto mismatch = c->load_state(*path).get();
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().code(), ErrorCode::kFailedPrecondition);
  auto sampler_only = c->save_weights_for_sampler("s").get();
  ASSERT_TRUE(sampler_only);
  EXPECT_NE(c->load_state_with_optimizer(*sampler_only).get().error().message().find("holds weights only"),
            std::string::npos);
  TransformerOptions bad = small();
  bad.heads = 3;
  auto refused = make_torch_backend(bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "model.heads");
  EXPECT_EQ(TransformerOptions::from_json(Json{{"layers", 2}}, "model").error().field(), "model.layers");
}

}  // namespace
}  // namespace crucible::train

namespace crucible::train {
namespace {

TEST_F(TorchBackendTest, MalformedBatchesAreNamedBeforeAnyWork) {
  auto backend = make_torch_backend(small());
  ASSERT_TRUE(backend);
  TrainingBackend& b = **backend;
  Datum no_targets = next_token_datum({1, 2});
  no_targets.loss_fn_inputs.erase("target_tokens");
  EXPECT_EQ(b.forward({no_targets}).error().field(), "data[0].loss_fn_inputs.target_tokens");
  Datum rows = next_token_datum({1, 2, 3});
  rows.loss_fn_inputs["target_tokens"] = TensorData::of_ints({2});
  EXPECT_NE(b.forward({rows}).error().message().find("one row per input token"), std::string::npos);
  Datum soft = next_token_datum({1, 2});
  soft.loss_fn_inputs["target_tokens"] = TensorData::of_ints({2, 3}, 1, 2);
  EXPECT_NE(b.forward({next_token_datum({1, 2}), soft}).error().message().find("like data[0]"), std::string::npos);
  EXPECT_EQ(b.forward({next_token_datum({400, 2})}).error().field(), "data[0].model_input");
  Datum empty;
  empty.loss_fn_inputs["target_tokens"] = TensorData::of_ints({});
  EXPECT_EQ(b.forward({empty}).error().field(), "data[0].model_input");
}

TEST_F(TorchBackendTest, GradientsAreClippedToTheNorm) {
  auto c = client(small());
  ASSERT_TRUE(c->forward_backward(text_batch(), LossFn::kCrossEntropy).get());
  AdamParams clipped = adam();
  clipped.grad_clip_norm = 1e-3;
  auto out = c->optim_step(clipped).get();
  ASSERT_TRUE(out);
  EXPECT_GT(out->metrics.at("grad_norm"), 1e-3);  // the norm before clipping
  auto path = c->save_weights_for_sampler("s").get();
  ASSERT_TRUE(path);
  auto sampler = open_torch_sampler(*path, 1);
  ASSERT_TRUE(sampler);
  std::vector<int32_t> long_text(40, 'a');
  EXPECT_EQ((*sampler)->compute_logprobs(ModelInput{long_text}).error().field(), "tokens");
  EXPECT_EQ((*sampler)->compute_logprobs(ModelInput{{5}})->size(), 1u);
  SamplingParams p;
  p.max_tokens = 40;  // longer than the context: the window slides
  p.seed = 2;
  auto sampled = (*sampler)->sample(ModelInput{long_text}, 1, p);
  ASSERT_TRUE(sampled) << sampled.error().to_string();
  EXPECT_EQ(sampled->sequences[0].tokens.size(), 40u);
  EXPECT_EQ((*sampler)->sample(ModelInput{{900}}, 1, p).error().field(), "prompt[0]");
  EXPECT_EQ(TransformerOptions::from_json(Json{{"seed", -1}}, "m").error().field(), "m.seed");
  EXPECT_EQ(TransformerOptions::from_json(Json{{"width", 0}}, "m").error().field(), "m.width");
  EXPECT_EQ(TransformerOptions::from_json(Json(2), "m").error().field(), "m");
  auto parsed = TransformerOptions::from_json(Json{{"width", 48}, {"heads", 3}, {"threads", 1}}, "m");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->width, 48);
}

}  // namespace
}  // namespace crucible::train
