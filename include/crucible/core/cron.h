// Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC:
// `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, month and weekday names
// (jan-dec, sun-sat; 7 is Sunday too). When both day fields are restricted a day matches either,
// as in Vixie cron.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crucible/core/error.h"

namespace crucible {

class CronExpr {
 public:
  // kInvalidArgument naming the field and what it expected.
  [[nodiscard]] static Result<CronExpr> parse(std::string_view text);

  // The first tick strictly after `after_ms` (ms since the epoch, UTC), on a whole minute;
  // nullopt when none comes within five years (an impossible date such as 30 February).
  std::optional<int64_t> next_after(int64_t after_ms) const;

  const std::string& text() const { return text_; }

 private:
  bool day_matches(int mday, int month, int wday) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool any_day_ = true;      // day-of-month is *
  bool any_weekday_ = true;  // day-of-week is *
};

}  // namespace crucible
