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

std::chrono::nanoseconds ms_to_ns(double ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double, std::milli>(ms));
}

// One hedged call: launches attempts on the executor, sleeps on the clock until an attempt
// finishes, a backup is due, the deadline passes or `stop` fires, and keeps the first success.
// Everything runs on the caller's thread with `shared.mu` held, except the sleeps.
class HedgeCall {
 public:
  HedgeCall(Executor& executor, Clock& clock, HedgePolicy& policy, const HedgeCallOptions& options,
            std::stop_token stop, Hedger::Attempt attempt)
      : executor_(executor),
        clock_(clock),
        policy_(policy),
        options_(options),
        stop_(std::move(stop)),
        shared_(std::make_shared<Shared>()),
        lock_(shared_->mu, std::defer_lock) {
    shared_->fn = std::move(attempt);
    shared_->attempts.resize(static_cast<size_t>(std::max(0, options.max_hedges)) + 1);
    t0_ = clock_.monotonic();
    t0_s_ = std::chrono::duration<double>(t0_.time_since_epoch()).count();
    HedgeRequest request{options.key,        t0_s_, options.size, options.model_complexity, options.priority,
                         time_of_day(clock_)};
    delay_ = policy_.plan(request);
    meta_.strategy = std::string(policy_.strategy_name());
    meta_.hedge_delay_ms = delay_;
    planned_ = delay_ ? shared_->attempts.size() : 1;
    next_hedge_ = delay_ ? t0_ + ms_to_ns(*delay_) : MonoTime::max();
    deadline_ = options.timeout ? t0_ + *options.timeout : MonoTime::max();
  }

  Result<HedgeMetadata> run() {
    lock_.lock();
    launch(0);
    while (true) {
      const bool retry_now = take_finished();
      if (winner_) return won();
      const MonoTime now = clock_.monotonic();
      if (stop_.stop_requested()) return abandon(Error(ErrorCode::kCancelled, "hedged request cancelled"));
      if (options_.timeout && now >= deadline_) {
        return abandon(Error(ErrorCode::kDeadlineExceeded, "hedged request timed out after " +
                                                               std::to_string(options_.timeout->count()) + " ms (" +
                                                               std::to_string(started_) + " attempts)"));
      }
      if ((retry_now || now >= next_hedge_) && started_ < planned_) {
        if (policy_.permit_backup(options_.key, t0_s_)) {
          launch(started_);
          meta_.hedged = true;
          if (!retry_now && delay_) next_hedge_ += ms_to_ns(*delay_);
          continue;
        }
        meta_.budget_denied = true;
        next_hedge_ = MonoTime::max();
      }
      if (running() == 0 && shared_->finished.empty()) return all_failed(now);
      sleep_until(std::min(deadline_, started_ < planned_ ? next_hedge_ : MonoTime::max()));
    }
  }

 private:
  void launch(size_t i) {
    shared_->attempts[i].start = clock_.monotonic();
    ++started_;
    std::stop_token token = shared_->attempts[i].stop.get_token();
    executor_.submit([shared = shared_, i, token, clock = &clock_] {
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
  }

  // Takes finished attempts in completion order: the first success wins. Returns whether a
  // retryable failure calls for the next attempt at once (gRPC's rule).
  bool take_finished() {
    bool retry_now = false;
    while (!shared_->finished.empty() && !winner_) {
      size_t i = shared_->finished.front();
      shared_->finished.pop_front();
      const auto& a = shared_->attempts[i];
      if (!a.error) {
        winner_ = i;
        break;
      }
      last_error_ = a.error;
      if (is_retryable(*a.error) && started_ < planned_) retry_now = true;
    }
    return retry_now;
  }

  size_t running() const {
    size_t n = 0;
    for (size_t i = 0; i < started_; ++i) n += shared_->attempts[i].done ? 0 : 1;
    return n;
  }

  // Sleeps until `until`; a finishing attempt or a stop request wakes it. The cap keeps an open
  // deadline finite.
  void sleep_until(MonoTime until) {
    shared_->wake = std::stop_source();
    std::stop_token wake = shared_->wake.get_token();
    lock_.unlock();
    {
      std::stop_source both;
      std::stop_callback on_wake(wake, [&both] { both.request_stop(); });
      std::stop_callback on_stop(stop_, [&both] { both.request_stop(); });
      clock_.sleep_for(std::min<std::chrono::nanoseconds>(until - clock_.monotonic(), kLongestSleep), both.get_token());
    }
    lock_.lock();
  }

  void cancel_others(std::optional<size_t> keep) {
    for (size_t i = 0; i < started_; ++i) {
      if (!keep || i != *keep) shared_->attempts[i].stop.request_stop();
    }
  }

  // With wait_for_losers, every way out waits until the cancelled attempts have returned.
  void await_losers() {
    while (options_.wait_for_losers && running() > 0) {
      shared_->wake = std::stop_source();
      std::stop_token wake = shared_->wake.get_token();
      lock_.unlock();
      clock_.sleep_for(kLongestSleep, wake);  // each attempt that finishes wakes it
      lock_.lock();
    }
  }

  Result<HedgeMetadata> abandon(Error why) {
    cancel_others(std::nullopt);
    await_losers();
    return make_error(std::move(why));
  }

  Result<HedgeMetadata> all_failed(MonoTime now) {
    HedgeOutcome o{options_.key,         t0_s_,         delay_.value_or(INFINITY),
                   meta_.hedged,         false,         true,
                   ms_between(t0_, now), false,         0,
                   std::nullopt,         options_.size, static_cast<int>(started_) - 1};
    lock_.unlock();
    policy_.record(o);
    return make_error(last_error_ ? *last_error_ : Error(ErrorCode::kInternal, "no attempt finished"));
  }

  Result<HedgeMetadata> won() {
    cancel_others(winner_);
    const MonoTime end = clock_.monotonic();
    await_losers();
    const size_t w = *winner_;
    meta_.attempts = static_cast<int>(started_);
    meta_.winner = static_cast<int>(w);
    meta_.hedge_won = w > 0;
    meta_.total_latency_ms = ms_between(t0_, end);
    const auto& primary = shared_->attempts[0];
    if (primary.done && !primary.error) meta_.primary_latency_ms = primary.latency_ms;
    if (w > 0) meta_.backup_latency_ms = shared_->attempts[w].latency_ms;
    HedgeOutcome o{options_.key,
                   t0_s_,
                   delay_.value_or(INFINITY),
                   meta_.hedged,
                   meta_.hedge_won,
                   false,
                   meta_.total_latency_ms,
                   meta_.primary_latency_ms.has_value(),
                   meta_.primary_latency_ms.value_or(meta_.total_latency_ms),
                   meta_.backup_latency_ms,
                   options_.size,
                   static_cast<int>(started_) - 1};
    lock_.unlock();
    policy_.record(o);
    return meta_;
  }

  Executor& executor_;
  Clock& clock_;
  HedgePolicy& policy_;
  const HedgeCallOptions& options_;
  std::stop_token stop_;
  std::shared_ptr<Shared> shared_;
  std::unique_lock<std::mutex> lock_;
  MonoTime t0_{};
  double t0_s_ = 0;
  std::optional<double> delay_;
  size_t planned_ = 1;
  MonoTime next_hedge_{};
  MonoTime deadline_{};
  size_t started_ = 0;
  HedgeMetadata meta_;
  std::optional<size_t> winner_;
  std::optional<Error> last_error_;
};

}  // namespace

Hedger::Hedger(Executor& executor, Clock& clock, HedgePolicy& policy)
    : executor_(executor), clock_(clock), policy_(policy) {}

Result<HedgeMetadata> Hedger::run(Attempt attempt, const HedgeCallOptions& options, std::stop_token stop) {
  return HedgeCall(executor_, clock_, policy_, options, std::move(stop), std::move(attempt)).run();
}

}  // namespace crucible
