#include "crucible/http/client.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdlib>
#include <ctime>

namespace crucible::http {

// A multi handle with its one easy handle: the multi handle keeps the connection cache, and
// polling it lets a stop request wake the transfer at once.
struct Client::Handle {
  CURLM* multi = curl_multi_init();
  CURL* easy = curl_easy_init();
  ~Handle() {
    if (multi != nullptr && easy != nullptr) curl_multi_remove_handle(multi, easy);
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
  }
};

namespace {

constexpr size_t kIdleHandles = 16;

struct Transfer {
  CURL* curl = nullptr;
  const BodyFn* on_data = nullptr;
  Reply reply;
  bool aborted_by_reader = false;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 400 && t->on_data != nullptr && *t->on_data) {
    if (!(*t->on_data)(std::string_view(data, bytes))) {
      t->aborted_by_reader = true;
      return 0;
    }
    return bytes;
  }
  t->reply.body.append(data, bytes);
  return bytes;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or 100 Continue)
    t->reply.content_type.clear();
    t->reply.retry_after.reset();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = lower(line.substr(0, colon));
  std::string_view value = trim(line.substr(colon + 1));
  if (name == "retry-after") t->reply.retry_after = parse_retry_after(value);
  if (name == "content-type") t->reply.content_type = std::string(value);
  return size * n;
}

bool sends_body(const Request& r) {
  return !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
}

curl_slist* configure(CURL* curl, const Request& request, Transfer& t) {
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  // Only the web: no file://, ftp:// or gopher://, not even through a redirect.
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (sends_body(request)) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  return headers;
}

// Drives the transfer until it finishes or `stop` fires; a stop request wakes the poll at once.
CURLcode perform(CURLM* multi, std::stop_token stop, bool& cancelled) {
  std::stop_callback wake(stop, [multi] { curl_multi_wakeup(multi); });
  int running = 1;
  while (true) {
    if (curl_multi_perform(multi, &running) != CURLM_OK) return CURLE_FAILED_INIT;
    if (running == 0) break;
    if (stop.stop_requested()) {
      cancelled = true;
      return CURLE_ABORTED_BY_CALLBACK;
    }
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  CURLcode result = CURLE_OK;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
    if (msg->msg == CURLMSG_DONE) result = msg->data.result;
  }
  return result;
}

}  // namespace

std::optional<ErrorCode> error_code_for_status(long status) {
  if (status < 400) return std::nullopt;
  if (status == 429) return ErrorCode::kResourceExhausted;
  if (status >= 500) return ErrorCode::kUnavailable;
  switch (status) {
    case 400:
    case 413:
    case 422: return ErrorCode::kInvalidArgument;
    case 401: return ErrorCode::kUnauthenticated;
    case 403: return ErrorCode::kPermissionDenied;
    case 404: return ErrorCode::kNotFound;
    case 408: return ErrorCode::kDeadlineExceeded;
    default: return ErrorCode::kUnknown;
  }
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) {
  std::string text(trim(value));
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  double seconds = std::strtod(text.c_str(), &end);
  if (end != text.c_str() && *end == '\0') {
    if (seconds < 0 || seconds > 86400.0 * 365) return std::nullopt;
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  time_t at = curl_getdate(text.c_str(), nullptr);
  if (at < 0) return std::nullopt;
  time_t now = std::time(nullptr);
  return std::chrono::milliseconds(at > now ? static_cast<int64_t>(at - now) * 1000 : 0);
}

Error status_error(const Request& request, const Reply& reply) {
  const std::string& body = reply.body;
  Error e(error_code_for_status(reply.status).value_or(ErrorCode::kUnknown),
          request.method + " " + request.url + " returned HTTP " + std::to_string(reply.status) +
              (body.empty() ? "" : ": " + body.substr(0, 300)));
  if (reply.retry_after) e.with_retry_after(*reply.retry_after);
  return e;
}

Client::Client() {
  static const bool initialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)initialized;
}

Client::~Client() = default;

std::unique_ptr<Client::Handle> Client::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  if (h->multi == nullptr || h->easy == nullptr) return nullptr;
  return h;
}

void Client::release(std::unique_ptr<Handle> handle) {
  std::lock_guard lock(mu_);
  if (idle_.size() < kIdleHandles) idle_.push_back(std::move(handle));
}

Result<Reply> Client::send(const Request& request, const BodyFn& on_data, std::stop_token stop) {
  const std::string what = request.method + " " + request.url;
  if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, what + ": cancelled before it was sent");
  std::unique_ptr<Handle> h = acquire();
  if (h == nullptr) return make_error(ErrorCode::kResourceExhausted, "cannot create an HTTP handle");
  curl_easy_reset(h->easy);
  Transfer t;
  t.curl = h->easy;
  t.on_data = &on_data;
  curl_slist* headers = configure(h->easy, request, t);
  curl_multi_add_handle(h->multi, h->easy);
  bool cancelled = false;
  CURLcode rc = perform(h->multi, stop, cancelled);
  curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &t.reply.status);
  curl_multi_remove_handle(h->multi, h->easy);  // closes the connection of an unfinished transfer
  curl_slist_free_all(headers);
  if (rc == CURLE_OK) {
    release(std::move(h));
    return std::move(t.reply);
  }
  if (cancelled) return make_error(ErrorCode::kCancelled, what + " was cancelled and its transfer aborted");
  if (t.aborted_by_reader)
    return make_error(ErrorCode::kAborted, what + ": the response stream was abandoned by its reader");
  if (rc == CURLE_UNSUPPORTED_PROTOCOL) {
    return make_error(ErrorCode::kInvalidArgument, what +
                                                       ": only http:// and https:// URLs are fetched (redirects "
                                                       "included)");
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return make_error(ErrorCode::kDeadlineExceeded,
                      what + ": no complete answer within " + std::to_string(request.timeout.count()) + " ms");
  }
  return make_error(ErrorCode::kUnavailable, what + ": network error: " + curl_easy_strerror(rc));
}

}  // namespace crucible::http
