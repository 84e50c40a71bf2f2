#include "crucible/stages/compare_stage.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "crucible/core/file.h"
#include "crucible/experiment/comparison.h"

namespace crucible {
namespace {

// The config value at a dotted path, as group or pair text.
Result<std::string> config_key(const Json& branch, const std::string& path) {
  if (path == "config_id") return branch.value("config_id", std::string());
  const Json* node = &branch["config"];
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) {
      return make_error(ErrorCode::kInvalidArgument, "branch " + branch.value("config_id", std::string()) +
                                                         ": its config has no key '" + path + "'");
    }
    node = &(*node)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return node->is_string() ? node->get<std::string>() : json_dump(*node);
}

class CompareStage : public Stage {
 public:
  StageDescription describe() const override {
    StageDescription d;
    d.name = "compare";
    d.summary =
        "compares an experiment's branches on a metric: Welch t, Mann-Whitney U, bootstrap CI and Cohen's d "
        "for two groups (paired t and Wilcoxon with paired_by), ANOVA and Kruskal-Wallis for more";
    d.options = {
        option_spec("experiment", "string", true, "name of the experiment stage whose branches to compare"),
        option_spec("metric", "string", true, "branch metric to compare (a number, or a list of numbers per branch)"),
        option_spec("group_by", "string", false, "config key whose values form the groups (dotted path)", "config_id"),
        option_spec("paired_by", "string", false, "config key that pairs values across two groups (e.g. seed)"),
        option_spec("alpha", "number", false, "significance level; default reliability.stats.alpha, else 0.05"),
        option_spec("resamples", "integer", false, "bootstrap resamples", 10'000),
        option_spec("seed", "integer", false, "bootstrap seed", 0),
        option_spec("higher_is_better", "boolean", false, "whether the best group has the highest mean", true),
        option_spec("out_dir", "string", false, "where the reports go; default the run's artifact directory")};
    d.inputs = {"state <experiment>"};
    d.outputs = {"artifact <stage>: the comparison", "artifact <stage>.markdown", "files <stage>.json, .md, .svg",
                 "metric <stage>.p_value", "metric <stage>.significant"};
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token) override {
    CRUCIBLE_ASSIGN_OR_RETURN(auto experiment, o.string("experiment"));
    CRUCIBLE_ASSIGN_OR_RETURN(auto metric, o.string("metric"));
    const Json* state = ctx.get(experiment);
    if (state == nullptr || !state->is_object() || !state->contains("branches")) {
      return make_error(ErrorCode::kFailedPrecondition, "option 'experiment': no experiment '" + experiment +
                                                            "' has run before this stage (state '" + experiment +
                                                            "' holds no branches)");
    }
    const std::string group_by = o.string_or("group_by", "config_id");
    const std::string paired_by = o.string_or("paired_by", "");
    CRUCIBLE_ASSIGN_OR_RETURN(auto options, compare_options(ctx, o, metric, !paired_by.empty()));
    int64_t excluded = 0;
    CRUCIBLE_ASSIGN_OR_RETURN(auto groups, group_branches((*state)["branches"], metric, group_by, paired_by, excluded));
    if (options.paired && groups.size() != 2) {
      return make_error(ErrorCode::kInvalidArgument,
                        "option 'paired_by': paired tests compare exactly 2 groups, found " +
                            std::to_string(groups.size()) + " by '" + group_by + "'");
    }
    CRUCIBLE_ASSIGN_OR_RETURN(Json c, compare_groups(groups, options));
    c["experiment"] = experiment;
    c["group_by"] = group_by;
    if (options.paired) c["paired_by"] = paired_by;
    c["excluded_branches"] = excluded;
    const std::string stage = ctx.current_stage().empty() ? std::string("compare") : ctx.current_stage();
    CRUCIBLE_ASSIGN_OR_RETURN(std::string md, write_reports(ctx, o, stage, c));
    for (const Json& t : c["tests"]) {
      if (t.contains("p_value")) {
        ctx.put_metric(stage + ".p_value", t["p_value"]);
        break;
      }
    }
    ctx.put_metric(stage + ".significant", c["significant"]);
    ctx.put_artifact(stage + ".markdown", md);
    ctx.put_artifact(stage, std::move(c));
    return {};
  }

 private:
  // The options of the comparison; alpha defaults to the pipeline's reliability.stats.alpha.
  static Result<CompareOptions> compare_options(Context& ctx, const StageOptions& o, const std::string& metric,
                                                bool paired) {
    CompareOptions options;
    options.metric = metric;
    const Json& rel = ctx.services() != nullptr ? ctx.services()->reliability() : Json::object();
    double default_alpha = 0.05;
    if (rel.is_object() && rel.contains("stats") && rel["stats"].is_object() && rel["stats"].contains("alpha") &&
        rel["stats"]["alpha"].is_number()) {
      default_alpha = rel["stats"]["alpha"].get<double>();
    }
    options.alpha = o.number_or("alpha", default_alpha);
    if (!(options.alpha > 0 && options.alpha < 1)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "option 'alpha' must be in (0, 1), got " + std::to_string(options.alpha));
    }
    int64_t resamples = o.integer_or("resamples", 10'000);
    if (resamples < 100) return make_error(ErrorCode::kInvalidArgument, "option 'resamples' must be at least 100");
    options.bootstrap_resamples = static_cast<size_t>(resamples);
    options.seed = static_cast<uint64_t>(o.integer_or("seed", 0));
    options.higher_is_better = o.boolean_or("higher_is_better", true);
    options.paired = paired;
    return options;
  }

  // The successful branches' values of `metric`, grouped by the config key `group_by` (and
  // paired by `paired_by` when given); failed branches are counted in `excluded`.
  static Result<std::vector<MetricGroup>> group_branches(const Json& branches, const std::string& metric,
                                                         const std::string& group_by, const std::string& paired_by,
                                                         int64_t& excluded) {
    std::vector<MetricGroup> groups;
    std::map<std::string, size_t> index;
    for (const Json& b : branches) {
      if (b.value("status", "") != "success") {
        ++excluded;
        continue;
      }
      const Json& metrics = b.value("metrics", Json::object());
      auto it = metrics.find(metric);
      if (it == metrics.end()) {
        std::string have;
        for (const auto& [k, _] : metrics.items()) have += (have.empty() ? "" : ", ") + k;
        return make_error(ErrorCode::kInvalidArgument, "branch " + b.value("config_id", std::string()) +
                                                           " has no metric '" + metric +
                                                           "' (it has: " + (have.empty() ? "none" : have) + ")");
      }
      CRUCIBLE_ASSIGN_OR_RETURN(auto group, config_key(b, group_by));
      std::string pair;
      if (!paired_by.empty()) {
        CRUCIBLE_ASSIGN_OR_RETURN(pair, config_key(b, paired_by));
      }
      auto [slot, inserted] = index.emplace(group, groups.size());
      if (inserted) groups.push_back(MetricGroup{group, {}, {}});
      CRUCIBLE_RETURN_IF_ERROR(add_values(groups[slot->second], b, metric, *it, pair));
    }
    return groups;
  }

  static Status add_values(MetricGroup& g, const Json& branch, const std::string& metric, const Json& value,
                           const std::string& pair) {
    for (const Json& v : value.is_array() ? value : Json::array({value})) {
      if (!v.is_number()) {
        return make_error(ErrorCode::kInvalidArgument,
                          "branch " + branch.value("config_id", std::string()) + ": metric '" + metric +
                              "' must be a number or a list of numbers, got " + json_dump(v));
      }
      g.values.push_back(v.get<double>());
      g.pair_keys.push_back(pair);
    }
    return {};
  }

  // Writes <dir>/<stage>.md, .svg and .json (the run's artifact directory unless out_dir says
  // otherwise), records their paths in `c`, and returns the Markdown.
  static Result<std::string> write_reports(Context& ctx, const StageOptions& o, const std::string& stage, Json& c) {
    std::string dir =
        o.string_or("out_dir", ctx.services() != nullptr ? ctx.services()->artifact_dir() : std::string());
    if (dir.empty()) dir = ".crucible/runs/" + (ctx.run_id().empty() ? std::string("adhoc") : ctx.run_id().str());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return make_error(ErrorCode::kInvalidArgument, "option 'out_dir': cannot create " + dir + ": " + ec.message());
    }
    const std::string base = (std::filesystem::path(dir) / stage).string();
    std::string md = comparison_markdown(c);
    c["files"] = Json{{"json", base + ".json"}, {"markdown", base + ".md"}, {"svg", base + ".svg"}};
    CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(base + ".md", md));
    CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(base + ".svg", comparison_svg(c)));
    CRUCIBLE_RETURN_IF_ERROR(write_file_atomically(base + ".json", json_dump(c, 2) + "\n"));
    return md;
  }
};

}  // namespace

std::unique_ptr<Stage> make_compare_stage() { return std::make_unique<CompareStage>(); }

Status register_compare_stage(StageRegistry& registry) {
  return registry.register_stage("compare", [] { return make_compare_stage(); });
}

}  // namespace crucible
