// Helpers shared by the YAML loader and validate_spec.
#pragma once

#include <string>
#include <vector>

#include "crucible/workflow/spec.h"

namespace crucible::validate_internal {

// The closest candidate within edit distance 2, or "".
std::string suggest(const std::string& word, const std::vector<std::string>& candidates);

// The completion criterion a stage kind gets when none is given.
Completion default_completion(StageKind kind);

// The criteria a kind accepts (sai3-bench's rules; plain stages accept once, duration,
// tasks_done and duration_or_tasks).
std::vector<Completion> allowed_completions(StageKind kind);

}  // namespace crucible::validate_internal
