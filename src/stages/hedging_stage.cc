#include "crucible/stages/hedging_stage.h"

#include <chrono>
#include <mutex>

#include "crucible/reliability/hedger.h"
#include "crucible/reliability/hedging_config.h"

namespace crucible {
namespace {

constexpr std::chrono::milliseconds kDefaultTimeout{30'000};

StageDescription hedging_description() {
  StageDescription d;
  d.name = "hedging";
  d.summary = "runs a request with request hedging (reliability.hedging) and keeps the first success";
  d.inputs = {"experiment reliability.hedging: strategy, delay_ms, percentile, max_hedges, budget_percent, options",
              "a request: a C++ function, or the option `request: {uses, with}`"};
  d.outputs = {"artifact hedging_result", "metric hedging: the hedging metadata and strategy",
               "stage hedging completed"};
  d.options = {{"request", "object", false, Json(), "the request stage to hedge: {uses: TYPE, with: {...}}"},
               {"timeout", "duration", false, Json(), "one deadline over every attempt (default 30s)"}};
  return d;
}

class HedgingStage : public Stage {
 public:
  HedgingStage(HedgedRequestFn fn, StageResolver resolve) : fn_(std::move(fn)), resolve_(std::move(resolve)) {}

  StageDescription describe() const override { return hedging_description(); }

  Status run(Context& ctx, const StageOptions& options, std::stop_token stop) override {
    auto request = resolve_request(ctx, options);
    if (!request) return make_error(request.error());
    const Json& reliability = ctx.services() != nullptr ? ctx.services()->reliability() : Json::object();
    if (!reliability.is_object() || !reliability.contains("hedging") || reliability["hedging"].is_null()) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "missing hedging config: the experiment needs reliability.hedging (strategy, delay_ms, ...)");
    }
    int max_hedges = 1;
    CRUCIBLE_ASSIGN_OR_RETURN(HedgePolicy * policy, policy_for(reliability["hedging"], max_hedges));

    CRUCIBLE_ASSIGN_OR_RETURN(HedgeCallOptions call, call_options(ctx, options, max_hedges));
    if (ctx.services() == nullptr) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "the hedging stage runs its attempts on the runner's executor; "
                        "run it in a pipeline or give its context StageServices");
    }
    Hedger hedger(ctx.services()->executor(), ctx.services()->clock(), *policy);
    auto result = hedger.hedge<Json>(
        [&](int, std::stop_token s) -> Result<Json> {
          try {
            return (*request)(s);
          } catch (const std::exception& e) {
            return make_error(ErrorCode::kInternal, std::string("the request threw: ") + e.what());
          }
        },
        call, stop);
    if (!result) return make_error(result.error().code(), "request failed: " + result.error().message());
    ctx.put_artifact("hedging_result", std::move(result->value));
    ctx.put_metric("hedging", result->meta.to_json());
    ctx.mark_stage_complete("hedging");
    return {};
  }

 private:
  static Result<HedgeCallOptions> call_options(const Context& ctx, const StageOptions& options, int max_hedges) {
    HedgeCallOptions call;
    call.key = ctx.current_stage().empty() ? "hedging" : ctx.current_stage();
    call.max_hedges = max_hedges;
    call.wait_for_losers = true;
    call.timeout = kDefaultTimeout;
    if (options.has("timeout")) {
      CRUCIBLE_ASSIGN_OR_RETURN(auto timeout, options.duration("timeout"));
      call.timeout = timeout;
    }
    return call;
  }

  // The C++ function, or a runner of the `request` stage on a scratch context.
  Result<HedgedRequestFn> resolve_request(const Context& ctx, const StageOptions& options) {
    if (!resolve_) {
      if (!fn_) return make_error(ErrorCode::kInvalidArgument, "invalid request: the request function is empty");
      return fn_;
    }
    const Json* spec = options.get("request");
    if (spec == nullptr) {
      return make_error(ErrorCode::kInvalidArgument,
                        "missing request: set option `request: {uses: TYPE, with: {...}}`");
    }
    if (!spec->is_object() || !spec->contains("uses") || !(*spec)["uses"].is_string()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "invalid request " + json_dump(*spec) + ": expected {uses: TYPE, with: {...}}");
    }
    auto stage = resolve_((*spec)["uses"].get<std::string>());
    if (!stage) return make_error(ErrorCode::kInvalidArgument, "invalid request: " + stage.error().message());
    std::shared_ptr<Stage> shared(std::move(*stage));
    Json with = spec->value("with", Json::object());
    Context base = ctx;
    return HedgedRequestFn([shared, with, base](std::stop_token stop) -> Result<Json> {
      Context scratch = base;
      (void)scratch.take_delta();
      CRUCIBLE_RETURN_IF_ERROR(shared->run(scratch, StageOptions(with), stop));
      Json out = Json::object();
      for (const Mutation& m : scratch.delta()) {
        if (m.kind == Mutation::Kind::kArtifact) out[m.key] = m.value;
      }
      if (out.size() == 1) return out.begin().value();
      return out;
    });
  }

  // The policy keeps learning across calls; it is rebuilt only when the configuration changes.
  // The configuration goes through the same typed reader as a stage's `hedging:`.
  Result<HedgePolicy*> policy_for(const Json& written, int& max_hedges) {
    std::lock_guard lock(mu_);
    if (!policy_ || written != written_) {
      CRUCIBLE_ASSIGN_OR_RETURN(HedgingConfig config, HedgingConfig::from_json(written));
      CRUCIBLE_RETURN_IF_ERROR(config.check());
      CRUCIBLE_ASSIGN_OR_RETURN(policy_, HedgePolicy::create(config));
      written_ = written;
      max_hedges_ = config.max_hedges;
    }
    max_hedges = max_hedges_;
    return policy_.get();
  }

  HedgedRequestFn fn_;
  StageResolver resolve_;
  std::mutex mu_;
  Json written_;                         // guarded by mu_: the configuration policy_ was made from
  std::unique_ptr<HedgePolicy> policy_;  // guarded by mu_
  int max_hedges_ = 1;                   // guarded by mu_
};

}  // namespace

std::unique_ptr<Stage> make_hedging_stage(HedgedRequestFn request) {
  return std::make_unique<HedgingStage>(std::move(request), nullptr);
}

std::unique_ptr<Stage> make_hedging_stage(StageResolver resolve) {
  return std::make_unique<HedgingStage>(nullptr, std::move(resolve));
}

Status register_hedging_stage(StageRegistry& registry) {
  StageResolver resolve = registry.resolver();
  return registry.register_stage("hedging", [resolve] { return make_hedging_stage(resolve); });
}

}  // namespace crucible
