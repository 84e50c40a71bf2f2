// Whole-file writes that a crash never leaves half done: the one atomic file writer.
#pragma once

#include <string>
#include <string_view>

#include "crucible/core/error.h"

namespace crucible {

enum class FileDurability {
  kNone,              // atomic for readers; a crash may lose the new content
  kFile,              // the file's bytes are synced before it replaces the old one
  kFileAndDirectory,  // and the rename is synced too: the new file survives a crash
};

// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
// reader sees either the old content or all of the new. The directory must exist. Errors:
// kResourceExhausted when the disk is full, kUnavailable when the file cannot be created,
// kDataLoss when a write, sync or rename fails. On error the temporary file is removed.
[[nodiscard]] Status write_file_atomically(const std::string& path, std::string_view bytes,
                                           FileDurability durability = FileDurability::kFileAndDirectory);

}  // namespace crucible
