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
    return it->second.snapshot();
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
      if (data.log.summary.status == RunStatus::kRunning) out.push_back(data.snapshot());
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
    return {};
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
  // A run's records live in a deque, so appending never moves the earlier ones (a long run's
  // vector would be copied while the lock is held); readers get a RunLog copy.
  struct RunData {
    RunLog log;  // the summary; records stay empty here
    std::deque<Record> records;
    std::map<std::string, Json> promises;

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
};

}  // namespace

std::unique_ptr<Journal> make_memory_journal() { return std::make_unique<MemoryJournal>(); }

}  // namespace crucible
