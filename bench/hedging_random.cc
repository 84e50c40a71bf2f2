#include "hedging_random.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "crucible/core/executor.h"
#include "crucible/core/random.h"
#include "crucible/reliability/hedging.h"
#include "crucible/reliability/hedging_config.h"
#include "hedging_sim.h"

namespace crucible::bench {
namespace {

// Uniforms for one scenario's draw, independent of everything else.
class Draw {
 public:
  Draw(uint64_t seed, uint64_t index) : state_(splitmix64(seed * 0x9E3779B97F4A7C15ULL + index)) {}
  double uniform() {
    state_ = splitmix64(state_);
    return static_cast<double>(state_ >> 11) * 0x1.0p-53;
  }
  double between(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double log_between(double lo, double hi) { return lo * std::pow(hi / lo, uniform()); }
  bool chance(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

const char* const kFamilies[] = {"lognormal", "stragglers", "pareto", "bursts", "drift", "sizes", "queue"};

}  // namespace

Scenario random_scenario(uint64_t seed, uint64_t index, size_t requests, Json* draw) {
  Draw d(seed, index);
  const std::string family = kFamilies[static_cast<size_t>(d.uniform() * std::size(kFamilies)) % std::size(kFamilies)];
  Scenario s;
  s.id = "random-" + std::to_string(seed) + "-" + std::to_string(index);
  s.requests = requests;
  s.max_hedges = 1 + static_cast<int>(d.uniform() * 3) % 3;
  const double median = d.log_between(1, 10'000);
  const double sigma = d.between(0.1, 1.0);
  s.components = {Component{1, "lognormal", median, sigma, 0}};
  Json j = {{"seed", seed},        {"index", index}, {"family", family},
            {"median_ms", median}, {"sigma", sigma}, {"max_hedges", s.max_hedges}};
  if (family == "stragglers" || d.chance(0.3)) {
    s.straggler_p = d.between(0.001, 0.05);
    s.straggler_factor = d.between(5, 50);
    j["straggler_p"] = s.straggler_p;
    j["straggler_factor"] = s.straggler_factor;
  }
  if (family == "pareto") {
    const double alpha = d.between(1.1, 3.0);
    s.components = {Component{1, "pareto", median, alpha, 0}};
    j["pareto_alpha"] = alpha;
  } else if (family == "bursts") {
    s.burst_fraction = d.between(0.01, 0.2);
    s.burst_factor = d.between(2, 10);
    s.rate_per_s = d.log_between(50, 5000);
    j["burst_fraction"] = s.burst_fraction;
    j["burst_factor"] = s.burst_factor;
    j["rate_per_s"] = s.rate_per_s;
  } else if (family == "drift") {
    s.drift_at = d.between(0.2, 0.8);
    s.drift_factor = d.chance(0.5) ? d.between(1.5, 5) : d.between(0.2, 0.7);
    j["drift_at"] = s.drift_at;
    j["drift_factor"] = s.drift_factor;
  } else if (family == "sizes") {
    s.kind = "size";  // a known per-request size scales every attempt
  } else if (family == "queue") {
    s.kind = "queue";
    s.load = d.between(0.3, 0.9);
    s.correlated = d.chance(0.5);
    s.servers = 2 + static_cast<int>(d.uniform() * 15);
    j["load"] = s.load;
    j["correlated"] = s.correlated;
    j["servers"] = s.servers;
  }
  s.description = "random " + family;
  if (draw != nullptr) *draw = std::move(j);
  return s;
}

namespace {

// The oracle's best p99 and p99.9 over fixed delays whose extra requests are at most `cost`%.
std::pair<double, double> oracle_at(const Scenario& s, const World& w, const RunStats& off, double cost) {
  double best99 = off.p(99), best999 = off.p(99.9);
  const double lo = off.p(50) * 0.5, hi = off.p(99.9);
  std::vector<double> lat(s.requests);
  for (int j = 0; j < 48; ++j) {
    const double delay = lo * std::pow(hi / lo, j / 47.0);
    size_t hedged = 0;
    for (uint64_t i = 0; i < s.requests; ++i) {
      const double x0 = w.latency(i, 0);
      lat[i] = x0;
      if (x0 > delay) {
        ++hedged;
        lat[i] = std::min(x0, delay + w.latency(i, 1));
      }
    }
    if (100.0 * static_cast<double>(hedged) / static_cast<double>(s.requests) > cost + 1e-9) continue;
    std::sort(lat.begin(), lat.end());
    auto at = [&](double q) { return lat[static_cast<size_t>(q / 100.0 * static_cast<double>(lat.size() - 1) + 0.5)]; };
    best99 = std::min(best99, at(99));
    best999 = std::min(best999, at(99.9));
  }
  return {best99, best999};
}

// The most extra requests any 1,000 consecutive requests sent.
double worst_window(const std::vector<uint8_t>& extra) {
  constexpr size_t kWindow = 1000;
  double sum = 0, worst = 0;
  for (size_t i = 0; i < extra.size(); ++i) {
    sum += extra[i];
    if (i >= kWindow) sum -= extra[i - kWindow];
    if (i + 1 >= kWindow) worst = std::max(worst, sum);
  }
  return worst;
}

struct Outcome {
  Json draw;
  double vs_oracle_p99 = 1, vs_oracle_p99_9 = 1;  // adaptive / oracle at adaptive's cost
  double vs_percentile = 1;                       // the worse of p99 and p99.9
  double vs_off = 1;                              // the worse of p99 and p99.9
  double budget_window = 0;                       // worst extra requests in 1,000 (adaptive)
  bool met = true;
};

Result<Outcome> evaluate(uint64_t seed, uint64_t index, size_t requests) {
  Outcome out;
  Scenario s = random_scenario(seed, index, requests, &out.draw);
  double mean_service = 0;
  if (s.kind == "queue") {
    World probe(s, seed + 1000);
    for (uint64_t i = 0; i < 20000; ++i) mean_service += probe.draw(i, 0);
    mean_service /= 20000;
  }
  World world(s, seed ^ (index * 0x9E3779B97F4A7C15ULL));
  world.precompute();
  auto simulate_with = [&](HedgePolicy* policy) {
    return s.kind == "queue" ? simulate_queue(s, seed, world, policy, mean_service) : simulate(s, world, policy);
  };
  const RunStats off = simulate_with(nullptr);
  CRUCIBLE_ASSIGN_OR_RETURN(auto percentile, make_hedge_policy(Json{{"strategy", "percentile"}}));
  CRUCIBLE_ASSIGN_OR_RETURN(auto adaptive, make_hedge_policy(Json{{"strategy", "adaptive"}}));
  const RunStats p = simulate_with(percentile.get());
  const RunStats a = simulate_with(adaptive.get());
  out.vs_percentile = std::max(a.p(99) / p.p(99), a.p(99.9) / p.p(99.9));
  out.vs_off = std::max(a.p(99) / off.p(99), a.p(99.9) / off.p(99.9));
  if (s.kind != "queue") {
    auto [o99, o999] = oracle_at(s, world, off, a.extra_pct());
    out.vs_oracle_p99 = a.p(99) / o99;
    out.vs_oracle_p99_9 = a.p(99.9) / o999;
  }
  out.budget_window = worst_window(a.extra);
  out.met =
      out.vs_oracle_p99 <= 1.10 && out.vs_oracle_p99_9 <= 1.10 && out.vs_off <= 1.0 + 1e-9 && out.vs_percentile <= 1.05;
  out.draw["goals_met"] = out.met;
  return out;
}

}  // namespace

Result<Json> run_random_hedging(uint64_t count, uint64_t seed, size_t requests) {
  std::vector<std::optional<Result<Outcome>>> results(count);
  Executor executor(2);
  executor.parallel_for(count, [&](size_t i) { results[i] = evaluate(seed, i, requests); });
  size_t met = 0;
  const Outcome* worst[4] = {nullptr, nullptr, nullptr, nullptr};  // oracle p99, p99.9, percentile, off
  double budget_worst = 0;
  Json failing = Json::array();
  for (auto& r : results) {
    if (!*r) return make_error(r->error());
    const Outcome& o = **r;
    met += o.met ? 1 : 0;
    if (!o.met && failing.size() < 20) failing.push_back(o.draw);
    const double values[4] = {o.vs_oracle_p99, o.vs_oracle_p99_9, o.vs_percentile, o.vs_off};
    for (int k = 0; k < 4; ++k) {
      const double current = worst[k] == nullptr ? -1
                             : k == 0            ? worst[k]->vs_oracle_p99
                             : k == 1            ? worst[k]->vs_oracle_p99_9
                             : k == 2            ? worst[k]->vs_percentile
                                                 : worst[k]->vs_off;
      if (values[k] > current) worst[k] = &o;
    }
    budget_worst = std::max(budget_worst, o.budget_window);
  }
  const BudgetOptions budget;
  const double bound = budget.percent * 1000 + budget.cap;
  auto worst_json = [&](int k, double value) {
    return Json{{"ratio", value}, {"draw", worst[k] != nullptr ? worst[k]->draw : Json()}};
  };
  return Json{{"scenarios", count},
              {"seed", seed},
              {"requests_per_scenario", requests},
              {"goals_met", met},
              {"all_goals_met", met == count},
              {"worst_p99_vs_oracle", worst_json(0, worst[0] ? worst[0]->vs_oracle_p99 : 1)},
              {"worst_p99_9_vs_oracle", worst_json(1, worst[1] ? worst[1]->vs_oracle_p99_9 : 1)},
              {"worst_vs_percentile", worst_json(2, worst[2] ? worst[2]->vs_percentile : 1)},
              {"worst_vs_off", worst_json(3, worst[3] ? worst[3]->vs_off : 1)},
              {"budget_worst_window_extra_requests", budget_worst},
              {"budget_window_bound", bound},
              {"budget_holds", budget_worst <= bound},
              {"failing_draws", failing},
              {"goals",
               "adaptive p99 and p99.9 <= 1.10x the fixed-delay oracle at no more extra requests; <= off; <= 1.05x "
               "percentile; no 1,000 consecutive requests spend more than the budget ratio plus one burst"}};
}

}  // namespace crucible::bench
