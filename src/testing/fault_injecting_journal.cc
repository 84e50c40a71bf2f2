#include "crucible/testing/fault_injecting_journal.h"

namespace crucible::testing {

void FaultInjectingJournal::fail_sync_after(int syncs_ok, ErrorCode code) {
  std::lock_guard lock(mu_);
  fail_after_ = syncs_ok;
  fail_code_ = code;
}

void FaultInjectingJournal::drop_unsynced() {
  std::lock_guard lock(mu_);
  pending_.clear();
}

size_t FaultInjectingJournal::unsynced() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

int FaultInjectingJournal::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}

Status FaultInjectingJournal::sync_locked() {
  if (broken_) return make_error(*broken_);
  if (fail_after_ == 0) {
    broken_ = Error(fail_code_,
                    fail_code_ == ErrorCode::kResourceExhausted ? "disk full (injected)" : "fsync failed (injected)");
    pending_.clear();
    return make_error(*broken_);
  }
  if (fail_after_ > 0) --fail_after_;
  ++syncs_;
  if (pending_.empty()) return {};
  std::vector<Record> batch;
  batch.swap(pending_);
  return inner_.append(std::move(batch), Durability::kStrict);
}

Status FaultInjectingJournal::append(std::vector<Record> records, Durability durability) {
  std::lock_guard lock(mu_);
  if (broken_) return make_error(*broken_);
  for (Record& r : records) pending_.push_back(std::move(r));
  if (durability == Durability::kStrict) return sync_locked();
  return {};
}

Status FaultInjectingJournal::flush() {
  std::lock_guard lock(mu_);
  return sync_locked();
}

Result<RunLog> FaultInjectingJournal::read_run(const RunId& run) {
  std::lock_guard lock(mu_);
  return inner_.read_run(run);
}

}  // namespace crucible::testing
