#include "crucible/journal/group_commit.h"

namespace crucible {
namespace {

// The writer waits this long after the first batched record for more to arrive, and so that a
// strict append following it can lead the commit instead (one fsync, not two).
constexpr auto kCommitDelay = std::chrono::microseconds(1000);
// Deferred records that no commit has taken are committed after this long.
constexpr auto kDeferredDelay = std::chrono::milliseconds(50);

// Group::signal values.
constexpr int kWaiting = 0;
constexpr int kDone = 1;  // the group is committed (or failed): its status is set
constexpr int kLead = 2;  // no commit is in progress: the waiter should lead the next

}  // namespace

GroupCommit::GroupCommit(std::function<Status(Batch&)> commit, std::function<bool(const Error&)> breaks,
                         size_t batch_target)
    : commit_(std::move(commit)), breaks_(std::move(breaks)), batch_target_(batch_target) {}

GroupCommit::~GroupCommit() { stop(); }

void GroupCommit::start() {
  writer_ = std::jthread([this](std::stop_token stop) { writer_loop(stop); });
}

void GroupCommit::stop() {
  if (writer_.joinable()) {
    writer_.request_stop();
    {
      std::lock_guard lock(mu_);
      writer_cv_.notify_all();
    }
    writer_.join();
  }
  (void)flush();
}

std::optional<Error> GroupCommit::take_deferred_locked() {
  std::optional<Error> e;
  e.swap(deferred_);
  return e;
}

Status GroupCommit::append(std::vector<Record> records, std::vector<std::string> bodies, Durability durability) {
  std::unique_lock lock(mu_);
  if (broken_) return make_error(*broken_);
  if (auto e = take_deferred_locked()) return make_error(*e);
  auto group = std::make_shared<Group>();
  pending_records_ += records.size();
  group->records = std::move(records);
  group->bodies = std::move(bodies);
  pending_.push_back(group);
  if (durability != Durability::kStrict) {
    group->batched = true;
    if (durability == Durability::kBatched) {
      ++urgent_;
      writer_cv_.notify_one();
    }
    return {};
  }
  commit_until_done(lock, *group);
  return group->status;
}

Status GroupCommit::flush() {
  std::unique_lock lock(mu_);
  if (broken_) return make_error(*broken_);
  auto group = std::make_shared<Group>();
  pending_.push_back(group);
  commit_until_done(lock, *group);
  if (!group->status) return group->status;
  if (!lock.owns_lock()) lock.lock();
  if (auto e = take_deferred_locked()) return make_error(*e);
  return {};
}

Status GroupCommit::run(std::function<Status()> op) {
  std::unique_lock lock(mu_);
  if (broken_) return make_error(*broken_);
  auto group = std::make_shared<Group>();
  group->op = std::move(op);
  pending_.push_back(group);
  commit_until_done(lock, *group);
  return group->status;
}

void GroupCommit::defer(const Error& e) {
  std::lock_guard lock(mu_);
  if (!deferred_) deferred_ = e;
}

// Waits until `mine` is committed, leading a group commit whenever none is in progress. Called
// with `lock` held; returns with it held, unless `mine` was committed by another leader: then
// with it released, having waited without it.
void GroupCommit::commit_until_done(std::unique_lock<std::mutex>& lock, Group& mine) {
  while (!mine.done) {
    if (!committing_) {
      commit_pending(lock);
      continue;
    }
    lock.unlock();
    mine.signal.wait(kWaiting, std::memory_order_acquire);
    if (mine.signal.load(std::memory_order_acquire) == kDone) return;
    mine.signal.store(kWaiting, std::memory_order_relaxed);
    lock.lock();
  }
}

void GroupCommit::commit_pending(std::unique_lock<std::mutex>& lock) {
  committing_ = true;
  Batch batch(pending_.begin(), pending_.end());
  pending_.clear();
  pending_records_ = 0;
  urgent_ = 0;
  lock.unlock();
  size_t work = 0;
  for (auto& g : batch) work += g->records.size() + (g->op ? 1 : 0);
  Status result = work == 0 ? Status() : commit_(batch);
  lock.lock();
  committing_ = false;
  const bool breaks = !result && breaks_(result.error());
  if (breaks && !broken_) broken_ = result.error();
  for (auto& g : batch) {
    if (!result) g->status = breaks || broken_ ? make_error(broken_ ? *broken_ : result.error()) : result;
    if (!result && g->batched && !breaks && !deferred_) deferred_ = result.error();
    g->done = true;
  }
  hand_over_locked();
  // The waiters return without the mutex; the batch keeps their groups alive meanwhile.
  lock.unlock();
  for (auto& g : batch) {
    g->signal.store(kDone, std::memory_order_release);
    g->signal.notify_one();
  }
  lock.lock();
}

// After a commit, wakes whoever should lead the next one: the first strict waiter, else the
// writer thread for batched records.
void GroupCommit::hand_over_locked() {
  if (pending_.empty()) return;
  for (auto& g : pending_) {
    if (!g->batched) {
      g->signal.store(kLead, std::memory_order_release);
      g->signal.notify_one();
      return;
    }
  }
  if (urgent_ > 0) writer_cv_.notify_one();
}

void GroupCommit::writer_loop(std::stop_token stop) {
  std::unique_lock lock(mu_);
  while (!stop.stop_requested()) {
    if (pending_.empty()) {
      writer_cv_.wait(lock, stop, [&] { return !pending_.empty(); });
      continue;
    }
    bool urgent = writer_cv_.wait_for(lock, stop, kDeferredDelay, [&] { return urgent_ > 0 && !committing_; });
    if (stop.stop_requested()) break;
    if (!urgent && (pending_.empty() || committing_)) continue;
    writer_cv_.wait_for(lock, stop, kCommitDelay,
                        [&] { return pending_.empty() || committing_ || pending_records_ >= batch_target_; });
    if (!pending_.empty() && !committing_) commit_pending(lock);
  }
}

}  // namespace crucible
