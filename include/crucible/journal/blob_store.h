// A content-addressed store for large values, kept in a directory beside the journal. The journal
// stores {"$blob": "sha256:<hex>"} in place of a value larger than the threshold.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <unordered_set>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

class BlobStore {
 public:
  // `dir` is created on first put.
  explicit BlobStore(std::string dir) : dir_(std::move(dir)) {}

  // Stores the bytes durably (temporary file, fsync, rename, fsync of the directory) and returns
  // "sha256:<hex>". Storing the same bytes again only refreshes the file's time, which sweep
  // reads as "stored just now".
  [[nodiscard]] Result<std::string> put(std::string_view bytes);
  // kNotFound if absent; kDataLoss if the content does not match its hash.
  [[nodiscard]] Result<std::string> get(std::string_view ref);
  const std::string& dir() const { return dir_; }

  struct Sweep {
    size_t removed = 0;
    int64_t bytes_freed = 0;
  };
  // Deletes every blob whose hex digest is not in `live` and that was stored longer than `grace`
  // ago, and temporary files that old (left by a crash mid-put). Other files are left alone.
  [[nodiscard]] Result<Sweep> sweep(const std::unordered_set<std::string>& live, std::chrono::milliseconds grace);

 private:
  std::string path_of(std::string_view hex) const;
  std::string dir_;
};

// Values whose JSON text is larger than this go to the blob store.
inline constexpr size_t kDefaultBlobThreshold = 64 * 1024;

// Replaces `value` by a blob reference when its serialisation exceeds `threshold`.
[[nodiscard]] Result<Json> externalize(const Json& value, BlobStore& blobs, size_t threshold);
// Resolves a blob reference produced by externalize; other values are returned unchanged.
[[nodiscard]] Result<Json> internalize(const Json& value, BlobStore& blobs);

// Adds to `out` the hex digest of every "sha256:<64 hex>" in `text` (journal rows, cache
// indexes): what a sweep must keep. A digest that only looks like a reference keeps a blob too.
void collect_blob_refs(std::string_view text, std::unordered_set<std::string>& out);

}  // namespace crucible
