#include "crucible/journal/memory_journal.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "crucible/core/clock.h"

namespace crucible {
namespace {

class MemoryJournal : public Journal {
 public:
  Status append(Record record, Durability) override {
    std::lock_guard lock(mu_);
    return append_locked(record);
  }

  Status append(std::vector<Record> records, Durability) override {
    std::lock_guard lock(mu_);
    for (Record& r : records) CRUCIBLE_RETURN_IF_ERROR(append_locked(r));
    return {};
  }

  Status append_locked(Record& r) {
    {
      auto it = runs_.find(r.run_id);
      if (r.type == RecordType::kRunStarted) {
        if (it != runs_.end()) {
          return make_error(ErrorCode::kAlreadyExists, "run '" + r.run_id.str() + "' already exists");
        }
        RunData data;
        data.log.summary.run_id = r.run_id;
        data.log.summary.pipeline = json_string(r.payload, "pipeline");
        data.log.summary.spec_hash = json_string(r.payload, "spec_hash");
        data.log.summary.parent_run = json_string(r.payload, "parent_run");
        data.log.summary.created_ms = r.at_ms;
        if (const Json* placement = json_member(r.payload, "placement")) {
          CRUCIBLE_ASSIGN_OR_RETURN(data.placement, Placement::from_json(*placement));
          data.log.summary.queue = data.placement.queue;
          data.log.summary.priority = data.placement.priority;
        }
        data.order = ++runs_started_;
        it = runs_.emplace(r.run_id, std::move(data)).first;
      } else if (it == runs_.end()) {
        return make_error(ErrorCode::kNotFound, "run '" + r.run_id.str() + "' does not exist");
      }
      if (r.fence_epoch != 0) {
        const uint64_t epoch = leases_.contains(r.run_id) ? leases_[r.run_id].epoch : 0;
        if (epoch != r.fence_epoch) return make_error(fenced_error(r.run_id, r.fence_epoch, epoch));
      }
      RunSummary& summary = it->second.log.summary;
      if (auto status = status_after(r)) summary.status = *status;
      if (r.type == RecordType::kRunFailed && r.error) summary.error = r.error->message();
      bool new_spec = r.type == RecordType::kDecision && r.key.str() == "#spec";
      if ((r.type == RecordType::kRunStarted || new_spec) && json_member(r.payload, "spec_hash") != nullptr) {
        summary.spec_hash = json_string(r.payload, "spec_hash");
      }
      summary.updated_ms = std::max(summary.updated_ms, r.at_ms);
      if (r.type == RecordType::kRunCompleted || r.type == RecordType::kRunFailed ||
          r.type == RecordType::kRunSuspended) {
        if (auto lease = leases_.find(r.run_id); lease != leases_.end()) lease->second.owner.clear();
      }
      if (r.type == RecordType::kRunSuspended) {
        it->second.wake_ms = wake_time(r);
        it->second.waiting_on = json_string(r.payload, "promise");
      }
      r.seq = ++seq_;
      r.fence_epoch = 0;  // not stored, as in the database journals
      it->second.records.push_back(std::move(r));
    }
    return {};
  }

  Status flush() override { return {}; }

  Result<RunLog> read_run(const RunId& run) override {
    std::lock_guard lock(mu_);
    auto it = runs_.find(run);
    if (it == runs_.end()) {
      return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    }
    RunLog log = it->second.snapshot();
    with_lease(log.summary);
    return log;
  }

  Result<std::vector<RunSummary>> list_runs(const RunFilter& filter) override {
    std::lock_guard lock(mu_);
    std::vector<RunSummary> out;
    for (const auto& [id, data] : runs_) {
      const RunSummary& s = data.log.summary;
      if (filter.status && s.status != *filter.status) continue;
      if (filter.pipeline && s.pipeline != *filter.pipeline) continue;
      if (filter.created_after_ms && s.created_ms < *filter.created_after_ms) continue;
      if (filter.created_before_ms && s.created_ms >= *filter.created_before_ms) continue;
      out.push_back(s);
      with_lease(out.back());
    }
    std::sort(out.begin(), out.end(), [](const RunSummary& a, const RunSummary& b) {
      return a.created_ms != b.created_ms ? a.created_ms > b.created_ms : a.run_id > b.run_id;
    });
    if (out.size() > filter.limit) out.resize(filter.limit);
    return out;
  }

  Result<std::vector<RunLog>> read_unfinished() override {
    std::lock_guard lock(mu_);
    std::vector<RunLog> out;
    for (const auto& [id, data] : runs_) {
      if (data.log.summary.status != RunStatus::kRunning) continue;
      out.push_back(data.snapshot());
      with_lease(out.back().summary);
    }
    return out;
  }

  Result<Lease> acquire_lease(const RunId& run, const std::string& owner, std::chrono::milliseconds ttl,
                              std::optional<uint64_t> steal_epoch) override {
    std::lock_guard lock(mu_);
    int64_t now = real_clock().now_ms();
    Lease& lease = leases_[run];
    bool free = lease.owner.empty() || lease.expires_ms <= now || lease.owner == owner ||
                (steal_epoch && *steal_epoch == lease.epoch);
    if (!free) {
      return make_error(ErrorCode::kFailedPrecondition, "run '" + run.str() + "' is leased by " + lease.owner +
                                                            " (epoch " + std::to_string(lease.epoch) + ")");
    }
    lease.run_id = run;
    lease.owner = owner;
    lease.epoch += 1;
    lease.expires_ms = now + ttl.count();
    return lease;
  }

  Result<std::optional<Lease>> current_lease(const RunId& run) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(run);
    if (it == leases_.end() || it->second.owner.empty()) return std::optional<Lease>();
    return std::optional<Lease>(it->second);
  }

  Status renew_lease(const Lease& lease, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(lease.run_id);
    if (it == leases_.end() || it->second.epoch != lease.epoch || it->second.owner != lease.owner) {
      return make_error(ErrorCode::kAborted, "lease on run '" + lease.run_id.str() + "' was taken over (epoch " +
                                                 std::to_string(lease.epoch) + " is stale)");
    }
    it->second.expires_ms = real_clock().now_ms() + ttl.count();
    if (auto run = runs_.find(lease.run_id); run != runs_.end() && run->second.cancel_requested) {
      return make_error(ErrorCode::kCancelled, "run '" + lease.run_id.str() + "' was cancelled");
    }
    return {};
  }

  Result<std::vector<Lease>> claim_runs(const ClaimRequest& request) override {
    std::lock_guard lock(mu_);
    const int64_t now = request.now_ms;
    std::map<std::string, QueueLimits> limits;
    std::map<std::string, QueueLoad> load;
    for (const std::string& q : request.queues) {
      if (auto v = values_.find(std::string() + '\0' + queue_limits_key(q)); v != values_.end()) {
        CRUCIBLE_ASSIGN_OR_RETURN(limits[q], QueueLimits::from_json(v->second));
      }
    }
    auto live = [&](const RunId& id) {
      auto l = leases_.find(id);
      return l != leases_.end() && !l->second.owner.empty() && l->second.expires_ms > now;
    };
    std::vector<std::pair<RunData*, ClaimCandidate>> found;
    for (auto& [id, data] : runs_) {
      const std::string& queue = data.placement.queue;
      if (data.log.summary.queue.empty() ||
          std::find(request.queues.begin(), request.queues.end(), queue) == request.queues.end()) {
        continue;
      }
      QueueLoad& l = load[queue];
      const RunStatus status = data.log.summary.status;
      if (status == RunStatus::kRunning && live(id)) ++l.running[data.placement.partition];
      auto q = limits.find(queue);
      if (q != limits.end() && q->second.rate_limit && data.started_ms &&
          *data.started_ms > now - q->second.rate_period.count()) {
        ++l.recent_starts;
      }
      const bool due = ((status == RunStatus::kQueued || status == RunStatus::kRunning) && !live(id)) ||
                       (status == RunStatus::kWaiting &&
                        ((data.wake_ms && *data.wake_ms <= now) || data.promises.contains(data.waiting_on)));
      if (due) found.push_back({&data, ClaimCandidate{id, queue, data.placement.partition, !data.started_ms}});
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
      const RunData& x = *a.first;
      const RunData& y = *b.first;
      return x.placement.priority != y.placement.priority ? x.placement.priority < y.placement.priority
                                                          : x.order < y.order;
    });
    std::vector<ClaimCandidate> candidates;
    for (const auto& f : found) candidates.push_back(f.second);
    std::vector<Lease> out;
    for (size_t i : pick_claims(candidates, limits, std::move(load), request.max_runs)) {
      RunData& data = *found[i].first;
      Lease& lease = leases_[candidates[i].run_id];
      lease.run_id = candidates[i].run_id;
      lease.owner = request.owner;
      lease.epoch += 1;
      lease.expires_ms = now + request.ttl.count();
      data.log.summary.status = RunStatus::kRunning;
      data.log.summary.claims += 1;
      if (!data.started_ms) data.started_ms = now;
      Lease claimed = lease;
      claimed.cancel_requested = data.cancel_requested;
      out.push_back(claimed);
    }
    return out;
  }

  Result<CancelOutcome> cancel_run(const RunId& run, const std::string& reason, int64_t now_ms) override {
    std::lock_guard lock(mu_);
    auto it = runs_.find(run);
    if (it == runs_.end()) return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    if (is_finished(it->second.log.summary.status)) return CancelOutcome::kAlreadyFinished;
    it->second.cancel_requested = true;
    auto l = leases_.find(run);
    if (l != leases_.end() && !l->second.owner.empty() && l->second.expires_ms > now_ms) {
      return CancelOutcome::kRequested;
    }
    Record end = cancelled_record(run, reason, now_ms);
    CRUCIBLE_RETURN_IF_ERROR(append_locked(end));
    return CancelOutcome::kCancelled;
  }

  Status release_lease(const Lease& lease) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(lease.run_id);
    if (it == leases_.end() || it->second.epoch != lease.epoch) {
      return make_error(ErrorCode::kAborted, "lease on run '" + lease.run_id.str() + "' is stale");
    }
    it->second.owner.clear();
    it->second.expires_ms = 0;
    return {};
  }

  Status put_value(const std::string& scope, const std::string& key, const Json& value) override {
    std::lock_guard lock(mu_);
    values_[scope + '\0' + key] = value;
    return {};
  }

  Result<std::optional<Json>> get_value(const std::string& scope, const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = values_.find(scope + '\0' + key);
    if (it == values_.end()) return std::optional<Json>();
    return std::optional<Json>(it->second);
  }

  Result<std::vector<std::pair<std::string, Json>>> list_values(const std::string& scope,
                                                                const std::string& prefix) override {
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::string, Json>> out;
    const std::string start = scope + '\0' + prefix;
    for (const auto& [k, v] : values_) {
      if (k.starts_with(start)) out.emplace_back(k.substr(scope.size() + 1), v);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
  }

  Result<bool> resolve_promise(const RunId& run, const std::string& name, const Json& value) override {
    {
      std::lock_guard lock(mu_);
      auto it = runs_.find(run);
      if (it == runs_.end()) {
        return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
      }
      if (it->second.promises.contains(name)) return false;
      it->second.promises[name] = value;
    }
    CRUCIBLE_RETURN_IF_ERROR(
        append(promise_resolved_record(run, name, value, real_clock().now_ms()), Durability::kStrict));
    return true;
  }

  Result<std::optional<Json>> get_promise(const RunId& run, const std::string& name) override {
    std::lock_guard lock(mu_);
    auto it = runs_.find(run);
    if (it == runs_.end()) {
      return make_error(ErrorCode::kNotFound, "no run '" + run.str() + "' in the journal");
    }
    auto p = it->second.promises.find(name);
    if (p == it->second.promises.end()) return std::optional<Json>();
    return std::optional<Json>(p->second);
  }

  Result<PruneReport> prune(const PruneOptions& options) override {
    std::lock_guard lock(mu_);
    PruneReport report;
    for (auto it = runs_.begin(); it != runs_.end();) {
      const RunSummary& s = it->second.log.summary;
      if (is_finished(s.status) && s.updated_ms < options.updated_before_ms) {
        report.runs.push_back(it->first);
        leases_.erase(it->first);
        it = runs_.erase(it);
      } else {
        ++it;
      }
    }
    return report;
  }

 private:
  // Fills in the summary's lease; mu_ held.
  void with_lease(RunSummary& s) const {
    auto it = leases_.find(s.run_id);
    if (it == leases_.end() || it->second.owner.empty()) return;
    s.lease_owner = it->second.owner;
    s.lease_expires_ms = it->second.expires_ms;
  }

  // A run's records live in a deque, so appending never moves the earlier ones (a long run's
  // vector would be copied while the lock is held); readers get a RunLog copy.
  struct RunData {
    RunLog log;  // the summary; records stay empty here
    std::deque<Record> records;
    std::map<std::string, Json> promises;
    Placement placement;
    uint64_t order = 0;  // submission order
    std::optional<int64_t> started_ms;
    std::optional<int64_t> wake_ms;
    std::string waiting_on;
    bool cancel_requested = false;

    RunLog snapshot() const {
      RunLog out;
      out.summary = log.summary;
      out.records.assign(records.begin(), records.end());
      return out;
    }
  };

  std::mutex mu_;
  std::unordered_map<RunId, RunData> runs_;       // guarded by mu_
  std::unordered_map<RunId, Lease> leases_;       // guarded by mu_
  std::unordered_map<std::string, Json> values_;  // guarded by mu_
  uint64_t seq_ = 0;                              // guarded by mu_
  uint64_t runs_started_ = 0;                     // guarded by mu_
};

}  // namespace

std::unique_ptr<Journal> make_memory_journal() { return std::make_unique<MemoryJournal>(); }

}  // namespace crucible
