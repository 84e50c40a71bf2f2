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

namespace crucible::bench {

Result<Json> run_hedging_live(double seconds) {
  std::atomic<int64_t> served{0}, aborted{0};
  httplib::Server server;
  // /work/<i>/<attempt>: lognormal around 5 ms, 1% stragglers x20, streamed a byte per ms so a
  // closed connection is noticed.
  server.Get("/work/(\\d+)/(\\d+)", [&](const httplib::Request& req, httplib::Response& res) {
    uint64_t i = std::stoull(req.matches[1]), k = std::stoull(req.matches[2]);
    double u1 = std::max(static_cast<double>(splitmix64(i * 7 + k) >> 11) * 0x1.0p-53, 1e-12);
    double u2 = static_cast<double>(splitmix64(i * 13 + k + 1) >> 11) * 0x1.0p-53;
    double ms = 5 * std::exp(0.3 * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    if (static_cast<double>(splitmix64(i * 31 + k + 2) >> 11) * 0x1.0p-53 < 0.01) ms *= 20;
    int total = static_cast<int>(ms);
    res.set_chunked_content_provider("text/plain", [&served, &aborted, total](size_t, httplib::DataSink& sink) {
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
  });
  server.new_task_queue = [] { return new httplib::ThreadPool(32); };
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  CRUCIBLE_ASSIGN_OR_RETURN(auto policy, make_hedge_policy(Json{{"strategy", "percentile"}, {"budget_percent", 5}}));
  Executor executor(16);
  Hedger hedger(executor, real_clock(), *policy);
  auto stage = make_http_request_stage();
  std::atomic<int64_t> requests{0}, hedged{0}, kept{0}, failures{0};
  std::mutex mu;
  std::vector<double> latencies;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::atomic<uint64_t> next{0};
  {
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
                std::string url = "http://127.0.0.1:" + std::to_string(port) + "/work/" + std::to_string(i) + "/" +
                                  std::to_string(attempt);
                CRUCIBLE_RETURN_IF_ERROR(stage->run(scratch, StageOptions(Json{{"url", url}}), stop));
                return *scratch.get_artifact("http.request");
              },
              o);
          ++requests;
          if (!r) {
            ++failures;
            continue;
          }
          ++kept;
          if (r->meta.hedged) ++hedged;
          std::lock_guard lock(mu);
          latencies.push_back(r->meta.total_latency_ms);
        }
      });
    }
  }
  server.stop();
  listener.join();
  double n = static_cast<double>(requests.load());
  return Json{{"seconds", seconds},
              {"requests", requests.load()},
              {"results_kept", kept.load()},
              {"failures", failures.load()},
              {"hedged_pct", n > 0 ? 100.0 * static_cast<double>(hedged.load()) / n : 0},
              {"losers_aborted_seen_by_server", aborted.load()},
              {"answers_served", served.load()},
              {"p50_ms", percentile(latencies, 50)},
              {"p99_ms", percentile(latencies, 99)},
              {"one_result_per_request", kept.load() + failures.load() == requests.load()}};
}

}  // namespace crucible::bench
