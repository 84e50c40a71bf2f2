// The live loopback smoke test of `crucible bench hedging`: a real HTTP server on 127.0.0.1 with
// injected stragglers, hedged requests through the http.request stage, and the server's own count
// of transfers the client aborted.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/executor.h"
#include "crucible/core/random.h"
#include "crucible/reliability/hedger.h"
#include "crucible/reliability/hedging_config.h"
#include "crucible/stages/http_stage.h"
#include "crucible/testing/loopback_server.h"

namespace crucible::bench {

namespace {

// The loopback backend: /work/<i>/<attempt> answers after a lognormal around 5 ms, 1% of calls
// 20x slower, streamed a byte per ms so a closed connection is noticed and counted.
class Backend {
 public:
  Backend() {
    loopback_.server().Get("/work/(\\d+)/(\\d+)",
                           [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); });
    loopback_.server().new_task_queue = [] { return new httplib::ThreadPool(32); };
    loopback_.start();
  }
  std::string url(uint64_t i, int attempt) const {
    return loopback_.url("/work/" + std::to_string(i) + "/" + std::to_string(attempt));
  }

  std::atomic<int64_t> served{0}, aborted{0};

 private:
  static double unit(uint64_t x) { return static_cast<double>(splitmix64(x) >> 11) * 0x1.0p-53; }

  void serve(const httplib::Request& req, httplib::Response& res) {
    uint64_t i = std::stoull(req.matches[1]), k = std::stoull(req.matches[2]);
    double u1 = std::max(unit(i * 7 + k), 1e-12), u2 = unit(i * 13 + k + 1);
    double ms = 5 * std::exp(0.3 * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    if (unit(i * 31 + k + 2) < 0.01) ms *= 20;
    int total = static_cast<int>(ms);
    res.set_chunked_content_provider("text/plain", [this, total](size_t, httplib::DataSink& sink) {
      for (int waited = 0; waited < total; ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (!sink.is_writable() || !sink.write(".", 1)) {
          ++aborted;
          return false;
        }
      }
      ++served;
      sink.done();
      return true;
    });
  }

  testing::LoopbackServer loopback_;
};

struct Tally {
  std::atomic<int64_t> requests{0}, hedged{0}, kept{0}, failures{0};
  std::mutex mu;
  std::vector<double> latencies;  // guarded by mu
};

// Four clients send hedged requests through the http.request stage until the deadline.
void drive(Backend& backend, Hedger& hedger, Stage& stage, double seconds, Tally& t) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::atomic<uint64_t> next{0};
  std::vector<std::jthread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      while (std::chrono::steady_clock::now() < deadline) {
        uint64_t i = next++;
        HedgeCallOptions o;
        o.key = "loopback";
        o.wait_for_losers = true;
        o.timeout = std::chrono::seconds(5);
        auto r = hedger.hedge<Json>(
            [&](int attempt, std::stop_token stop) -> Result<Json> {
              Context scratch;
              CRUCIBLE_RETURN_IF_ERROR(stage.run(scratch, StageOptions(Json{{"url", backend.url(i, attempt)}}), stop));
              return *scratch.get_artifact("http.request");
            },
            o);
        ++t.requests;
        if (!r) {
          ++t.failures;
          continue;
        }
        ++t.kept;
        if (r->meta.hedged) ++t.hedged;
        std::lock_guard lock(t.mu);
        t.latencies.push_back(r->meta.total_latency_ms);
      }
    });
  }
}

}  // namespace

Result<Json> run_hedging_live(double seconds) {
  Backend backend;
  CRUCIBLE_ASSIGN_OR_RETURN(auto policy, make_hedge_policy(Json{{"strategy", "percentile"}, {"budget_percent", 5}}));
  Executor executor(16);
  Hedger hedger(executor, real_clock(), *policy);
  auto stage = make_http_request_stage();
  Tally t;
  drive(backend, hedger, *stage, seconds, t);
  double n = static_cast<double>(t.requests.load());
  return Json{{"seconds", seconds},
              {"requests", t.requests.load()},
              {"results_kept", t.kept.load()},
              {"failures", t.failures.load()},
              {"hedged_pct", n > 0 ? 100.0 * static_cast<double>(t.hedged.load()) / n : 0},
              {"losers_aborted_seen_by_server", backend.aborted.load()},
              {"answers_served", backend.served.load()},
              {"p50_ms", percentile(t.latencies, 50)},
              {"p99_ms", percentile(t.latencies, 99)},
              {"one_result_per_request", t.kept.load() + t.failures.load() == t.requests.load()}};
}

}  // namespace crucible::bench
