#include "crucible/core/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace crucible {
namespace {

Error os_error(ErrorCode code, const std::string& what, const std::string& path) {
  if (errno == ENOSPC || errno == EDQUOT) code = ErrorCode::kResourceExhausted;
  return Error(code, what + " " + path + ": " + std::strerror(errno));
}

Status write_all(int fd, std::string_view bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(os_error(ErrorCode::kDataLoss, "writing", path));
    done += static_cast<size_t>(n);
  }
  return {};
}

Status sync_directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(os_error(ErrorCode::kDataLoss, "opening directory", dir));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error(os_error(ErrorCode::kDataLoss, "syncing directory", dir));
  return {};
}

// Unique among the threads and processes that may write the same path at once.
std::string temporary_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
}

}  // namespace

Status write_file_atomically(const std::string& path, std::string_view bytes, FileDurability durability) {
  const std::string tmp = temporary_name(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(os_error(ErrorCode::kUnavailable, "creating", tmp));
  Status written = write_all(fd, bytes, tmp);
  if (written && durability != FileDurability::kNone && ::fsync(fd) != 0) {
    written = make_error(os_error(ErrorCode::kDataLoss, "syncing", tmp));
  }
  if (::close(fd) != 0 && written) written = make_error(os_error(ErrorCode::kDataLoss, "closing", tmp));
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0) {
    written = make_error(os_error(ErrorCode::kDataLoss, "renaming " + tmp + " to", path));
  }
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  if (durability == FileDurability::kFileAndDirectory) return sync_directory_of(path);
  return {};
}

}  // namespace crucible
