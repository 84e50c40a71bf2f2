#include "hedging_sim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <queue>
#include <string>

namespace crucible::bench {
namespace {

// One request's race in virtual time: the primary and the backups the policy sends at
// multiples of `delay` while nothing has answered.
struct Race {
  double t = 0;  // when the first answer arrived
  int winner = 0;
  int started = 1;
  std::vector<double> start, x;  // each attempt's start and latency

  Race(const Scenario& s, const World& w, HedgePolicy* policy, uint64_t i, std::optional<double> delay,
       std::string_view key, double now) {
    double x0 = w.latency(i, 0);
    t = x0;
    start = {0};
    x = {x0};
    for (int k = 1; delay && k <= s.max_hedges; ++k) {
      double tk = *delay * k;
      if (tk >= t || !policy->permit_backup(key, now)) break;
      double xk = w.latency(i, static_cast<uint64_t>(k));
      start.push_back(tk);
      x.push_back(xk);
      ++started;
      if (tk + xk < t) {
        t = tk + xk;
        winner = k;
      }
    }
  }
  double busy() const {
    double b = 0;
    for (size_t k = 0; k < start.size(); ++k) b += std::min(t, start[k] + x[k]) - start[k];
    return b;
  }
  HedgeOutcome outcome(const HedgeRequest& req, std::optional<double> delay) const {
    HedgeOutcome o;
    o.key = req.key;
    o.now_s = req.now_s;
    o.delay_ms = delay.value_or(kInf);
    o.hedged = started > 1;
    o.hedge_won = winner > 0;
    o.latency_ms = t;
    o.primary_finished = winner == 0;
    o.primary_latency_ms = winner == 0 ? x[0] : t;
    if (started > 1 && start[1] + x[1] <= t + 1e-9) o.backup_latency_ms = x[1];
    if (req.size) o.size = *req.size;
    o.backups = started - 1;
    return o;
  }
};

}  // namespace

// One policy over one scenario and seed, request by request in virtual time.
RunStats simulate(const Scenario& s, const World& w, HedgePolicy* policy) {
  RunStats st;
  st.latency.reserve(s.requests);
  for (uint64_t i = 0; i < s.requests; ++i) {
    HedgeRequest req;
    req.key = "backend";
    req.now_s = static_cast<double>(i) / s.rate_per_s;
    if (s.kind == "size") req.size = w.size(i);
    std::optional<double> d = policy != nullptr ? policy->plan(req) : std::nullopt;
    Race race(s, w, policy, i, d, req.key, req.now_s);
    st.latency.push_back(race.t);
    st.attempts += race.started;
    st.extra.push_back(static_cast<uint8_t>(race.started - 1));
    st.primary_work += race.x[0];
    st.extra_work += race.busy() - race.x[0];
    if (i >= 2000) {
      st.late_requests += 1;
      st.late_attempts += race.started;
    }
    if (policy != nullptr) policy->record(race.outcome(req, d));
  }
  st.finish();
  return st;
}

namespace {

// The queueing model, an event-driven simulation: `servers` FIFO servers, Poisson arrivals at the
// offered load, each attempt sent to the shorter of two random queues (a backup never to a server
// its request already uses), losers cancelled when the winner answers (removed from their queue,
// or stopped in service).
class QueueSimulation {
 public:
  QueueSimulation(const Scenario& s, uint64_t seed, const World& w, HedgePolicy* policy, double mean_service)
      : s_(s),
        seed_(seed),
        w_(w),
        policy_(policy),
        rate_per_ms_(s.load * s.servers / mean_service),
        servers_(static_cast<size_t>(s.servers)),
        reqs_(s.requests) {
    st_.latency.reserve(s.requests);
    st_.extra.assign(s.requests, 0);
  }

  RunStats run() {
    events_.push({0, seq_++, kArrival, 0, 0, -1, 0});
    while (!events_.empty()) {
      Event e = events_.top();
      events_.pop();
      if (e.type == kArrival) on_arrival(e);
      if (e.type == kHedgeTimer) on_hedge_timer(e);
      if (e.type == kServiceDone) on_service_done(e);
    }
    st_.finish();
    return st_;
  }

 private:
  enum EventType { kArrival, kHedgeTimer, kServiceDone };
  struct Event {
    double t;
    uint64_t seq;
    EventType type;
    uint64_t i;
    int k;
    int server;
    uint64_t generation;
    bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  struct Job {
    uint64_t i;
    int k;
    double service;
  };
  struct Server {
    std::deque<Job> queue;
    bool busy = false;
    Job current{};
    double started = 0;
    uint64_t generation = 0;
  };
  struct Attempt {
    int server = -1;
    double start = -1, end = -1;
  };
  struct Req {
    double arrival = 0;
    std::optional<double> delay;
    bool done = false;
    int started = 0;
    std::vector<Attempt> attempts;
  };

  Server& server(int sv) { return servers_[static_cast<size_t>(sv)]; }
  size_t load(int sv) { return server(sv).queue.size() + (server(sv).busy ? 1 : 0); }

  void on_arrival(const Event& e) {
    ++arrived_;
    Req& r = reqs_[e.i];
    r.arrival = e.t;
    r.attempts.resize(static_cast<size_t>(s_.max_hedges) + 1);
    HedgeRequest req;
    req.key = "backend";
    req.now_s = e.t / 1000.0;
    r.delay = policy_ != nullptr ? policy_->plan(req) : std::nullopt;
    dispatch(e.i, 0, e.t);
    if (r.delay) events_.push({e.t + *r.delay, seq_++, kHedgeTimer, e.i, 1, -1, 0});
    if (e.i + 1 < s_.requests) {
      t_arrival_ += -std::log(std::max(crn(seed_, e.i + 1, 0, 7), 1e-300)) / rate_per_ms_;
      events_.push({t_arrival_, seq_++, kArrival, e.i + 1, 0, -1, 0});
    }
  }

  void on_hedge_timer(const Event& e) {
    Req& r = reqs_[e.i];
    if (r.done || e.k > s_.max_hedges) return;
    if (!policy_->permit_backup("backend", e.t / 1000.0)) return;
    // The budget sees a backup after the deposits of every request that has arrived by now.
    ++st_.extra[arrived_ - 1];
    dispatch(e.i, e.k, e.t);
    if (e.k < s_.max_hedges) events_.push({e.t + *r.delay, seq_++, kHedgeTimer, e.i, e.k + 1, -1, 0});
  }

  void on_service_done(const Event& e) {
    if (e.generation != server(e.server).generation) return;  // stopped
    Req& r = reqs_[e.i];
    r.attempts[static_cast<size_t>(e.k)].end = e.t;
    if (!r.done) finish(e.i, e.k, e.t);
    start_next(e.server, e.t);
  }

  void start_next(int sv, double now) {
    Server& srv = server(sv);
    srv.busy = false;
    while (!srv.queue.empty()) {
      Job j = srv.queue.front();
      srv.queue.pop_front();
      if (reqs_[j.i].done) continue;
      srv.busy = true;
      srv.current = j;
      srv.started = now;
      reqs_[j.i].attempts[static_cast<size_t>(j.k)].start = now;
      events_.push({now + j.service, seq_++, kServiceDone, j.i, j.k, sv, ++srv.generation});
      return;
    }
  }

  // Attempt k of request i goes to the shorter of two random queues it does not use yet.
  void dispatch(uint64_t i, int k, double now) {
    Req& r = reqs_[i];
    auto used = [&](int sv) {
      return std::any_of(r.attempts.begin(), r.attempts.end(), [sv](const Attempt& a) { return a.server == sv; });
    };
    int a = static_cast<int>(crn(seed_, i, static_cast<uint64_t>(k), 5) * s_.servers);
    int b = static_cast<int>(crn(seed_, i, static_cast<uint64_t>(k), 6) * s_.servers);
    for (int n = 0; n < s_.servers && used(a); ++n) a = (a + 1) % s_.servers;
    for (int n = 0; n < s_.servers && used(b); ++n) b = (b + 1) % s_.servers;
    int sv = load(a) <= load(b) ? a : b;
    r.attempts[static_cast<size_t>(k)].server = sv;
    ++r.started;
    server(sv).queue.push_back(Job{i, k, w_.latency(i, static_cast<uint64_t>(k))});
    if (!server(sv).busy) start_next(sv, now);
  }

  // Request i is answered by `winner`: the losers stop, the statistics and the policy learn.
  void finish(uint64_t i, int winner, double now) {
    Req& r = reqs_[i];
    r.done = true;
    double busy = 0;
    for (size_t k = 0; k < r.attempts.size(); ++k) {
      Attempt& a = r.attempts[k];
      if (a.server < 0) continue;
      if (a.start >= 0) busy += (a.end >= 0 ? a.end : now) - a.start;
      if (static_cast<int>(k) == winner || a.start < 0) continue;
      Server& srv = server(a.server);
      if (srv.busy && srv.current.i == i && srv.current.k == static_cast<int>(k)) {
        ++srv.generation;  // the loser in service stops; its completion event is now stale
        start_next(a.server, now);
      }
    }
    double x0 = w_.latency(i, 0), latency = now - r.arrival;
    st_.latency.push_back(latency);
    st_.attempts += r.started;
    st_.primary_work += x0;
    st_.extra_work += busy - x0;
    if (i >= 2000) {
      st_.late_requests += 1;
      st_.late_attempts += r.started;
    }
    if (policy_ != nullptr) policy_->record(outcome(r, winner, now, latency));
  }

  HedgeOutcome outcome(const Req& r, int winner, double now, double latency) const {
    HedgeOutcome o;
    o.key = "backend";
    o.now_s = now / 1000.0;
    o.delay_ms = r.delay.value_or(kInf);
    o.hedged = r.started > 1;
    o.hedge_won = winner > 0;
    o.latency_ms = latency;
    o.primary_finished = winner == 0;
    o.primary_latency_ms = latency;
    if (winner > 0) o.backup_latency_ms = now - r.attempts[static_cast<size_t>(winner)].start;
    o.backups = r.started - 1;
    return o;
  }

  const Scenario& s_;
  const uint64_t seed_;
  const World& w_;
  HedgePolicy* policy_;
  const double rate_per_ms_;
  std::vector<Server> servers_;
  std::vector<Req> reqs_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  uint64_t arrived_ = 0;
  double t_arrival_ = 0;
  RunStats st_;
};

}  // namespace

RunStats simulate_queue(const Scenario& s, uint64_t seed, const World& w, HedgePolicy* policy, double mean_service) {
  return QueueSimulation(s, seed, w, policy, mean_service).run();
}

double Oracle::best(const std::vector<double>& metric, double off_metric, double cost) const {
  double b = off_metric;
  for (size_t i = 0; i < extra.size(); ++i) {
    if (extra[i] <= cost + 1e-9) b = std::min(b, metric[i]);
  }
  return b;
}

Oracle sweep(const Scenario& s, const World& w, const RunStats& off) {
  Oracle o;
  double lo = off.p(50) * 0.5, hi = off.p(99.9);
  std::vector<double> lat(s.requests);
  for (int j = 0; j < 48; ++j) {
    double d = lo * std::pow(hi / lo, j / 47.0);
    size_t hedged = 0;
    for (uint64_t i = 0; i < s.requests; ++i) {
      double x0 = w.latency(i, 0);
      lat[i] = x0;
      if (x0 > d) {
        ++hedged;
        lat[i] = std::min(x0, d + w.latency(i, 1));
      }
    }
    o.extra.push_back(100.0 * static_cast<double>(hedged) / static_cast<double>(s.requests));
    std::sort(lat.begin(), lat.end());
    auto at = [&](double q) { return lat[static_cast<size_t>(q / 100.0 * static_cast<double>(lat.size() - 1) + 0.5)]; };
    o.p99.push_back(at(99));
    o.p999.push_back(at(99.9));
  }
  return o;
}

double mean_service(const Scenario& s, uint64_t seed) {
  if (s.kind != "queue") return 0;
  World w(s, seed + 1000);
  double total = 0;
  for (uint64_t i = 0; i < 20000; ++i) total += w.draw(i, 0);
  return total / 20000;
}

RunStats simulate_any(const Scenario& s, uint64_t seed, const World& w, HedgePolicy* policy, double mean_service) {
  return s.kind == "queue" ? simulate_queue(s, seed, w, policy, mean_service) : simulate(s, w, policy);
}

}  // namespace crucible::bench
