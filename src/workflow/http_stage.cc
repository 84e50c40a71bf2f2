#include "crucible/workflow/http_stage.h"

#include <curl/curl.h>

#include <chrono>
#include <cstring>
#include <mutex>

#include "crucible/workflow/loader.h"

namespace crucible {
namespace {

void ensure_curl_initialised() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Headers {
  std::string retry_after;
  std::string content_type;
};

size_t read_header(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto* h = static_cast<Headers*>(out);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(value.begin());
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    if (name == "retry-after") h->retry_after = value;
    if (name == "content-type") h->content_type = value;
  }
  return size * n;
}

class HttpRequestStage : public Stage {
 public:
  StageDescription describe() const override {
    StageDescription d;
    d.name = "http.request";
    d.summary = "sends one HTTP request (libcurl); a cancelled request closes its connection";
    d.options = {{"url", "string", true, Json(), "the URL"},
                 {"method", "string", false, "GET", "GET, POST, PUT, PATCH or DELETE"},
                 {"headers", "object", false, Json(), "request headers"},
                 {"body", "any", false, Json(), "a string, or a JSON value sent as application/json"},
                 {"timeout", "duration", false, "30s", "the whole transfer"}};
    d.outputs = {"artifact <stage>: {status, body, duration_ms}", "metric <stage>.status"};
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    auto url = o.string("url");
    if (!url) return tl::unexpected(url.error());
    std::string method = o.string_or("method", "GET");
    std::chrono::milliseconds timeout{30'000};
    if (const Json* t = o.get("timeout")) {
      auto d = t->is_string() ? parse_duration(t->get<std::string>()) : std::nullopt;
      if (t->is_number()) d = std::chrono::milliseconds(static_cast<int64_t>(t->get<double>() * 1000));
      if (!d) return make_error(ErrorCode::kInvalidArgument, "option 'timeout' must be a duration, got " + t->dump());
      timeout = *d;
    }
    ensure_curl_initialised();
    CURL* easy = curl_easy_init();
    CURLM* multi = curl_multi_init();
    curl_slist* headers = nullptr;
    std::string body, response;
    Headers got;
    bool json_body = false;
    if (const Json* b = o.get("body"); b != nullptr && !b->is_null()) {
      json_body = !b->is_string();
      body = b->is_string() ? b->get<std::string>() : b->dump();
    }
    if (json_body) headers = curl_slist_append(headers, "Content-Type: application/json");
    if (const Json* h = o.get("headers"); h != nullptr && h->is_object()) {
      for (const auto& [k, v] : h->items()) {
        headers = curl_slist_append(headers, (k + ": " + (v.is_string() ? v.get<std::string>() : v.dump())).c_str());
      }
    }
    curl_easy_setopt(easy, CURLOPT_URL, url->c_str());
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &got);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(multi, easy);

    auto t0 = std::chrono::steady_clock::now();
    int running = 1;
    bool cancelled = false;
    while (running > 0) {
      curl_multi_perform(multi, &running);
      if (running == 0) break;
      if (stop.stop_requested()) {
        cancelled = true;
        break;
      }
      curl_multi_poll(multi, nullptr, 0, 20, nullptr);
    }
    CURLcode result = CURLE_OK;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg == CURLMSG_DONE) result = msg->data.result;
    }
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(multi, easy);  // closes the connection of an unfinished transfer
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();

    if (cancelled) return make_error(ErrorCode::kCancelled, method + " " + *url + " was cancelled; the connection was closed");
    if (result == CURLE_OPERATION_TIMEDOUT) {
      return make_error(ErrorCode::kDeadlineExceeded, method + " " + *url + " timed out after " + std::to_string(timeout.count()) + " ms");
    }
    if (result != CURLE_OK) {
      return make_error(ErrorCode::kUnavailable, method + " " + *url + ": " + curl_easy_strerror(result));
    }
    if (auto code = http_status_code(status)) {
      Error e(*code, method + " " + *url + " returned HTTP " + std::to_string(status) + ": " + response.substr(0, 300));
      if (!got.retry_after.empty()) {
        try {
          e.with_retry_after(std::chrono::milliseconds(static_cast<int64_t>(std::stod(got.retry_after) * 1000)));
        } catch (const std::exception&) {
        }
      }
      return make_error(e);
    }
    Json parsed = got.content_type.find("json") != std::string::npos ? Json::parse(response, nullptr, false) : Json(response);
    if (parsed.is_discarded()) parsed = Json(response);
    const std::string& name = ctx.current_stage().empty() ? std::string("http.request") : ctx.current_stage();
    ctx.put_artifact(name, Json{{"status", status}, {"body", parsed}, {"duration_ms", ms}});
    ctx.put_metric(name + ".status", status);
    return {};
  }
};

}  // namespace

std::optional<ErrorCode> http_status_code(long status) {
  if (status < 400) return std::nullopt;
  if (status == 429) return ErrorCode::kResourceExhausted;
  if (status >= 500) return ErrorCode::kUnavailable;
  if (status == 401) return ErrorCode::kUnauthenticated;
  if (status == 403) return ErrorCode::kPermissionDenied;
  if (status == 404) return ErrorCode::kNotFound;
  if (status == 408) return ErrorCode::kDeadlineExceeded;
  return ErrorCode::kInvalidArgument;
}

std::unique_ptr<Stage> make_http_request_stage() { return std::make_unique<HttpRequestStage>(); }

}  // namespace crucible
