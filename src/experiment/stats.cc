#include "crucible/experiment/stats.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/fisher_f.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/special_functions/beta.hpp>
#include <boost/math/special_functions/gamma.hpp>

#include "crucible/core/random.h"

namespace crucible::stats {
namespace {

// Boost.Math reports bad arguments by return value, never by exception: the callers check
// their inputs, and an exception must not leave a crucible function.
using NoThrow =
    boost::math::policies::policy<boost::math::policies::domain_error<boost::math::policies::ignore_error>,
                                  boost::math::policies::pole_error<boost::math::policies::ignore_error>,
                                  boost::math::policies::overflow_error<boost::math::policies::ignore_error>,
                                  boost::math::policies::evaluation_error<boost::math::policies::ignore_error>,
                                  boost::math::policies::rounding_error<boost::math::policies::ignore_error>>;

// Average ranks (1-based) of `values`; adds each tie group's t^3 - t to `tie_sum`.
std::vector<double> ranks(std::span<const double> values, double* tie_sum) {
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return values[i] < values[j]; });
  std::vector<double> r(values.size());
  double ties = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && values[order[j + 1]] == values[order[i]]) ++j;
    double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[order[k]] = avg;
    double t = static_cast<double>(j - i + 1);
    ties += t * t * t - t;
    i = j + 1;
  }
  if (tie_sum != nullptr) *tie_sum = ties;
  return r;
}

// Two-sided p from a discrete null distribution `counts` (index = statistic value * 2, so that
// half-integer statistics fit) and the observed statistic.
double exact_two_sided(const std::vector<double>& counts, double observed_x2) {
  double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  double le = 0, ge = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    double v = static_cast<double>(s);
    if (v <= observed_x2 + 1e-9) le += counts[s];
    if (v >= observed_x2 - 1e-9) ge += counts[s];
  }
  return std::min(1.0, 2.0 * std::min(le, ge) / total);
}

Status need(bool ok, const std::string& test, const std::string& why) {
  if (!ok) return make_error(ErrorCode::kInvalidArgument, test + ": " + why);
  return {};
}

TestResult finish(TestResult r, double alpha) {
  r.p_value = std::clamp(r.p_value, 0.0, 1.0);
  r.significant = r.p_value < alpha;
  return r;
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  double pos = q * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

}  // namespace

double mean(std::span<const double> x) {
  if (x.empty()) return 0;
  return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

double variance(std::span<const double> x) {
  if (x.size() < 2) return 0;
  double m = mean(x), ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  return ss / static_cast<double>(x.size() - 1);
}

double stddev(std::span<const double> x) { return std::sqrt(variance(x)); }

double median(std::span<const double> x) {
  std::vector<double> s(x.begin(), x.end());
  std::sort(s.begin(), s.end());
  return quantile_sorted(s, 0.5);
}

double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  return boost::math::ibeta(a, b, x, NoThrow());
}

double upper_incomplete_gamma(double a, double x) {
  if (x <= 0) return 1;
  if (std::isinf(x)) return 0;
  return boost::math::gamma_q(a, x, NoThrow());
}

double normal_sf(double z) {
  return boost::math::cdf(boost::math::complement(boost::math::normal_distribution<double, NoThrow>(), z));
}

double student_t_sf(double t, double df) {
  return boost::math::cdf(boost::math::complement(boost::math::students_t_distribution<double, NoThrow>(df), t));
}

double student_t_quantile(double p, double df) {
  if (p <= 0) return -INFINITY;
  if (p >= 1) return INFINITY;
  return boost::math::quantile(boost::math::students_t_distribution<double, NoThrow>(df), p);
}

double f_sf(double f, double df1, double df2) {
  if (f <= 0) return 1;
  if (std::isinf(f)) return 0;
  return boost::math::cdf(boost::math::complement(boost::math::fisher_f_distribution<double, NoThrow>(df1, df2), f));
}

double chi2_sf(double x, double df) {
  if (x <= 0) return 1;
  if (std::isinf(x)) return 0;
  return boost::math::cdf(boost::math::complement(boost::math::chi_squared_distribution<double, NoThrow>(df), x));
}

Json Summary::to_json() const {
  return Json{{"n", n},     {"mean", mean}, {"sd", sd},         {"median", median},
              {"min", min}, {"max", max},   {"ci_low", ci_low}, {"ci_high", ci_high}};
}

Summary summarize(std::span<const double> x, double confidence) {
  Summary s;
  s.n = x.size();
  if (x.empty()) return s;
  s.mean = mean(x);
  s.sd = stddev(x);
  s.median = median(x);
  s.min = *std::min_element(x.begin(), x.end());
  s.max = *std::max_element(x.begin(), x.end());
  s.ci_low = s.ci_high = s.mean;
  if (x.size() >= 2) {
    double half = student_t_quantile(0.5 + confidence / 2, static_cast<double>(x.size() - 1)) * s.sd /
                  std::sqrt(static_cast<double>(x.size()));
    s.ci_low = s.mean - half;
    s.ci_high = s.mean + half;
  }
  return s;
}

Json TestResult::to_json() const {
  Json j{{"test", test}, {"statistic", statistic}, {"p_value", p_value}, {"significant", significant}};
  if (df) j["df"] = *df;
  if (df2) j["df2"] = *df2;
  if (!method.empty()) j["method"] = method;
  return j;
}

Result<TestResult> welch_t_test(std::span<const double> a, std::span<const double> b, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(need(a.size() >= 2 && b.size() >= 2, "welch_t", "needs at least 2 values per group"));
  double va = variance(a) / static_cast<double>(a.size()), vb = variance(b) / static_cast<double>(b.size());
  CRUCIBLE_RETURN_IF_ERROR(need(va + vb > 0, "welch_t", "both groups have zero variance"));
  TestResult r;
  r.test = "welch_t";
  r.statistic = (mean(a) - mean(b)) / std::sqrt(va + vb);
  r.df = (va + vb) * (va + vb) /
         (va * va / static_cast<double>(a.size() - 1) + vb * vb / static_cast<double>(b.size() - 1));
  r.p_value = 2 * student_t_sf(std::fabs(r.statistic), *r.df);
  return finish(r, alpha);
}

Result<TestResult> paired_t_test(std::span<const double> a, std::span<const double> b, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(need(a.size() == b.size(), "paired_t", "the groups must have one value per pair"));
  CRUCIBLE_RETURN_IF_ERROR(need(a.size() >= 2, "paired_t", "needs at least 2 pairs"));
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  double sd = stddev(d);
  CRUCIBLE_RETURN_IF_ERROR(need(sd > 0, "paired_t", "the differences have zero variance"));
  TestResult r;
  r.test = "paired_t";
  r.statistic = mean(d) / (sd / std::sqrt(static_cast<double>(d.size())));
  r.df = static_cast<double>(d.size() - 1);
  r.p_value = 2 * student_t_sf(std::fabs(r.statistic), *r.df);
  return finish(r, alpha);
}

Result<TestResult> mann_whitney_u(std::span<const double> a, std::span<const double> b, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(need(!a.empty() && !b.empty(), "mann_whitney_u", "needs at least 1 value per group"));
  const size_t n1 = a.size(), n2 = b.size(), n = n1 + n2;
  std::vector<double> all(a.begin(), a.end());
  all.insert(all.end(), b.begin(), b.end());
  double tie_sum = 0;
  std::vector<double> r = ranks(all, &tie_sum);
  double r1 = std::accumulate(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(n1), 0.0);
  TestResult out;
  out.test = "mann_whitney_u";
  out.statistic = r1 - static_cast<double>(n1 * (n1 + 1)) / 2.0;
  if (n1 < 50 && n2 < 50 && tie_sum == 0) {
    // Number of size-n1 subsets of ranks 1..n with each rank sum.
    const size_t max_sum = n1 * n;
    std::vector<std::vector<double>> ways(n1 + 1, std::vector<double>(max_sum + 1, 0.0));
    ways[0][0] = 1;
    for (size_t rank = 1; rank <= n; ++rank) {
      for (size_t k = std::min(rank, n1); k >= 1; --k) {
        for (size_t s = max_sum; s >= rank; --s) ways[k][s] += ways[k - 1][s - rank];
      }
    }
    // Distribution of U = W - n1(n1+1)/2, indexed by 2U.
    const size_t offset = n1 * (n1 + 1) / 2;
    std::vector<double> counts(2 * n1 * n2 + 1, 0.0);
    for (size_t s = offset; s <= max_sum && s - offset <= n1 * n2; ++s) counts[2 * (s - offset)] = ways[n1][s];
    out.p_value = exact_two_sided(counts, 2 * out.statistic);
    out.method = "exact";
  } else {
    const double dn1 = static_cast<double>(n1), dn2 = static_cast<double>(n2), dn = static_cast<double>(n);
    double z = out.statistic - dn1 * dn2 / 2;
    double sigma = std::sqrt(dn1 * dn2 / 12 * ((dn + 1) - tie_sum / (dn * (dn - 1))));
    CRUCIBLE_RETURN_IF_ERROR(need(sigma > 0, "mann_whitney_u", "every value is tied"));
    double correction = z > 0 ? 0.5 : z < 0 ? -0.5 : 0;
    out.p_value = 2 * normal_sf(std::fabs((z - correction) / sigma));
    out.method = "normal approximation";
  }
  return finish(out, alpha);
}

Result<TestResult> wilcoxon_signed_rank(std::span<const double> a, std::span<const double> b, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(
      need(a.size() == b.size(), "wilcoxon_signed_rank", "the groups must have one value per pair"));
  std::vector<double> d, abs_d;
  for (size_t i = 0; i < a.size(); ++i) {
    double diff = a[i] - b[i];
    if (diff == 0) continue;
    d.push_back(diff);
    abs_d.push_back(std::fabs(diff));
  }
  CRUCIBLE_RETURN_IF_ERROR(need(!d.empty(), "wilcoxon_signed_rank", "every pair is equal"));
  const size_t n = d.size();
  double tie_sum = 0;
  std::vector<double> r = ranks(abs_d, &tie_sum);
  TestResult out;
  out.test = "wilcoxon_signed_rank";
  for (size_t i = 0; i < n; ++i) {
    if (d[i] > 0) out.statistic += r[i];
  }
  const bool zeros = d.size() != a.size();
  if (n < 50 && tie_sum == 0 && !zeros) {
    const size_t max_sum = n * (n + 1) / 2;
    std::vector<double> ways(max_sum + 1, 0.0);
    ways[0] = 1;
    for (size_t rank = 1; rank <= n; ++rank) {
      for (size_t s = max_sum; s >= rank; --s) ways[s] += ways[s - rank];
    }
    std::vector<double> counts(2 * max_sum + 1, 0.0);
    for (size_t s = 0; s <= max_sum; ++s) counts[2 * s] = ways[s];
    out.p_value = exact_two_sided(counts, 2 * out.statistic);
    out.method = "exact";
  } else {
    const double dn = static_cast<double>(n);
    double z = out.statistic - dn * (dn + 1) / 4;
    double sigma = std::sqrt(dn * (dn + 1) * (2 * dn + 1) / 24 - tie_sum / 48);
    CRUCIBLE_RETURN_IF_ERROR(need(sigma > 0, "wilcoxon_signed_rank", "no variation in the differences"));
    double correction = z > 0 ? 0.5 : z < 0 ? -0.5 : 0;
    out.p_value = 2 * normal_sf(std::fabs((z - correction) / sigma));
    out.method = "normal approximation";
  }
  return finish(out, alpha);
}

Result<TestResult> one_way_anova(const std::vector<std::vector<double>>& groups, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(need(groups.size() >= 2, "anova", "needs at least 2 groups"));
  size_t total_n = 0;
  double grand = 0;
  for (const auto& g : groups) {
    CRUCIBLE_RETURN_IF_ERROR(need(!g.empty(), "anova", "every group needs at least 1 value"));
    total_n += g.size();
    grand += std::accumulate(g.begin(), g.end(), 0.0);
  }
  const double k = static_cast<double>(groups.size()), n = static_cast<double>(total_n);
  CRUCIBLE_RETURN_IF_ERROR(need(n > k, "anova", "needs more values than groups"));
  grand /= n;
  double ssb = 0, ssw = 0;
  for (const auto& g : groups) {
    double m = mean(g);
    ssb += static_cast<double>(g.size()) * (m - grand) * (m - grand);
    for (double v : g) ssw += (v - m) * (v - m);
  }
  CRUCIBLE_RETURN_IF_ERROR(need(ssw > 0, "anova", "no variation within the groups"));
  TestResult r;
  r.test = "anova";
  r.df = k - 1;
  r.df2 = n - k;
  r.statistic = (ssb / *r.df) / (ssw / *r.df2);
  r.p_value = f_sf(r.statistic, *r.df, *r.df2);
  return finish(r, alpha);
}

Result<TestResult> kruskal_wallis(const std::vector<std::vector<double>>& groups, double alpha) {
  CRUCIBLE_RETURN_IF_ERROR(need(groups.size() >= 2, "kruskal_wallis", "needs at least 2 groups"));
  std::vector<double> all;
  for (const auto& g : groups) {
    CRUCIBLE_RETURN_IF_ERROR(need(!g.empty(), "kruskal_wallis", "every group needs at least 1 value"));
    all.insert(all.end(), g.begin(), g.end());
  }
  const double n = static_cast<double>(all.size());
  double tie_sum = 0;
  std::vector<double> r = ranks(all, &tie_sum);
  double h = 0;
  size_t at = 0;
  for (const auto& g : groups) {
    double sum = 0;
    for (size_t i = 0; i < g.size(); ++i) sum += r[at++];
    h += sum * sum / static_cast<double>(g.size());
  }
  h = 12 / (n * (n + 1)) * h - 3 * (n + 1);
  double correction = 1 - tie_sum / (n * n * n - n);
  CRUCIBLE_RETURN_IF_ERROR(need(correction > 0, "kruskal_wallis", "every value is tied"));
  TestResult out;
  out.test = "kruskal_wallis";
  out.statistic = h / correction;
  out.df = static_cast<double>(groups.size() - 1);
  out.p_value = chi2_sf(out.statistic, *out.df);
  out.method = "chi-square approximation";
  return finish(out, alpha);
}

Result<double> cohens_d(std::span<const double> a, std::span<const double> b) {
  CRUCIBLE_RETURN_IF_ERROR(need(a.size() >= 2 && b.size() >= 2, "cohens_d", "needs at least 2 values per group"));
  double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  double pooled = std::sqrt(((na - 1) * variance(a) + (nb - 1) * variance(b)) / (na + nb - 2));
  CRUCIBLE_RETURN_IF_ERROR(need(pooled > 0, "cohens_d", "both groups have zero variance"));
  return (mean(b) - mean(a)) / pooled;
}

Json BootstrapInterval::to_json() const {
  return Json{{"difference", difference}, {"ci_low", low}, {"ci_high", high}, {"resamples", resamples}, {"seed", seed}};
}

Result<BootstrapInterval> bootstrap_mean_difference(std::span<const double> a, std::span<const double> b,
                                                    size_t resamples, uint64_t seed, double confidence) {
  CRUCIBLE_RETURN_IF_ERROR(need(!a.empty() && !b.empty(), "bootstrap", "needs at least 1 value per group"));
  CRUCIBLE_RETURN_IF_ERROR(need(resamples >= 100, "bootstrap", "needs at least 100 resamples"));
  SeededRandom random(seed);
  std::vector<double> diffs(resamples);
  for (size_t r = 0; r < resamples; ++r) {
    double sa = 0, sb = 0;
    for (size_t i = 0; i < a.size(); ++i) sa += a[random.uniform(a.size())];
    for (size_t i = 0; i < b.size(); ++i) sb += b[random.uniform(b.size())];
    diffs[r] = sb / static_cast<double>(b.size()) - sa / static_cast<double>(a.size());
  }
  std::sort(diffs.begin(), diffs.end());
  BootstrapInterval out;
  out.difference = mean(b) - mean(a);
  out.low = quantile_sorted(diffs, (1 - confidence) / 2);
  out.high = quantile_sorted(diffs, 1 - (1 - confidence) / 2);
  out.resamples = resamples;
  out.seed = seed;
  return out;
}

}  // namespace crucible::stats
