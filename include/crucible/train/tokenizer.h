// Text to token ids and back. Byte-level by default (no model file, every string encodes);
// SentencePiece when a model file is given.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"

namespace crucible::train {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids outside the vocabulary are an error naming the position.
  virtual Result<std::string> decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  // The id that ends a sequence (a sampler's stop token).
  virtual int32_t eos_id() const = 0;
  // "bytes", or "sentencepiece:<model path>".
  virtual std::string name() const = 0;
};

// Bytes 0..255 are their own ids; 256 ends a sequence. Vocabulary 257.
std::unique_ptr<Tokenizer> byte_tokenizer();

// A SentencePiece model file (trained with spm_train, or train_sentencepiece below).
Result<std::unique_ptr<Tokenizer>> open_sentencepiece(const std::string& model_path);

// Trains a SentencePiece model on `text` (one sentence per line) into `<prefix>.model`.
[[nodiscard]] Status train_sentencepiece(const std::string& text, const std::string& prefix, int vocab_size,
                                         const std::string& model_type = "bpe");

// "bytes" (or empty) for byte_tokenizer, otherwise a SentencePiece model path.
Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& spec);

}  // namespace crucible::train
