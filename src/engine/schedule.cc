#include "crucible/engine/schedule.h"

#include <algorithm>
#include <ctime>

namespace crucible {

Json Schedule::to_json() const {
  return {{"name", name},
          {"cron", cron},
          {"spec", spec},
          {"overrides", overrides},
          {"placement", placement.to_json()},
          {"paused", paused},
          {"backfill", backfill},
          {"created_ms", created_ms},
          {"last_tick_ms", last_tick_ms},
          {"missed", missed}};
}

Result<Schedule> Schedule::from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kDataLoss, "a schedule must be an object");
  Schedule s;
  try {
    s.name = j.at("name").get<std::string>();
    s.cron = j.at("cron").get<std::string>();
    s.spec = j.at("spec");
    s.overrides = j.value("overrides", Json::object());
    if (const Json* p = json_member(j, "placement")) {
      CRUCIBLE_ASSIGN_OR_RETURN(s.placement, Placement::from_json(*p));
    }
    s.paused = j.value("paused", false);
    s.backfill = j.value("backfill", false);
    s.created_ms = j.value("created_ms", int64_t{0});
    s.last_tick_ms = j.value("last_tick_ms", int64_t{0});
    s.missed = j.value("missed", std::vector<int64_t>());
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kDataLoss, std::string("a damaged schedule: ") + e.what());
  }
  return s;
}

std::string schedule_key(const std::string& name) { return kSchedulePrefix + name; }

RunId schedule_run_id(const std::string& schedule, int64_t tick_ms) {
  std::time_t secs = static_cast<std::time_t>(tick_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%MZ", &tm);
  return *RunId::parse(schedule + "-" + buf);
}

Status check_schedule_name(const std::string& name) {
  if (name.empty() || name.size() > 100) return field_error("name", "a schedule name must be 1-100 characters");
  auto id = RunId::parse(name);
  if (!id) return field_error("name", "schedule name '" + name + "': " + id.error().message());
  return {};
}

Result<FireReport> fire_schedules(Journal& journal, Runner& runner, const SpecFromJson& load, int64_t now_ms) {
  FireReport report;
  CRUCIBLE_ASSIGN_OR_RETURN(auto stored, journal.list_values("", kSchedulePrefix));
  for (const auto& [key, value] : stored) {
    if (value.is_null()) continue;  // removed
    auto parsed = Schedule::from_json(value);
    if (!parsed) {
      report.errors.emplace_back(key, parsed.error());
      continue;
    }
    Schedule s = std::move(*parsed);
    if (s.paused) continue;
    auto cron = CronExpr::parse(s.cron);
    if (!cron) {
      report.errors.emplace_back(s.name, cron.error());
      continue;
    }
    std::vector<int64_t> due;
    for (auto t = cron->next_after(std::max(s.last_tick_ms, s.created_ms)); t && *t <= now_ms && due.size() < 10'000;
         t = cron->next_after(*t)) {
      due.push_back(*t);
    }
    if (due.empty()) continue;
    auto spec = load(s.spec);
    if (!spec) {
      report.errors.emplace_back(s.name, spec.error());
      continue;
    }
    std::vector<int64_t> fire = due;
    if (!s.backfill) {
      fire = {due.back()};
      for (size_t i = 0; i + 1 < due.size(); ++i) {
        report.missed.emplace_back(s.name, due[i]);
        s.missed.push_back(due[i]);
      }
      if (s.missed.size() > 20) s.missed.erase(s.missed.begin(), s.missed.end() - 20);
    }
    for (int64_t tick : fire) {
      StartOptions options;
      options.run_id = schedule_run_id(s.name, tick);
      options.overrides = s.overrides;
      auto submitted = runner.submit(*spec, options, s.placement);
      if (!submitted) {
        report.errors.emplace_back(s.name, submitted.error());
        break;
      }
      s.last_tick_ms = tick;
      report.started.push_back(FiredTick{s.name, tick, submitted->run_id, submitted->existed});
    }
    // Only a schedule that is still there and newer: a racing `remove` or a faster worker wins.
    auto current = journal.get_value("", key);
    if (!current || !current->has_value() || (*current)->is_null()) continue;
    if ((*current)->value("last_tick_ms", int64_t{0}) >= s.last_tick_ms) continue;
    Json updated = **current;
    updated["last_tick_ms"] = s.last_tick_ms;
    updated["missed"] = s.missed;
    CRUCIBLE_RETURN_IF_ERROR(journal.put_value("", key, updated));
  }
  return report;
}

}  // namespace crucible
