#include "crucible/reliability/hedging_config.h"

#include <algorithm>
#include <utility>

#include "crucible/core/enum_names.h"

namespace crucible {
namespace {

const EnumNames<HedgeStrategyKind> kStrategies = {
    {HedgeStrategyKind::kOff, "off"},
    {HedgeStrategyKind::kFixed, "fixed"},
    {HedgeStrategyKind::kPercentile, "percentile"},
    {HedgeStrategyKind::kAdaptive, "adaptive"},
    {HedgeStrategyKind::kWorkloadAware, "workload_aware"},
    {HedgeStrategyKind::kExponentialBackoff, "exponential_backoff"},
};

std::string join(const std::vector<std::string>& names, std::string_view last = "or") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " " + std::string(last) + " " : ", ";
    out += names[i];
  }
  return out;
}

Error field_problem(std::string_view field, std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message)).with_field(std::string(field));
}

std::string bound(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

Result<double> number_in(std::string_view field, const Json& v, double lo, double hi) {
  if (!v.is_number()) return make_error(field_problem(field, "must be a number, got " + json_dump(v)));
  double d = v.get<double>();
  if (d < lo || d > hi) {
    return make_error(
        field_problem(field, "must be between " + bound(lo) + " and " + bound(hi) + ", got " + json_dump(v)));
  }
  return d;
}

// Assigns a checked number to `target`.
Status assign(double& target, std::string_view field, const Json& v, double lo, double hi) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto d, number_in(field, v, lo, hi));
  target = d;
  return {};
}

// "hedging.<field>: message" for readers without locations.
Error prefixed(const Error& e) {
  return Error(e.code(), "hedging." + e.field().value_or("") + ": " + e.message()).with_field(e.field().value_or(""));
}

std::unique_ptr<HedgeStrategy> make_strategy(const HedgingConfig& c) {
  switch (c.strategy) {
    case HedgeStrategyKind::kOff: return make_off_strategy();
    case HedgeStrategyKind::kFixed: return make_fixed_strategy(*c.delay_ms);
    case HedgeStrategyKind::kPercentile: {
      PercentileOptions o;
      o.percentile = c.percentile;
      o.initial_delay_ms = c.initial_delay_ms;
      return make_percentile_strategy(o);
    }
    case HedgeStrategyKind::kAdaptive: {
      AdaptiveOptions o;
      o.budget = c.budget_percent / 100.0;
      o.delays = c.delay_candidates;
      return make_adaptive_strategy(o);
    }
    case HedgeStrategyKind::kWorkloadAware: {
      WorkloadOptions o;
      o.base_delay_ms = c.base_delay_ms;
      return make_workload_aware_strategy(o);
    }
    case HedgeStrategyKind::kExponentialBackoff: {
      BackoffOptions o = c.backoff;
      o.base_delay_ms = std::clamp(o.base_delay_ms, o.min_delay_ms, o.max_delay_ms);
      return make_exponential_backoff_strategy(o);
    }
  }
  return make_off_strategy();
}

}  // namespace

std::string_view hedge_strategy_name(HedgeStrategyKind kind) { return kStrategies.name(kind); }

std::optional<HedgeStrategyKind> parse_hedge_strategy(std::string_view name) { return kStrategies.parse(name); }

const std::vector<std::string>& hedge_strategy_names() {
  static const std::vector<std::string> names = kStrategies.names();
  return names;
}

const std::vector<std::string>& HedgingConfig::keys() {
  static const std::vector<std::string> k = {"strategy",   "delay_ms",       "percentile",
                                             "max_hedges", "budget_percent", "options"};
  return k;
}

const std::vector<std::string>& HedgingConfig::option_keys() {
  static const std::vector<std::string> k = {"min_per_second",       "initial_delay_ms",       "delay_candidates",
                                             "base_delay",           "exponential_base_delay", "exponential_min_delay",
                                             "exponential_max_delay"};
  return k;
}

Status HedgingConfig::set(std::string_view key, const Json& value) {
  Status s;
  if (key == "strategy") {
    auto kind = value.is_string() ? parse_hedge_strategy(value.get<std::string>()) : std::nullopt;
    if (!kind) {
      std::string found = value.is_string() ? value.get<std::string>() : json_dump(value);
      return make_error(field_problem(
          "strategy", "unknown hedging strategy '" + found + "'; expected " + join(hedge_strategy_names())));
    }
    strategy = *kind;
  } else if (key == "delay_ms") {
    double d = 0;
    s = assign(d, key, value, 0, 1e9);
    if (s) delay_ms = d;
  } else if (key == "percentile") {
    s = assign(percentile, key, value, 1, 99.99);
  } else if (key == "max_hedges") {
    double n = 0;
    s = assign(n, key, value, 1, 5);
    if (s && n != static_cast<int>(n))
      s = make_error(field_problem(key, "must be a whole number, got " + json_dump(value)));
    if (s) max_hedges = static_cast<int>(n);
  } else if (key == "budget_percent") {
    s = assign(budget_percent, key, value, 0, 100);
  } else if (key == "options") {
    if (!value.is_object())
      return make_error(field_problem("options", "must be a mapping, got " + json_type_name(value)));
    for (const auto& [k, v] : value.items()) CRUCIBLE_RETURN_IF_ERROR(set_option(k, v));
    return {};
  } else {
    return make_error(field_problem(key, "unknown hedging field '" + std::string(key) + "'; expected " + join(keys())));
  }
  if (s) written[std::string(key)] = value;
  return s;
}

Status HedgingConfig::set_option(std::string_view key, const Json& value) {
  const std::string field = "options." + std::string(key);
  Status s;
  if (key == "min_per_second") {
    s = assign(min_per_second, field, value, 0, 1e6);
  } else if (key == "initial_delay_ms") {
    s = assign(initial_delay_ms, field, value, 0, 1e9);
  } else if (key == "base_delay") {
    s = assign(base_delay_ms, field, value, 0, 1e9);
  } else if (key == "exponential_base_delay") {
    s = assign(backoff.base_delay_ms, field, value, 0, 1e9);
  } else if (key == "exponential_min_delay") {
    s = assign(backoff.min_delay_ms, field, value, 0, 1e9);
  } else if (key == "exponential_max_delay") {
    s = assign(backoff.max_delay_ms, field, value, 0, 1e9);
  } else if (key == "delay_candidates") {
    if (!value.is_array() || value.size() < 2) {
      return make_error(field_problem(field, "must be a list of at least 2 delays in ms"));
    }
    std::vector<double> delays;
    for (const Json& d : value) {
      if (!d.is_number() || d.get<double>() < 0)
        return make_error(field_problem(field, "holds " + json_dump(d) + "; expected delays in ms"));
      delays.push_back(d.get<double>());
    }
    delay_candidates = std::move(delays);
  } else {
    return make_error(
        field_problem(field, "unknown hedging option '" + std::string(key) + "'; expected " + join(option_keys())));
  }
  if (s) written["options"][std::string(key)] = value;
  return s;
}

Status HedgingConfig::check() const {
  if (strategy == HedgeStrategyKind::kFixed && !delay_ms) {
    return make_error(field_problem("delay_ms", "hedging strategy fixed needs delay_ms"));
  }
  if (strategy == HedgeStrategyKind::kExponentialBackoff && backoff.min_delay_ms >= backoff.max_delay_ms) {
    return make_error(field_problem("options", "exponential_min_delay must be below exponential_max_delay"));
  }
  return {};
}

Result<HedgingConfig> HedgingConfig::from_json(const Json& mapping) {
  if (!mapping.is_object()) {
    return make_error(ErrorCode::kInvalidArgument, "hedging config must be a mapping, got " + json_type_name(mapping));
  }
  HedgingConfig c;
  for (const auto& [k, v] : mapping.items()) {
    if (Status s = c.set(k, v); !s) return make_error(prefixed(s.error()));
  }
  if (Status s = c.check(); !s) return make_error(prefixed(s.error()));
  return c;
}

Result<HedgingConfig> HedgingConfig::merge(const HedgingConfig& base, const HedgingConfig& overrides) {
  Json merged = base.written;
  for (const auto& [k, v] : overrides.written.items()) merged[k] = v;
  HedgingConfig c;
  for (const auto& [k, v] : merged.items()) CRUCIBLE_RETURN_IF_ERROR(c.set(k, v));
  CRUCIBLE_RETURN_IF_ERROR(c.check());
  return c;
}

Result<std::unique_ptr<HedgePolicy>> HedgePolicy::create(const HedgingConfig& config) {
  if (Status s = config.check(); !s) return make_error(prefixed(s.error()));
  BudgetOptions budget;
  budget.percent = config.budget_percent / 100.0;
  budget.min_per_second = config.min_per_second;
  return std::make_unique<HedgePolicy>(make_strategy(config), budget, GateOptions{});
}

Result<std::unique_ptr<HedgePolicy>> make_hedge_policy(const Json& config, int* max_hedges) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto c, HedgingConfig::from_json(config));
  if (max_hedges != nullptr) *max_hedges = c.max_hedges;
  return HedgePolicy::create(c);
}

}  // namespace crucible
