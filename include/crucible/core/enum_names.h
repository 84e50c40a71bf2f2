// One name table per enum: printing, parsing and the "expected one of" lists of error messages
// all read the same table, so a name is written once.
//
//   inline const EnumNames<JoinPolicy> kJoinNames = {{JoinPolicy::kAll, "all"}, {JoinPolicy::kAny, "any"}};
//   kJoinNames.name(JoinPolicy::kAny);  // "any"
//   kJoinNames.parse("all");            // JoinPolicy::kAll
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crucible {

template <typename E>
class EnumNames {
 public:
  EnumNames(std::initializer_list<std::pair<E, std::string_view>> entries) : entries_(entries) {}

  // The value's name; "" for a value the table does not list.
  std::string_view name(E value) const {
    for (const auto& [v, n] : entries_) {
      if (v == value) return n;
    }
    return {};
  }
  std::optional<E> parse(std::string_view name) const {
    for (const auto& [v, n] : entries_) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
  // Every name in table order, leaving out `except` (a value that cannot be written).
  std::vector<std::string> names(std::optional<E> except = std::nullopt) const {
    std::vector<std::string> out;
    for (const auto& [v, n] : entries_) {
      if (!except || v != *except) out.emplace_back(n);
    }
    return out;
  }
  const std::vector<std::pair<E, std::string_view>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<E, std::string_view>> entries_;
};

}  // namespace crucible
