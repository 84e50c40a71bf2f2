// Loading and validating pipelines. Validation reports every problem, each located at
// file:line:column with the field path, and never stops at the first.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/duration.h"
#include "crucible/core/stage.h"
#include "crucible/workflow/spec.h"

namespace crucible {

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  SourceLocation loc;
  std::string field;  // e.g. "stages[2].retry.attempts"
  std::string message;
  // "pipeline.yaml:12:7: error: stages[2].retry.attempts: expected an integer, found 'three'"
  std::string to_string() const;
};

struct LoadResult {
  std::optional<WorkflowSpec> spec;  // set when there are no errors
  std::vector<Diagnostic> diagnostics;
  bool ok() const { return spec.has_value(); }
  // All diagnostics, one per line.
  std::string report() const;
  size_t error_count() const;
};

// Parses and validates a YAML pipeline; stage types and their options are checked against
// `registry`. The spec holds no stage instances: a run binds them (engine/plan.h).
LoadResult load_pipeline_file(const std::string& path, const StageRegistry& registry);
LoadResult load_pipeline_text(std::string_view text, const std::string& file_label, const StageRegistry& registry);

// Validates a spec (from the builder or the loader) and never changes it: unique sibling names,
// unique `order` values (gaps are warnings), completion criteria that fit the stage kind, stage
// types known to the registry (`type: custom` needs its `command` stage), options that fit each
// stage's description, hedging only on idempotent stages.
[[nodiscard]] std::vector<Diagnostic> validate_spec(const WorkflowSpec& spec, const StageRegistry& registry);

// Why `spec` cannot run on this machine (distributed agents, storage workloads without a local
// body), or nullopt when it can.
std::optional<std::string> unsupported_reason(const WorkflowSpec& spec);

}  // namespace crucible
