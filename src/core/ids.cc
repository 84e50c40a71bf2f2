#include "crucible/core/ids.h"

#include <cstdio>
#include <ctime>

namespace crucible {

Result<RunId> RunId::parse(std::string_view text) {
  if (text.empty() || text.size() > 128) {
    return make_error(ErrorCode::kInvalidArgument,
                      "run id must be 1-128 characters, got " + std::to_string(text.size()));
  }
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-';
    if (!ok) {
      return make_error(ErrorCode::kInvalidArgument, "run id '" + std::string(text) + "' contains '" +
                                                         std::string(1, c) +
                                                         "'; expected letters, digits, '.', '_', ':' or '-'");
    }
  }
  return RunId(std::string(text));
}

RunId RunId::generate(Clock& clock, Random& random) {
  std::time_t t = std::chrono::system_clock::to_time_t(clock.now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d%02d%02d-%02d%02d%02d-%08x", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned>(random.next_u64() & 0xffffffffu));
  return RunId(buf);
}

StepKey StepKey::child(std::string_view name) const {
  std::string out;
  out.reserve(value_.size() + name.size() + 1);
  out += value_;
  out += '/';
  out += name;
  return StepKey(std::move(out));
}

StepKey StepKey::indexed(std::string_view name, int64_t index) const {
  std::string out = value_;
  out += '/';
  out += name;
  out += '[';
  out += std::to_string(index);
  out += ']';
  return StepKey(std::move(out));
}

bool StepKey::within(const StepKey& prefix) const {
  if (prefix.value_.empty()) return true;
  if (value_.size() < prefix.value_.size()) return false;
  if (value_.compare(0, prefix.value_.size(), prefix.value_) != 0) return false;
  if (value_.size() == prefix.value_.size()) return true;
  char next = value_[prefix.value_.size()];
  return next == '/' || next == '#' || next == '[';
}

StepKey StepKey::branch(std::string_view config_id) const {
  return StepKey(value_ + "/branch[" + std::string(config_id) + "]");
}

std::optional<StepKey::BranchParts> StepKey::parse_branch(std::string_view key) {
  constexpr std::string_view kOpen = "/branch[";
  size_t at = key.rfind(kOpen);
  if (at == std::string_view::npos) return std::nullopt;
  size_t close = key.find(']', at + kOpen.size());
  if (close == std::string_view::npos || close == at + kOpen.size()) return std::nullopt;
  return BranchParts{std::string(key.substr(0, at)),
                     std::string(key.substr(at + kOpen.size(), close - at - kOpen.size())),
                     std::string(key.substr(close + 1))};
}

}  // namespace crucible
