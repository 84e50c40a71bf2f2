#include "crucible/core/listen_backlog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace crucible {

bool widen_listen_backlog(int port) {
  std::error_code ec;
  bool found = false;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    int accepting = 0;
    socklen_t optlen = sizeof(accepting);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sin_family != AF_INET ||
        ntohs(addr.sin_port) != port || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen) != 0 ||
        accepting == 0) {
      continue;
    }
    found = ::listen(fd, SOMAXCONN) == 0 || found;
  }
  return found;
}

}  // namespace crucible
