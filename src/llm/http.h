// A small blocking HTTP POST over libcurl for the provider adapters: connection reuse through a
// handle pool, streaming of the body to a callback, and abort when a stop_token fires (the
// connection is closed, so the server sees the client go away). Private to the llm module.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"

namespace crucible::llm {

struct HttpPost {
  std::string url;
  std::vector<std::string> headers;  // "name: value"
  std::string body;
  std::chrono::milliseconds timeout{120'000};
};

struct HttpReply {
  long status = 0;
  std::string body;  // the whole body, unless it was streamed to on_data (errors are always kept)
  std::optional<std::chrono::milliseconds> retry_after;
};

// Receives the body of a successful (status < 400) response as it arrives; false aborts.
using BodyFn = std::function<bool(std::string_view)>;

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // kCancelled when `stop` fired (the transfer is aborted), kDeadlineExceeded after the
  // timeout, kUnavailable for network failures. HTTP error statuses are returned as replies.
  Result<HttpReply> post(const HttpPost& request, const BodyFn& on_data, std::stop_token stop);

 private:
  void* acquire();
  void release(void* handle);

  std::mutex mu_;
  std::vector<void*> idle_;  // guarded by mu_: CURL easy handles keeping their connections
};

}  // namespace crucible::llm
