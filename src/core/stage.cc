#include "crucible/core/stage.h"

#include "crucible/core/duration.h"

namespace crucible {

const OptionSpec* StageDescription::option(std::string_view option_name) const {
  for (const OptionSpec& spec : options) {
    if (spec.name == option_name) return &spec;
  }
  return nullptr;
}

Json StageDescription::to_json() const {
  Json opts = Json::array();
  for (const OptionSpec& o : options) {
    Json entry = {{"name", o.name}, {"type", o.type}, {"required", o.required}, {"description", o.description}};
    if (!o.default_value.is_null()) entry["default"] = o.default_value;
    opts.push_back(std::move(entry));
  }
  return Json{{"name", name},       {"summary", summary}, {"inputs", inputs},
              {"outputs", outputs}, {"options", opts},    {"idempotent", idempotent}};
}

StageDescription describe_stage(std::string name, std::string summary, std::vector<OptionSpec> options,
                                std::vector<std::string> inputs, std::vector<std::string> outputs, bool idempotent) {
  StageDescription d;
  d.name = std::move(name);
  d.summary = std::move(summary);
  d.options = std::move(options);
  d.inputs = std::move(inputs);
  d.outputs = std::move(outputs);
  d.idempotent = idempotent;
  return d;
}

const Json* StageOptions::get(std::string_view key) const {
  if (!values_.is_object()) return nullptr;
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &*it;
}

namespace {

Error wrong_type(std::string_view key, std::string_view expected, const Json* found) {
  if (found == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "missing required option '" + std::string(key) + "' (" + std::string(expected) + ")");
  }
  return Error(ErrorCode::kInvalidArgument, "option '" + std::string(key) + "' must be " + std::string(expected) +
                                                ", got " + json_type_name(*found) + " " + json_dump(*found));
}

}  // namespace

Result<std::string> StageOptions::string(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr || !v->is_string()) return make_error(wrong_type(key, "a string", v));
  return v->get<std::string>();
}

Result<std::chrono::milliseconds> StageOptions::duration(std::string_view key) const {
  const Json* v = get(key);
  std::optional<std::chrono::milliseconds> d = v == nullptr ? std::nullopt : duration_from_json(*v);
  if (!d) return make_error(wrong_type(key, "a duration such as 500ms, 30s or 5m", v));
  return *d;
}

Result<int64_t> StageOptions::integer(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr || !v->is_number_integer()) return make_error(wrong_type(key, "an integer", v));
  return v->get<int64_t>();
}

Result<double> StageOptions::number(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr || !v->is_number()) return make_error(wrong_type(key, "a number", v));
  return v->get<double>();
}

Result<bool> StageOptions::boolean(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr || !v->is_boolean()) return make_error(wrong_type(key, "a boolean", v));
  return v->get<bool>();
}

std::string StageOptions::string_or(std::string_view key, std::string fallback) const {
  const Json* v = get(key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::move(fallback);
}

int64_t StageOptions::integer_or(std::string_view key, int64_t fallback) const {
  const Json* v = get(key);
  return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : fallback;
}

double StageOptions::number_or(std::string_view key, double fallback) const {
  const Json* v = get(key);
  return v != nullptr && v->is_number() ? v->get<double>() : fallback;
}

bool StageOptions::boolean_or(std::string_view key, bool fallback) const {
  const Json* v = get(key);
  return v != nullptr && v->is_boolean() ? v->get<bool>() : fallback;
}

Status StageRegistry::register_stage(std::string name, StageFactory factory) {
  if (factories_->contains(name)) {
    return make_error(ErrorCode::kAlreadyExists, "stage '" + name + "' is already registered");
  }
  factories_->emplace(std::move(name), std::move(factory));
  return {};
}

Result<std::unique_ptr<Stage>> StageRegistry::create(std::string_view name) const {
  auto it = factories_->find(name);
  if (it == factories_->end()) {
    std::string known;
    for (const auto& [n, f] : *factories_) known += (known.empty() ? "" : ", ") + n;
    return make_error(ErrorCode::kNotFound, "unknown stage type '" + std::string(name) + "'; known types: " + known);
  }
  return it->second();
}

const StageFactory* StageRegistry::factory(std::string_view name) const {
  auto it = factories_->find(name);
  return it == factories_->end() ? nullptr : &it->second;
}

Result<StageDescription> StageRegistry::describe(std::string_view name) const {
  CRUCIBLE_ASSIGN_OR_RETURN(auto stage, create(name));
  return stage->describe();
}

bool StageRegistry::contains(std::string_view name) const { return factories_->contains(name); }

std::vector<std::string> StageRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : *factories_) out.push_back(n);
  return out;
}

StageResolver StageRegistry::resolver() const {
  std::weak_ptr<Factories> weak = factories_;
  return [weak](std::string_view name) -> Result<std::unique_ptr<Stage>> {
    auto factories = weak.lock();
    if (!factories) return make_error(ErrorCode::kFailedPrecondition, "the stage registry is gone");
    StageRegistry view;
    view.factories_ = factories;
    return view.create(name);
  };
}

namespace {

class FunctionStage : public Stage {
 public:
  FunctionStage(std::shared_ptr<const StageDescription> description, StageFn fn)
      : description_(std::move(description)), fn_(std::move(fn)) {}
  StageDescription describe() const override { return *description_; }
  Status run(Context& ctx, const StageOptions& options, std::stop_token stop) override {
    return fn_(ctx, options, stop);
  }

 private:
  std::shared_ptr<const StageDescription> description_;
  StageFn fn_;
};

}  // namespace

std::unique_ptr<Stage> make_function_stage(StageDescription description, StageFn fn) {
  return std::make_unique<FunctionStage>(std::make_shared<const StageDescription>(std::move(description)),
                                         std::move(fn));
}

Status register_function_stage(StageRegistry& registry, StageDescription description, StageFn fn) {
  auto shared = std::make_shared<const StageDescription>(std::move(description));
  std::string name = shared->name;
  return registry.register_stage(std::move(name), [shared, fn = std::move(fn)]() -> std::unique_ptr<Stage> {
    return std::make_unique<FunctionStage>(shared, fn);
  });
}

}  // namespace crucible
