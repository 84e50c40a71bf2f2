#include "crucible/reliability/hedging.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <span>
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
  // The samples held, in no particular order.
  std::span<const double> values() const { return {data_.data(), size_}; }
  void mark_fresh() { since_refresh_ = 0; }

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

// The earliest delay the budget pays for. For the tail, an earlier backup never hurts by itself
// (the first answer is kept), so at a given budget the best fixed delay is the one that spends it.
// The strategy hedges when the primary passes the (1 - p) quantile of recent primaries, and a
// controller steers p until the backups the delays ask for match the budget: with several backups
// per request, a fixed percentile would spend more than that. With request sizes the quantile is
// of latency per unit of size: a request slow for its size is hedged, a large one that is on time
// is not.
class AdaptiveStrategy : public HedgeStrategy {
 public:
  explicit AdaptiveStrategy(AdaptiveOptions o) : o_(std::move(o)) { std::sort(o_.delays.begin(), o_.delays.end()); }
  std::string_view name() const override { return "adaptive"; }

  std::optional<double> delay_ms(const HedgeRequest& r) override {
    std::lock_guard lock(mu_);
    State& s = state(r.key);
    if (s.sorted.empty()) return std::nullopt;  // warm-up: too few samples for any quantile
    double d = quantile(s, 1 - s.p);
    if (s.by_size) d *= r.size && *r.size > 0 ? *r.size : 1.0;
    if (!o_.delays.empty()) {
      // The earliest candidate no earlier than the quantile; none: do not hedge.
      auto it = std::lower_bound(o_.delays.begin(), o_.delays.end(), d);
      if (it == o_.delays.end()) return std::nullopt;
      d = *it;
    }
    return d;
  }

  void record(const HedgeOutcome& o) override {
    if (o.error) return;
    std::lock_guard lock(mu_);
    State& s = state(o.key);
    const bool sized = o.size && *o.size > 0;
    if (s.samples++ == 0) s.by_size = sized;
    // A primary that a backup beat counts at the answer's time: a lower bound, but one above the
    // delay in force, so the share of primaries above the delay is still right.
    s.primary.push(primary_sample(o) / (s.by_size && sized ? *o.size : 1.0));
    if (s.primary.size() >= o_.min_samples && (s.primary.stale(refresh_every(o_.window)) || s.sorted.empty())) {
      s.sorted.assign(s.primary.values().begin(), s.primary.values().end());
      std::sort(s.sorted.begin(), s.sorted.end());
      s.primary.mark_fresh();
    }
    if (!std::isfinite(o.delay_ms)) return;  // not hedged by this strategy (warm-up, gate, pause)
    // The backups this delay asked for: those started, or the first one if the budget denied it.
    const double asked = o.backups > 0 ? o.backups : (o.primary_latency_ms > o.delay_ms ? 1.0 : 0.0);
    const double target = target_rate();
    s.asked_rate = 0.995 * s.asked_rate + 0.005 * asked;
    s.p = std::clamp(s.p * std::exp(-o_.gain * (asked - target) / target), o_.min_p, o_.max_p);
  }

  Json stats() const override {
    std::lock_guard lock(mu_);
    Json out = Json::object();
    keys_.each([&](const std::string& k, const State& s) {
      out[k] = {{"samples", s.samples},
                {"hedge_quantile", 100 * (1 - s.p)},
                {"delay_ms", s.sorted.empty() ? Json() : Json(quantile(s, 1 - s.p))},
                {"per_unit_of_size", s.by_size},
                {"asked_rate", s.asked_rate}};
    });
    return Json{{"budget", o_.budget}, {"target_rate", target_rate()}, {"keys", out}};
  }

 private:
  struct State {
    Window primary;
    std::vector<double> sorted;  // the window, sorted at its last refresh
    double p = 0;                // hedge when the primary passes its (1 - p) quantile
    double asked_rate = 0;
    uint64_t samples = 0;
    bool by_size = false;
  };

  // A budget of 0 still gets the smallest rate, so that the controller has a set point.
  double target_rate() const { return std::max(o_.budget * (1 - o_.margin), o_.min_p); }

  // Nearest rank.
  static double quantile(const State& s, double q) {
    const size_t n = s.sorted.size();
    size_t rank = static_cast<size_t>(std::ceil(static_cast<double>(n) * q));
    return s.sorted[std::min(rank == 0 ? 0 : rank - 1, n - 1)];
  }

  State& state(std::string_view key) {
    return keys_.get(key, [&] {
      State s{Window(o_.window), {}, 0, 0, 0, false};
      s.p = std::clamp(target_rate(), o_.min_p, o_.max_p);
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
      // A rise counts when it is 20% and well beyond the median's own noise: with a wide body
      // (sigma near 1) the median of 256 samples moves 20% by chance, and each false alarm costs
      // a probe of 250 requests without hedging, stragglers included.
      std::nth_element(s.scratch.begin(), s.scratch.begin() + 64, s.scratch.end());
      const double q25 = s.scratch[64];
      std::nth_element(s.scratch.begin(), s.scratch.begin() + 192, s.scratch.end());
      const double q75 = s.scratch[192];
      const double sigma = q25 > 0 ? std::log(q75 / q25) / 1.349 : 0;
      const double rise = std::max(1.2, std::exp(4 * 1.2533 * sigma / 16));  // 4 standard errors
      if (s.reference == 0) {
        s.reference = m;
      } else if (m > rise * s.reference) {
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
