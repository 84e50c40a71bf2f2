// The checkpoints of a training run: a local directory with one record per save in
// checkpoints.jsonl, after the cookbook. A record holds where the state and sampler weights went,
// their SHA-256, and the loop state a resume needs (step, epoch, batch within the epoch, tokens
// seen, anything else in `loop`). Resuming reads the newest record whose state is still there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::train {

struct CheckpointRecord {
  std::string name;
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;  // the epoch and batch the next step trains on
  int64_t batch = 0;
  int64_t elapsed_tokens = 0;
  std::string state_path;  // weights + optimizer; empty for a sampler-only save
  std::string state_sha256;
  std::string sampler_path;    // weights for sampling; may be empty
  bool final = false;          // the end of training: never pruned
  bool pruned = false;         // its files were deleted by keep-last-N
  Json loop = Json::object();  // more loop state (RNG, schedule position, ...)

  Json to_json() const;
  static Result<CheckpointRecord> from_json(const Json& j, const std::string& where);
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string index_path() const { return dir_ + "/checkpoints.jsonl"; }

  // Every record in order; none when the index does not exist. A damaged line is kDataLoss
  // naming file:line.
  Result<std::vector<CheckpointRecord>> records() const;
  // The newest record with a state that was not pruned; its state file must exist and match its
  // hash (kDataLoss otherwise: a resume never starts from a damaged file).
  Result<std::optional<CheckpointRecord>> latest() const;
  // Adds a record (hashing its state file), replacing the index atomically.
  [[nodiscard]] Status append(CheckpointRecord record);
  // Deletes the files of all but the newest `keep` periodic saves (final saves stay) and marks
  // their records pruned. Returns the deleted paths.
  Result<std::vector<std::string>> keep_last(size_t keep);

 private:
  [[nodiscard]] Status write(const std::vector<CheckpointRecord>& records) const;

  std::string dir_;
};

// SHA-256 hex of a file's bytes.
Result<std::string> file_sha256(const std::string& path);

}  // namespace crucible::train
