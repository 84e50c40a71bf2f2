// Limits a pipeline file must keep before it is converted: nesting depth, and the number of
// nodes after aliases are expanded (so an alias that contains itself, or nine levels of nine
// aliases, is an error instead of a crash or a gigabyte). Checked on the parser's events, before
// any node tree is built. Private to workflow.
#pragma once

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace crucible::workflow_internal {

struct YamlLimitViolation {
  YAML::Mark mark;
  std::string message;
};

class YamlLimits : public YAML::EventHandler {
 public:
  static constexpr size_t kMaxDepth = 200;
  static constexpr size_t kMaxNodes = 1'000'000;

  // The first violation in `text`, or nullopt. Syntax errors are left to the loader's parse.
  static std::optional<YamlLimitViolation> check(const std::string& text) {
    std::istringstream in(text);
    YamlLimits limits;
    try {
      YAML::Parser parser(in);
      while (parser.HandleNextDocument(limits)) {
      }
    } catch (const YamlLimitViolation& v) {
      return v;
    } catch (const YAML::Exception&) {
      return std::nullopt;
    }
    return std::nullopt;
  }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string&) override {
    leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (open_.contains(anchor)) throw YamlLimitViolation{mark, "an alias refers to the node that contains it"};
    auto it = sizes_.find(anchor);
    add(mark, it == sizes_.end() ? 1 : it->second);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    YAML::Mark mark;
    YAML::anchor_t anchor;
    size_t nodes = 1;  // itself and everything below it, aliases expanded
  };

  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (anchor != 0) sizes_[anchor] = 1;
    add(mark, 1);
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (stack_.size() >= kMaxDepth) {
      throw YamlLimitViolation{mark, "the file nests deeper than " + std::to_string(kMaxDepth) + " levels"};
    }
    add(mark, 1);
    stack_.push_back(Frame{mark, anchor, 0});
    if (anchor != 0) open_.insert(anchor);
  }

  void close() {
    if (stack_.empty()) return;
    Frame f = stack_.back();
    stack_.pop_back();
    if (f.anchor != 0) {
      open_.erase(f.anchor);
      sizes_[f.anchor] = f.nodes + 1;
    }
    if (!stack_.empty()) stack_.back().nodes = saturating(stack_.back().nodes, f.nodes);
  }

  // Counts `n` more nodes at `mark`, in the innermost open container and in the file.
  void add(const YAML::Mark& mark, size_t n) {
    if (!stack_.empty()) stack_.back().nodes = saturating(stack_.back().nodes, n);
    total_ = saturating(total_, n);
    if (total_ > kMaxNodes) {
      throw YamlLimitViolation{
          mark, "the file holds more than " + std::to_string(kMaxNodes) + " values once its aliases are expanded"};
    }
  }

  static size_t saturating(size_t a, size_t b) { return a > kMaxNodes * 2 - b ? kMaxNodes * 2 : a + b; }

  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, size_t> sizes_;  // expanded node count of each finished anchored node
  std::set<YAML::anchor_t> open_;           // anchored nodes not finished yet
  size_t total_ = 0;
};

}  // namespace crucible::workflow_internal
