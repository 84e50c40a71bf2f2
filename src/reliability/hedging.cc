#include "crucible/reliability/hedging.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace crucible {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
};

// Per-key state behind one mutex; lookups by string_view allocate nothing once a key exists.
template <typename State>
class KeyedState {
 public:
  template <typename Init>
  State& get(std::string_view key, Init init) {
    auto it = map_.find(key);
    if (it == map_.end()) it = map_.emplace(std::string(key), init()).first;
    return it->second;
  }
  template <typename Fn>
  void each(Fn fn) const {
    for (const auto& [k, v] : map_) fn(k, v);
  }

 private:
  std::unordered_map<std::string, State, StringHash, std::equal_to<>> map_;
};

// The most recent samples, with a cached quantile refreshed every few samples so that reading it
// is constant time.
class Window {
 public:
  explicit Window(size_t capacity) : data_(std::max<size_t>(capacity, 1)), scratch_(data_.size()) {}

  void push(double v) {
    data_[next_] = v;
    next_ = (next_ + 1) % data_.size();
    size_ = std::min(size_ + 1, data_.size());
    ++since_refresh_;
  }
  size_t size() const { return size_; }
  bool stale(size_t every) const { return since_refresh_ >= every; }

  // Nearest-rank quantile, p in [0, 100]. O(n); call from the feedback path only.
  double quantile(double p) {
    if (size_ == 0) return 0;
    std::copy(data_.begin(), data_.begin() + static_cast<long>(size_), scratch_.begin());
    size_t rank = static_cast<size_t>(std::ceil(static_cast<double>(size_) * p / 100.0));
    size_t idx = rank == 0 ? 0 : std::min(rank - 1, size_ - 1);
    std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<long>(idx),
                     scratch_.begin() + static_cast<long>(size_));
    since_refresh_ = 0;
    return scratch_[idx];
  }

 private:
  std::vector<double> data_, scratch_;
  size_t next_ = 0, size_ = 0, since_refresh_ = 0;
};

size_t refresh_every(size_t window) { return std::max<size_t>(1, window / 50); }

class OffStrategy : public HedgeStrategy {
 public:
  std::string_view name() const override { return "off"; }
  std::optional<double> delay_ms(const HedgeRequest&) override { return std::nullopt; }
  void record(const HedgeOutcome&) override {}
};

class FixedStrategy : public HedgeStrategy {
 public:
  explicit FixedStrategy(double d) : delay_(d) {}
  std::string_view name() const override { return "fixed"; }
  std::optional<double> delay_ms(const HedgeRequest&) override { return delay_; }
  void record(const HedgeOutcome&) override {}
  Json stats() const override { return Json{{"delay_ms", delay_}}; }

 private:
  double delay_;
};

// The primary's latency: exact when it finished, else a lower bound (it was still running).
double primary_sample(const HedgeOutcome& o) { return o.primary_finished ? o.primary_latency_ms : o.latency_ms; }

class PercentileStrategy : public HedgeStrategy {
 public:
  explicit PercentileStrategy(PercentileOptions o) : o_(o) {}
  std::string_view name() const override { return "percentile"; }

  std::optional<double> delay_ms(const HedgeRequest& r) override {
    std::lock_guard lock(mu_);
    State& s = state(r.key);
    if (s.window.size() < o_.min_samples) return o_.initial_delay_ms;
    return s.delay;
  }

  void record(const HedgeOutcome& o) override {
    if (o.error) return;
    std::lock_guard lock(mu_);
    State& s = state(o.key);
    s.window.push(primary_sample(o));
    if (s.window.size() >= o_.min_samples && (s.window.stale(refresh_every(o_.window)) || std::isnan(s.delay))) {
      double d = std::max(o_.min_delay_ms, s.window.quantile(o_.percentile));
      if (o_.max_delay_ms) d = std::min(d, *o_.max_delay_ms);
      s.delay = d;
    }
  }

  Json stats() const override {
    std::lock_guard lock(mu_);
    Json out = Json::object();
    keys_.each([&](const std::string& k, const State& s) {
      out[k] = {{"samples", s.window.size()}, {"delay_ms", std::isnan(s.delay) ? Json() : Json(s.delay)}};
    });
    return Json{{"percentile", o_.percentile}, {"keys", out}};
  }

 private:
  struct State {
    Window window;
    double delay = std::nan("");
  };
  State& state(std::string_view key) {
    return keys_.get(key, [&] { return State{Window(o_.window)}; });
  }

  PercentileOptions o_;
  mutable std::mutex mu_;
  KeyedState<State> keys_;  // guarded by mu_
};

// Thompson sampling over delay arms (quantiles of the observed latency), with counterfactual
// updates: one outcome tells what several other delays would have given, so every consistent arm
// learns from every request. Reward: -(latency / median)^2 - lambda * extra_request, where lambda,
// the price of an extra request, rises by dual ascent while the extra-request rate exceeds the
// budget and never falls below one median of latency.
class AdaptiveStrategy : public HedgeStrategy {
 public:
  explicit AdaptiveStrategy(AdaptiveOptions o) : o_(std::move(o)) {}
  std::string_view name() const override { return "adaptive"; }

  std::optional<double> delay_ms(const HedgeRequest& r) override {
    std::lock_guard lock(mu_);
    State& s = state(r.key);
    if (s.primary.size() < o_.min_samples) {
      // Warm-up: hedge at the p95 once a few samples exist, as the percentile strategy would.
      return s.primary.size() >= 10 ? std::optional<double>(s.warm_delay) : std::nullopt;
    }
    size_t best = 0;
    double best_score = -kInf;
    for (size_t a = 0; a < s.arms.size(); ++a) {
      const Arm& arm = s.arms[a];
      double sd = arm.n > 1 ? std::sqrt(arm.m2 / (arm.n - 1)) : 1.0;
      double score = arm.mean + sd / std::sqrt(arm.n + 1) * s.normal();
      if (score > best_score) {
        best_score = score;
        best = a;
      }
    }
    double d = s.arms[best].delay;
    if (std::isinf(d)) return std::nullopt;
    return d;
  }

  void record(const HedgeOutcome& o) override {
    if (o.error) return;
    std::lock_guard lock(mu_);
    State& s = state(o.key);
    s.primary.push(primary_sample(o));
    if (o.backup_latency_ms) s.backup.push(*o.backup_latency_ms);
    if (s.primary.stale(refresh_every(o_.window)) || s.primary.size() == 10) refresh(s);
    // The rate the chosen delays ask for, not the one the budget let through: a budget that
    // denies backups hides an arm that hedges too early, which then spends the budget on typical
    // requests and has none left for the stragglers.
    const bool asked = o.hedged || (std::isfinite(o.delay_ms) && o.primary_latency_ms > o.delay_ms);
    s.extra_rate = 0.99 * s.extra_rate + 0.01 * (asked ? 1.0 : 0.0);
    s.lambda = std::max(1.0, s.lambda + 0.05 * (s.extra_rate - o_.budget) / std::max(o_.budget, 1e-3));
    if (s.median <= 0) return;
    // What the backup would take: this request's, else the typical one.
    double x2 = o.backup_latency_ms ? *o.backup_latency_ms : (s.backup.size() > 0 ? s.backup_median : s.median);
    for (Arm& arm : s.arms) {
      double latency, extra;
      if (o.primary_finished) {
        double x1 = o.primary_latency_ms;
        if (arm.delay >= x1) {
          latency = x1;
          extra = 0;
        } else {
          latency = std::min(x1, arm.delay + x2);
          extra = 1;
        }
      } else if (arm.delay <= o.delay_ms) {
        // The backup won; the primary was slower still, so an earlier hedge would have won too.
        latency = arm.delay + x2;
        extra = 1;
      } else {
        // A later hedge, or none: the primary's time is censored. Take the pessimistic bound
        // (a primary this slow is usually a straggler), so that arms which would have left it
        // unrescued learn what that costs.
        latency = std::isinf(arm.delay) ? 10 * s.median : arm.delay + x2;
        extra = std::isinf(arm.delay) ? 0 : 1;
      }
      // Squared, so that rescuing one straggler outweighs shaving many typical requests; clipped
      // at ten medians so that one straggler does not swamp the posterior.
      double r = std::min(latency / s.median, 10.0);
      update(arm, -r * r - s.lambda * extra);
    }
  }

  Json stats() const override {
    std::lock_guard lock(mu_);
    Json out = Json::object();
    keys_.each([&](const std::string& k, const State& s) {
      Json arms = Json::array();
      for (const Arm& a : s.arms) {
        arms.push_back({{"quantile", a.quantile},
                        {"delay_ms", std::isinf(a.delay) ? Json() : Json(a.delay)},
                        {"mean_reward", a.mean},
                        {"n", a.n}});
      }
      out[k] = {{"samples", s.primary.size()}, {"lambda", s.lambda}, {"arms", arms}};
    });
    return Json{{"keys", out}};
  }

 private:
  struct Arm {
    double quantile;  // negative: a fixed delay
    double delay = kInf;
    double n = 0, mean = 0, m2 = 0;
  };
  struct State {
    Window primary, backup;
    std::vector<Arm> arms;
    double median = 0, backup_median = 0, warm_delay = 0;
    double lambda = 1.0, extra_rate = 0;
    uint64_t rng = 0;  // SplitMix64 state, deterministic per seed and key
    double uniform01() { return static_cast<double>(splitmix64(rng++) >> 11) * 0x1.0p-53; }
    double normal() {
      double u1 = std::max(uniform01(), 1e-12), u2 = uniform01();
      return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
  };

  static void update(Arm& arm, double reward) {
    // Welford with a cap on n: older evidence fades so the arm can track drift.
    arm.n = std::min(arm.n + 1, 50000.0);
    double delta = reward - arm.mean;
    arm.mean += delta / arm.n;
    arm.m2 = std::max(0.0, arm.m2 * (arm.n - 1) / arm.n + delta * (reward - arm.mean));
  }

  void refresh(State& s) {
    s.median = s.primary.quantile(50);
    s.warm_delay = s.primary.quantile(95);
    if (s.backup.size() > 0) s.backup_median = s.backup.quantile(50);
    for (Arm& a : s.arms) {
      if (a.quantile < 0) continue;  // fixed candidate
      a.delay = a.quantile == 0 ? kInf : s.primary.quantile(a.quantile);
    }
  }

  State& state(std::string_view key) {
    return keys_.get(key, [&] {
      State s{Window(o_.window), Window(o_.window), {}, 0, 0, 0, 1.0, 0, o_.seed ^ std::hash<std::string_view>()(key)};
      if (o_.delays.empty()) {
        for (double q : o_.quantiles) s.arms.push_back(Arm{q});
      } else {
        for (double d : o_.delays) s.arms.push_back(Arm{-1, d});
      }
      return s;
    });
  }

  AdaptiveOptions o_;
  mutable std::mutex mu_;
  KeyedState<State> keys_;  // guarded by mu_
};

double factor(std::string_view value, std::initializer_list<std::pair<std::string_view, double>> table) {
  for (const auto& [name, f] : table) {
    if (value == name) return f;
  }
  return 1.0;
}

// The delay follows the predicted latency of this request: by size when requests carry one
// (a learned p95 of latency per unit of size), else a base delay scaled by the request's class.
class WorkloadAwareStrategy : public HedgeStrategy {
 public:
  explicit WorkloadAwareStrategy(WorkloadOptions o) : o_(o) {}
  std::string_view name() const override { return "workload_aware"; }

  std::optional<double> delay_ms(const HedgeRequest& r) override {
    if (r.size && *r.size > 0) {
      std::lock_guard lock(mu_);
      State& s = state(r.key);
      if (s.ratios.size() >= o_.min_samples) return std::max(o_.floor_ms, s.ratio_p95 * *r.size);
    }
    double d = o_.base_delay_ms;
    if (r.size) {
      double tokens = *r.size;
      d *= tokens > 4000 ? 2.5 : tokens > 2000 ? 2.0 : tokens > 1000 ? 1.5 : 1.0;
    }
    d *= factor(r.model_complexity, {{"simple", 0.5}, {"medium", 1.0}, {"complex", 2.0}});
    d *= factor(r.time_of_day, {{"peak", 0.7}, {"normal", 1.0}, {"off_peak", 1.3}});
    d *= factor(r.priority, {{"low", 1.5}, {"normal", 1.0}, {"high", 0.6}});
    return std::max(o_.floor_ms, std::round(d));
  }

  void record(const HedgeOutcome& o) override {
    if (o.error || !o.size || *o.size <= 0) return;
    std::lock_guard lock(mu_);
    State& s = state(o.key);
    s.ratios.push(primary_sample(o) / *o.size);
    if (s.ratios.size() >= o_.min_samples && (s.ratios.stale(refresh_every(1000)) || s.ratio_p95 == 0)) {
      s.ratio_p95 = s.ratios.quantile(95);
    }
  }

 private:
  struct State {
    Window ratios;
    double ratio_p95 = 0;
  };
  State& state(std::string_view key) {
    return keys_.get(key, [] { return State{Window(1000)}; });
  }
  WorkloadOptions o_;
  std::mutex mu_;
  KeyedState<State> keys_;  // guarded by mu_
};

class ExponentialBackoffStrategy : public HedgeStrategy {
 public:
  explicit ExponentialBackoffStrategy(BackoffOptions o) : o_(o) {}
  std::string_view name() const override { return "exponential_backoff"; }

  std::optional<double> delay_ms(const HedgeRequest& r) override {
    std::lock_guard lock(mu_);
    return std::round(state(r.key));
  }

  void record(const HedgeOutcome& o) override {
    std::lock_guard lock(mu_);
    double& d = state(o.key);
    if (o.error)
      d *= o_.error;
    else if (o.hedged && !o.hedge_won)
      d *= o_.increase;  // wasted hedge
    else
      d *= o_.decrease;  // useful, or not needed
    d = std::clamp(d, o_.min_delay_ms, o_.max_delay_ms);
  }

  Json stats() const override {
    std::lock_guard lock(mu_);
    Json out = Json::object();
    keys_.each([&](const std::string& k, const double& d) { out[k] = d; });
    return Json{{"delay_ms", out}};
  }

 private:
  double& state(std::string_view key) {
    return keys_.get(key, [&] { return o_.base_delay_ms; });
  }
  BackoffOptions o_;
  mutable std::mutex mu_;
  KeyedState<double> keys_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<HedgeStrategy> make_off_strategy() { return std::make_unique<OffStrategy>(); }
std::unique_ptr<HedgeStrategy> make_fixed_strategy(double delay_ms) {
  return std::make_unique<FixedStrategy>(delay_ms);
}
std::unique_ptr<HedgeStrategy> make_percentile_strategy(PercentileOptions o) {
  return std::make_unique<PercentileStrategy>(o);
}
std::unique_ptr<HedgeStrategy> make_adaptive_strategy(AdaptiveOptions o) {
  return std::make_unique<AdaptiveStrategy>(std::move(o));
}
std::unique_ptr<HedgeStrategy> make_workload_aware_strategy(WorkloadOptions o) {
  return std::make_unique<WorkloadAwareStrategy>(o);
}
std::unique_ptr<HedgeStrategy> make_exponential_backoff_strategy(BackoffOptions o) {
  return std::make_unique<ExponentialBackoffStrategy>(o);
}

struct HedgePolicy::Impl {
  struct KeyState {
    double balance = 0;
    double last_s = std::nan("");
    std::vector<uint8_t> results;  // ring of recent hedges: 1 won, 0 lost
    size_t next = 0, count = 0, won = 0;
    uint64_t requests = 0, suppress_until = 0;
    int trips = 0;
    // Load-harm detector. While hedging, the median of the last 256 latencies is checked against
    // a reference; if it rose 20%, a probe of 250 requests without hedging measures the baseline.
    // If hedging's median was more than 8% above the probe's (hedges lengthened the queues, which
    // slows every request, unlike a few stragglers), hedging pauses, twice as long each time;
    // otherwise the world changed (drift) and the probe's median becomes the new reference.
    enum class Phase { kHedging, kProbing, kPaused } phase = Phase::kHedging;
    uint64_t phase_requests = 0, pause_len = 1000;
    std::vector<double> recent = std::vector<double>(256, 0.0), probe, scratch = std::vector<double>(256, 0.0);
    size_t recent_next = 0, recent_count = 0;
    double reference = 0, suspect = 0;
    uint64_t hedges = 0, wins = 0, denied_budget = 0, denied_gate = 0;
  };
  BudgetOptions budget;
  GateOptions gate;
  mutable std::mutex mu;
  static void track_load(KeyState& s, double latency_ms);
  KeyedState<KeyState> keys;  // guarded by mu

  KeyState& state(std::string_view key) {
    return keys.get(key, [&] {
      KeyState s;
      s.results.assign(std::max<size_t>(gate.window, 1), 0);
      s.balance = std::min(1.0, budget.cap);  // one hedge of credit to start
      return s;
    });
  }
};

HedgePolicy::HedgePolicy(std::unique_ptr<HedgeStrategy> strategy, BudgetOptions budget, GateOptions gate)
    : strategy_(std::move(strategy)), impl_(std::make_unique<Impl>()) {
  impl_->budget = budget;
  impl_->gate = gate;
}

HedgePolicy::~HedgePolicy() = default;

std::string_view HedgePolicy::strategy_name() const { return strategy_->name(); }

std::optional<double> HedgePolicy::plan(const HedgeRequest& request) {
  {
    std::lock_guard lock(impl_->mu);
    auto& s = impl_->state(request.key);
    double dt = std::isnan(s.last_s) ? 0 : std::max(0.0, request.now_s - s.last_s);
    s.last_s = request.now_s;
    s.balance = std::min(impl_->budget.cap, s.balance + impl_->budget.percent + impl_->budget.min_per_second * dt);
    ++s.requests;
    ++s.phase_requests;
    if (s.phase != Impl::KeyState::Phase::kHedging || s.requests < s.suppress_until) {
      (void)strategy_->delay_ms(request);  // the strategy sees every request
      return std::nullopt;
    }
  }
  return strategy_->delay_ms(request);
}

bool HedgePolicy::permit_backup(std::string_view key, double) {
  std::lock_guard lock(impl_->mu);
  auto& s = impl_->state(key);
  if (s.requests < s.suppress_until) {
    ++s.denied_gate;
    return false;
  }
  if (s.balance < 1.0) {
    ++s.denied_budget;
    return false;
  }
  s.balance -= 1.0;
  return true;
}

namespace {

double median_of(std::vector<double>& v, size_t n) {
  std::nth_element(v.begin(), v.begin() + static_cast<long>(n / 2), v.begin() + static_cast<long>(n));
  return v[n / 2];
}

}  // namespace

void HedgePolicy::Impl::track_load(KeyState& s, double latency_ms) {
  using P = KeyState::Phase;
  constexpr uint64_t kSettle = 50, kProbe = 250, kWindow = 256;
  switch (s.phase) {
    case P::kHedging: {
      s.recent[s.recent_next] = latency_ms;
      s.recent_next = (s.recent_next + 1) % s.recent.size();
      s.recent_count = std::min(s.recent_count + 1, s.recent.size());
      if (s.recent_count < kWindow || s.phase_requests % kWindow != 0) break;
      std::copy(s.recent.begin(), s.recent.end(), s.scratch.begin());
      double m = median_of(s.scratch, s.scratch.size());
      if (s.reference == 0) {
        s.reference = m;
      } else if (m > 1.2 * s.reference) {
        s.suspect = m;
        s.phase = P::kProbing;
        s.phase_requests = 0;
        s.probe.clear();
        s.probe.reserve(kProbe);
      }
      break;
    }
    case P::kProbing:
      if (s.phase_requests > kSettle) s.probe.push_back(latency_ms);
      if (s.phase_requests >= kProbe) {
        double baseline = median_of(s.probe, s.probe.size());
        s.phase_requests = 0;
        s.recent_count = s.recent_next = 0;
        if (s.suspect > 1.08 * baseline) {
          s.phase = P::kPaused;
          s.pause_len = std::min<uint64_t>(s.pause_len * 2, 64'000);
        } else {
          s.phase = P::kHedging;
          s.reference = baseline;
          s.pause_len = 1000;
        }
      }
      break;
    case P::kPaused:
      if (s.phase_requests >= s.pause_len) {
        s.phase = P::kHedging;  // try again; a rising median sends it back to a probe
        s.phase_requests = 0;
      }
      break;
  }
}

void HedgePolicy::record(const HedgeOutcome& outcome) {
  strategy_->record(outcome);
  std::lock_guard lock(impl_->mu);
  auto& s = impl_->state(outcome.key);
  if (!outcome.error) Impl::track_load(s, outcome.latency_ms);
  if (!outcome.hedged) return;
  const GateOptions& g = impl_->gate;
  ++s.hedges;
  if (outcome.hedge_won) ++s.wins;
  if (s.count == s.results.size())
    s.won -= s.results[s.next];
  else
    ++s.count;
  s.results[s.next] = outcome.hedge_won ? 1 : 0;
  s.won += s.results[s.next];
  s.next = (s.next + 1) % s.results.size();
  if (s.count < g.min_hedges) return;
  double rate = static_cast<double>(s.won) / static_cast<double>(s.count);
  if (rate < g.min_win_rate) {
    s.suppress_until = s.requests + (g.cooldown_requests << std::min(s.trips, 6));
    s.trips = std::min(s.trips + 1, 6);
    s.count = s.won = s.next = 0;
  } else if (s.count == s.results.size() && s.trips > 0) {
    --s.trips;
  }
}

Json HedgePolicy::stats() const {
  Json keys = Json::object();
  {
    std::lock_guard lock(impl_->mu);
    impl_->keys.each([&](const std::string& k, const Impl::KeyState& s) {
      keys[k] = {{"requests", s.requests},
                 {"hedges", s.hedges},
                 {"hedges_won", s.wins},
                 {"denied_by_budget", s.denied_budget},
                 {"denied_by_gate", s.denied_gate},
                 {"budget_tokens", s.balance},
                 {"gate_open", s.requests >= s.suppress_until},
                 {"load_phase", s.phase == Impl::KeyState::Phase::kHedging   ? "hedging"
                                : s.phase == Impl::KeyState::Phase::kProbing ? "probing"
                                                                             : "paused"},
                 {"recent_latencies", s.recent_count}};
    });
  }
  return Json{{"strategy", strategy_->name()}, {"keys", keys}, {"strategy_state", strategy_->stats()}};
}

}  // namespace crucible
