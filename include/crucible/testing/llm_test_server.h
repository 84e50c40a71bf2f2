// A real HTTP server on 127.0.0.1 that speaks the Anthropic Messages API and the OpenAI chat
// completions API well enough to test the adapters: request checks, JSON answers, SSE streams,
// scripted failures (429 with Retry-After, 500, 529, dropped connections), slow answers that
// notice a client going away, and a log of every call.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crucible/testing/loopback_server.h"

namespace crucible::testing {

class LlmTestServer {
 public:
  using Json = nlohmann::json;

  // What the next call does; calls beyond the queue answer normally.
  struct Behavior {
    enum Kind { kAnswer, kStatus, kDrop, kRaw } kind = kAnswer;
    int status = 200;
    std::string error_type;                         // Anthropic error type, e.g. overloaded_error
    int retry_after_s = -1;                         // Retry-After header when >= 0
    int delay_ms = 0;                               // answer after this long (kAnswer), noticing a closed client
    std::string text;                               // the answer; empty: the responder's (kRaw: the whole body, as is)
    std::string content_type = "application/json";  // kRaw
  };
  static Behavior answer(std::string text = "", int delay_ms = 0) {
    return {Behavior::kAnswer, 200, "", -1, delay_ms, std::move(text)};
  }
  static Behavior status(int code, std::string type, int retry_after_s = -1) {
    return {Behavior::kStatus, code, std::move(type), retry_after_s, 0, ""};
  }
  static Behavior drop() { return {Behavior::kDrop, 200, "", -1, 0, ""}; }
  // A 200 whose body is `body` verbatim: malformed answers, broken event streams.
  static Behavior raw(std::string body, std::string content_type = "application/json") {
    return {Behavior::kRaw, 200, "", -1, 0, std::move(body), std::move(content_type)};
  }

  explicit LlmTestServer(std::string api_key = "test-key") : api_key_(std::move(api_key)) {
    httplib::Server& server = loopback_.server();
    server.new_task_queue = [] { return new httplib::ThreadPool(64); };
    // One request per connection: clients that keep pooled connections (process-wide provider
    // stacks) would otherwise hold the server's threads until the keep-alive timeout on stop.
    server.set_keep_alive_max_count(1);
    server.Post("/v1/messages",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, true); });
    server.Post("/v1/chat/completions",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, false); });
    loopback_.start();
  }

  std::string base_url() const { return loopback_.url(); }
  int port() const { return loopback_.port(); }

  void push(Behavior b) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(b));
  }
  // Text of normal answers: responder(request body, call number from 0).
  void set_responder(std::function<std::string(const Json&, int)> fn) {
    std::lock_guard lock(mu_);
    responder_ = std::move(fn);
  }
  // Delay of normal answers without a scripted behaviour: latency_ms(call number).
  void set_latency(std::function<int(int)> fn) {
    std::lock_guard lock(mu_);
    latency_ = std::move(fn);
  }
  std::vector<std::string> rejections() {
    std::lock_guard lock(mu_);
    return rejections_;
  }
  std::vector<Json> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  // Calls whose last user message contains `text`.
  int calls_containing(const std::string& text) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const Json& r : requests_) {
      if (!r.contains("messages") || !r["messages"].is_array() || r["messages"].empty()) continue;
      const Json& content = r["messages"].back().value("content", Json(""));
      std::string s = content.is_string() ? content.get<std::string>() : content.dump();
      if (s.find(text) != std::string::npos) ++n;
    }
    return n;
  }

  std::atomic<int> calls{0};
  std::atomic<int> rejected{0};  // failed the request checks
  std::atomic<int> aborted{0};   // the client closed the connection before the answer
  std::atomic<int> completed{0};

 private:
  static std::string words_joined(const std::vector<std::string>& parts) {
    std::string s;
    for (const auto& p : parts) s += p;
    return s;
  }

  void reject(httplib::Response& res, int status, const std::string& type, const std::string& message, bool anthropic) {
    ++rejected;
    {
      std::lock_guard lock(mu_);
      rejections_.push_back(message);
    }
    res.status = status;
    Json body = anthropic ? Json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}}
                          : Json{{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
    res.set_content(body.dump(), "application/json");
  }

  // Rejects a request the real API would refuse; false when it did.
  bool check_request(const httplib::Request& req, httplib::Response& res, bool anthropic, const Json& body) {
    if (anthropic && req.get_header_value("x-api-key") != api_key_) {
      reject(res, 401, "authentication_error", "invalid x-api-key", true);
    } else if (anthropic && req.get_header_value("anthropic-version").empty()) {
      reject(res, 400, "invalid_request_error", "anthropic-version header is required", true);
    } else if (!anthropic && !api_key_.empty() && req.get_header_value("Authorization") != "Bearer " + api_key_) {
      reject(res, 401, "invalid_request_error", "Incorrect API key provided", false);
    } else if (req.get_header_value("Content-Type").find("application/json") == std::string::npos) {
      reject(res, 400, "invalid_request_error", "content-type must be application/json", anthropic);
    } else if (!body.is_object() || !body.contains("model") || !body["model"].is_string() ||
               !body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
      reject(res, 400, "invalid_request_error", "model and a non-empty messages list are required", anthropic);
    } else if (anthropic && (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer())) {
      reject(res, 400, "invalid_request_error", "max_tokens: Field required", true);
    } else {
      return check_roles(res, anthropic, body);
    }
    return false;
  }

  bool check_roles(httplib::Response& res, bool anthropic, const Json& body) {
    for (const Json& m : body["messages"]) {
      std::string role = m.value("role", "");
      if (!m.contains("content") || (role != "user" && role != "assistant" && (anthropic || role != "system"))) {
        reject(res, 400, "invalid_request_error", "messages: unexpected role '" + role + "'", anthropic);
        return false;
      }
    }
    return true;
  }

  // The scripted behaviour of call `call` (or the latency model's delay), and the responder.
  Behavior next_behavior(int call, const Json& body, std::function<std::string(const Json&, int)>& responder) {
    Behavior b;
    std::lock_guard lock(mu_);
    requests_.push_back(body);
    if (!script_.empty()) {
      b = script_.front();
      script_.pop_front();
    } else if (latency_) {
      b.delay_ms = latency_(call);
    }
    responder = responder_;
    return b;
  }

  static void scripted_status(httplib::Response& res, const Behavior& b, bool anthropic) {
    res.status = b.status;
    if (b.retry_after_s >= 0) res.set_header("Retry-After", std::to_string(b.retry_after_s));
    std::string type = b.error_type.empty() ? "api_error" : b.error_type;
    Json err = anthropic ? Json{{"type", "error"}, {"error", {{"type", type}, {"message", "scripted " + type}}}}
                         : Json{{"error", {{"message", "scripted " + type}, {"type", type}, {"code", nullptr}}}};
    res.set_content(err.dump(), "application/json");
  }

  // What one answer says, in either API's words.
  struct Answer {
    int call = 0;
    std::string model;
    std::string text;
    int64_t in_tokens = 0;
    int64_t out_tokens = 0;
    std::vector<std::string> pieces;  // the text word by word, for streaming
  };

  static std::vector<std::string> split_words(const std::string& text) {
    std::vector<std::string> pieces;
    for (size_t start = 0; start < text.size();) {
      size_t space = text.find(' ', start);
      size_t end = space == std::string::npos ? text.size() : space + 1;
      pieces.push_back(text.substr(start, end - start));
      start = end;
    }
    if (pieces.empty()) pieces.push_back("");
    return pieces;
  }

  static std::string whole_answer(const Answer& a, bool anthropic) {
    Json out = anthropic ? Json{{"id", "msg_" + std::to_string(a.call)},
                                {"type", "message"},
                                {"role", "assistant"},
                                {"model", a.model},
                                {"content", Json::array({{{"type", "text"}, {"text", a.text}}})},
                                {"stop_reason", "end_turn"},
                                {"stop_sequence", nullptr},
                                {"usage", {{"input_tokens", a.in_tokens}, {"output_tokens", a.out_tokens}}}}
                         : Json{{"id", "chatcmpl-" + std::to_string(a.call)},
                                {"object", "chat.completion"},
                                {"model", a.model},
                                {"choices", Json::array({{{"index", 0},
                                                          {"message", {{"role", "assistant"}, {"content", a.text}}},
                                                          {"finish_reason", "stop"}}})},
                                {"usage",
                                 {{"prompt_tokens", a.in_tokens},
                                  {"completion_tokens", a.out_tokens},
                                  {"total_tokens", a.in_tokens + a.out_tokens}}}};
    return out.dump();
  }

  static std::vector<std::string> anthropic_stream(const Answer& a) {
    auto ev = [](const std::string& name, const Json& data) {
      return "event: " + name + "\ndata: " + data.dump() + "\n\n";
    };
    std::vector<std::string> frames;
    frames.push_back(ev("message_start", {{"type", "message_start"},
                                          {"message",
                                           {{"id", "msg_" + std::to_string(a.call)},
                                            {"type", "message"},
                                            {"role", "assistant"},
                                            {"content", Json::array()},
                                            {"model", a.model},
                                            {"stop_reason", nullptr},
                                            {"usage", {{"input_tokens", a.in_tokens}, {"output_tokens", 1}}}}}}));
    frames.push_back(
        ev("content_block_start",
           {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}}));
    frames.push_back(ev("ping", {{"type", "ping"}}));
    for (const auto& p : a.pieces) {
      frames.push_back(
          ev("content_block_delta",
             {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", p}}}}));
    }
    frames.push_back(ev("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}));
    frames.push_back(ev("message_delta", {{"type", "message_delta"},
                                          {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                                          {"usage", {{"output_tokens", a.out_tokens}}}}));
    frames.push_back(ev("message_stop", {{"type", "message_stop"}}));
    return frames;
  }

  static std::vector<std::string> openai_stream(const Answer& a) {
    auto chunk = [&](const Json& delta, const Json& finish) {
      Json c{{"id", "chatcmpl-" + std::to_string(a.call)},
             {"object", "chat.completion.chunk"},
             {"model", a.model},
             {"choices", Json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
      return "data: " + c.dump() + "\n\n";
    };
    std::vector<std::string> frames;
    frames.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
    for (const auto& p : a.pieces) frames.push_back(chunk({{"content", p}}, nullptr));
    frames.push_back(chunk(Json::object(), "stop"));
    Json usage{{"id", "chatcmpl-" + std::to_string(a.call)},
               {"object", "chat.completion.chunk"},
               {"model", a.model},
               {"choices", Json::array()},
               {"usage", {{"prompt_tokens", a.in_tokens}, {"completion_tokens", a.out_tokens}}}};
    frames.push_back("data: " + usage.dump() + "\n\n");
    frames.push_back("data: [DONE]\n\n");
    return frames;
  }

  // Writes `frames` after `delay` ms; while waiting, a keep-alive byte every 5 ms (JSON
  // whitespace, or an SSE comment) shows whether the client is still there.
  void serve_frames(httplib::Response& res, const char* type, std::vector<std::string> frames, bool stream, int delay) {
    const std::string keepalive = stream ? ":\n" : " ";
    res.set_chunked_content_provider(type, [this, frames, keepalive, delay](size_t, httplib::DataSink& sink) {
      auto t0 = std::chrono::steady_clock::now();
      while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(delay)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5, delay)));
        if (!sink.is_writable() || !sink.write(keepalive.data(), keepalive.size())) {
          ++aborted;
          return false;
        }
      }
      for (const auto& f : frames) {
        if (!sink.write(f.data(), f.size())) {
          ++aborted;
          return false;
        }
      }
      ++completed;
      sink.done();
      return true;
    });
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool anthropic) {
    int call = calls++;
    Json body = Json::parse(req.body, nullptr, false);
    if (!check_request(req, res, anthropic, body)) return;
    std::function<std::string(const Json&, int)> responder;
    Behavior b = next_behavior(call, body, responder);
    if (b.kind == Behavior::kStatus) return scripted_status(res, b, anthropic);
    if (b.kind == Behavior::kRaw) return res.set_content(b.text, b.content_type);
    if (b.kind == Behavior::kDrop) {
      res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink&) { return false; });
      return;
    }
    std::string last;
    const Json& lm = body["messages"].back();
    if (lm.contains("content") && lm["content"].is_string()) last = lm["content"].get<std::string>();
    Answer a;
    a.call = call;
    a.model = body["model"].get<std::string>();
    a.text = !b.text.empty() ? b.text : responder ? responder(body, call) : "echo: " + last;
    a.in_tokens = static_cast<int64_t>(req.body.size() / 4);
    a.out_tokens = static_cast<int64_t>(a.text.size() / 4 + 1);
    a.pieces = split_words(a.text);
    const bool stream = body.value("stream", false);
    if (!stream) return serve_frames(res, "application/json", {whole_answer(a, anthropic)}, false, b.delay_ms);
    serve_frames(res, "text/event-stream", anthropic ? anthropic_stream(a) : openai_stream(a), true, b.delay_ms);
  }

  std::string api_key_;
  std::mutex mu_;
  std::deque<Behavior> script_;                             // guarded by mu_
  std::vector<Json> requests_;                              // guarded by mu_
  std::vector<std::string> rejections_;                     // guarded by mu_
  std::function<std::string(const Json&, int)> responder_;  // guarded by mu_
  std::function<int(int)> latency_;                         // guarded by mu_
  LoopbackServer loopback_;  // last: stopped before the state its handlers use is destroyed
};

}  // namespace crucible::testing
