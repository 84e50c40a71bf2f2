// Statistical comparison of experiment groups, and its reports: JSON, a Markdown table and an SVG
// chart of the metric per group with confidence intervals.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

struct MetricGroup {
  std::string name;
  std::vector<double> values;
  // With pairing: the pair each value belongs to (a seed, a dataset item), one per value.
  std::vector<std::string> pair_keys;
};

struct CompareOptions {
  std::string metric = "metric";
  double alpha = 0.05;
  size_t bootstrap_resamples = 10'000;
  uint64_t seed = 0;
  bool paired = false;           // two groups: match values by pair key, add paired tests
  bool higher_is_better = true;  // which group the verdict calls best
};

// Two groups: Welch's t, Mann-Whitney U, a bootstrap interval of the difference (second minus
// first) and Cohen's d; with pairing also the paired t-test and Wilcoxon signed-rank. Three or
// more: one-way ANOVA and Kruskal-Wallis. A test that cannot run on the data (too few values, no
// variance) is listed with its reason instead of a p-value. kInvalidArgument for fewer than two
// groups or a group without values.
//
// {"metric", "alpha", "groups": [{name, n, mean, sd, median, min, max, ci_low, ci_high}],
//  "tests": [{test, statistic, p_value, df?, df2?, method?, significant} | {test, error}],
//  "effect_size": {"cohens_d"}?, "bootstrap": {...}?, "pairs"?, "best", "significant", "verdict"}
[[nodiscard]] Result<Json> compare_groups(const std::vector<MetricGroup>& groups, const CompareOptions& options);

// A Markdown report: the groups table and the tests table.
std::string comparison_markdown(const Json& comparison);
// A standalone SVG: one point per group at its mean with its confidence interval.
std::string comparison_svg(const Json& comparison);

}  // namespace crucible
