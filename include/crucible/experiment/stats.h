// Statistics for comparing experiment branches: descriptive summaries, two-sample and paired
// tests, effect sizes, bootstrap intervals and k-sample tests. p-values are two-sided.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible::stats {

double mean(std::span<const double> x);
// Sample variance (n - 1 denominator); 0 for fewer than two values.
double variance(std::span<const double> x);
double stddev(std::span<const double> x);
double median(std::span<const double> x);

// Distribution functions.
double normal_sf(double z);                      // P(Z > z)
double student_t_sf(double t, double df);        // P(T > t)
double student_t_quantile(double p, double df);  // inverse CDF
double f_sf(double f, double df1, double df2);   // P(F > f)
double chi2_sf(double x, double df);             // P(X > x)
// Regularised incomplete beta I_x(a, b) and upper incomplete gamma Q(a, x).
double incomplete_beta(double a, double b, double x);
double upper_incomplete_gamma(double a, double x);

struct Summary {
  size_t n = 0;
  double mean = 0, sd = 0, median = 0, min = 0, max = 0;
  double ci_low = 0, ci_high = 0;  // t interval of the mean at `confidence`
  Json to_json() const;
};
Summary summarize(std::span<const double> x, double confidence = 0.95);

struct TestResult {
  std::string test;      // "welch_t", "mann_whitney_u", "paired_t", "wilcoxon_signed_rank", "anova", "kruskal_wallis"
  double statistic = 0;  // t, U (of the first sample), V (sum of positive ranks), F or H
  double p_value = 1;
  std::optional<double> df;   // t tests, F numerator, chi-square
  std::optional<double> df2;  // F denominator
  std::string method;         // "exact" or "normal approximation" for rank tests
  bool significant = false;   // p < alpha
  Json to_json() const;
};

// Errors: kInvalidArgument naming the problem (too few values, no variance, unequal pairs).
[[nodiscard]] Result<TestResult> welch_t_test(std::span<const double> a, std::span<const double> b,
                                              double alpha = 0.05);
// Exact distribution for samples under 50 without ties, else the normal approximation with tie
// and continuity corrections (as R's wilcox.test).
[[nodiscard]] Result<TestResult> mann_whitney_u(std::span<const double> a, std::span<const double> b,
                                                double alpha = 0.05);
[[nodiscard]] Result<TestResult> paired_t_test(std::span<const double> a, std::span<const double> b,
                                               double alpha = 0.05);
// Zero differences are dropped; exact under 50 pairs without ties, else normal approximation.
[[nodiscard]] Result<TestResult> wilcoxon_signed_rank(std::span<const double> a, std::span<const double> b,
                                                      double alpha = 0.05);
[[nodiscard]] Result<TestResult> one_way_anova(const std::vector<std::vector<double>>& groups, double alpha = 0.05);
[[nodiscard]] Result<TestResult> kruskal_wallis(const std::vector<std::vector<double>>& groups, double alpha = 0.05);

// Cohen's d with the pooled standard deviation: (mean(b) - mean(a)) / s_pooled.
[[nodiscard]] Result<double> cohens_d(std::span<const double> a, std::span<const double> b);

struct BootstrapInterval {
  double difference = 0;  // mean(b) - mean(a)
  double low = 0, high = 0;
  size_t resamples = 0;
  uint64_t seed = 0;
  Json to_json() const;
};
// Percentile interval of mean(b) - mean(a) at `confidence`, resampling each group with
// replacement; the same seed gives the same interval.
[[nodiscard]] Result<BootstrapInterval> bootstrap_mean_difference(std::span<const double> a, std::span<const double> b,
                                                                  size_t resamples = 10'000, uint64_t seed = 0,
                                                                  double confidence = 0.95);

}  // namespace crucible::stats
