// Schedules: a pipeline started on a cron expression, kept in the journal's shared state so every
// worker sees it. Any number of workers may fire them: a tick's run id derives from the schedule
// and the tick, and submitting an id twice is one run, so each tick starts exactly one run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "crucible/core/cron.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/journal.h"

namespace crucible {

struct Schedule {
  std::string name;
  std::string cron;
  Json spec;                        // the journaled spec: {"format":"yaml","text","file","spec_hash"}
  Json overrides = Json::object();  // the config with --set applied
  Placement placement;
  bool paused = false;
  bool backfill = false;  // after an outage, start every missed tick, not only the latest
  int64_t created_ms = 0;
  int64_t last_tick_ms = 0;     // the latest tick started (0: none yet)
  std::vector<int64_t> missed;  // ticks an outage skipped, not backfilled (the latest 20)
  Json to_json() const;
  [[nodiscard]] static Result<Schedule> from_json(const Json& j);
};

// The journal state key of a schedule, and the prefix of them all.
std::string schedule_key(const std::string& name);
inline constexpr const char* kSchedulePrefix = "schedule/";

// "<name>-20261201T0905Z": the run a tick starts.
RunId schedule_run_id(const std::string& schedule, int64_t tick_ms);

// kInvalidArgument unless `name` can name a schedule (it becomes part of run ids).
[[nodiscard]] Status check_schedule_name(const std::string& name);

// The pipeline a schedule runs, from its journaled spec.
using SpecFromJson = std::function<Result<WorkflowSpec>(const Json& spec)>;

struct FiredTick {
  std::string schedule;
  int64_t tick_ms = 0;
  RunId run_id;
  bool existed = false;  // another worker started it first
};

struct FireReport {
  std::vector<FiredTick> started;
  std::vector<std::pair<std::string, int64_t>> missed;  // schedule, tick
  std::vector<std::pair<std::string, Error>> errors;    // a schedule that could not fire
};

// Starts the runs of every schedule's due ticks up to `now_ms` (submitted to the schedule's
// queue), records the latest tick, and reports ticks an outage skipped: only the latest missed
// tick runs unless the schedule backfills.
[[nodiscard]] Result<FireReport> fire_schedules(Journal& journal, Runner& runner, const SpecFromJson& load,
                                                int64_t now_ms);

}  // namespace crucible
