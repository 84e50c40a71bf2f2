// An append-only list of names (a context's trace, its completed stages) whose history copies
// share: share() freezes what is there into an immutable segment, and a copy made after it costs
// only the names appended since. Optionally indexed for membership tests.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace crucible {

class NameLog {
 public:
  // `indexed`: contains() answers from hash sets once the list is long.
  explicit NameLog(bool indexed = false) : indexed_(indexed) {}

  size_t size() const { return shared_size_ + tail_.size(); }
  bool empty() const { return size() == 0; }
  void push_back(std::string name);
  // Removes the last name (an undone attempt's).
  void pop_back();
  bool contains(std::string_view name) const;

  // Every name, in order.
  std::vector<std::string> to_vector() const;
  // Calls fn(name) for the names at positions from `from` on, in order.
  template <class F>
  void for_each_from(size_t from, F&& fn) const;

  // Makes the names so far a shared segment; copies made afterwards share it.
  void share();

 private:
  struct Segment {
    std::shared_ptr<const Segment> parent;
    std::vector<std::string> names;
    std::unordered_set<std::string> index;  // this segment's names, when indexed
    size_t size = 0;                        // names here and in every parent
    int depth = 1;
  };
  // Oldest first.
  std::vector<const Segment*> segments() const;
  void unshare();

  static constexpr size_t kLinearScan = 16;
  static constexpr int kMaxDepth = 8;

  bool indexed_;
  std::shared_ptr<const Segment> shared_;
  size_t shared_size_ = 0;
  std::vector<std::string> tail_;
  std::unordered_set<std::string> tail_index_;  // of tail_, once indexed_ and the list is long
};

template <class F>
void NameLog::for_each_from(size_t from, F&& fn) const {
  size_t pos = 0;  // of the first name of the segment at hand
  auto visit = [&](const std::vector<std::string>& names) {
    for (size_t i = from > pos ? from - pos : 0; i < names.size(); ++i) fn(names[i]);
    pos += names.size();
  };
  if (from < shared_size_) {
    for (const Segment* s : segments()) {
      if (pos + s->names.size() <= from) {
        pos += s->names.size();  // wholly before `from`
        continue;
      }
      visit(s->names);
    }
  }
  pos = shared_size_;
  visit(tail_);
}

}  // namespace crucible
