#include "crucible/core/name_log.h"

#include <algorithm>

namespace crucible {

std::vector<const NameLog::Segment*> NameLog::segments() const {
  std::vector<const Segment*> out;
  for (const Segment* s = shared_.get(); s != nullptr; s = s->parent.get()) out.push_back(s);
  std::reverse(out.begin(), out.end());
  return out;
}

void NameLog::push_back(std::string name) {
  if (indexed_ && (!tail_index_.empty() || size() + 1 > kLinearScan)) {
    if (tail_index_.empty()) tail_index_.insert(tail_.begin(), tail_.end());
    tail_index_.insert(name);
  }
  tail_.push_back(std::move(name));
}

void NameLog::pop_back() {
  if (tail_.empty()) unshare();
  if (tail_.empty()) return;
  if (!tail_index_.empty()) tail_index_.erase(tail_.back());
  tail_.pop_back();
}

bool NameLog::contains(std::string_view name) const {
  if (!indexed_ || size() <= kLinearScan) {
    bool found = std::find(tail_.begin(), tail_.end(), name) != tail_.end();
    for (const Segment* s = shared_.get(); !found && s != nullptr; s = s->parent.get()) {
      found = std::find(s->names.begin(), s->names.end(), name) != s->names.end();
    }
    return found;
  }
  const std::string key(name);
  if (tail_index_.empty() ? std::find(tail_.begin(), tail_.end(), name) != tail_.end() : tail_index_.contains(key)) {
    return true;
  }
  for (const Segment* s = shared_.get(); s != nullptr; s = s->parent.get()) {
    if (s->index.empty() ? std::find(s->names.begin(), s->names.end(), name) != s->names.end()
                         : s->index.contains(key)) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> NameLog::to_vector() const {
  std::vector<std::string> out;
  out.reserve(size());
  for_each_from(0, [&out](const std::string& n) { out.push_back(n); });
  return out;
}

void NameLog::share() {
  if (tail_.empty()) return;
  auto s = std::make_shared<Segment>();
  if (shared_ && shared_->depth >= kMaxDepth) {
    s->names = to_vector();  // a long chain makes lookups walk it: fold it into one segment
  } else {
    s->parent = shared_;
    s->depth = shared_ ? shared_->depth + 1 : 1;
    s->names = std::move(tail_);
  }
  s->size = (s->parent ? s->parent->size : 0) + s->names.size();
  if (indexed_ && s->names.size() > kLinearScan) s->index.insert(s->names.begin(), s->names.end());
  tail_.clear();
  std::unordered_set<std::string>().swap(tail_index_);  // not clear(): copies would copy its buckets
  shared_size_ = s->size;
  shared_ = std::move(s);
}

// Takes the shared names back into this list's own tail (before removing one of them).
void NameLog::unshare() {
  if (!shared_) return;
  std::vector<std::string> all = to_vector();
  shared_.reset();
  shared_size_ = 0;
  tail_.clear();
  std::unordered_set<std::string>().swap(tail_index_);  // not clear(): copies would copy its buckets
  for (std::string& n : all) push_back(std::move(n));
}

}  // namespace crucible
