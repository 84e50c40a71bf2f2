// The Stage interface and the StageRegistry that maps `uses:` names to stage factories.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/context.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

// One option a stage accepts. `type` is a JSON type name: "string", "integer", "number",
// "boolean", "array", "object" or "any".
struct OptionSpec {
  std::string name;
  std::string type;
  bool required = false;
  Json default_value;  // null when none
  std::string description;
};

// Shorthand for describe(): option_spec("argv", "array", true, "program and arguments").
inline OptionSpec option_spec(std::string name, std::string type, bool required, std::string description,
                              Json default_value = Json()) {
  return OptionSpec{std::move(name), std::move(type), required, std::move(default_value), std::move(description)};
}

struct StageDescription {
  std::string name;
  std::string summary;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<OptionSpec> options;
  // Whether running the stage twice is harmless; YAML `idempotent:` overrides it.
  bool idempotent = true;

  const OptionSpec* option(std::string_view option_name) const;
  Json to_json() const;
};

// Shorthand for a whole description.
StageDescription describe_stage(std::string name, std::string summary, std::vector<OptionSpec> options,
                                std::vector<std::string> inputs = {}, std::vector<std::string> outputs = {},
                                bool idempotent = true);

// The resolved options of one stage invocation (templates already expanded).
class StageOptions {
 public:
  StageOptions() = default;  // no options; allocates nothing
  explicit StageOptions(Json values) : values_(std::move(values)) {}

  // The options as an object (an empty one when there are none).
  const Json& json() const { return values_.is_null() ? empty_ : values_; }
  const Json* get(std::string_view key) const;
  bool has(std::string_view key) const { return get(key) != nullptr; }

  // Typed accessors. kInvalidArgument naming the option when it is missing or of the wrong type.
  [[nodiscard]] Result<std::string> string(std::string_view key) const;
  [[nodiscard]] Result<int64_t> integer(std::string_view key) const;
  [[nodiscard]] Result<double> number(std::string_view key) const;
  [[nodiscard]] Result<bool> boolean(std::string_view key) const;
  // A duration string ("30s") or a number of seconds.
  [[nodiscard]] Result<std::chrono::milliseconds> duration(std::string_view key) const;
  std::string string_or(std::string_view key, std::string fallback) const;
  int64_t integer_or(std::string_view key, int64_t fallback) const;
  double number_or(std::string_view key, double fallback) const;
  bool boolean_or(std::string_view key, bool fallback) const;

 private:
  Json values_;
  inline static const Json empty_ = Json::object();
};

// A unit of work in a pipeline. run() may be called concurrently by several runs, so a stage
// keeps per-call state on the stack. Exceptions thrown by run() are caught by the runner and
// recorded as kInternal failures. A long-running stage polls `stop` and returns kCancelled.
class Stage {
 public:
  virtual ~Stage() = default;
  virtual StageDescription describe() const = 0;
  [[nodiscard]] virtual Status run(Context& ctx, const StageOptions& options, std::stop_token stop) = 0;
};

using StageFactory = std::function<std::unique_ptr<Stage>()>;

// Creates a stage by type name, or kNotFound.
using StageResolver = std::function<Result<std::unique_ptr<Stage>>(std::string_view name)>;

// Maps names to stage factories. A handle: copies share one table, so a stage that creates
// other stages by name (through resolver()) sees later registrations. Registration is not
// thread-safe; lookups are.
class StageRegistry {
 public:
  // kAlreadyExists if the name is taken.
  [[nodiscard]] Status register_stage(std::string name, StageFactory factory);
  // kNotFound listing the known names.
  [[nodiscard]] Result<std::unique_ptr<Stage>> create(std::string_view name) const;
  // The factory registered as `name`, or null; valid while this registry lives and `name` is
  // not registered again.
  const StageFactory* factory(std::string_view name) const;
  [[nodiscard]] Result<StageDescription> describe(std::string_view name) const;
  bool contains(std::string_view name) const;
  std::vector<std::string> names() const;
  // A lookup that does not keep the table alive (kFailedPrecondition once it is gone).
  StageResolver resolver() const;

 private:
  using Factories = std::map<std::string, StageFactory, std::less<>>;
  std::shared_ptr<Factories> factories_ = std::make_shared<Factories>();
};

using StageFn = std::function<Status(Context&, const StageOptions&, std::stop_token)>;

// A stage made from a function, for C++ pipelines and tests.
std::unique_ptr<Stage> make_function_stage(StageDescription description, StageFn fn);
// Registers a function as the stage type `description.name`; its instances share one
// description, so making one costs a single allocation.
[[nodiscard]] Status register_function_stage(StageRegistry& registry, StageDescription description, StageFn fn);

}  // namespace crucible
