#include "crucible/stages/http_stage.h"

#include <chrono>

namespace crucible {
namespace {

using std::chrono::milliseconds;

Result<http::Request> build_request(const StageOptions& o) {
  http::Request r;
  CRUCIBLE_ASSIGN_OR_RETURN(auto url, o.string("url"));
  r.url = std::move(url);
  r.method = o.string_or("method", "GET");
  r.timeout = milliseconds(30'000);
  if (o.has("timeout")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto timeout, o.duration("timeout"));
    r.timeout = timeout;
  }
  if (const Json* b = o.get("body"); b != nullptr && !b->is_null()) {
    r.body = b->is_string() ? b->get<std::string>() : json_dump(*b);
    if (!b->is_string()) r.headers.push_back("Content-Type: application/json");
  }
  if (const Json* h = o.get("headers"); h != nullptr && h->is_object()) {
    for (const auto& [k, v] : h->items())
      r.headers.push_back(k + ": " + (v.is_string() ? v.get<std::string>() : json_dump(v)));
  }
  return r;
}

class HttpRequestStage : public Stage {
 public:
  explicit HttpRequestStage(std::shared_ptr<http::Client> client) : client_(std::move(client)) {}

  StageDescription describe() const override {
    StageDescription d;
    d.name = "http.request";
    d.summary = "sends one HTTP request; a cancelled request closes its connection";
    d.options = {{"url", "string", true, Json(), "the URL"},
                 {"method", "string", false, "GET", "GET, POST, PUT, PATCH or DELETE"},
                 {"headers", "object", false, Json(), "request headers"},
                 {"body", "any", false, Json(), "a string, or a JSON value sent as application/json"},
                 {"timeout", "duration", false, "30s", "the whole transfer"}};
    d.outputs = {"artifact <stage>: {status, body, duration_ms}", "metric <stage>.status"};
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    CRUCIBLE_ASSIGN_OR_RETURN(auto request, build_request(o));
    auto t0 = std::chrono::steady_clock::now();
    CRUCIBLE_ASSIGN_OR_RETURN(auto reply, client_->send(request, stop));
    if (http::error_code_for_status(reply.status)) return make_error(http::status_error(request, reply));
    int64_t ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
    Json parsed = reply.content_type.find("json") != std::string::npos ? parse_json_or_discarded(reply.body)
                                                                       : Json(valid_utf8(reply.body));
    if (parsed.is_discarded()) parsed = Json(valid_utf8(reply.body));  // a binary body keeps its text form
    const std::string& name = ctx.current_stage().empty() ? std::string("http.request") : ctx.current_stage();
    ctx.put_artifact(name, Json{{"status", reply.status}, {"body", std::move(parsed)}, {"duration_ms", ms}});
    ctx.put_metric(name + ".status", reply.status);
    return {};
  }

 private:
  std::shared_ptr<http::Client> client_;
};

}  // namespace

std::unique_ptr<Stage> make_http_request_stage(std::shared_ptr<http::Client> client) {
  if (client == nullptr) client = std::make_shared<http::Client>();
  return std::make_unique<HttpRequestStage>(std::move(client));
}

Status register_http_stages(StageRegistry& registry) {
  auto client = std::make_shared<http::Client>();
  return registry.register_stage("http.request", [client] { return make_http_request_stage(client); });
}

}  // namespace crucible
