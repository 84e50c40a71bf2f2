#include "crucible/journal/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crucible/core/file.h"
#include "crucible/core/hash.h"

namespace crucible {
namespace {

constexpr std::string_view kPrefix = "sha256:";

bool is_hex_digest(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::string BlobStore::path_of(std::string_view hex) const {
  return dir_ + "/" + std::string(hex.substr(0, 2)) + "/" + std::string(hex);
}

Result<std::string> BlobStore::put(std::string_view bytes) {
  std::string hex = sha256_hex(bytes);
  std::string ref = std::string(kPrefix) + hex;
  std::string path = path_of(hex);
  if (std::filesystem::exists(path)) {
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // stored again: a sweep keeps it a while
    return ref;
  }
  std::error_code ec;
  std::string sub = dir_ + "/" + hex.substr(0, 2);
  std::filesystem::create_directories(sub, ec);
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot create " + sub + ": " + ec.message());
  CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(path, bytes, FileDurability::kFileAndDirectory));
  return ref;
}

Result<std::string> BlobStore::get(std::string_view ref) {
  if (ref.substr(0, kPrefix.size()) != kPrefix || ref.size() != kPrefix.size() + 64) {
    return make_error(ErrorCode::kInvalidArgument, "not a blob reference: " + std::string(ref));
  }
  std::string hex(ref.substr(kPrefix.size()));
  std::ifstream in(path_of(hex), std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "blob " + std::string(ref) + " is missing from " + dir_);
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string bytes = buf.str();
  if (sha256_hex(bytes) != hex) {
    return make_error(ErrorCode::kDataLoss, "blob " + std::string(ref) + " is corrupt");
  }
  return bytes;
}

Result<Json> externalize(const Json& value, BlobStore& blobs, size_t threshold) {
  if (!value.is_string() && !value.is_array() && !value.is_object()) return value;
  std::string text = json_dump(value);
  if (text.size() <= threshold) return value;
  CRUCIBLE_ASSIGN_OR_RETURN(auto ref, blobs.put(text));
  return Json{{"$blob", ref}};
}

Result<Json> internalize(const Json& value, BlobStore& blobs) {
  if (!value.is_object() || value.size() != 1 || !value.contains("$blob") || !value["$blob"].is_string()) {
    return value;
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto bytes, blobs.get(value["$blob"].get<std::string>()));
  return parse_json(bytes);
}

Result<BlobStore::Sweep> BlobStore::sweep(const std::unordered_set<std::string>& live,
                                          std::chrono::milliseconds grace) {
  namespace fs = std::filesystem;
  Sweep result;
  std::error_code ec;
  if (!fs::exists(dir_, ec)) return result;
  const auto cutoff = fs::file_time_type::clock::now() - grace;
  for (const fs::directory_entry& sub : fs::directory_iterator(dir_, ec)) {
    const std::string prefix = sub.path().filename().string();
    if (!sub.is_directory(ec) || prefix.size() != 2) continue;  // e.g. llm-cache/, the cache's index
    for (const fs::directory_entry& f : fs::directory_iterator(sub.path(), ec)) {
      const std::string name = f.path().filename().string();
      const bool blob = is_hex_digest(name) && name.starts_with(prefix);
      const bool temporary = !blob && is_hex_digest(name.substr(0, 64)) && name.find(".tmp.") == 64;
      if ((!blob && !temporary) || (blob && live.contains(name))) continue;
      std::error_code fe;
      auto mtime = f.last_write_time(fe);
      if (fe || mtime > cutoff) continue;
      auto size = f.file_size(fe);
      if (fe) continue;
      if (!fs::remove(f.path(), fe) || fe) {
        return make_error(ErrorCode::kUnavailable, "cannot remove blob " + f.path().string() + ": " + fe.message());
      }
      ++result.removed;
      result.bytes_freed += static_cast<int64_t>(size);
    }
  }
  if (ec) return make_error(ErrorCode::kUnavailable, "cannot list blobs in " + dir_ + ": " + ec.message());
  return result;
}

void collect_blob_refs(std::string_view text, std::unordered_set<std::string>& out) {
  for (size_t at = text.find(kPrefix); at != std::string_view::npos; at = text.find(kPrefix, at + 1)) {
    std::string_view hex = text.substr(at + kPrefix.size(), 64);
    if (is_hex_digest(hex)) out.emplace(hex);
  }
}

}  // namespace crucible
