// How `crucible status` and `crucible experiments show` print a run's experiment branches and
// comparison verdicts as tables.
#pragma once

#include "crucible/engine/run_report.h"

namespace crucible::cli {

// Per experiment: its branches (config id, the parameters that vary, status, duration, metrics),
// then each comparison's table and verdict.
void print_experiments(const RunReport& report);

}  // namespace crucible::cli
