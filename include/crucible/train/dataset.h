// Training examples from files, split and batched the same way on every machine: a JSONL file
// (one object per line), a fortune file (entries between lines holding only '%'), or plain text
// (one example per non-empty line). The order of an epoch is a permutation seeded by the seed and
// the epoch, so a resumed run sees exactly the batches the first one would have.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::train {

struct Example {
  Json fields;         // {"text": ...} for text files; the line's object for JSONL
  std::string source;  // "file:line" of its first line

  // fields[key] as a string; an error naming the source and the key otherwise.
  Result<std::string> text(const char* key = "text") const;
};

class DatasetStore {
 public:
  DatasetStore() = default;
  explicit DatasetStore(std::vector<Example> examples) : examples_(std::move(examples)) {}

  // By content: *.jsonl is JSONL; a text file with '%' lines is a fortune file; else lines.
  // A bad JSONL line is an error with file:line:column; an empty file is an error.
  static Result<DatasetStore> load(const std::string& path);
  // Every fortune file in a directory (Debian's /usr/share/games/fortunes), in name order.
  static Result<DatasetStore> load_fortunes(const std::string& dir, size_t max_chars = 0);

  size_t size() const { return examples_.size(); }
  const Example& at(size_t i) const { return examples_[i]; }
  const std::vector<Example>& examples() const { return examples_; }

  // A seeded shuffle, then the last `eval_count` examples form the second part.
  std::pair<DatasetStore, DatasetStore> split(size_t eval_count, uint64_t seed) const;
  // The order of the examples in `epoch`, a permutation fixed by (seed, epoch).
  std::vector<size_t> order(uint64_t seed, int64_t epoch) const;
  // Full batches per epoch: a last partial batch is dropped.
  size_t batches_per_epoch(size_t batch_size) const { return batch_size ? examples_.size() / batch_size : 0; }
  // Batch `index` of `epoch`; index must be < batches_per_epoch(batch_size).
  std::vector<const Example*> batch(uint64_t seed, int64_t epoch, size_t index, size_t batch_size) const;

 private:
  std::vector<Example> examples_;
};

}  // namespace crucible::train
