#include "crucible/core/cron.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <vector>

namespace crucible {
namespace {

struct Field {
  const char* name;
  int lo;
  int hi;
  const char* const* names;  // lower-case names for lo, lo+1, ... or null
};

const char* const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

Unexpected bad(const Field& f, std::string_view part, const std::string& why) {
  return field_error(f.name, std::string("cron ") + f.name + " field: '" + std::string(part) + "' " + why);
}

Result<int> value_of(const Field& f, std::string_view text) {
  if (text.empty()) return bad(f, text, "is empty; expected a number");
  if (f.names != nullptr && std::isalpha(static_cast<unsigned char>(text[0]))) {
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; i <= f.hi - f.lo && i < (f.lo == 0 ? 7 : 12); ++i) {
      if (lower == f.names[i]) return f.lo + i;
    }
    return bad(f, text, "is not a name this field knows");
  }
  int v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad(f, text, "is not a number");
    v = v * 10 + (c - '0');
    if (v > 1000) break;
  }
  // Day-of-week 7 is Sunday.
  const int hi = f.names == kDayNames ? 7 : f.hi;
  if (v < f.lo || v > hi) {
    return bad(f, text, "is out of range; expected " + std::to_string(f.lo) + "-" + std::to_string(hi));
  }
  return v;
}

// Sets the bits the field's text selects; `star` tells whether it was a bare `*`.
template <size_t N>
Status parse_field(const Field& f, std::string_view text, std::bitset<N>& bits, bool* star) {
  *star = text == "*";
  for (std::string_view part : split(text, ',')) {
    int step = 1;
    std::string_view range = part;
    if (size_t slash = part.find('/'); slash != std::string_view::npos) {
      range = part.substr(0, slash);
      auto s = value_of(Field{f.name, 1, 1000, nullptr}, part.substr(slash + 1));
      if (!s) return bad(f, part, "has a bad step; expected */N or A-B/N with N at least 1");
      step = *s;
    }
    int lo = f.lo, hi = f.hi;
    if (range != "*") {
      size_t dash = range.find('-');
      CRUCIBLE_ASSIGN_OR_RETURN(lo, value_of(f, range.substr(0, dash)));
      hi = lo;
      if (dash != std::string_view::npos) {
        CRUCIBLE_ASSIGN_OR_RETURN(hi, value_of(f, range.substr(dash + 1)));
      } else if (part.find('/') != std::string_view::npos) {
        hi = f.names == kDayNames ? 6 : f.hi;  // A/N: from A to the end
      }
      if (hi < lo) return bad(f, part, "is a range that ends before it starts");
    }
    for (int v = lo; v <= hi; v += step) {
      const int bit = f.names == kDayNames && v == 7 ? 0 : v;
      bits.set(static_cast<size_t>(bit));
    }
  }
  return {};
}

}  // namespace

Result<CronExpr> CronExpr::parse(std::string_view text) {
  std::vector<std::string_view> fields;
  for (std::string_view f : split(text, ' ')) {
    if (!f.empty()) fields.push_back(f);
  }
  if (fields.size() != 5) {
    return field_error("cron", "cron expression '" + std::string(text) + "' has " + std::to_string(fields.size()) +
                                   " fields; expected 5: minute hour day-of-month month day-of-week, e.g. */5 * * * *");
  }
  CronExpr e;
  e.text_ = std::string(text);
  bool star = false;
  CRUCIBLE_RETURN_IF_ERROR(parse_field(Field{"minute", 0, 59, nullptr}, fields[0], e.minutes_, &star));
  CRUCIBLE_RETURN_IF_ERROR(parse_field(Field{"hour", 0, 23, nullptr}, fields[1], e.hours_, &star));
  CRUCIBLE_RETURN_IF_ERROR(parse_field(Field{"day-of-month", 1, 31, nullptr}, fields[2], e.days_, &e.any_day_));
  CRUCIBLE_RETURN_IF_ERROR(parse_field(Field{"month", 1, 12, kMonthNames}, fields[3], e.months_, &star));
  CRUCIBLE_RETURN_IF_ERROR(parse_field(Field{"day-of-week", 0, 6, kDayNames}, fields[4], e.weekdays_, &e.any_weekday_));
  return e;
}

bool CronExpr::day_matches(int mday, int month, int wday) const {
  if (!months_.test(static_cast<size_t>(month))) return false;
  const bool dom = days_.test(static_cast<size_t>(mday));
  const bool dow = weekdays_.test(static_cast<size_t>(wday));
  if (any_day_ && any_weekday_) return true;
  if (any_day_) return dow;
  if (any_weekday_) return dom;
  return dom || dow;
}

std::optional<int64_t> CronExpr::next_after(int64_t after_ms) const {
  constexpr int64_t kMinute = 60'000;
  // The next whole minute after `after_ms` (floor division, for times before the epoch too).
  int64_t t = (after_ms >= 0 ? after_ms / kMinute : (after_ms - kMinute + 1) / kMinute) * kMinute + kMinute;
  const int64_t limit = t + int64_t{5} * 366 * 24 * 60 * kMinute;
  while (t < limit) {
    std::time_t secs = static_cast<std::time_t>(t / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    if (!day_matches(tm.tm_mday, tm.tm_mon + 1, tm.tm_wday)) {  // to the next midnight
      t += (int64_t{24 * 60} - (tm.tm_hour * 60 + tm.tm_min)) * kMinute;
      continue;
    }
    if (!hours_.test(static_cast<size_t>(tm.tm_hour))) {  // to the next hour
      t += int64_t{60 - tm.tm_min} * kMinute;
      continue;
    }
    if (!minutes_.test(static_cast<size_t>(tm.tm_min))) {
      t += kMinute;
      continue;
    }
    return t;
  }
  return std::nullopt;
}

}  // namespace crucible
