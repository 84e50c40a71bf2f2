#include "crucible/llm/models.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>

#include "crucible/core/duration.h"
#include "crucible/core/executor.h"
#include "crucible/core/hash.h"
#include "crucible/core/random.h"
#include "crucible/llm/adapters.h"
#include "crucible/llm/decorators.h"
#include "crucible/reliability/hedging.h"
#include "crucible/reliability/hedging_config.h"

namespace crucible {
namespace {

const std::vector<std::string> kModelKeys = {"provider",          "model",   "base_url",  "api_key_env",
                                             "anthropic_version", "timeout", "retry",     "hedging",
                                             "circuit_breaker",   "cache",   "responses", "offline"};

Result<int64_t> int_of(const Json& v, const std::string& field, int64_t min, int64_t max) {
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max) {
    return field_error(field, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                                  ", got " + json_dump(v));
  }
  return v.get<int64_t>();
}

Status check_keys(const Json& obj, const std::vector<std::string>& keys, const std::string& field) {
  for (const auto& [k, _] : obj.items()) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      std::string list;
      for (const auto& key : keys) list += (list.empty() ? "" : ", ") + key;
      return field_error((field.empty() ? "" : field + ".") + k, "unknown key (expected " + list + ")");
    }
  }
  return {};
}

}  // namespace

Result<CircuitBreakerOptions> circuit_options_from_json(const Json& value, const std::string& field) {
  CircuitBreakerOptions o;
  if (value.is_boolean()) return o;
  if (!value.is_object()) return field_error(field, "expected true or a mapping");
  CRUCIBLE_RETURN_IF_ERROR(check_keys(value, {"failures", "window", "cooldown", "probes"}, field));
  if (value.contains("failures")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto n, int_of(value["failures"], field + ".failures", 1, 1'000'000));
    o.failure_threshold = static_cast<int>(n);
  }
  if (value.contains("probes")) {
    CRUCIBLE_ASSIGN_OR_RETURN(auto n, int_of(value["probes"], field + ".probes", 1, 1000));
    o.half_open_probes = static_cast<int>(n);
  }
  for (auto [key, target] :
       {std::pair<const char*, std::chrono::milliseconds*>{"window", &o.window}, {"cooldown", &o.cool_down}}) {
    if (!value.contains(key)) continue;
    CRUCIBLE_ASSIGN_OR_RETURN(auto d, duration_field(value[key], field + "." + key));
    *target = d;
  }
  return o;
}

std::vector<ModelProblem> check_model_config(const Json& c) {
  std::vector<ModelProblem> out;
  auto add = [&](std::string field, std::string message) { out.push_back({std::move(field), std::move(message)}); };
  if (!c.is_object()) {
    add("", "expected a mapping with provider, model and api_key_env, found " + json_type_name(c));
    return out;
  }
  auto add_error = [&](const Error& e) { add(e.field().value_or(""), e.message()); };
  if (auto s = check_keys(c, kModelKeys, ""); !s) add_error(s.error());
  const std::string kind = c.value("provider", Json()).is_string() ? c["provider"].get<std::string>() : "";
  if (!c.contains("provider")) {
    add("provider", "missing required key 'provider' (anthropic, openai or scripted)");
  } else if (kind != "anthropic" && kind != "openai" && kind != "scripted") {
    add("provider", "unknown provider " + json_dump(c["provider"]) + " (expected anthropic, openai or scripted)");
  }
  for (const char* key : {"model", "base_url", "api_key_env", "anthropic_version"}) {
    if (c.contains(key) && !c[key].is_string()) add(key, "expected text, found " + json_type_name(c[key]));
  }
  if ((kind == "anthropic" || kind == "openai") && !c.contains("model")) add("model", "missing required key 'model'");
  if (kind == "anthropic" && !c.contains("api_key_env")) {
    add("api_key_env",
        "missing required key 'api_key_env' (the environment variable holding the key, e.g. ANTHROPIC_API_KEY)");
  }
  if (c.contains("api_key_env") && c["api_key_env"].is_string()) {
    const std::string& name = c["api_key_env"].get<std::string>();
    auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) ||
        !std::all_of(name.begin(), name.end(), word)) {
      add("api_key_env", "expected the name of an environment variable (the key itself never goes in a pipeline)");
    }
  }
  if (c.contains("timeout")) {
    if (auto d = duration_field(c["timeout"], "timeout"); !d) add_error(d.error());
  }
  if (c.contains("retry")) {
    // The loader parses `retry:` with the stages' parser and stores RetryPolicy::to_json().
    if (auto r = RetryPolicy::from_json(c["retry"]); !r) add("retry", r.error().message());
  }
  if (c.contains("hedging")) {
    if (!c["hedging"].is_object())
      add("hedging", "expected a mapping such as {strategy: percentile, percentile: 95}");
    else if (auto p = make_hedge_policy(c["hedging"]); !p)
      add("hedging", p.error().message());
  }
  if (c.contains("circuit_breaker")) {
    if (auto o = circuit_options_from_json(c["circuit_breaker"], "circuit_breaker"); !o) add_error(o.error());
  }
  if (c.contains("cache") && !c["cache"].is_boolean()) add("cache", "expected true or false");
  auto check_script = [&](const Json& responses, const std::string& field) {
    if (auto s = llm::ScriptedProvider::from_json(responses, field); !s) add_error(s.error());
  };
  if (kind == "scripted") {
    if (!c.contains("responses"))
      add("responses", "a scripted model needs 'responses' (a list of answers)");
    else
      check_script(c["responses"], "responses");
    if (c.contains("offline")) add("offline", "a scripted model is already offline");
  } else if (c.contains("responses")) {
    add("responses", "only a scripted model takes 'responses'; use 'offline: {responses: [...]}' for a fallback");
  }
  if (c.contains("offline")) {
    const Json& off = c["offline"];
    if (!off.is_object() || !off.contains("responses")) {
      add("offline", "expected {responses: [...]}, the answers to give when the API key is not set");
    } else if (auto s = check_keys(off, {"responses"}, "offline"); !s) {
      add_error(s.error());
    } else {
      check_script(off["responses"], "offline.responses");
    }
  }
  return out;
}

Result<ModelHandle> ModelRegistry::resolve(const std::string& name, const Json& config, const std::string& blob_dir) {
  auto problems = check_model_config(config);
  if (!problems.empty()) {
    return make_error(
        ErrorCode::kInvalidArgument,
        "models." + name + (problems[0].field.empty() ? "" : "." + problems[0].field) + ": " + problems[0].message);
  }
  const std::string env = config.value("api_key_env", "");
  const char* key_value = env.empty() ? nullptr : std::getenv(env.c_str());
  const std::string key = key_value != nullptr ? key_value : "";
  const std::string cache_key = name + "\n" + json_dump(config) + "\n" + blob_dir + "\n" + sha256_hex(key);
  std::lock_guard lock(mu_);
  if (auto it = built_.find(cache_key); it != built_.end()) return it->second;
  auto h = build(name, config, key, blob_dir);
  if (h) built_.emplace(cache_key, *h);
  return h;
}

Result<ModelHandle> ModelRegistry::build(const std::string& name, const Json& config, const std::string& key,
                                         const std::string& blob_dir) {
  const std::string kind = config["provider"].get<std::string>();
  const std::string env = config.value("api_key_env", "");
  ModelHandle h;
  h.kind = kind;
  std::shared_ptr<llm::Provider> p;
  const std::string model = config.value("model", "");
  std::chrono::milliseconds timeout(120'000);
  if (config.contains("timeout")) timeout = *duration_field(config["timeout"], "timeout");
  if (kind == "scripted") {
    p = std::shared_ptr<llm::Provider>(std::move(*llm::ScriptedProvider::from_json(config["responses"], "responses")));
  } else if (!env.empty() && key.empty()) {
    if (!config.contains("offline")) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "model '" + name + "' needs an API key: set " + env +
                            " (or give the model an `offline:` script to run without one)");
    }
    p = std::shared_ptr<llm::Provider>(
        std::move(*llm::ScriptedProvider::from_json(config["offline"]["responses"], "offline.responses")));
    h.offline = true;
    h.notice = "model '" + name + "': " + env + " is not set, so it answers from its offline script; set " + env +
               " to call " + kind + (model.empty() ? "" : " (" + model + ")");
  } else if (kind == "anthropic") {
    llm::AnthropicOptions o;
    if (config.contains("base_url")) o.base_url = config["base_url"].get<std::string>();
    if (config.contains("anthropic_version")) o.version = config["anthropic_version"].get<std::string>();
    o.api_key = key;
    o.timeout = timeout;
    p = llm::make_anthropic_provider(std::move(o));
  } else {
    llm::OpenAIOptions o;
    if (config.contains("base_url")) o.base_url = config["base_url"].get<std::string>();
    o.api_key = key;
    o.timeout = timeout;
    p = llm::make_openai_provider(std::move(o));
  }
  if (config.contains("hedging")) {
    int max_hedges = 1;
    auto policy = make_hedge_policy(config["hedging"], &max_hedges);
    p = std::make_shared<llm::HedgedProvider>(p, std::shared_ptr<HedgePolicy>(std::move(*policy)), executor_, clock_,
                                              max_hedges, name);
  }
  if (config.contains("circuit_breaker")) {
    p = std::make_shared<llm::CircuitBreakingProvider>(p, clock_,
                                                       *circuit_options_from_json(config["circuit_breaker"], ""));
  }
  if (config.contains("retry")) {
    p = std::make_shared<llm::RetryingProvider>(p, *RetryPolicy::from_json(config["retry"]), clock_, random_);
  }
  if (config.value("cache", false)) {
    std::string scope = kind + "|" + config.value("base_url", "") + "|" + model + (h.offline ? "|offline" : "");
    p = std::make_shared<llm::CachingProvider>(p, std::make_shared<llm::BlobCompletionStore>(blob_dir), scope);
  }
  h.provider = std::move(p);
  return h;
}

}  // namespace crucible
