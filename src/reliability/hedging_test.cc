#include "crucible/reliability/hedging.h"
#include "crucible/reliability/hedging_config.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace crucible {
namespace {

HedgeRequest req(std::string_view key, double now_s = 0) {
  HedgeRequest r;
  r.key = key;
  r.now_s = now_s;
  return r;
}

HedgeOutcome finished(double primary_ms, bool hedged = false, bool won = false) {
  HedgeOutcome o;
  o.key = "k";
  o.hedged = hedged;
  o.hedge_won = won;
  o.primary_finished = !won;
  o.primary_latency_ms = primary_ms;
  o.latency_ms = primary_ms;
  return o;
}

TEST(HedgeStrategies, OffNeverHedgesAndFixedUsesItsDelay) {
  HedgeRequest r = req("k");
  EXPECT_FALSE(make_off_strategy()->delay_ms(r).has_value());
  EXPECT_EQ(make_fixed_strategy(50)->delay_ms(r), 50.0);
}

TEST(HedgeStrategies, PercentileUsesTheInitialDelayUntilEnoughSamples) {
  PercentileOptions o;
  o.window = 1000;
  o.min_samples = 10;
  o.initial_delay_ms = 100;
  auto s = make_percentile_strategy(o);
  HedgeRequest r = req("k");
  EXPECT_EQ(s->delay_ms(r), 100.0);
  // The cached percentile is refreshed every window/50 = 20 samples: at 10, 30, ..., 110.
  for (int i = 1; i <= 110; ++i) s->record(finished(i));
  // Nearest rank: ceil(110 * 0.95) = the 105th value.
  EXPECT_EQ(s->delay_ms(r), 105.0);
  EXPECT_EQ(s->delay_ms(req("other")), 100.0);  // state is per key
}

TEST(HedgeStrategies, WorkloadAwareScalesByRequestClassWithAFloor) {
  auto s = make_workload_aware_strategy({});
  HedgeRequest r = req("k");
  r.size = 4001;
  r.model_complexity = "complex";
  r.time_of_day = "peak";
  r.priority = "high";
  EXPECT_DOUBLE_EQ(*s->delay_ms(r), 210.0);  // 100 * 2.5 * 2.0 * 0.7 * 0.6
  HedgeRequest tiny = req("k");
  tiny.model_complexity = "simple";
  tiny.priority = "high";
  tiny.time_of_day = "peak";
  WorkloadOptions o;
  o.base_delay_ms = 20;
  EXPECT_DOUBLE_EQ(*make_workload_aware_strategy(o)->delay_ms(tiny), 10.0);  // floor
}

TEST(HedgeStrategies, WorkloadAwareLearnsLatencyPerUnitOfSize) {
  WorkloadOptions o;
  o.min_samples = 20;
  auto s = make_workload_aware_strategy(o);
  for (int i = 0; i < 100; ++i) {
    HedgeOutcome out = finished(2.0 * (100 + i));
    out.size = 100 + i;
    s->record(out);
  }
  HedgeRequest r = req("k");
  r.size = 500;
  EXPECT_NEAR(*s->delay_ms(r), 1000.0, 1e-9);  // 2 ms per unit
}

TEST(HedgeStrategies, ExponentialBackoffGrowsOnWasteShrinksOnWinsAndClamps) {
  BackoffOptions o;
  auto s = make_exponential_backoff_strategy(o);
  HedgeRequest r = req("k");
  EXPECT_EQ(s->delay_ms(r), 100.0);
  s->record(finished(500, /*hedged=*/true, /*won=*/false));
  EXPECT_EQ(s->delay_ms(r), 150.0);
  s->record(finished(5, true, true));
  EXPECT_EQ(s->delay_ms(r), 135.0);
  HedgeOutcome err = finished(1);
  err.error = true;
  s->record(err);
  EXPECT_EQ(s->delay_ms(r), 270.0);
  for (int i = 0; i < 50; ++i) s->record(finished(1, true, false));
  EXPECT_EQ(s->delay_ms(r), 5000.0);
}

TEST(HedgePolicy, BudgetLimitsBackupsToItsShareOfRequests) {
  BudgetOptions b;
  b.percent = 0.05;
  b.cap = 5;
  HedgePolicy policy(make_fixed_strategy(1), b, GateOptions{.min_hedges = 1'000'000});
  int permitted = 0;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(policy.plan(req("k", i * 0.01)).has_value());
    if (policy.permit_backup("k", i * 0.01)) ++permitted;
  }
  EXPECT_GE(permitted, 49);
  EXPECT_LE(permitted, 52);
}

TEST(HedgePolicy, GateStopsHedgingWhenHedgesKeepLosing) {
  HedgePolicy policy(make_fixed_strategy(1), BudgetOptions{.percent = 1.0, .cap = 100},
                     GateOptions{.window = 20, .min_hedges = 20, .min_win_rate = 0.2, .cooldown_requests = 100});
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(policy.plan(req("k")).has_value());
    ASSERT_TRUE(policy.permit_backup("k", 0));
    policy.record(finished(10, true, false));
  }
  EXPECT_FALSE(policy.plan(req("k")).has_value());
  EXPECT_EQ(policy.stats()["keys"]["k"]["gate_open"], false);
  for (int i = 0; i < 120; ++i) (void)policy.plan(req("k"));
  EXPECT_TRUE(policy.plan(req("k")).has_value());  // reopens after the cooldown
}

// The load-harm detector: when the median latency rises while hedging, hedging pauses for a
// probe; if latencies drop back without hedges, the hedges were the harm and hedging stays paused
// (twice as long each time); if not, the rise was the server's and hedging resumes.
TEST(HedgePolicy, PausesHedgingWhenHedgesSlowTheServerDown) {
  HedgePolicy policy(make_fixed_strategy(1), BudgetOptions{.percent = 1.0, .cap = 100},
                     GateOptions{.min_hedges = 1'000'000});
  auto serve = [&](int n, double latency_ms) {
    for (int i = 0; i < n; ++i) {
      (void)policy.plan(req("k"));
      policy.record(finished(latency_ms));
    }
  };
  auto phase = [&] { return policy.stats()["keys"]["k"]["load_phase"].get<std::string>(); };
  serve(256, 10);  // sets the reference median
  EXPECT_EQ(phase(), "hedging");
  serve(256, 15);  // 1.5x: suspicious
  EXPECT_EQ(phase(), "probing");
  EXPECT_FALSE(policy.plan(req("k")).has_value());  // no hedges while probing
  serve(249, 10);                                   // without hedges the server is fast again: the hedges were the harm
  EXPECT_EQ(phase(), "paused");
  serve(2000, 10);  // the first pause: 2,000 requests
  EXPECT_EQ(phase(), "hedging");
  EXPECT_TRUE(policy.plan(req("k")).has_value());
  serve(511, 20);  // slower again, but it stays slow without hedges: the server's own change
  EXPECT_EQ(phase(), "probing");
  serve(250, 20);
  EXPECT_EQ(phase(), "hedging");
  EXPECT_EQ(policy.stats()["keys"]["k"]["recent_latencies"], 0);
}

// A wide body (sigma 1) moves the median of 256 samples by 20% by chance; the detector looks for
// a rise beyond that noise, so a stationary system does not pay for probes.
TEST(HedgePolicy, TheLoadDetectorIgnoresTheMediansNoise) {
  HedgePolicy policy(make_fixed_strategy(1), BudgetOptions{.percent = 1.0, .cap = 100},
                     GateOptions{.min_hedges = 1'000'000});
  SeededRandom rng(5);
  int probing = 0;
  for (int i = 0; i < 100'000; ++i) {
    (void)policy.plan(req("k"));
    double u1 = std::max(rng.uniform01(), 1e-12), u2 = rng.uniform01();
    policy.record(finished(10 * std::exp(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2))));
    if (policy.stats()["keys"]["k"]["load_phase"] != "hedging") ++probing;
  }
  EXPECT_EQ(probing, 0);
}

TEST(HedgeStrategies, AdaptiveAndBackoffReportTheirState) {
  auto adaptive = make_adaptive_strategy({});
  for (int i = 0; i < 50; ++i) {
    (void)adaptive->delay_ms(req("k"));
    adaptive->record(finished(10 + i % 5));
  }
  Json a = adaptive->stats();
  ASSERT_TRUE(a["keys"].contains("k"));
  EXPECT_EQ(a["keys"]["k"]["samples"], 50);
  EXPECT_TRUE(a["keys"]["k"]["delay_ms"].is_number());
  EXPECT_EQ(a["target_rate"], 0.05);
  auto backoff = make_exponential_backoff_strategy({});
  (void)backoff->delay_ms(req("k"));
  backoff->record(finished(10, true, false));
  EXPECT_TRUE(backoff->stats()["delay_ms"]["k"].is_number());
}

// Latencies for the adaptive tests: lognormal body around 10 ms, with optional 1% x30 stragglers.
double draw(SeededRandom& rng, bool stragglers, double straggler_p = 0.01) {
  double u1 = std::max(rng.uniform01(), 1e-12), u2 = rng.uniform01();
  double z = std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  double x = 10 * std::exp(0.25 * z);
  if (stragglers && rng.uniform01() < straggler_p) x *= 30;
  return x;
}

struct AdaptiveRun {
  double late_extra_rate = 0;  // backups per request over the last 1,000 requests
  double late_p99 = 0;         // over the last 1,000 requests
  Json stats;
};

// 4,000 requests through a policy, one backup at most.
AdaptiveRun run_adaptive(HedgePolicy& policy, bool stragglers, double straggler_p = 0.01) {
  SeededRandom rng(11);
  AdaptiveRun out;
  std::vector<double> late;
  int backups_late = 0;
  for (int i = 0; i < 4000; ++i) {
    HedgeRequest r = req("k", i * 0.001);
    auto d = policy.plan(r);
    double x1 = draw(rng, stragglers, straggler_p), x2 = draw(rng, stragglers, straggler_p);
    HedgeOutcome o;
    o.key = "k";
    o.delay_ms = d.value_or(INFINITY);
    o.hedged = d && *d < x1 && policy.permit_backup("k", r.now_s);
    o.backups = o.hedged ? 1 : 0;
    o.hedge_won = o.hedged && *d + x2 < x1;
    o.latency_ms = o.hedge_won ? *d + x2 : x1;
    o.primary_finished = !o.hedge_won;
    o.primary_latency_ms = o.primary_finished ? x1 : o.latency_ms;
    if (o.hedged) o.backup_latency_ms = x2;
    policy.record(o);
    if (i >= 3000) {
      backups_late += o.backups;
      late.push_back(o.latency_ms);
    }
  }
  std::sort(late.begin(), late.end());
  out.late_extra_rate = backups_late / 1000.0;
  out.late_p99 = late[989];
  out.stats = policy.stats()["strategy_state"];
  return out;
}

// The strategy alone: a bucket that never runs dry and a gate that never closes.
std::unique_ptr<HedgePolicy> unlimited(AdaptiveOptions o = {}) {
  return std::make_unique<HedgePolicy>(make_adaptive_strategy(std::move(o)), BudgetOptions{1, 0, 1e9},
                                       GateOptions{50, 20, 0, 200});
}

TEST(HedgeStrategies, AdaptiveSpendsTheBudgetItIsGiven) {
  for (double budget : {0.02, 0.05, 0.10}) {
    AdaptiveOptions o;
    o.budget = budget;
    auto p = unlimited(o);
    AdaptiveRun r = run_adaptive(*p, true);
    EXPECT_NEAR(r.late_extra_rate, budget, budget * 0.4) << budget;
  }
}

// Backups that win hide their primary's latency; with 4.8% stragglers against a 5% budget the
// delay still stays in the body, below every straggler, and rescues them.
TEST(HedgeStrategies, AdaptiveKeepsItsDelayInTheBodyWhenBackupsWin) {
  auto p = unlimited();
  AdaptiveRun r = run_adaptive(*p, true, 0.048);
  const double delay = r.stats["keys"]["k"]["delay_ms"].get<double>();
  EXPECT_LT(delay, 25) << r.stats.dump();  // the body's p99.9 is 21.7 ms; stragglers start near 150
  EXPECT_GT(delay, 10);
  EXPECT_LT(r.late_p99, 60);  // every straggler rescued: the delay plus a typical backup
}

TEST(HedgeStrategies, AdaptiveStopsHedgingWhenNothingIsGainedAndHedgesWhenItPays) {
  HedgePolicy control(make_adaptive_strategy({}));
  EXPECT_LE(run_adaptive(control, false).late_extra_rate, 0.01);
  HedgePolicy stragglers(make_adaptive_strategy({}));
  AdaptiveRun r = run_adaptive(stragglers, true);
  EXPECT_GT(r.late_extra_rate, 0.02);
  EXPECT_LE(r.late_extra_rate, 0.06);
  EXPECT_LT(r.late_p99, 60);
}

TEST(HedgeStrategies, AdaptiveWithNoBudgetHedgesOnlyTheSlowest) {
  AdaptiveOptions o;
  o.budget = 0;
  auto p = unlimited(o);
  AdaptiveRun r = run_adaptive(*p, true);
  EXPECT_TRUE(r.stats["keys"]["k"]["delay_ms"].is_number()) << r.stats.dump();
  EXPECT_LE(r.late_extra_rate, 0.01);  // the set point is 0.1%; the policy's own budget denies the rest
}

TEST(HedgeStrategies, AdaptiveScalesItsDelayWithTheRequestSize) {
  auto s = make_adaptive_strategy({});
  SeededRandom rng(3);
  for (int i = 0; i < 200; ++i) {
    HedgeOutcome o = finished(0);
    o.size = 1 + i % 4;
    o.primary_latency_ms = o.latency_ms = *o.size * draw(rng, false);
    s->record(o);
  }
  HedgeRequest small = req("k"), large = req("k");
  small.size = 1;
  large.size = 4;
  auto ds = s->delay_ms(small), dl = s->delay_ms(large);
  ASSERT_TRUE(ds && dl);
  EXPECT_DOUBLE_EQ(*dl, 4 * *ds);
  EXPECT_GT(*ds, 10);
  EXPECT_LT(*ds, 25);
  EXPECT_TRUE(s->stats()["keys"]["k"]["per_unit_of_size"].get<bool>());
}

TEST(HedgeStrategies, AdaptiveWithCandidatesUsesTheEarliestNoEarlierThanItsQuantile) {
  AdaptiveOptions o;
  o.delays = {50, 5, 15};
  auto s = make_adaptive_strategy(o);
  EXPECT_FALSE(s->delay_ms(req("k")).has_value());  // warm-up
  for (int i = 0; i < 100; ++i) s->record(finished(i < 95 ? 10 : 12));
  EXPECT_EQ(s->delay_ms(req("k")), 15.0);
  AdaptiveOptions late;
  late.delays = {5};
  auto none = make_adaptive_strategy(late);
  for (int i = 0; i < 100; ++i) none->record(finished(10));
  EXPECT_FALSE(none->delay_ms(req("k")).has_value());
}

TEST(MakeHedgePolicy, ParsesTheConfigAndRejectsBadValues) {
  int max_hedges = 0;
  auto p = make_hedge_policy(Json{{"strategy", "percentile"}, {"percentile", 90}, {"max_hedges", 2}}, &max_hedges);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ((*p)->strategy_name(), "percentile");
  EXPECT_EQ(max_hedges, 2);
  auto unknown = make_hedge_policy(Json{{"strategy", "telepathy"}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find("unknown hedging strategy 'telepathy'"), std::string::npos);
  EXPECT_FALSE(make_hedge_policy(Json{{"strategy", "fixed"}}));
  EXPECT_FALSE(make_hedge_policy(Json{{"strategy", "percentile"}, {"percentile", 150}}));
  EXPECT_FALSE(make_hedge_policy(Json{{"strategy", "fixed"}, {"delay_ms", 10}, {"max_hedges", 9}}));
  EXPECT_FALSE(make_hedge_policy(Json{{"strategy", "fixed"}, {"delay_ms", 10}, {"bogus", 1}}));
  for (const char* s : {"off", "adaptive", "workload_aware", "exponential_backoff"}) {
    EXPECT_TRUE(make_hedge_policy(Json{{"strategy", s}})) << s;
  }
}

// Each field and option of a hedging: mapping is checked, naming the field and what it needs.
TEST(HedgingConfig, NamesEachBadFieldAndOption) {
  const std::pair<Json, const char*> bad[] = {
      {Json{{"strategy", "fixed"}, {"delay_ms", 10}, {"max_hedges", 1.5}},
       "max_hedges: must be a whole number, got 1.5"},
      {Json{{"strategy", "fixed"}, {"delay_ms", 10}, {"budget_percent", 120}}, "budget_percent"},
      {Json{{"strategy", "fixed"}, {"delay_ms", 10}, {"options", 3}}, "options: must be a mapping, got integer"},
      {Json{{"strategy", "adaptive"}, {"options", {{"delay_candidates", {5, -1}}}}},
       "options.delay_candidates: holds -1; expected delays in ms"},
      {Json{{"strategy", "adaptive"}, {"options", {{"telepathy", 1}}}}, "unknown hedging option 'telepathy'; expected"},
      {Json{{"strategy", "percentile"}, {"options", {{"min_per_second", -1}}}}, "options.min_per_second"},
      {Json{{"strategy", "percentile"}, {"options", {{"initial_delay_ms", "soon"}}}}, "options.initial_delay_ms"},
      {Json{{"strategy", "exponential_backoff"},
            {"options", {{"exponential_min_delay", 500}, {"exponential_max_delay", 100}}}},
       "exponential_min_delay must be below exponential_max_delay"},
  };
  for (const auto& [config, fragment] : bad) {
    auto c = HedgingConfig::from_json(config);
    ASSERT_FALSE(c) << config.dump();
    EXPECT_NE(c.error().message().find(fragment), std::string::npos) << c.error().message();
  }
  EXPECT_NE(HedgingConfig::from_json(Json(3)).error().message().find("hedging config must be a mapping"),
            std::string::npos);
  EXPECT_EQ(hedge_strategy_name(HedgeStrategyKind::kExponentialBackoff), "exponential_backoff");
  auto good = HedgingConfig::from_json(
      Json{{"strategy", "percentile"}, {"options", {{"min_per_second", 2}, {"initial_delay_ms", 40}}}});
  ASSERT_TRUE(good) << good.error().to_string();
  EXPECT_EQ(good->min_per_second, 2);
}

}  // namespace
}  // namespace crucible
