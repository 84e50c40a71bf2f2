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

}  // namespace

std::string BlobStore::path_of(std::string_view hex) const {
  return dir_ + "/" + std::string(hex.substr(0, 2)) + "/" + std::string(hex);
}

Result<std::string> BlobStore::put(std::string_view bytes) {
  std::string hex = sha256_hex(bytes);
  std::string ref = std::string(kPrefix) + hex;
  std::string path = path_of(hex);
  if (std::filesystem::exists(path)) return ref;
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
  std::string text = value.dump();
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

}  // namespace crucible
