#include "llm/http.h"

#include <curl/curl.h>

#include <cstdlib>

namespace crucible::llm {
namespace {

struct Transfer {
  CURL* curl = nullptr;
  const BodyFn* on_data = nullptr;
  std::stop_token stop;
  HttpReply reply;
  bool aborted_by_handler = false;
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 400 && t->on_data != nullptr && *t->on_data) {
    if (!(*t->on_data)(std::string_view(data, bytes))) {
      t->aborted_by_handler = true;
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
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string lower(line.substr(0, kName.size()));
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == kName) {
      std::string value(line.substr(kName.size()));
      char* end = nullptr;
      double seconds = std::strtod(value.c_str(), &end);
      if (end != value.c_str() && seconds >= 0) {
        t->reply.retry_after = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
      }
    }
  }
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->stop.stop_requested() ? 1 : 0;
}

}  // namespace

HttpClient::HttpClient() {
  static const bool initialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)initialized;
}

HttpClient::~HttpClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpClient::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpClient::release(void* handle) {
  std::lock_guard lock(mu_);
  if (idle_.size() < 16) {
    idle_.push_back(handle);
    return;
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

Result<HttpReply> HttpClient::post(const HttpPost& request, const BodyFn& on_data, std::stop_token stop) {
  if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "cancelled before the request was sent");
  CURL* curl = static_cast<CURL*>(acquire());
  if (curl == nullptr) return make_error(ErrorCode::kResourceExhausted, "cannot create an HTTP handle");
  curl_easy_reset(curl);
  Transfer t;
  t.curl = curl;
  t.on_data = &on_data;
  t.stop = stop;
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &t.reply.status);
  curl_slist_free_all(headers);
  if (rc == CURLE_OK) {
    release(curl);
    return std::move(t.reply);
  }
  // A failed transfer's connection is closed with its handle, so the server sees it go away.
  curl_easy_cleanup(curl);
  if (stop.stop_requested()) return make_error(ErrorCode::kCancelled, "the request was cancelled and its transfer aborted");
  if (t.aborted_by_handler) return make_error(ErrorCode::kAborted, "the response stream was abandoned by its reader");
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return make_error(ErrorCode::kDeadlineExceeded, "no complete answer from " + request.url + " within " +
                                                        std::to_string(request.timeout.count()) + " ms");
  }
  return make_error(ErrorCode::kUnavailable, "network error talking to " + request.url + ": " + curl_easy_strerror(rc));
}

}  // namespace crucible::llm
