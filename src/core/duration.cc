#include "crucible/core/duration.h"

#include <cctype>
#include <cmath>

namespace crucible {
namespace {

// 100 years: longer is a typo, and keeps every result far from int64 overflow.
constexpr double kMaxMillis = 100.0 * 365 * 86400e3;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Reads digits[.digits] from the front of `s`; nullopt when there are none.
std::optional<double> leading_number(std::string_view& s) {
  size_t i = 0;
  double value = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) value = value * 10 + (s[i++] - '0');
  if (i == 0) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    size_t start = ++i;
    double scale = 0.1;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i, scale /= 10)
      value += (s[i] - '0') * scale;
    if (i == start) return std::nullopt;
  }
  s.remove_prefix(i);
  return value;
}

std::optional<double> unit_millis(std::string_view unit) {
  if (unit.empty() || unit == "s") return 1e3;
  if (unit == "ms") return 1.0;
  if (unit == "m") return 60e3;
  if (unit == "h") return 3600e3;
  if (unit == "d") return 86400e3;
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> from_millis(double ms) {
  if (!std::isfinite(ms) || ms < 0 || ms > kMaxMillis) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::string_view s = trim(text);
  auto value = leading_number(s);
  if (!value) return std::nullopt;
  auto unit = unit_millis(trim(s));
  if (!unit) return std::nullopt;
  return from_millis(*value * *unit);
}

std::optional<std::chrono::milliseconds> duration_from_json(const Json& value) {
  if (value.is_string()) return parse_duration(value.get_ref<const std::string&>());
  if (value.is_number()) return from_millis(value.get<double>() * 1e3);
  return std::nullopt;
}

Result<std::chrono::milliseconds> duration_field(const Json& value, std::string_view field) {
  if (auto d = duration_from_json(value)) return *d;
  return field_error(std::string(field), "expected a duration such as 500ms, 30s or 5m, got " + json_dump(value));
}

std::string format_duration(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace crucible
