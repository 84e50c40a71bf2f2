// Tokenizers, the dataset store and the checkpoint store on real files.
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "crucible/train/checkpoint.h"
#include "crucible/train/dataset.h"
#include "crucible/train/tokenizer.h"
#include "scratch_dir_test.h"

namespace crucible::train {
namespace {

namespace fs = std::filesystem;

class DataTest : public ScratchDirTest {
 protected:
  std::string file(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

TEST_F(DataTest, TheByteTokenizerRoundTripsAnyBytes) {
  auto t = byte_tokenizer();
  std::string text = "caf\xc3\xa9 \x01\xff";
  auto ids = t->encode(text);
  EXPECT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[3], 0xc3);
  EXPECT_EQ(*t->decode(ids), text);
  ids.push_back(t->eos_id());
  ids.push_back('x');
  EXPECT_EQ(*t->decode(ids), text);  // decoding stops at the end token
  EXPECT_EQ(t->vocab_size(), 257);
  auto bad = t->decode({65, 300});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("position 1"), std::string::npos);
  EXPECT_EQ((*open_tokenizer("bytes"))->name(), "bytes");
}

TEST_F(DataTest, ASentencePieceModelTrainsLoadsAndRoundTrips) {
  std::string corpus;
  for (int i = 0; i < 200; ++i) {
    corpus += "the quick brown fox jumps over the lazy dog " + std::to_string(i % 17) + "\n";
    corpus += "a journey of a thousand miles begins with a single step\n";
  }
  Status trained = train_sentencepiece(corpus, dir_ + "/sp", 64);
  if (!trained && trained.error().code() == ErrorCode::kUnavailable) GTEST_SKIP() << trained.error().message();
  ASSERT_TRUE(trained) << trained.error().to_string();
  auto t = open_tokenizer(dir_ + "/sp.model");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ((*t)->vocab_size(), 64);
  auto ids = (*t)->encode("the quick brown fox");
  EXPECT_LT(ids.size(), std::string("the quick brown fox").size());  // pieces, not bytes
  EXPECT_EQ(*(*t)->decode(ids), "the quick brown fox");
  EXPECT_FALSE((*t)->decode({1000}));
  auto not_a_model = open_sentencepiece(file("junk.model", "not a model"));
  ASSERT_FALSE(not_a_model);
  EXPECT_NE(not_a_model.error().message().find("junk.model"), std::string::npos);
}

TEST_F(DataTest, DatasetsLoadFromJsonlFortunesAndLines) {
  auto jsonl =
      DatasetStore::load(file("d.jsonl", "{\"prompt\": \"2+2\", \"completion\": \"4\"}\n\n{\"text\": \"x\"}\n"));
  ASSERT_TRUE(jsonl) << jsonl.error().to_string();
  EXPECT_EQ(jsonl->size(), 2u);
  EXPECT_EQ(*jsonl->at(0).text("completion"), "4");
  EXPECT_NE(jsonl->at(1).source.find("d.jsonl:3"), std::string::npos);
  auto missing = jsonl->at(1).text("prompt");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("d.jsonl:3"), std::string::npos);
  auto fortunes = DatasetStore::load(file("f", "First one.\n  -- someone\n%\nSecond\n%\n"));
  ASSERT_TRUE(fortunes);
  ASSERT_EQ(fortunes->size(), 2u);
  EXPECT_EQ(*fortunes->at(0).text(), "First one.\n  -- someone");
  EXPECT_NE(fortunes->at(1).source.find("f:4"), std::string::npos);
  auto lines = DatasetStore::load(file("l.txt", "alpha\n\nbeta\n"));
  ASSERT_TRUE(lines);
  EXPECT_EQ(lines->size(), 2u);
}

TEST_F(DataTest, BadDatasetsNameFileLineAndColumn) {
  auto bad = DatasetStore::load(file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": nope}\n"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("bad.jsonl:2:11:"), std::string::npos) << bad.error().message();
  auto array = DatasetStore::load(file("arr.jsonl", "[1, 2]\n"));
  ASSERT_FALSE(array);
  EXPECT_NE(array.error().message().find("arr.jsonl:1:1: expected a JSON object"), std::string::npos);
  auto empty = DatasetStore::load(file("empty.txt", "\n\n"));
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("holds no examples"), std::string::npos);
  EXPECT_EQ(DatasetStore::load(dir_ + "/absent.jsonl").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(DatasetStore::load_fortunes(dir_ + "/none").error().code(), ErrorCode::kNotFound);
}

TEST_F(DataTest, ShufflesSplitsAndBatchesAreDeterministic) {
  std::vector<Example> examples;
  for (int i = 0; i < 103; ++i) examples.push_back(Example{Json{{"text", std::to_string(i)}}, "x"});
  DatasetStore d(examples);
  EXPECT_EQ(d.order(5, 0), d.order(5, 0));
  EXPECT_NE(d.order(5, 0), d.order(5, 1));
  EXPECT_NE(d.order(5, 0), d.order(6, 0));
  std::vector<size_t> sorted = d.order(5, 3);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);  // a permutation
  // A fixed permutation, whatever the standard library: the first entries of seed 1, epoch 0.
  std::vector<size_t> first = d.order(1, 0);
  EXPECT_EQ(std::vector<size_t>(first.begin(), first.begin() + 4), (std::vector<size_t>{6, 27, 53, 62}));
  auto [train, eval] = d.split(10, 42);
  EXPECT_EQ(train.size(), 93u);
  EXPECT_EQ(eval.size(), 10u);
  auto [train2, eval2] = d.split(10, 42);
  for (size_t i = 0; i < eval.size(); ++i) EXPECT_EQ(eval.at(i).fields, eval2.at(i).fields);
  std::set<std::string> seen;
  for (const auto& e : train.examples()) seen.insert(e.fields["text"].get<std::string>());
  for (const auto& e : eval.examples()) EXPECT_FALSE(seen.count(e.fields["text"].get<std::string>()));
  EXPECT_EQ(d.batches_per_epoch(10), 10u);  // the last 3 are dropped
  std::set<const Example*> epoch;
  for (size_t b = 0; b < 10; ++b) {
    auto batch = d.batch(9, 2, b, 10);
    EXPECT_EQ(batch.size(), 10u);
    epoch.insert(batch.begin(), batch.end());
  }
  EXPECT_EQ(epoch.size(), 100u);  // no example twice in an epoch
}

TEST_F(DataTest, RealFortunesLoadWhenInstalled) {
  if (!fs::exists("/usr/share/games/fortunes")) GTEST_SKIP() << "Debian's fortunes package is not installed";
  auto d = DatasetStore::load_fortunes("/usr/share/games/fortunes", 20000);
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_GT(d->size(), 20u);
  EXPECT_FALSE(d->at(0).text()->empty());
}

TEST_F(DataTest, CheckpointsResumeFromTheNewestIntactState) {
  CheckpointStore store(dir_ + "/run");
  auto none = store.latest();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
  fs::create_directories(dir_ + "/run");
  for (int step = 10; step <= 40; step += 10) {
    CheckpointRecord r;
    r.name = "step-" + std::to_string(step);
    r.step = step;
    r.epoch = step / 30;
    r.batch = step % 30;
    r.state_path = file("run/state-" + std::to_string(step), "weights at " + std::to_string(step));
    r.loop = Json{{"rng", step * 7}};
    ASSERT_TRUE(store.append(r));
  }
  auto latest = store.latest();
  ASSERT_TRUE(latest);
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 40);
  EXPECT_EQ((*latest)->epoch, 1);
  EXPECT_EQ((*latest)->loop["rng"], 280);
  EXPECT_EQ((*latest)->state_sha256.size(), 64u);
  auto deleted = store.keep_last(2);
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->size(), 2u);
  EXPECT_FALSE(fs::exists(dir_ + "/run/state-10"));
  EXPECT_TRUE(fs::exists(dir_ + "/run/state-30"));
  auto all = store.records();
  ASSERT_TRUE(all);
  EXPECT_TRUE((*all)[0].pruned);
  EXPECT_FALSE((*all)[3].pruned);
  // A state file changed after its save is never resumed from.
  file("run/state-40", "tampered");
  auto damaged = store.latest();
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(damaged.error().message().find("SHA-256"), std::string::npos);
  // A damaged index line names the file and line.
  std::ofstream(store.index_path(), std::ios::app) << "{\"name\": \"x\"}\n";
  auto records = store.records();
  ASSERT_FALSE(records);
  EXPECT_NE(records.error().message().find("checkpoints.jsonl:5"), std::string::npos);
}

}  // namespace
}  // namespace crucible::train

namespace crucible::train {
namespace {

TEST_F(DataTest, AMissingStateAndAnEmptyFortunesFolderAreReported) {
  CheckpointStore store(dir_ + "/run");
  CheckpointRecord r;
  r.name = "a";
  r.state_path = file("state-a", "weights");
  ASSERT_TRUE(store.append(r));
  std::filesystem::remove(r.state_path);
  auto missing = store.latest();
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("is missing"), std::string::npos);
  std::filesystem::create_directories(dir_ + "/fortunes");
  file("fortunes/only.dat", "index");
  EXPECT_NE(DatasetStore::load_fortunes(dir_ + "/fortunes").error().message().find("holds no fortunes"),
            std::string::npos);
  EXPECT_EQ(file_sha256(dir_ + "/absent").error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace crucible::train
