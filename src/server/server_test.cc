#include "crucible/server/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "crucible/core/random.h"
#include "crucible/http/client.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/builtin_stages.h"
#include "crucible/workflow/loader.h"

namespace crucible::server {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kTwo =
    "name: two\nstages:\n  - {name: a, uses: metric, with: {name: score, value: \"config.x\"}}\n"
    "  - {name: b, uses: noop}\nconfig: {x: 1}\n";
constexpr const char* kGate =
    "name: gate\nstages:\n  - {name: g, uses: wait_for, with: {promise: go}}\n  - {name: after, uses: noop}\n";
constexpr const char* kSlow = "name: slow\nstages:\n  - {name: nap, uses: sleep, with: {duration: 3s}}\n";
constexpr const char* kHedged =
    "name: hedged\nstages:\n  - name: call\n    uses: sleep\n    with: {duration: 300ms}\n"
    "    hedging: {strategy: fixed, delay_ms: 20, budget_percent: 100}\n";
constexpr const char* kFails =
    "name: fails\nstages:\n  - {name: fine, uses: noop}\n"
    "  - {name: check, uses: assert, with: {that: \"config.ok\", message: not ok}}\nconfig: {ok: false}\n";
constexpr const char* kBroken = "name: broken\nstages:\n  - {name: a, uses: no_such_stage}\n";

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(ServerOptions options) {
    char tmpl[] = "/tmp/crucible-server-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "pipelines");
    write("two.yaml", kTwo);
    write("gate.yaml", kGate);
    write("slow.yaml", kSlow);
    write("broken.yaml", kBroken);
    write("hedged.yaml", kHedged);
    write("fails.yaml", kFails);
    SqliteJournalOptions jo;
    jo.path = (dir_ / "journal.db").string();
    auto j = open_sqlite_journal(jo);
    ASSERT_TRUE(j) << j.error().to_string();
    journal_ = std::move(*j);
    ASSERT_TRUE(register_builtin_stages(registry_));
    runner_ = std::make_unique<Runner>(*journal_, executor_, real_clock(), system_random(), registry_, &events_);
    runner_->set_artifact_root((dir_ / "runs").string());
    WorkerOptions wo;
    wo.concurrency = 8;
    wo.poll = 200ms;
    wo.lease_ttl = 2s;
    wo.grace = 100ms;
    wo.id = "test-server";
    auto loader = [this](const Json& spec) -> Result<WorkflowSpec> {
      LoadResult r = load_pipeline_text(json_string(spec, "text"), "journal.yaml", registry_);
      if (!r.ok()) return make_error(ErrorCode::kInvalidArgument, r.report());
      return std::move(*r.spec);
    };
    worker_ = std::make_unique<Worker>(*journal_, *runner_, executor_, real_clock(), loader, wo,
                                       [this](const RunId& run, const Result<RunResult>&) {
                                         if (!run.str().empty() && server_) server_->run_finished(run);
                                       });
    options.port = 0;
    options.pipelines_dir = (dir_ / "pipelines").string();
    options.read_timeout = 500ms;
    options.keep_alive = 1s;
    options.event_poll = 20ms;
    server_ = std::make_unique<Server>(
        ServerDeps{*journal_, *runner_, executor_, real_clock(), registry_, loader, worker_.get()}, options);
    events_.add_sink(server_->metrics_sink());
    auto started = server_->start();
    ASSERT_TRUE(started) << started.error().to_string();
    worker_thread_ = std::jthread([this] { worker_->run(drain_.get_token()); });
    auto w = server_->keys().create("writer", KeyScope::kWrite);
    auto r = server_->keys().create("reader", KeyScope::kRead);
    ASSERT_TRUE(w && r);
    write_key_ = w->key;
    read_key_ = r->key;
  }

  void TearDown() override { stop(); }

  void stop() {
    if (server_) server_->stop();
    drain_.request_stop();
    if (worker_thread_.joinable()) worker_thread_.join();
    server_.reset();
    worker_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / "pipelines" / name) << text; }

  struct Answer {
    long status = 0;
    Json body;
    std::string text;
  };

  Answer call(const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& key = "", std::vector<std::string> headers = {}) {
    http::Request req;
    req.method = method;
    req.url = server_->url(path);
    req.body = body;
    req.timeout = 20s;
    headers.push_back("Content-Type: application/json");
    if (!key.empty()) headers.push_back("Authorization: Bearer " + key);
    req.headers = headers;
    auto reply = client_.send(req, std::stop_token());
    EXPECT_TRUE(reply) << reply.error().to_string();
    if (!reply) return {};
    Answer a{reply->status, parse_json_or_discarded(reply->body), reply->body};
    return a;
  }

  Answer get(const std::string& path) { return call("GET", path, "", read_key_); }
  Answer post(const std::string& path, const Json& body) { return call("POST", path, json_dump(body), write_key_); }

  // Polls the run until it has `status` (up to 10 s).
  bool reaches(const std::string& run, const std::string& status) {
    for (int i = 0; i < 1000; ++i) {
      auto log = journal_->read_run(*RunId::parse(run));
      if (log && run_status_name(log->summary.status) == status) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  fs::path dir_;
  std::unique_ptr<Journal> journal_;
  StageRegistry registry_;
  Executor executor_{4};
  EventBus events_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<Server> server_;
  std::stop_source drain_;
  std::jthread worker_thread_;
  http::Client client_;
  std::string write_key_;
  std::string read_key_;
};

TEST_F(ServerTest, EveryApiRouteNeedsAKeyAndTheRightScope) {
  const std::vector<std::pair<std::string, std::string>> routes = {{"GET", "/v1/runs"},
                                                                   {"GET", "/v1/runs/x"},
                                                                   {"GET", "/v1/runs/x/events"},
                                                                   {"GET", "/v1/runs/x/experiments"},
                                                                   {"GET", "/v1/pipelines"},
                                                                   {"GET", "/metrics"},
                                                                   {"POST", "/v1/runs"},
                                                                   {"POST", "/v1/runs/x/cancel"},
                                                                   {"POST", "/v1/runs/x/resume"},
                                                                   {"POST", "/v1/runs/x/fork"},
                                                                   {"POST", "/v1/runs/x/signals/go"},
                                                                   {"POST", "/two/run"}};
  for (const auto& [method, path] : routes) {
    Answer none = call(method, path);
    EXPECT_EQ(none.status, 401) << method << " " << path;
    EXPECT_EQ(json_string(none.body, "code"), "unauthenticated") << none.text;
    Answer garbage = call(method, path, "", "crucible_nothing");
    EXPECT_EQ(garbage.status, 401) << method << " " << path;
    EXPECT_EQ(garbage.text.find("crucible_nothing"), std::string::npos);
  }
  for (const auto& [method, path] : routes) {
    if (method != "POST") continue;
    Answer low = call(method, path, "{}", read_key_);
    EXPECT_EQ(low.status, 403) << method << " " << path;
    EXPECT_EQ(json_string(low.body, "code"), "permission_denied");
  }
  EXPECT_EQ(call("GET", "/v1/runs", "", read_key_).status, 200);
  EXPECT_EQ(call("GET", "/v1/runs", "", write_key_).status, 200);
  EXPECT_EQ(call("GET", "/healthz").status, 200);
}

TEST_F(ServerTest, ARevokedKeyIsRefused) {
  ASSERT_EQ(get("/v1/runs").status, 200);
  ASSERT_TRUE(server_->keys().revoke("reader"));
  Answer a = get("/v1/runs");
  EXPECT_EQ(a.status, 401);
  EXPECT_EQ(a.text.find(read_key_), std::string::npos);
}

TEST_F(ServerTest, SubmittedRunsCompleteAndShowTheirStages) {
  Answer a = post("/v1/runs", {{"pipeline", "two"}, {"config", {{"x", 7}}}});
  ASSERT_EQ(a.status, 201) << a.text;
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "completed"));
  Answer d = get("/v1/runs/" + id);
  ASSERT_EQ(d.status, 200) << d.text;
  EXPECT_EQ(json_string(d.body, "status"), "completed");
  ASSERT_EQ(d.body["stages"].size(), 2u);
  EXPECT_EQ(json_string(d.body["stages"][0], "key"), "/a");
  EXPECT_EQ(json_string(d.body["stages"][0], "status"), "completed");
  EXPECT_EQ(d.body["metrics"]["score"], 7);
  ASSERT_EQ(d.body["timeline"].size(), 2u);
  EXPECT_LE(d.body["timeline"][0]["start_ms"].get<int64_t>(), d.body["timeline"][0]["end_ms"].get<int64_t>());
  EXPECT_EQ(get("/v1/runs/nope").status, 404);
  EXPECT_EQ(json_string(get("/v1/runs/bad%20id").body, "field"), "run_id");
}

TEST_F(ServerTest, RunIdsAndIdempotencyKeysMakeSubmissionsIdempotent) {
  Answer first = post("/v1/runs", {{"pipeline", "two"}, {"run_id", "r-1"}});
  ASSERT_EQ(first.status, 201) << first.text;
  Answer again = post("/v1/runs", {{"pipeline", "two"}, {"run_id", "r-1"}});
  EXPECT_EQ(again.status, 200) << again.text;
  EXPECT_TRUE(again.body["existed"].get<bool>());
  Answer other = post("/v1/runs", {{"pipeline", "gate"}, {"run_id", "r-1"}});
  EXPECT_EQ(other.status, 409) << other.text;

  Answer k1 = call("POST", "/v1/runs", R"({"pipeline":"two"})", write_key_, {"Idempotency-Key: order-42"});
  Answer k2 = call("POST", "/v1/runs", R"({"pipeline":"two"})", write_key_, {"Idempotency-Key: order-42"});
  ASSERT_EQ(k1.status, 201) << k1.text;
  EXPECT_EQ(k2.status, 200);
  EXPECT_EQ(json_string(k1.body, "run_id"), json_string(k2.body, "run_id"));
}

TEST_F(ServerTest, ConcurrentPostsOfOneRunIdMakeOneRun) {
  std::vector<std::jthread> threads;
  std::vector<long> statuses(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([this, i, &statuses] {
      statuses[static_cast<size_t>(i)] = post("/v1/runs", {{"pipeline", "two"}, {"run_id", "same"}}).status;
    });
  }
  threads.clear();
  int created = 0;
  for (long s : statuses) {
    EXPECT_TRUE(s == 200 || s == 201) << s;
    created += s == 201 ? 1 : 0;
  }
  EXPECT_LE(created, 1);
  RunFilter all;
  all.limit = 100;
  auto runs = journal_->list_runs(all);
  ASSERT_TRUE(runs);
  EXPECT_EQ(runs->size(), 1u);
  EXPECT_TRUE(reaches("same", "completed"));
}

TEST_F(ServerTest, BadRequestsGetJsonErrorsThatSayWhere) {
  Answer bad_json = call("POST", "/v1/runs", "{nope", write_key_);
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(json_string(bad_json.body, "field"), "body");
  Answer unknown = post("/v1/runs", {{"pipeline", "two"}, {"colour", "red"}});
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(json_string(unknown.body, "field"), "colour");
  Answer both = post("/v1/runs", {{"pipeline", "two"}, {"yaml", kTwo}});
  EXPECT_EQ(both.status, 400);
  Answer yaml = post("/v1/runs", {{"yaml", "name: y\nstages:\n  - {name: a, uses: nothing_like_it}\n"}});
  EXPECT_EQ(yaml.status, 400) << yaml.text;
  EXPECT_EQ(json_string(yaml.body, "field"), "yaml");
  EXPECT_NE(json_string(yaml.body, "message").find("request.yaml:3:"), std::string::npos) << yaml.text;
  Answer broken = post("/v1/runs", {{"pipeline", "broken"}});
  EXPECT_EQ(broken.status, 400);
  EXPECT_NE(json_string(broken.body, "message").find("broken.yaml:3:"), std::string::npos) << broken.text;
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "missing"}}).status, 404);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"config", 3}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"timeout", "soon"}}).status, 400);
  EXPECT_EQ(get("/v1/runs?limit=0").status, 400);
  EXPECT_EQ(get("/v1/runs?status=sleeping").status, 400);
  EXPECT_EQ(get("/v1/runs?cursor=zzz").status, 400);
  EXPECT_EQ(get("/v1/runs?cursor=.x").status, 400);
  EXPECT_EQ(get("/v1/runs?cursor=12x.x").status, 400);
  EXPECT_EQ(get("/v1/runs?cursor=12.").status, 400);
  EXPECT_EQ(json_string(get("/v1/nothing").body, "code"), "not_found");
}

TEST_F(ServerTest, PipelineNamesNeverReachOutsideTheFolder) {
  std::ofstream(dir_ / "secret.yaml") << kTwo;
  for (const std::string name : {"../secret", "..", "/etc/passwd", "a/../../secret", ".hidden"}) {
    Answer a = post("/v1/runs", {{"pipeline", name}});
    EXPECT_EQ(a.status, 400) << name << " " << a.text;
    EXPECT_EQ(json_string(a.body, "field"), "pipeline");
  }
  Answer ingress = call("POST", "/%2E%2E%2Fsecret/run", "{}", write_key_);
  EXPECT_TRUE(ingress.status == 400 || ingress.status == 404) << ingress.status << " " << ingress.text;
  Answer dots = call("POST", "/../run", "{}", write_key_);
  EXPECT_NE(dots.status, 200);
}

TEST_F(ServerTest, OversizedBodiesGet413) {
  std::string big = R"({"pipeline":"two","config":{"pad":")" + std::string(2 << 20, 'x') + "\"}}";
  Answer a = call("POST", "/v1/runs", big, write_key_);
  EXPECT_EQ(a.status, 413);
}

TEST_F(ServerTest, IngressRunsThePipelineWithTheBodyAsInput) {
  Answer a = call("POST", "/two/run", R"({"x": 41})", write_key_);
  ASSERT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(json_string(a.body, "status"), "completed");
  EXPECT_EQ(a.body["metrics"]["score"], 41);
  Answer b = call("POST", "/two/run", "[1]", write_key_);
  EXPECT_EQ(b.status, 400);
  EXPECT_EQ(call("POST", "/nope/run", "{}", write_key_).status, 404);
}

TEST_F(ServerTest, IngressAnswers202WithTheRunIdAfterItsWaitLimit) {
  Answer a = call("POST", "/slow/run?wait=100ms", "{}", write_key_);
  ASSERT_EQ(a.status, 202) << a.text;
  const std::string id = json_string(a.body, "run_id");
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(reaches(id, "running"));
}

TEST_F(ServerTest, ASignalContinuesAWaitingRun) {
  Answer a = post("/v1/runs", {{"pipeline", "gate"}});
  ASSERT_EQ(a.status, 201);
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "waiting"));
  Answer d = get("/v1/runs/" + id);
  EXPECT_EQ(json_string(d.body["promises"], "waiting"), "go");
  Answer wrong = call("POST", "/v1/runs/" + id + "/signals/stop", "true", write_key_);
  EXPECT_EQ(wrong.status, 400) << wrong.text;
  Answer s = call("POST", "/v1/runs/" + id + "/signals/go", R"({"answer": 42})", write_key_);
  ASSERT_EQ(s.status, 200) << s.text;
  EXPECT_TRUE(s.body["resolved"].get<bool>());
  EXPECT_TRUE(reaches(id, "completed"));
  Answer late = call("POST", "/v1/runs/" + id + "/signals/go", "1", write_key_);
  EXPECT_EQ(late.status, 409);
  Answer bad = call("POST", "/v1/runs/" + id + "/signals/go", "{oops", write_key_);
  EXPECT_EQ(bad.status, 400);
}

TEST_F(ServerTest, CancelEndsAWaitingRun) {
  Answer a = post("/v1/runs", {{"pipeline", "gate"}});
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "waiting"));
  Answer c = post("/v1/runs/" + id + "/cancel", {{"reason", "not needed"}});
  ASSERT_EQ(c.status, 200) << c.text;
  EXPECT_EQ(json_string(c.body, "outcome"), "cancelled");
  EXPECT_TRUE(reaches(id, "cancelled"));
  EXPECT_EQ(json_string(post("/v1/runs/" + id + "/cancel", Json::object()).body, "outcome"), "already_finished");
  EXPECT_EQ(post("/v1/runs/" + id + "/resume", Json::object()).status, 409);
  EXPECT_EQ(post("/v1/runs/ghost/cancel", Json::object()).status, 404);
}

TEST_F(ServerTest, ForkRunsAgainFromAStep) {
  Answer a = post("/v1/runs", {{"pipeline", "two"}});
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "completed"));
  Answer f = post("/v1/runs/" + id + "/fork", {{"from", "/b"}, {"run_id", "forked-1"}});
  ASSERT_EQ(f.status, 201) << f.text;
  EXPECT_EQ(json_string(f.body, "run_id"), "forked-1");
  EXPECT_TRUE(reaches("forked-1", "completed"));
  Answer d = get("/v1/runs/forked-1");
  EXPECT_EQ(json_string(d.body, "parent_run"), id);
  EXPECT_EQ(post("/v1/runs/" + id + "/fork", {{"from", "b"}}).status, 400);
  EXPECT_EQ(post("/v1/runs/" + id + "/fork", {{"from", "/zzz"}}).status, 404);
}

TEST_F(ServerTest, EventsStreamLiveAndResumeFromLastEventId) {
  Answer a = post("/v1/runs", {{"pipeline", "gate"}});
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "waiting"));
  std::string stream;
  std::jthread reader([&] {
    http::Request req;
    req.url = server_->url("/v1/runs/" + id + "/events");
    req.headers = {"Authorization: Bearer " + read_key_};
    req.timeout = 20s;
    auto r = client_.send(
        req,
        [&](std::string_view chunk) {
          stream.append(chunk);
          return true;
        },
        std::stop_token());
    EXPECT_TRUE(r) << r.error().to_string();
  });
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(call("POST", "/v1/runs/" + id + "/signals/go", "1", write_key_).status, 200);
  reader.join();
  EXPECT_NE(stream.find("event: run.started"), std::string::npos) << stream;
  EXPECT_NE(stream.find("event: run.suspended"), std::string::npos);
  EXPECT_NE(stream.find("event: promise.resolved"), std::string::npos);
  EXPECT_NE(stream.find("event: run.completed"), std::string::npos);
  EXPECT_NE(stream.find("event: end"), std::string::npos);
  // The ids increase; reconnecting after the third gets only what follows it.
  std::vector<uint64_t> ids;
  for (size_t p = stream.find("\nid: "); p != std::string::npos; p = stream.find("\nid: ", p + 1)) {
    ids.push_back(std::stoull(stream.substr(p + 5)));
  }
  if (stream.starts_with("id: ")) ids.insert(ids.begin(), std::stoull(stream.substr(4)));
  ASSERT_GE(ids.size(), 4u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  Answer rest = call("GET", "/v1/runs/" + id + "/events", "", read_key_, {"Last-Event-ID: " + std::to_string(ids[2])});
  ASSERT_EQ(rest.status, 200);
  EXPECT_EQ(rest.text.find("event: run.started"), std::string::npos) << rest.text;
  EXPECT_NE(rest.text.find("id: " + std::to_string(ids.back())), std::string::npos);
  EXPECT_NE(rest.text.find("event: end"), std::string::npos);
  EXPECT_EQ(get("/v1/runs/ghost/events").status, 404);
}

TEST_F(ServerTest, ListsPageWithACursorAndFilter) {
  std::set<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    Answer a = post("/v1/runs", {{"pipeline", "two"}, {"run_id", "list-" + std::to_string(i)}});
    ids.insert(json_string(a.body, "run_id"));
  }
  for (const std::string& id : ids) ASSERT_TRUE(reaches(id, "completed"));
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    Answer page = get("/v1/runs?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(page.status, 200) << page.text;
    for (const Json& r : page.body["runs"]) EXPECT_TRUE(seen.insert(json_string(r, "run_id")).second);
    cursor = page.body["next_cursor"].is_string() ? page.body["next_cursor"].get<std::string>() : "";
    ++pages;
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(get("/v1/runs?status=completed&pipeline=two").body["runs"].size(), 7u);
  EXPECT_EQ(get("/v1/runs?status=failed").body["runs"].size(), 0u);
  EXPECT_EQ(get("/v1/runs?since=1h").body["runs"].size(), 7u);
}

TEST_F(ServerTest, PipelinesExperimentsAndMetrics) {
  Answer p = get("/v1/pipelines");
  ASSERT_EQ(p.status, 200);
  ASSERT_EQ(p.body["pipelines"].size(), 6u);
  EXPECT_EQ(json_string(p.body["pipelines"][0], "name"), "broken");
  EXPECT_FALSE(p.body["pipelines"][0]["valid"].get<bool>());
  EXPECT_TRUE(p.body["pipelines"][5]["valid"].get<bool>());

  Answer a = call("POST", "/two/run", "{}", write_key_);
  ASSERT_EQ(a.status, 200);
  Answer e = get("/v1/runs/" + json_string(a.body, "run_id") + "/experiments");
  ASSERT_EQ(e.status, 200);
  EXPECT_TRUE(e.body["experiments"].is_object());

  Answer m = get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.text.find("crucible_runs{status=\"completed\"} 1"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("crucible_queue_depth{queue=\"default\"} 0"), std::string::npos);
  EXPECT_NE(m.text.find("crucible_step_duration_seconds_count 2"), std::string::npos) << m.text;
  EXPECT_NE(m.text.find("crucible_hedges_fired_total 0"), std::string::npos);
}

TEST_F(ServerTest, HedgedStepsShowTheirRequestsAndWinner) {
  Answer a = call("POST", "/hedged/run", "{}", write_key_);
  ASSERT_EQ(a.status, 200) << a.text;
  Answer d = get("/v1/runs/" + json_string(a.body, "run_id"));
  ASSERT_EQ(d.body["timeline"].size(), 1u);
  const Json& h = d.body["timeline"][0]["hedging"];
  ASSERT_TRUE(h.is_object()) << d.text;
  EXPECT_TRUE(h["hedged"].get<bool>());
  EXPECT_EQ(h["attempts"], 2);
  Answer m = get("/metrics");
  EXPECT_NE(m.text.find("crucible_hedges_fired_total 1"), std::string::npos) << m.text;
}

TEST_F(ServerTest, AFailedRunReportsItsErrorEverywhere) {
  Answer a = call("POST", "/fails/run", "{}", write_key_);
  ASSERT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(json_string(a.body, "status"), "failed");
  EXPECT_NE(json_string(a.body, "error").find("not ok"), std::string::npos) << a.text;
  const std::string id = json_string(a.body, "run_id");
  Answer d = get("/v1/runs/" + id);
  ASSERT_EQ(d.body["timeline"].size(), 2u);
  EXPECT_EQ(json_string(d.body["timeline"][1], "status"), "failed");
  EXPECT_FALSE(json_string(d.body["timeline"][1], "error").empty());
  Answer events = get("/v1/runs/" + id + "/events");
  EXPECT_NE(events.text.find("event: stage.failed"), std::string::npos) << events.text;
  EXPECT_NE(events.text.find("event: run.failed"), std::string::npos);
  // The config's input changes the outcome.
  Answer ok = call("POST", "/fails/run", R"({"ok": true})", write_key_);
  EXPECT_EQ(json_string(ok.body, "status"), "completed") << ok.text;
}

TEST_F(ServerTest, IngressIsIdempotentByKey) {
  Answer a = call("POST", "/two/run", "{}", write_key_, {"Idempotency-Key: job-7"});
  Answer b = call("POST", "/two/run", "{}", write_key_, {"Idempotency-Key: job-7"});
  ASSERT_EQ(a.status, 200) << a.text;
  ASSERT_EQ(b.status, 200) << b.text;
  EXPECT_EQ(json_string(a.body, "run_id"), json_string(b.body, "run_id"));
  Answer other = call("POST", "/gate/run", "{}", write_key_, {"Idempotency-Key: job-7"});
  EXPECT_EQ(other.status, 409) << other.text;
  EXPECT_EQ(call("POST", "/two/run?wait=later", "{}", write_key_).status, 400);
}

TEST_F(ServerTest, ResumeRefusesARunALiveWorkerHolds) {
  Answer a = post("/v1/runs", {{"pipeline", "slow"}});
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "running"));
  Answer r = post("/v1/runs/" + id + "/resume", {{"rerun_steps", Json::array({"/nap"})}});
  EXPECT_EQ(r.status, 409) << r.text;
  EXPECT_NE(json_string(r.body, "message").find("running"), std::string::npos);
  Answer c = post("/v1/runs/" + id + "/cancel", Json::object());
  EXPECT_EQ(c.status, 202) << c.text;
  EXPECT_EQ(json_string(c.body, "outcome"), "requested");
  EXPECT_TRUE(reaches(id, "cancelled"));
  EXPECT_EQ(get("/v1/runs?since=later").status, 400);
}

TEST_F(ServerTest, TheDashboardIsServedFromTheBinary) {
  Answer page = call("GET", "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.text.find("<script type=\"module\" src=\"/assets/app.js\">"), std::string::npos);
  for (const char* asset : {"/assets/app.js", "/assets/style.css", "/assets/chart.min.js"}) {
    EXPECT_EQ(call("GET", asset).status, 200) << asset;
  }
  EXPECT_EQ(call("GET", "/assets/missing.js").status, 404);
}

TEST_F(ServerTest, SlowClientsAreDroppedAndOthersAreServed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string partial = "GET /v1/runs HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  EXPECT_EQ(get("/v1/runs").status, 200);  // served while the slow one dawdles
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[256];
  const auto t0 = std::chrono::steady_clock::now();
  // The read timeout (500 ms) answers 400; the idle connection is closed after the keep-alive
  // timeout (1 s), both long before our own 5 s.
  std::string got;
  for (ssize_t n = 0; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) {
    if (got.empty()) {
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    }
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s) << got;
  EXPECT_TRUE(got.starts_with("HTTP/1.1 400")) << got;
  ::close(fd);
}

TEST_F(ServerTest, ResumeContinuesAParkedRunAndLeavesAQueuedOneToItsWorker) {
  Answer a = post("/v1/runs", {{"pipeline", "gate"}});
  const std::string id = json_string(a.body, "run_id");
  ASSERT_TRUE(reaches(id, "waiting"));
  Answer r = post("/v1/runs/" + id + "/resume", {{"rerun_steps", Json::array()}, {"skip_steps", Json::array()}});
  EXPECT_EQ(r.status, 202) << r.text;
  EXPECT_EQ(json_string(r.body, "status"), "resuming");
  EXPECT_TRUE(reaches(id, "waiting"));  // the promise is still unresolved: it parks again
  EXPECT_EQ(post("/v1/runs/" + id + "/resume", {{"rerun_steps", "all"}}).status, 400);
  EXPECT_EQ(post("/v1/runs/" + id + "/resume", {{"skip_steps", Json::array({1})}}).status, 400);

  // A run in a queue nobody serves stays queued; resume leaves it there.
  Answer q = post("/v1/runs", {{"pipeline", "two"}, {"queue", "elsewhere"}, {"priority", 3}, {"partition", "p"}});
  ASSERT_EQ(q.status, 201) << q.text;
  const std::string queued = json_string(q.body, "run_id");
  Answer rq = post("/v1/runs/" + queued + "/resume", Json::object());
  EXPECT_EQ(rq.status, 202);
  EXPECT_EQ(json_string(rq.body, "status"), "queued");
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"queue", ""}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"priority", "high"}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"partition", 5}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", 5}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"yaml", 5}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"run_id", 5}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"timeout", 0}}).status, 400);
  EXPECT_EQ(post("/v1/runs", {{"pipeline", "two"}, {"timeout", "1h"}}).status, 201);
  EXPECT_EQ(call("POST", "/v1/runs", R"({"pipeline":"two"})", write_key_, {"Idempotency-Key: " + std::string(300, 'k')})
                .status,
            400);
  EXPECT_EQ(post("/v1/runs/" + queued + "/fork", {{"from", "/a"}, {"run_id", 3}}).status, 400);
  EXPECT_EQ(post("/v1/runs/" + queued + "/fork", {{"from", "/a"}, {"run_id", "bad id"}}).status, 400);
}

TEST_F(ServerTest, TrainingCurvesComeFromTheRunsMetricsFile) {
  Answer a = call("POST", "/two/run", "{}", write_key_);
  const std::string id = json_string(a.body, "run_id");
  Answer none = get("/v1/runs/" + id + "/metrics-log");
  ASSERT_EQ(none.status, 200);
  EXPECT_TRUE(none.body["points"].empty());
  EXPECT_EQ(get("/v1/runs/ghost/metrics-log").status, 404);
}

TEST_F(ServerTest, BadEventIdsAreRefused) {
  Answer a = post("/v1/runs", {{"pipeline", "two"}});
  const std::string id = json_string(a.body, "run_id");
  Answer bad = call("GET", "/v1/runs/" + id + "/events", "", read_key_, {"Last-Event-ID: ten"});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json_string(bad.body, "field"), "Last-Event-ID");
  ASSERT_TRUE(reaches(id, "completed"));
  Answer from_query = get("/v1/runs/" + id + "/events?last_event_id=1");
  EXPECT_EQ(from_query.status, 200);
  EXPECT_EQ(from_query.text.find("event: run.started"), std::string::npos);
  EXPECT_EQ(call("GET", "/v1/runs", "", "", {"Authorization: Basic abc"}).status, 401);
}

class MetricsFileTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.runs_dir = "/tmp/crucible-server-runs-" + std::to_string(getpid());
    runs_dir_ = o.runs_dir;
    start(o);
  }
  void TearDown() override {
    ServerTest::TearDown();
    fs::remove_all(runs_dir_);
  }
  std::string runs_dir_;
};

TEST_F(MetricsFileTest, PointsAreReadSkippingBadLinesAndThinnedWhenLong) {
  Answer a = call("POST", "/two/run", "{}", write_key_);
  const std::string id = json_string(a.body, "run_id");
  fs::create_directories(fs::path(runs_dir_) / id);
  {
    std::ofstream out(fs::path(runs_dir_) / id / "metrics.jsonl");
    out << "not json\n\n{\"loss\": 1}\n";
    for (int step = 0; step < 45'000; ++step) {
      out << "{\"step\": " << step << ", \"loss\": " << 1.0 / (step + 1) << "}\n";
    }
  }
  Answer m = get("/v1/runs/" + id + "/metrics-log");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["skipped"], 2);
  EXPECT_EQ(m.body["stride"], 3);
  EXPECT_LE(m.body["points"].size(), 20'001u);
  EXPECT_EQ(m.body["points"].back()["step"], 44'999);
}

class TlsTest : public ServerTest {
 protected:
  void SetUp() override {
    cert_dir_ = "/tmp/crucible-tls-" + std::to_string(getpid());
    fs::create_directories(cert_dir_);
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout " +
                            cert_dir_ + "/key.pem -out " + cert_dir_ + "/cert.pem 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    ServerOptions o;
    o.tls_cert = cert_dir_ + "/cert.pem";
    o.tls_key = cert_dir_ + "/key.pem";
    start(o);
  }
  void TearDown() override {
    ServerTest::TearDown();
    fs::remove_all(cert_dir_);
  }
  std::string cert_dir_;
};

TEST_F(TlsTest, ServesHttps) {
  EXPECT_TRUE(server_->url().starts_with("https://"));
  httplib::SSLClient client("127.0.0.1", server_->port());
  client.enable_server_certificate_verification(false);
  auto r = client.Get("/v1/runs", {{"Authorization", "Bearer " + read_key_}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ServerStartTest, RefusesBadTlsFilesAndBusyPorts) {
  auto journal = make_memory_journal();
  StageRegistry registry;
  Executor executor(2);
  Runner runner(*journal, executor, real_clock(), system_random(), registry);
  auto loader = [](const Json&) -> Result<WorkflowSpec> { return make_error(ErrorCode::kInternal, "unused"); };
  ServerDeps deps{*journal, runner, executor, real_clock(), registry, loader, nullptr};
  ServerOptions half;
  half.port = 0;
  half.tls_cert = "/tmp/cert.pem";
  auto r1 = Server(deps, half).start();
  ASSERT_FALSE(r1);
  EXPECT_EQ(r1.error().field(), "tls-key");
  ServerOptions missing = half;
  missing.tls_key = "/nonexistent/key.pem";
  missing.tls_cert = "/nonexistent/cert.pem";
  EXPECT_FALSE(Server(deps, missing).start());
  ServerOptions garbage = half;
  garbage.tls_cert = garbage.tls_key = "/etc/hostname";
  auto r3 = Server(deps, garbage).start();
  ASSERT_FALSE(r3);
  EXPECT_NE(r3.error().message().find("PEM"), std::string::npos);

  ServerOptions any;
  any.port = 0;
  Server first(deps, any);
  ASSERT_TRUE(first.start());
  ApiKeyStore keys(*journal, real_clock());
  auto key = keys.create("k", KeyScope::kWrite);
  ASSERT_TRUE(key);
  httplib::Client client("127.0.0.1", first.port());
  const httplib::Headers auth = {{"Authorization", "Bearer " + key->key}};
  auto no_folder = client.Post("/anything/run", auth, "{}", "application/json");
  ASSERT_TRUE(no_folder);
  EXPECT_EQ(no_folder->status, 404);
  EXPECT_NE(no_folder->body.find("no pipelines folder"), std::string::npos);
  auto listed = client.Get("/v1/pipelines", auth);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->body, R"({"pipelines":[]})");
  ServerOptions same;
  same.port = first.port();
  auto busy = Server(deps, same).start();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), ErrorCode::kUnavailable);
  // Without a worker, an ingress run waits in its queue: 202 after the wait limit.
  first.stop();
}

class AnonymousReadTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.allow_anonymous_read = true;
    o.rate_limit = 2;
    start(o);
  }
};

TEST_F(AnonymousReadTest, ReadsNeedNoKeyButWritesDoAndKeysAreRateLimited) {
  EXPECT_EQ(call("GET", "/v1/runs").status, 200);
  EXPECT_EQ(call("POST", "/v1/runs", R"({"pipeline":"two"})").status, 401);
  long last = 0;
  std::string retry;
  for (int i = 0; i < 5 && last != 429; ++i) {
    Answer a = call("GET", "/v1/runs", "", read_key_);
    last = a.status;
  }
  EXPECT_EQ(last, 429);
}

}  // namespace
}  // namespace crucible::server
