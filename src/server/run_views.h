// The JSON the API serves about runs, built from their journals: a run's detail page, its
// records as events, an ingress call's result. Private to the server module.
#pragma once

#include <string>

#include "crucible/core/json.h"
#include "crucible/journal/journal.h"

namespace crucible::server {

// "stage.completed", "run.started", ...: the telemetry names of the record types.
std::string_view event_type_of(RecordType type);

// One record as an event: {"seq","type","at_ms","key"?,"attempts"?,"duration_us"?,"error"?,...}.
Json record_event(const Record& record);

// The run as the run page shows it: its summary, each step's status, attempts, duration and
// error, a timeline of attempts (with hedging where it happened), the metrics, artifacts and
// state so far, the promise it waits on and those resolved, LLM usage, and `last_seq`, the last
// record's sequence number (the event id to resume a stream from).
Json run_detail(const RunLog& log);

// What an ingress call returns: {"run_id","pipeline","status","duration_ms","metrics",
// "artifacts","state","error"?,"waiting_on"?}.
Json run_result(const RunLog& log);

// {"experiments": {step key: [branch outcomes]}, "comparisons": [{"key","report"}]}.
Json run_experiments(const RunLog& log);

}  // namespace crucible::server
