#include "crucible/train/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sstream>

namespace crucible::train {

namespace {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (char c : text) ids.push_back(static_cast<unsigned char>(c));
    return ids;
  }
  Result<std::string> decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == kEos) break;
      if (ids[i] < 0 || ids[i] > 255) {
        return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(ids[i]) + " at position " +
                                                           std::to_string(i) + " is not a byte (0-255) or the end (256)");
      }
      out.push_back(static_cast<char>(ids[i]));
    }
    return out;
  }
  int vocab_size() const override { return 257; }
  int32_t eos_id() const override { return kEos; }
  std::string name() const override { return "bytes"; }

 private:
  static constexpr int32_t kEos = 256;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::string path) : path_(std::move(path)) {}
  Status load() {
    auto s = sp_.Load(path_);
    if (!s.ok()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "tokenizer '" + path_ + "' is not a SentencePiece model: " + std::string(s.message()));
    }
    return {};
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    (void)sp_.Encode(text, &ids);
    return {ids.begin(), ids.end()};
  }
  Result<std::string> decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == eos_id()) break;
      if (ids[i] < 0 || ids[i] >= vocab_size()) {
        return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(ids[i]) + " at position " +
                                                           std::to_string(i) + " is outside the vocabulary of " +
                                                           std::to_string(vocab_size()));
      }
      in.push_back(ids[i]);
    }
    std::string out;
    auto s = sp_.Decode(in, &out);
    if (!s.ok()) return make_error(ErrorCode::kInvalidArgument, "cannot decode: " + std::string(s.message()));
    return out;
  }
  int vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

// Feeds the trainer the lines of a string.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) : in_(text) { Next(); }
  bool done() const override { return done_; }
  void Next() override { done_ = !std::getline(in_, line_); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::istringstream in_;
  std::string line_;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

Result<std::unique_ptr<Tokenizer>> open_sentencepiece(const std::string& model_path) {
  auto t = std::make_unique<SentencePieceTokenizer>(model_path);
  CRUCIBLE_RETURN_IF_ERROR(t->load());
  return std::unique_ptr<Tokenizer>(std::move(t));
}

Status train_sentencepiece(const std::string& text, const std::string& prefix, int vocab_size,
                           const std::string& model_type) {
  LineIterator lines(text);
  auto s = sentencepiece::SentencePieceTrainer::Train(
      {{"model_prefix", prefix},
       {"vocab_size", std::to_string(vocab_size)},
       {"model_type", model_type},
       {"character_coverage", "1.0"},
       {"num_threads", "1"},
       {"minloglevel", "2"}},
      &lines);
  if (!s.ok()) {
    return make_error(ErrorCode::kInvalidArgument, "training a SentencePiece model at '" + prefix +
                                                       ".model' failed: " + std::string(s.message()));
  }
  return {};
}

Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& spec) {
  if (spec.empty() || spec == "bytes") return byte_tokenizer();
  return open_sentencepiece(spec);
}

}  // namespace crucible::train
