// The one HTTP client: blocking requests over libcurl with connection reuse through a handle
// pool, the response body streamed to a callback or kept, and abort as soon as a stop_token
// fires (the connection is closed, so the server sees the client go away). libcurl stays
// private to this module; the LLM adapters and the http.request stage share it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"

namespace crucible::http {

struct Request {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE, ...
  std::string url;
  std::vector<std::string> headers;            // "name: value"
  std::string body;                            // sent for POST, PUT and PATCH, and whenever it is not empty
  std::chrono::milliseconds timeout{120'000};  // the whole transfer
};

struct Reply {
  long status = 0;
  std::string body;  // the whole body, unless it was streamed to on_data (errors are always kept)
  std::string content_type;
  std::optional<std::chrono::milliseconds> retry_after;
};

// Receives the body of a successful (status < 400) response as it arrives; false aborts.
using BodyFn = std::function<bool(std::string_view)>;

// The canonical code of an HTTP error status, or nullopt below 400: 429 kResourceExhausted,
// 5xx kUnavailable, 401 kUnauthenticated, 403 kPermissionDenied, 404 kNotFound, 408
// kDeadlineExceeded, 400/413/422 kInvalidArgument, any other 4xx kUnknown.
std::optional<ErrorCode> error_code_for_status(long status);

// A Retry-After header value: delay seconds ("2", "1.5") or an HTTP date, as the delay from now.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value);

// "method url returned HTTP status: body..." with the status's code and the reply's Retry-After;
// for replies whose status error_code_for_status() maps.
Error status_error(const Request& request, const Reply& reply);

// Thread-safe; requests run on the calling thread, several at once.
class Client {
 public:
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // kCancelled when `stop` fired (the transfer is aborted at once), kDeadlineExceeded after the
  // timeout, kAborted when on_data returned false, kUnavailable for network failures. HTTP error
  // statuses are returned as replies.
  [[nodiscard]] Result<Reply> send(const Request& request, const BodyFn& on_data, std::stop_token stop);
  [[nodiscard]] Result<Reply> send(const Request& request, std::stop_token stop) { return send(request, {}, stop); }

 private:
  struct Handle;
  std::unique_ptr<Handle> acquire();
  void release(std::unique_ptr<Handle> handle);

  std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;  // guarded by mu_: handles keeping their connections
};

}  // namespace crucible::http
