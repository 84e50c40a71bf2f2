// A cpp-httplib server on 127.0.0.1 and an ephemeral port, for tests and benchmarks: register
// routes on server(), then start(); the destructor stops it and joins its thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>

#include "crucible/core/listen_backlog.h"

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
    widen_listen_backlog(port_);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace crucible::testing
