// The group commit behind the database journals (SQLite, PostgreSQL): LevelDB's writer queue
// with a background flusher. Every write (records; lease, promise and state updates) is a group
// queued under a mutex; the thread that finds no commit in progress becomes the leader, takes
// everything queued and commits it in one transaction, then wakes the waiters. Strict writes wait
// for their group; batched ones return at once and the writer thread commits them within about a
// millisecond; deferred ones wake nobody and ride along with the next commit (or are committed
// after 50 ms). The adapter supplies the transaction.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/journal/journal.h"

namespace crucible {

class GroupCommit {
 public:
  struct Group {
    std::vector<Record> records;
    std::vector<std::string> bodies;  // records[i] serialised by the appending thread, if it did
    std::function<Status()> op;       // a write that is not a record, inside the same commit
    bool batched = false;             // nobody waits for it: its own error goes to a later call
    bool done = false;                // guarded by the queue's mutex
    Status status;                    // this group's outcome; the commit sets it for a group that failed alone
    // How the commit wakes the appender waiting for the group, without the queue's mutex, so that
    // the hundreds a commit ends do not queue up for it: kDone (status is set) or kLead.
    std::atomic<int> signal{0};
  };
  using Batch = std::vector<std::shared_ptr<Group>>;

  // `commit` runs one transaction over a batch: each group all or nothing, a group that fails
  // alone gets its `status` set. Its own error fails the whole batch; `breaks` then says whether
  // the journal is broken for good (every later call returns that error) or the failure was
  // transient (the batch fails, the journal stays usable).
  GroupCommit(std::function<Status(Batch&)> commit, std::function<bool(const Error&)> breaks,
              size_t batch_target = 1024);
  // Stops the writer thread after committing what is queued.
  ~GroupCommit();

  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  void start();
  // Stops the writer thread and commits what is left; later calls still commit as leaders.
  void stop();

  [[nodiscard]] Status append(std::vector<Record> records, std::vector<std::string> bodies, Durability durability);
  // Waits until everything queued is committed; reports a batched group's error once.
  [[nodiscard]] Status flush();
  // Runs `op` inside the next commit and waits for it.
  [[nodiscard]] Status run(std::function<Status()> op);

  // For `commit`: records a batched group's error, reported by the next call.
  void defer(const Error& e);

 private:
  void commit_until_done(std::unique_lock<std::mutex>& lock, Group& mine);
  void commit_pending(std::unique_lock<std::mutex>& lock);
  void hand_over_locked();
  void writer_loop(std::stop_token stop);
  std::optional<Error> take_deferred_locked();

  std::function<Status(Batch&)> commit_;
  std::function<bool(const Error&)> breaks_;
  const size_t batch_target_;

  std::mutex mu_;
  std::condition_variable_any writer_cv_;
  std::deque<std::shared_ptr<Group>> pending_;  // guarded by mu_
  size_t pending_records_ = 0;                  // guarded by mu_
  size_t urgent_ = 0;                           // guarded by mu_: batched groups pending
  bool committing_ = false;                     // guarded by mu_
  std::optional<Error> broken_;                 // guarded by mu_
  std::optional<Error> deferred_;               // guarded by mu_: a batched group's own error
  std::jthread writer_;
};

}  // namespace crucible
