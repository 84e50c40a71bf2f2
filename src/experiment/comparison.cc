#include "crucible/experiment/comparison.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "crucible/experiment/stats.h"

namespace crucible {
namespace {

void add_test(Json& tests, const char* name, const Result<stats::TestResult>& r) {
  if (r)
    tests.push_back(r->to_json());
  else
    tests.push_back(Json{{"test", name}, {"error", r.error().message()}});
}

std::string num(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e6)) return fmt::format("{:.3e}", v);
  return fmt::format("{:.4g}", v);
}

std::string p_text(double p) { return p < 1e-4 ? "< 0.0001" : fmt::format("{:.4f}", p); }

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Welch's t and Mann-Whitney U, Cohen's d and a bootstrap interval; the paired tests too when
// the groups are paired.
void add_two_group_tests(const std::vector<MetricGroup>& groups, const CompareOptions& o, Json& out) {
  Json& tests = out["tests"];
  const auto& a = groups[0].values;
  const auto& b = groups[1].values;
  const double confidence = 1 - o.alpha;
  add_test(tests, "welch_t", stats::welch_t_test(a, b, o.alpha));
  add_test(tests, "mann_whitney_u", stats::mann_whitney_u(a, b, o.alpha));
  if (auto d = stats::cohens_d(a, b))
    out["effect_size"] = Json{{"cohens_d", *d}};
  else
    out["effect_size"] = Json{{"cohens_d", nullptr}, {"error", d.error().message()}};
  if (auto boot = stats::bootstrap_mean_difference(a, b, o.bootstrap_resamples, o.seed, confidence)) {
    out["bootstrap"] = boot->to_json();
  } else {
    out["bootstrap"] = Json{{"error", boot.error().message()}};
  }
  if (!o.paired) return;
  std::map<std::string, double> left;
  for (size_t i = 0; i < a.size() && i < groups[0].pair_keys.size(); ++i) left[groups[0].pair_keys[i]] = a[i];
  std::vector<double> pa, pb;
  for (size_t i = 0; i < b.size() && i < groups[1].pair_keys.size(); ++i) {
    auto it = left.find(groups[1].pair_keys[i]);
    if (it == left.end()) continue;
    pa.push_back(it->second);
    pb.push_back(b[i]);
  }
  out["pairs"] = pa.size();
  add_test(tests, "paired_t", stats::paired_t_test(pa, pb, o.alpha));
  add_test(tests, "wilcoxon_signed_rank", stats::wilcoxon_signed_rank(pa, pb, o.alpha));
}

// The best group, whether the difference is significant, and the verdict in words.
void add_verdict(const std::vector<MetricGroup>& groups, const CompareOptions& o, Json& out) {
  const Json& tests = out["tests"];
  // The verdict follows the first test that ran (the parametric one).
  size_t best = 0;
  for (size_t i = 1; i < groups.size(); ++i) {
    double m = out["groups"][i]["mean"].get<double>(), mb = out["groups"][best]["mean"].get<double>();
    if (o.higher_is_better ? m > mb : m < mb) best = i;
  }
  out["best"] = groups[best].name;
  bool significant = false;
  std::string basis;
  for (const Json& t : tests) {
    if (!t.contains("p_value")) continue;
    significant = t["significant"].get<bool>();
    double p = t["p_value"].get<double>();
    basis = t["test"].get<std::string>() + (p < 1e-4 ? " p < 0.0001" : " p = " + p_text(p));
    break;
  }
  out["significant"] = significant;
  if (basis.empty()) {
    out["verdict"] = "no test could run on these values";
  } else if (significant) {
    out["verdict"] = "'" + groups[best].name + "' has the " + (o.higher_is_better ? "highest" : "lowest") + " mean " +
                     o.metric + "; the difference is significant at alpha " + num(o.alpha) + " (" + basis + ")";
  } else {
    out["verdict"] = "no significant difference in " + o.metric + " at alpha " + num(o.alpha) + " (" + basis + "); '" +
                     groups[best].name + "' has the " + (o.higher_is_better ? "highest" : "lowest") + " mean";
  }
}

}  // namespace

Result<Json> compare_groups(const std::vector<MetricGroup>& groups, const CompareOptions& o) {
  if (groups.size() < 2) {
    return make_error(ErrorCode::kInvalidArgument,
                      "compare: needs at least 2 groups of '" + o.metric + "', found " + std::to_string(groups.size()));
  }
  if (!(o.alpha > 0 && o.alpha < 1)) return make_error(ErrorCode::kInvalidArgument, "compare: alpha must be in (0, 1)");
  for (const MetricGroup& g : groups) {
    if (g.values.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "compare: group '" + g.name + "' has no values of '" + o.metric + "'");
    }
  }
  const double confidence = 1 - o.alpha;
  Json out{{"metric", o.metric}, {"alpha", o.alpha}, {"groups", Json::array()}, {"tests", Json::array()}};
  for (const MetricGroup& g : groups) {
    Json s = stats::summarize(g.values, confidence).to_json();
    s["name"] = g.name;
    out["groups"].push_back(std::move(s));
  }
  if (groups.size() == 2) {
    add_two_group_tests(groups, o, out);
  } else {
    std::vector<std::vector<double>> values;
    for (const MetricGroup& g : groups) values.push_back(g.values);
    add_test(out["tests"], "anova", stats::one_way_anova(values, o.alpha));
    add_test(out["tests"], "kruskal_wallis", stats::kruskal_wallis(values, o.alpha));
  }
  add_verdict(groups, o, out);
  return out;
}

std::string comparison_markdown(const Json& c) {
  std::string md = fmt::format("### {}\n\n", c.value("metric", "metric"));
  int level = static_cast<int>(std::lround((1 - c.value("alpha", 0.05)) * 100));
  md += fmt::format("| group | n | mean | sd | median | {}% CI |\n|---|---:|---:|---:|---:|---|\n", level);
  for (const Json& g : c.value("groups", Json::array())) {
    md += fmt::format("| {} | {} | {} | {} | {} | [{}, {}] |\n", g.value("name", ""), g.value("n", 0),
                      num(g.value("mean", 0.0)), num(g.value("sd", 0.0)), num(g.value("median", 0.0)),
                      num(g.value("ci_low", 0.0)), num(g.value("ci_high", 0.0)));
  }
  md += "\n| test | statistic | df | p-value | significant |\n|---|---:|---:|---:|---|\n";
  for (const Json& t : c.value("tests", Json::array())) {
    if (t.contains("error")) {
      md += fmt::format("| {} | | | | not run: {} |\n", t.value("test", ""), t.value("error", ""));
      continue;
    }
    std::string df = t.contains("df") ? num(t["df"].get<double>()) : "";
    if (t.contains("df2")) df += ", " + num(t["df2"].get<double>());
    md += fmt::format("| {} | {} | {} | {} | {} |\n", t.value("test", ""), num(t.value("statistic", 0.0)), df,
                      p_text(t.value("p_value", 1.0)), t.value("significant", false) ? "yes" : "no");
  }
  if (c.contains("effect_size") && c["effect_size"].value("cohens_d", Json()).is_number()) {
    md += fmt::format("\nCohen's d: {}\n", num(c["effect_size"]["cohens_d"].get<double>()));
  }
  if (c.contains("bootstrap") && c["bootstrap"].contains("ci_low")) {
    const Json& b = c["bootstrap"];
    md += fmt::format("\nBootstrap difference of means: {} [{}, {}] ({} resamples, seed {})\n",
                      num(b.value("difference", 0.0)), num(b.value("ci_low", 0.0)), num(b.value("ci_high", 0.0)),
                      b.value("resamples", 0), b.value("seed", 0));
  }
  md += "\n" + c.value("verdict", std::string()) + "\n";
  return md;
}

std::string comparison_svg(const Json& c) {
  const Json groups = c.value("groups", Json::array());
  const double width = std::max(320.0, 120.0 + 90.0 * static_cast<double>(groups.size()));
  const double height = 300, left = 70, right = 20, top = 40, bottom = 60;
  double lo = INFINITY, hi = -INFINITY;
  for (const Json& g : groups) {
    lo = std::min(lo, g.value("ci_low", 0.0));
    hi = std::max(hi, g.value("ci_high", 0.0));
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  const double pad = (hi - lo) * 0.1;
  lo -= pad;
  hi += pad;
  auto y = [&](double v) { return top + (height - top - bottom) * (1 - (v - lo) / (hi - lo)); };
  const double plot_w = width - left - right;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height, width, height);
  int level = static_cast<int>(std::lround((1 - c.value("alpha", 0.05)) * 100));
  svg += fmt::format("<text x=\"{:.0f}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}: mean and {}% CI</text>\n",
                     width / 2, escape_xml(c.value("metric", "metric")), level);
  svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#333\"/>\n", left, top,
                     height - bottom);
  svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#333\"/>\n", left,
                     height - bottom, width - right);
  for (int t = 0; t <= 4; ++t) {
    double v = lo + (hi - lo) * t / 4.0;
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y(v),
                       width - right, y(v));
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 6, y(v) + 4, num(v));
  }
  const std::string best = c.value("best", "");
  for (size_t i = 0; i < groups.size(); ++i) {
    const Json& g = groups[i];
    double x = left + plot_w * (static_cast<double>(i) + 0.5) / static_cast<double>(groups.size());
    std::string name = g.value("name", "");
    const char* color = name == best ? "#d62728" : "#1f77b4";
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" stroke-width=\"2\"/>\n", x,
        y(g.value("ci_low", 0.0)), y(g.value("ci_high", 0.0)), color);
    for (const char* end : {"ci_low", "ci_high"}) {
      svg += fmt::format(
          "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n", x - 8,
          y(g.value(end, 0.0)), x + 8, y(g.value(end, 0.0)), color);
    }
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\"><title>{}: mean {} (n={})</title></circle>\n", x,
        y(g.value("mean", 0.0)), color, escape_xml(name), num(g.value("mean", 0.0)), g.value("n", 0));
    std::string label = name.size() > 14 ? name.substr(0, 13) + "…" : name;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x, height - bottom + 18,
                       escape_xml(label));
  }
  svg += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n", width / 2,
                     height - 12, escape_xml(c.value("verdict", std::string()).substr(0, 110)));
  svg += "</svg>\n";
  return svg;
}

}  // namespace crucible
