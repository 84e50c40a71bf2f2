#include "crucible/engine/worker.h"

#include <algorithm>

#include "crucible/engine/schedule.h"

namespace crucible {

std::string worker_key(const std::string& id) { return kWorkerPrefix + id; }

Json WorkerInfo::to_json() const {
  return Json{{"id", id},
              {"queues", queues},
              {"concurrency", concurrency},
              {"runs", runs},
              {"state", state},
              {"started_ms", started_ms},
              {"heartbeat_ms", heartbeat_ms},
              {"heartbeat_every_ms", heartbeat_every_ms},
              {"stats",
               {{"claimed", stats.claimed},
                {"completed", stats.completed},
                {"failed", stats.failed},
                {"parked", stats.parked},
                {"handed_back", stats.handed_back}}}};
}

Result<WorkerInfo> WorkerInfo::from_json(const Json& j) {
  WorkerInfo w;
  try {
    w.id = j.at("id").get<std::string>();
    w.queues = j.at("queues").get<std::vector<std::string>>();
    w.concurrency = j.at("concurrency").get<size_t>();
    w.runs = j.at("runs").get<std::vector<std::string>>();
    w.state = j.at("state").get<std::string>();
    w.started_ms = j.at("started_ms").get<int64_t>();
    w.heartbeat_ms = j.at("heartbeat_ms").get<int64_t>();
    w.heartbeat_every_ms = j.at("heartbeat_every_ms").get<int64_t>();
    const Json& s = j.at("stats");
    w.stats = {s.at("claimed").get<uint64_t>(), s.at("completed").get<uint64_t>(), s.at("failed").get<uint64_t>(),
               s.at("parked").get<uint64_t>(), s.at("handed_back").get<uint64_t>()};
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kDataLoss, std::string("a worker's record is malformed: ") + e.what());
  }
  return w;
}

Result<std::vector<WorkerInfo>> list_workers(Journal& journal, int64_t now_ms, std::chrono::milliseconds lost_for) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto stored, journal.list_values("", kWorkerPrefix));
  std::vector<WorkerInfo> out;
  for (const auto& [key, value] : stored) {
    if (value.is_null()) continue;
    CRUCIBLE_ASSIGN_OR_RETURN(auto w, WorkerInfo::from_json(value));
    if (w.live(now_ms) || now_ms - w.heartbeat_ms <= lost_for.count()) out.push_back(std::move(w));
  }
  return out;
}

Worker::Worker(Journal& journal, Runner& runner, Executor& executor, Clock& clock, SpecLoader load_spec,
               WorkerOptions options, RunListener listener)
    : journal_(journal),
      runner_(runner),
      executor_(executor),
      clock_(clock),
      load_spec_(std::move(load_spec)),
      options_(std::move(options)),
      listener_(std::move(listener)) {
  if (options_.id.empty()) options_.id = runner_.owner();
  options_.concurrency = std::max<size_t>(1, options_.concurrency);
  runner_.set_owner(options_.id);
  runner_.set_lease_ttl(options_.lease_ttl);
  runner_.set_interrupt(hand_back_.get_token());
}

Worker::~Worker() {
  hand_back_.request_stop();
  std::vector<Active> left;
  {
    std::lock_guard lock(mu_);
    left.swap(active_);
  }
  for (auto& a : left) a.done.wait();
}

void Worker::wake() {
  woken_.store(true);
  std::lock_guard lock(mu_);
  nap_.request_stop();
}

WorkerStats Worker::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t Worker::reap() {
  std::lock_guard lock(mu_);
  std::erase_if(active_,
                [](Active& a) { return a.done.wait_for(std::chrono::seconds(0)) == std::future_status::ready; });
  return active_.size();
}

void Worker::run(std::stop_token drain) {
  auto delay = options_.poll;
  started_ms_ = clock_.now_ms();
  bool full = false;      // every slot was taken after the last claim
  MonoTime first_free{};  // when a full worker saw a slot free up
  while (!drain.stop_requested()) {
    fire_due_schedules();
    heartbeat("serving");
    const size_t busy = reap();
    const size_t free = options_.concurrency - std::min(busy, options_.concurrency);
    // A full worker whose runs end one at a time claims their slots together, once an eighth of
    // them are free or the first has waited claim_batch_wait: a claim is a commit, and a claim
    // per ended run would cost as much as the runs' steps.
    bool claim = free > 0;
    if (claim && full && free < std::max<size_t>(1, options_.concurrency / 8)) {
      if (first_free == MonoTime{}) first_free = clock_.monotonic();
      claim = clock_.monotonic() - first_free >= options_.claim_batch_wait;
    }
    size_t claimed = 0;
    if (claim) {
      ClaimRequest request;
      request.owner = options_.id;
      request.queues = options_.queues;
      request.max_runs = free;
      request.ttl = options_.lease_ttl;
      request.now_ms = clock_.now_ms();
      auto leases = journal_.claim_runs(request);
      if (leases) {
        claimed = leases->size();
        full = claimed == free;
        first_free = {};
        for (Lease& lease : *leases) {
          std::lock_guard lock(mu_);
          ++stats_.claimed;
          RunId run = lease.run_id;
          active_.push_back(
              {std::move(run), executor_.run_in_background([this, lease = std::move(lease)] { execute(lease); })});
        }
      } else if (listener_) {
        listener_(RunId(), make_error(leases.error().with_context("claiming runs")));
      }
    }
    // Busy: look again soon, as a slot frees; idle: back off to the poll interval.
    if (claimed > 0 || (free > 0 && !claim)) delay = std::chrono::milliseconds(1);
    if (claimed > 0) continue;
    // The nap ends early on a drain request or a wake() (a run was just submitted or signalled).
    std::stop_source nap;
    {
      std::lock_guard lock(mu_);
      nap_ = nap;
    }
    if (woken_.exchange(false)) {
      delay = std::chrono::milliseconds(1);
      continue;
    }
    std::stop_callback on_drain(drain, [&nap] { nap.request_stop(); });
    if (!clock_.sleep_for(delay, nap.get_token())) {
      if (drain.stop_requested()) break;
      woken_.store(false);
      delay = std::chrono::milliseconds(1);
      continue;
    }
    delay = std::min(options_.poll, std::max(std::chrono::milliseconds(5), delay * 2));
  }
  // Draining: no more claims; running stages get the grace period, then are handed back.
  const MonoTime until = clock_.monotonic() + options_.grace;
  next_heartbeat_ = {};
  while (reap() > 0 && clock_.monotonic() < until) {
    heartbeat("draining");
    (void)clock_.sleep_for(std::chrono::milliseconds(20), std::stop_token());
  }
  hand_back_.request_stop();
  std::vector<Active> left;
  {
    std::lock_guard lock(mu_);
    left.swap(active_);
  }
  for (auto& a : left) a.done.wait();
  heartbeat("stopped", /*final=*/true);
}

void Worker::heartbeat(const char* state, bool final) {
  if (options_.heartbeat.count() <= 0) return;
  if (!final && clock_.monotonic() < next_heartbeat_) return;
  next_heartbeat_ = clock_.monotonic() + options_.heartbeat;
  Json value;  // null: removed
  if (!final) {
    WorkerInfo info;
    info.id = options_.id;
    info.queues = options_.queues;
    info.concurrency = options_.concurrency;
    info.state = state;
    info.started_ms = started_ms_;
    info.heartbeat_ms = clock_.now_ms();
    info.heartbeat_every_ms = options_.heartbeat.count();
    {
      std::lock_guard lock(mu_);
      for (const Active& a : active_) info.runs.push_back(a.run.str());
      info.stats = stats_;
    }
    value = info.to_json();
  }
  // A missed heartbeat only makes the worker look lost for a while; the runs it holds are
  // protected by their leases, not by this.
  if (Status s = journal_.put_value("", worker_key(options_.id), value); !s && listener_) {
    listener_(RunId(), make_error(s.error().with_context("recording the worker")));
  }
}

void Worker::fire_due_schedules() {
  if (options_.schedule_interval.count() <= 0 || clock_.monotonic() < next_schedule_check_) return;
  next_schedule_check_ = clock_.monotonic() + options_.schedule_interval;
  auto fired = fire_schedules(journal_, runner_, load_spec_, clock_.now_ms());
  if (!listener_) return;
  if (!fired) {
    listener_(RunId(), make_error(fired.error().with_context("firing schedules")));
    return;
  }
  for (const auto& [name, error] : fired->errors) {
    listener_(RunId(), make_error(error.with_context("schedule '" + name + "'")));
  }
  for (const auto& [name, tick] : fired->missed) {
    listener_(RunId(), make_error(ErrorCode::kDeadlineExceeded,
                                  "schedule '" + name + "': the tick of " + schedule_run_id(name, tick).str() +
                                      " was missed (no worker ran then); it is not backfilled"));
  }
}

void Worker::execute(Lease lease) {
  const RunId run_id = lease.run_id;
  auto finish = [&](const Result<RunResult>& outcome) {
    {
      std::lock_guard lock(mu_);
      if (!outcome) {
        ++stats_.handed_back;
      } else if (outcome->status == RunStatus::kCompleted) {
        ++stats_.completed;
      } else if (outcome->status == RunStatus::kWaiting) {
        ++stats_.parked;
      } else {
        ++stats_.failed;
      }
    }
    if (listener_) listener_(run_id, outcome);
  };
  auto log = journal_.read_run(run_id);
  if (!log) {
    (void)journal_.release_lease(lease);
    return finish(make_error(log.error()));
  }
  auto journaled = journaled_spec(*log);
  auto spec = journaled ? load_spec_(*journaled) : Result<WorkflowSpec>(make_error(journaled.error()));
  if (!spec) {
    // Not a passing trouble: no worker can run this spec. The run fails instead of coming back.
    Record failed;
    failed.type = RecordType::kRunFailed;
    failed.run_id = run_id;
    failed.at_ms = clock_.now_ms();
    failed.error = spec.error();
    failed.fence_epoch = lease.epoch;
    if (Status s = journal_.append(std::move(failed), Durability::kStrict); !s) {
      (void)journal_.release_lease(lease);
      return finish(make_error(s.error()));
    }
    RunResult result;
    result.run_id = run_id;
    result.pipeline = log->summary.pipeline;
    result.status = RunStatus::kFailed;
    result.error = spec.error();
    return finish(result);
  }
  ResumeOptions options;
  options.lease = lease;
  finish(runner_.resume(*spec, *log, options));
}

}  // namespace crucible
