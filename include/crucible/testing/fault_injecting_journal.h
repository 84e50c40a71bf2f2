// A Journal wrapper for tests: batched appends stay in a volatile buffer until a strict append
// or flush "syncs" them, so a simulated crash can drop them; syncs can be made to fail like an
// fsync or disk-full error.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "crucible/journal/journal.h"

namespace crucible::testing {

class FaultInjectingJournal : public Journal {
 public:
  // `inner` must outlive this journal.
  explicit FaultInjectingJournal(Journal& inner) : inner_(inner) {}

  // The sync after `syncs_ok` more successful ones fails with `code`; the journal stays broken.
  void fail_sync_after(int syncs_ok, ErrorCode code = ErrorCode::kDataLoss);
  // Loses every record not yet synced, as a power cut would.
  void drop_unsynced();
  size_t unsynced() const;
  int syncs() const;

  using Journal::append;
  [[nodiscard]] Status append(std::vector<Record> records, Durability durability) override;
  [[nodiscard]] Status flush() override;
  [[nodiscard]] Result<RunLog> read_run(const RunId& run) override;
  [[nodiscard]] Result<std::vector<RunSummary>> list_runs(const RunFilter& filter) override {
    return inner_.list_runs(filter);
  }
  [[nodiscard]] Result<std::vector<RunLog>> read_unfinished() override { return inner_.read_unfinished(); }
  [[nodiscard]] Result<Lease> acquire_lease(const RunId& run, const std::string& owner, std::chrono::milliseconds ttl,
                                            std::optional<uint64_t> steal_epoch) override {
    return inner_.acquire_lease(run, owner, ttl, steal_epoch);
  }
  [[nodiscard]] Result<std::optional<Lease>> current_lease(const RunId& run) override {
    return inner_.current_lease(run);
  }
  [[nodiscard]] Status renew_lease(const Lease& lease, std::chrono::milliseconds ttl) override {
    return inner_.renew_lease(lease, ttl);
  }
  [[nodiscard]] Status release_lease(const Lease& lease) override { return inner_.release_lease(lease); }
  [[nodiscard]] Result<std::vector<Lease>> claim_runs(const ClaimRequest& request) override {
    return inner_.claim_runs(request);
  }
  [[nodiscard]] Result<CancelOutcome> cancel_run(const RunId& run, const std::string& reason, int64_t now_ms) override {
    return inner_.cancel_run(run, reason, now_ms);
  }
  [[nodiscard]] Result<std::vector<std::pair<std::string, Json>>> list_values(const std::string& scope,
                                                                              const std::string& prefix) override {
    return inner_.list_values(scope, prefix);
  }
  [[nodiscard]] Status put_value(const std::string& s, const std::string& k, const Json& v) override {
    return inner_.put_value(s, k, v);
  }
  [[nodiscard]] Result<std::optional<Json>> get_value(const std::string& s, const std::string& k) override {
    return inner_.get_value(s, k);
  }
  [[nodiscard]] Result<bool> resolve_promise(const RunId& run, const std::string& name, const Json& value) override {
    return inner_.resolve_promise(run, name, value);
  }
  [[nodiscard]] Result<std::optional<Json>> get_promise(const RunId& run, const std::string& name) override {
    return inner_.get_promise(run, name);
  }
  [[nodiscard]] Result<PruneReport> prune(const PruneOptions& options) override { return inner_.prune(options); }

 private:
  [[nodiscard]] Status sync_locked();

  Journal& inner_;
  mutable std::mutex mu_;
  std::vector<Record> pending_;  // guarded by mu_
  std::optional<Error> broken_;  // guarded by mu_
  int fail_after_ = -1;          // guarded by mu_
  ErrorCode fail_code_ = ErrorCode::kDataLoss;
  int syncs_ = 0;  // guarded by mu_
};

}  // namespace crucible::testing
