// What a run's journal says, as typed rows: each step's status, attempts, duration and error; LLM
// token usage; experiment branches by experiment; comparison reports; the promise a parked run
// waits on. What `crucible status` and `crucible experiments show` print, and what a server serves.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "crucible/core/json.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/journal.h"

namespace crucible {

struct StepRow {
  std::string key;
  StepStatus status = StepStatus::kInFlight;
  int attempts = 0;
  int64_t duration_us = 0;
  std::string error;
  // {"key","status","attempts","duration_ms","error"}
  Json to_json() const;
};

// Token usage summed over a run's completed llm.* steps.
struct LlmUsage {
  int64_t calls = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t tokens_used = 0;
  // {"calls","input_tokens","output_tokens","tokens_used"}
  Json to_json() const;
};

struct RunReport {
  RunSummary summary;
  size_t records = 0;
  std::vector<StepRow> steps;                             // in the order steps first started
  std::optional<LlmUsage> llm;                            // when the run called a model
  std::map<std::string, std::vector<Json>> experiments;   // branch outcomes by experiment step key, as finished
  std::vector<std::pair<std::string, Json>> comparisons;  // compare reports by step key
  Json suspended;                                         // the record that parked the run, or null

  // Reads the records of one run; never fails (unknown records are left out).
  static RunReport from_log(const RunLog& log);
};

// Whether a signal for promise `name` can reach the run: kFailedPrecondition for a finished
// run, kInvalidArgument naming the promise a waiting run waits on when `name` is another. A
// running run may not have reached its wait yet, so any name is taken then.
[[nodiscard]] Status check_signal(const RunLog& log, const std::string& name);

}  // namespace crucible
