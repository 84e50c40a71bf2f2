// A real HTTP server on 127.0.0.1 for tests: canned endpoints with delays, status codes and a
// record of requests whose client went away mid-answer.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "crucible/testing/loopback_server.h"

namespace crucible::testing {

class HttpTestServer {
 public:
  HttpTestServer() {
    httplib::Server& server = loopback_.server();
    server.Get("/ok", [this](const httplib::Request&, httplib::Response& res) {
      ++calls;
      res.set_content(R"({"answer": 42})", "application/json");
    });
    server.Post("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      ++calls;
      res.set_content(req.body, "text/plain");
    });
    server.Get("/status/(\\d+)", [this](const httplib::Request& req, httplib::Response& res) {
      ++calls;
      res.status = std::stoi(req.matches[1]);
      if (res.status == 429 || res.status == 503) res.set_header("Retry-After", "2");
      res.set_content("status " + std::string(req.matches[1]), "text/plain");
    });
    // Answers after `ms` milliseconds, streaming a byte every 10 ms; notices a closed connection.
    server.Get("/slow/(\\d+)", [this](const httplib::Request& req, httplib::Response& res) {
      ++calls;
      int ms = std::stoi(req.matches[1]);
      res.set_chunked_content_provider("text/plain", [this, ms](size_t, httplib::DataSink& sink) {
        for (int waited = 0; waited < ms; waited += 10) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          if (!sink.is_writable() || !sink.write(" ", 1)) {
            ++aborted;
            return false;
          }
        }
        sink.write("done", 4);
        sink.done();
        return true;
      });
    });
    loopback_.start();
  }

  std::string url(const std::string& path) const { return loopback_.url(path); }

  std::atomic<int> calls{0};
  std::atomic<int> aborted{0};

 private:
  LoopbackServer loopback_;
};

}  // namespace crucible::testing
