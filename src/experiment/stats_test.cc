// Reference values come from published worked examples, reproduced by R 4.x (the outputs quoted
// in R's own documentation examples) and cross-checked with SciPy 1.10:
//   sleep: R's `sleep` data set (1905, analysed 1908), R `t.test(extra ~ group, data = sleep)`
//          (Welch t = -1.8608, df = 17.776, p = 0.07939) and `paired = TRUE` (t = -4.0621, df = 9,
//          p = 0.002833); `wilcox.test(extra ~ group, sleep)` W = 25.5, p = 0.06933 (ties).
//   "Nonparametric Statistical Methods" (1973) p. 29, 69 and 116, the examples on R's
//          `wilcox.test` and `kruskal.test` help pages: paired V = 40 (two-sided exact
//          p = 0.03906), rank-sum W = 35 (two-sided exact p = 0.2544), Kruskal-Wallis
//          chi-squared = 0.77143, df = 2, p = 0.68.
//   PlantGrowth: "An Introduction to Statistical Modelling" (1983) Table 7.1,
//          R `anova(lm(weight ~ group, PlantGrowth))` F = 4.846, df = 2, 27, p = 0.01591;
//          `kruskal.test(weight ~ group, PlantGrowth)` 7.9882, p = 0.01842.
#include "crucible/experiment/stats.h"

#include <gtest/gtest.h>

#include "crucible/experiment/comparison.h"

namespace crucible::stats {
namespace {

const std::vector<double> kSleep1 = {0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0};
const std::vector<double> kSleep2 = {1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4};
const std::vector<double> kCtrl = {4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14};
const std::vector<double> kTrt1 = {4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69};
const std::vector<double> kTrt2 = {6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26};

TEST(Distributions, MatchKnownValues) {
  EXPECT_NEAR(normal_sf(1.959963984540054), 0.025, 1e-12);
  EXPECT_NEAR(student_t_sf(2.0, 5), 0.05096973941492914, 1e-12);
  EXPECT_NEAR(f_sf(3.0, 2, 10), 0.095367431640625, 1e-12);
  EXPECT_NEAR(chi2_sf(5.0, 3), 0.1717971442967335, 1e-12);
  EXPECT_NEAR(student_t_quantile(0.975, 9), 2.2621571627409915, 1e-9);
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.706204736432095, 1e-7);
}

TEST(WelchT, SleepData) {
  auto r = welch_t_test(kSleep1, kSleep2);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->statistic, -1.860813467486853, 1e-9);
  EXPECT_NEAR(*r->df, 17.77647, 1e-4);
  EXPECT_NEAR(r->p_value, 0.07939414018735823, 1e-9);
  EXPECT_FALSE(r->significant);
  EXPECT_FALSE(welch_t_test(std::vector<double>{1}, kSleep2));
  EXPECT_FALSE(welch_t_test(std::vector<double>{1, 1}, std::vector<double>{2, 2}));
}

TEST(PairedT, SleepData) {
  auto r = paired_t_test(kSleep1, kSleep2);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->statistic, -4.062127683382037, 1e-9);
  EXPECT_EQ(*r->df, 9);
  EXPECT_NEAR(r->p_value, 0.00283289019738427, 1e-9);
  EXPECT_TRUE(r->significant);
  EXPECT_FALSE(paired_t_test(kSleep1, std::vector<double>{1, 2, 3}));
}

TEST(MannWhitney, ExactHollanderWolfe) {
  std::vector<double> x = {0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46};
  std::vector<double> y = {1.15, 0.88, 0.90, 0.74, 1.21};
  auto r = mann_whitney_u(x, y);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->statistic, 35);
  EXPECT_EQ(r->method, "exact");
  EXPECT_NEAR(r->p_value, 0.2544122544122544, 1e-12);
}

TEST(MannWhitney, NormalApproximationWithTies) {
  auto r = mann_whitney_u(kSleep1, kSleep2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->statistic, 25.5);
  EXPECT_EQ(r->method, "normal approximation");
  EXPECT_NEAR(r->p_value, 0.06932757543362658, 1e-9);
}

TEST(Wilcoxon, ExactHollanderWolfe) {
  std::vector<double> x = {1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30};
  std::vector<double> y = {0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29};
  auto r = wilcoxon_signed_rank(x, y);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->statistic, 40);
  EXPECT_EQ(r->method, "exact");
  EXPECT_NEAR(r->p_value, 0.0390625, 1e-12);
  EXPECT_TRUE(r->significant);
}

TEST(Wilcoxon, ZerosAndTiesUseTheCorrectedNormalApproximation) {
  auto r = wilcoxon_signed_rank(kSleep1, kSleep2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->statistic, 0);
  EXPECT_EQ(r->method, "normal approximation");
  EXPECT_NEAR(r->p_value, 0.009090698015925054, 1e-9);
  EXPECT_FALSE(wilcoxon_signed_rank(kCtrl, kCtrl));
}

TEST(Anova, PlantGrowth) {
  auto r = one_way_anova({kCtrl, kTrt1, kTrt2});
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->statistic, 4.846087862380136, 1e-9);
  EXPECT_EQ(*r->df, 2);
  EXPECT_EQ(*r->df2, 27);
  EXPECT_NEAR(r->p_value, 0.0159099583256229, 1e-9);
}

TEST(KruskalWallis, PlantGrowthAndHollanderWolfe) {
  auto r = kruskal_wallis({kCtrl, kTrt1, kTrt2});
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->statistic, 7.988228749443715, 1e-9);
  EXPECT_NEAR(r->p_value, 0.018423755731471966, 1e-9);
  auto hw = kruskal_wallis({{2.9, 3.0, 2.5, 2.6, 3.2}, {3.8, 2.7, 4.0, 2.4}, {2.8, 3.4, 3.7, 2.2, 2.0}});
  ASSERT_TRUE(hw);
  EXPECT_NEAR(hw->statistic, 0.7714285714285722, 1e-9);
  EXPECT_NEAR(hw->p_value, 0.6799647735788936, 1e-9);
  EXPECT_FALSE(kruskal_wallis({{1, 1}, {1, 1}}));
}

TEST(EffectSize, CohensDOnSleep) {
  auto d = cohens_d(kSleep1, kSleep2);
  ASSERT_TRUE(d);
  EXPECT_NEAR(*d, 0.8321810813495395, 1e-9);  // group 2 minus group 1
}

TEST(Bootstrap, SeededIntervalAroundTheDifference) {
  auto a = bootstrap_mean_difference(kSleep1, kSleep2, 10'000, 7);
  auto b = bootstrap_mean_difference(kSleep1, kSleep2, 10'000, 7);
  auto c = bootstrap_mean_difference(kSleep1, kSleep2, 10'000, 8);
  ASSERT_TRUE(a && b && c);
  EXPECT_NEAR(a->difference, 1.58, 1e-12);
  EXPECT_EQ(a->low, b->low);
  EXPECT_EQ(a->high, b->high);
  EXPECT_NE(a->low, c->low);
  EXPECT_LT(a->low, 1.58);
  EXPECT_GT(a->high, 1.58);
  // The Welch interval is [-0.205, 3.365]; a percentile bootstrap is close to it but narrower.
  EXPECT_GT(a->low, -0.5);
  EXPECT_LT(a->high, 3.5);
  EXPECT_FALSE(bootstrap_mean_difference(kSleep1, kSleep2, 10));
}

TEST(Summary, TIntervalOfTheMean) {
  Summary s = summarize(kSleep1);
  EXPECT_EQ(s.n, 10u);
  EXPECT_NEAR(s.mean, 0.75, 1e-12);
  EXPECT_NEAR(s.ci_low, 0.75 - 2.2621571627409915 * 1.789010 / std::sqrt(10.0), 1e-5);
  EXPECT_NEAR(s.median, 0.35, 1e-12);
}

TEST(Comparison, TwoGroupsWithPairsAndReports) {
  std::vector<MetricGroup> groups(2);
  groups[0].name = "drug1";
  groups[1].name = "drug2";
  groups[0].values = kSleep1;
  groups[1].values = kSleep2;
  for (int i = 0; i < 10; ++i) {
    groups[0].pair_keys.push_back(std::to_string(i));
    groups[1].pair_keys.push_back(std::to_string(9 - i));  // order differs; keys pair them
  }
  std::reverse(groups[1].values.begin(), groups[1].values.end());
  CompareOptions o;
  o.metric = "extra";
  o.paired = true;
  auto c = compare_groups(groups, o);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ((*c)["pairs"], 10);
  std::map<std::string, double> p;
  for (const Json& t : (*c)["tests"]) p[t["test"]] = t["p_value"].get<double>();
  EXPECT_NEAR(p["welch_t"], 0.07939414018735823, 1e-9);
  EXPECT_NEAR(p["paired_t"], 0.00283289019738427, 1e-9);
  EXPECT_NEAR(p["wilcoxon_signed_rank"], 0.009090698015925054, 1e-9);
  EXPECT_EQ((*c)["best"], "drug2");
  EXPECT_FALSE((*c)["significant"].get<bool>());  // Welch decides the verdict
  std::string md = comparison_markdown(*c);
  EXPECT_NE(md.find("| drug1 | 10 | 0.75 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| paired_t | -4.062 | 9 | 0.0028 | yes |"), std::string::npos) << md;
  std::string svg = comparison_svg(*c);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("drug2"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

TEST(Comparison, ThreeGroupsAndBadInput) {
  std::vector<MetricGroup> groups = {{"ctrl", kCtrl, {}}, {"trt1", kTrt1, {}}, {"trt2", kTrt2, {}}};
  auto c = compare_groups(groups, CompareOptions{});
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)["tests"][0]["test"], "anova");
  EXPECT_EQ((*c)["tests"][1]["test"], "kruskal_wallis");
  EXPECT_TRUE((*c)["significant"].get<bool>());
  EXPECT_EQ((*c)["best"], "trt2");
  EXPECT_FALSE(compare_groups({groups[0]}, CompareOptions{}));
  std::vector<MetricGroup> empty = {{"a", {}, {}}, {"b", {1.0}, {}}};
  auto e = compare_groups(empty, CompareOptions{});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("'a'"), std::string::npos);
  // One value per group: the tests that need more are listed with their reason.
  auto thin = compare_groups({{"a", {1.0}, {}}, {"b", {2.0}, {}}}, CompareOptions{});
  ASSERT_TRUE(thin);
  EXPECT_TRUE((*thin)["tests"][0].contains("error"));
}

}  // namespace
}  // namespace crucible::stats
