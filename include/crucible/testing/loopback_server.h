// A cpp-httplib server on 127.0.0.1 and an ephemeral port, for tests and benchmarks: register
// routes on server(), then start(); the destructor stops it and joins its thread.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace crucible::testing {

class LoopbackServer {
 public:
  LoopbackServer() = default;
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;
  ~LoopbackServer() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }

  httplib::Server& server() { return server_; }

  // Binds, starts listening on a thread of its own and returns once the server accepts.
  void start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    widen_backlog();
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  // Debian's cpp-httplib is a compiled library that listens with a backlog of 5, so a burst of
  // connections (a benchmark's thousand clients) overflows it and waits for SYN retries. Listening
  // again on the bound socket raises the backlog; the socket is found by its port.
  void widen_backlog() {
    std::error_code ec;
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
          ntohs(addr.sin_port) != port_ || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen) != 0 ||
          accepting == 0) {
        continue;
      }
      ::listen(fd, SOMAXCONN);
    }
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace crucible::testing
