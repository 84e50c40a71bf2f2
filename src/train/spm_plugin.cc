// The SentencePiece plug-in (see spm_api.h): the only code that links libsentencepiece.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sstream>

#include "spm_api.h"

// Coverage is counted in the sanitizer build, which cannot load this plug-in (spm_api.h); the
// tokenizer tests run it in the plain build.
// GCOVR_EXCL_START
namespace crucible::train::internal {
namespace {

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

sentencepiece::SentencePieceProcessor* model_of(void* m) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(m);
}

void* open_model(const std::string& path, std::string* error) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto s = sp->Load(path);
  if (!s.ok()) {
    *error = std::string(s.message());
    delete sp;
    return nullptr;
  }
  return sp;
}

void close_model(void* m) { delete model_of(m); }

void encode(void* m, std::string_view text, std::vector<int>* ids) { (void)model_of(m)->Encode(text, ids); }

bool decode(void* m, const std::vector<int>& ids, std::string* text, std::string* error) {
  auto s = model_of(m)->Decode(ids, text);
  if (!s.ok()) *error = std::string(s.message());
  return s.ok();
}

int vocab_size(void* m) { return model_of(m)->GetPieceSize(); }
int eos_id(void* m) { return model_of(m)->eos_id(); }

bool train(const std::string& text, const std::string& prefix, int vocab, const std::string& type, std::string* error) {
  LineIterator lines(text);
  auto s = sentencepiece::SentencePieceTrainer::Train({{"model_prefix", prefix},
                                                       {"vocab_size", std::to_string(vocab)},
                                                       {"model_type", type},
                                                       {"character_coverage", "1.0"},
                                                       {"num_threads", "1"},
                                                       {"minloglevel", "2"}},
                                                      &lines);
  if (!s.ok()) *error = std::string(s.message());
  return s.ok();
}

const SpmApi kApi{open_model, close_model, encode, decode, vocab_size, eos_id, train};

}  // namespace
}  // namespace crucible::train::internal

extern "C" const crucible::train::internal::SpmApi* crucible_spm_api() { return &crucible::train::internal::kApi; }
// GCOVR_EXCL_STOP
