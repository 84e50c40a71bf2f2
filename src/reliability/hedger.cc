#include "crucible/reliability/hedger.h"

#include <cmath>
#include <ctime>
#include <deque>
#include <mutex>

namespace crucible {

Json HedgeMetadata::to_json() const {
  auto opt = [](const std::optional<double>& v) { return v ? Json(*v) : Json(); };
  return Json{{"hedged", hedged},
              {"hedge_won", hedge_won},
              {"attempts", attempts},
              {"cost", attempts},
              {"winner", winner},
              {"total_latency", total_latency_ms},
              {"primary_latency", opt(primary_latency_ms)},
              {"backup_latency", opt(backup_latency_ms)},
              {"hedge_delay", opt(hedge_delay_ms)},
              {"budget_denied", budget_denied},
              {"strategy", strategy}};
}

namespace {

constexpr std::chrono::nanoseconds kLongestSleep = std::chrono::hours(1);

double ms_between(MonoTime a, MonoTime b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

std::string_view time_of_day(Clock& clock) {
  std::time_t t = std::chrono::system_clock::to_time_t(clock.now());
  std::tm tm{};
  localtime_r(&t, &tm);
  if (tm.tm_hour >= 9 && tm.tm_hour < 18) return "peak";
  if (tm.tm_hour < 6) return "off_peak";
  return "normal";
}

// State shared with attempts, which may outlive the call that started them.
struct Shared {
  struct AttemptState {
    std::stop_source stop;
    MonoTime start{};
    bool done = false;
    std::optional<Error> error;
    double latency_ms = 0;  // from the attempt's own start
  };
  std::mutex mu;
  std::vector<AttemptState> attempts;  // guarded by mu
  std::deque<size_t> finished;         // guarded by mu: completion order
  std::stop_source wake;               // guarded by mu: interrupts the hedger's sleep
  Hedger::Attempt fn;
};

}  // namespace

Hedger::Hedger(Executor& executor, Clock& clock, HedgePolicy& policy)
    : executor_(executor), clock_(clock), policy_(policy) {}

Result<HedgeMetadata> Hedger::run(Attempt attempt, const HedgeCallOptions& options, std::stop_token stop) {
  auto shared = std::make_shared<Shared>();
  shared->fn = std::move(attempt);
  const size_t max_attempts = static_cast<size_t>(std::max(0, options.max_hedges)) + 1;
  shared->attempts.resize(max_attempts);

  const MonoTime t0 = clock_.monotonic();
  const double t0_s = std::chrono::duration<double>(t0.time_since_epoch()).count();
  HedgeRequest request{options.key,        t0_s, options.size, options.model_complexity, options.priority,
                       time_of_day(clock_)};
  const std::optional<double> delay = policy_.plan(request);

  HedgeMetadata meta;
  meta.strategy = std::string(policy_.strategy_name());
  meta.hedge_delay_ms = delay;
  size_t started = 0;
  auto launch = [&](size_t i) {  // called with shared->mu held
    shared->attempts[i].start = clock_.monotonic();
    ++started;
    std::stop_token token = shared->attempts[i].stop.get_token();
    Clock* clock = &clock_;
    executor_.submit([shared, i, token, clock] {
      Status s = shared->fn(static_cast<int>(i), token);
      MonoTime end = clock->monotonic();
      std::lock_guard lock(shared->mu);
      auto& a = shared->attempts[i];
      a.done = true;
      a.latency_ms = ms_between(a.start, end);
      if (!s) a.error = s.error();
      shared->finished.push_back(i);
      shared->wake.request_stop();
    });
  };

  const MonoTime deadline = options.timeout ? t0 + *options.timeout : MonoTime::max();
  const size_t planned = delay ? max_attempts : 1;
  MonoTime next_hedge =
      delay
          ? t0 + std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double, std::milli>(*delay))
          : MonoTime::max();
  std::optional<size_t> winner;
  std::optional<Error> last_error;
  std::unique_lock lock(shared->mu);
  launch(0);
  auto cancel_others = [&](std::optional<size_t> keep) {
    for (size_t i = 0; i < started; ++i) {
      if (!keep || i != *keep) shared->attempts[i].stop.request_stop();
    }
  };
  // With wait_for_losers, every way out waits until the cancelled attempts have returned.
  auto await_losers = [&] {
    while (options.wait_for_losers) {
      size_t running = 0;
      for (size_t i = 0; i < started; ++i) running += shared->attempts[i].done ? 0 : 1;
      if (running == 0) break;
      shared->wake = std::stop_source();
      std::stop_token wake = shared->wake.get_token();
      lock.unlock();
      clock_.sleep_for(kLongestSleep, wake);  // each attempt that finishes wakes it
      lock.lock();
    }
  };
  while (true) {
    bool fire_now = false;
    while (!shared->finished.empty() && !winner) {
      size_t i = shared->finished.front();
      shared->finished.pop_front();
      const auto& a = shared->attempts[i];
      if (!a.error) {
        winner = i;
        break;
      }
      last_error = a.error;
      if (is_retryable(*a.error) && started < planned) fire_now = true;
    }
    if (winner) break;
    size_t running = 0;
    for (size_t i = 0; i < started; ++i) running += shared->attempts[i].done ? 0 : 1;
    MonoTime now = clock_.monotonic();
    if (stop.stop_requested()) {
      cancel_others(std::nullopt);
      await_losers();
      return make_error(ErrorCode::kCancelled, "hedged request cancelled");
    }
    if (options.timeout && now >= deadline) {
      cancel_others(std::nullopt);
      await_losers();
      return make_error(ErrorCode::kDeadlineExceeded, "hedged request timed out after " +
                                                          std::to_string(options.timeout->count()) + " ms (" +
                                                          std::to_string(started) + " attempts)");
    }
    if (fire_now || (now >= next_hedge && started < planned)) {
      if (started < planned && policy_.permit_backup(options.key, t0_s)) {
        launch(started);
        meta.hedged = true;
        if (!fire_now && delay)
          next_hedge +=
              std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double, std::milli>(*delay));
        continue;
      }
      meta.budget_denied = true;
      next_hedge = MonoTime::max();
    }
    if (running == 0 && shared->finished.empty()) {
      HedgeOutcome o{
          options.key,  t0_s,        delay.value_or(INFINITY), meta.hedged, false, true, ms_between(t0, now), false, 0,
          std::nullopt, options.size};
      lock.unlock();
      policy_.record(o);
      return make_error(last_error ? *last_error : Error(ErrorCode::kInternal, "no attempt finished"));
    }
    MonoTime until = std::min(deadline, started < planned ? next_hedge : MonoTime::max());
    shared->wake = std::stop_source();
    std::stop_token wake = shared->wake.get_token();
    lock.unlock();
    {
      std::stop_source both;
      std::stop_callback on_wake(wake, [&both] { both.request_stop(); });
      std::stop_callback on_stop(stop, [&both] { both.request_stop(); });
      // Attempts and stop requests wake the sleep; the cap keeps an open deadline finite.
      clock_.sleep_for(std::min<std::chrono::nanoseconds>(until - clock_.monotonic(), kLongestSleep), both.get_token());
    }
    lock.lock();
  }
  cancel_others(winner);
  const MonoTime end = clock_.monotonic();
  await_losers();
  const auto& w = shared->attempts[*winner];
  meta.attempts = static_cast<int>(started);
  meta.winner = static_cast<int>(*winner);
  meta.hedge_won = *winner > 0;
  meta.total_latency_ms = ms_between(t0, end);
  const auto& primary = shared->attempts[0];
  if (primary.done && !primary.error) meta.primary_latency_ms = primary.latency_ms;
  if (*winner > 0) meta.backup_latency_ms = w.latency_ms;
  HedgeOutcome o{options.key,
                 t0_s,
                 delay.value_or(INFINITY),
                 meta.hedged,
                 meta.hedge_won,
                 false,
                 meta.total_latency_ms,
                 meta.primary_latency_ms.has_value(),
                 meta.primary_latency_ms.value_or(meta.total_latency_ms),
                 meta.backup_latency_ms,
                 options.size};
  lock.unlock();
  policy_.record(o);
  return meta;
}

}  // namespace crucible
