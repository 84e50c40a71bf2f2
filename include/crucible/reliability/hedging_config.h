// The typed `hedging:` configuration of a stage, a model or a pipeline's reliability defaults,
// and the policy built from it. One set of rules serves every reader: the YAML loader sets
// fields one by one (so each error names the field's file:line:column), JSON readers use
// from_json().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/reliability/hedging.h"

namespace crucible {

enum class HedgeStrategyKind { kOff, kFixed, kPercentile, kAdaptive, kWorkloadAware, kExponentialBackoff };

// "off", "fixed", "percentile", "adaptive", "workload_aware", "exponential_backoff": the one name
// table, for printing, parsing and "expected one of" lists.
std::string_view hedge_strategy_name(HedgeStrategyKind kind);
std::optional<HedgeStrategyKind> parse_hedge_strategy(std::string_view name);
const std::vector<std::string>& hedge_strategy_names();

struct HedgingConfig {
  HedgeStrategyKind strategy = HedgeStrategyKind::kPercentile;
  std::optional<double> delay_ms;  // fixed: the delay, required
  double percentile = 95;          // percentile: of the observed latencies, in [1, 99.99]
  int max_hedges = 1;              // backups at most, 1-5
  double budget_percent = 5;       // extra requests allowed, in percent of requests
  // `options:`
  double min_per_second = 0;             // a budget reserve that refills by time
  double initial_delay_ms = 100;         // percentile: the delay before there are samples
  std::vector<double> delay_candidates;  // adaptive: the arms (empty: the built-in grid)
  double base_delay_ms = 100;            // workload_aware
  BackoffOptions backoff;                // exponential_backoff: base, min and max delays
  // The mapping as written (for a stage: merged over the pipeline's defaults), with `options`
  // nested: the canonical form in a spec's JSON and hash.
  Json written = Json::object();

  // The top-level keys and the keys of `options`.
  static const std::vector<std::string>& keys();
  static const std::vector<std::string>& option_keys();

  // Sets one field from its JSON value (`options` as a whole too). kInvalidArgument with the
  // field set on the Error and a message that does not repeat it; unknown keys included.
  [[nodiscard]] Status set(std::string_view key, const Json& value);
  [[nodiscard]] Status set_option(std::string_view key, const Json& value);
  // Rules across fields: fixed needs delay_ms; exponential_min_delay below exponential_max_delay.
  [[nodiscard]] Status check() const;

  // A whole mapping: every field, then check(). Messages read "hedging.<field>: ...".
  [[nodiscard]] static Result<HedgingConfig> from_json(const Json& mapping);
  // `overrides` (written as a mapping) over `base`, key by key, as a stage's `hedging:` goes over
  // the pipeline's `reliability.hedging`. Errors (of check()) carry the field, as set() does.
  [[nodiscard]] static Result<HedgingConfig> merge(const HedgingConfig& base, const HedgingConfig& overrides);
};

// HedgingConfig::from_json() then HedgePolicy::create(); `max_hedges` is returned through the pointer when given.
[[nodiscard]] Result<std::unique_ptr<HedgePolicy>> make_hedge_policy(const Json& config, int* max_hedges = nullptr);

}  // namespace crucible
