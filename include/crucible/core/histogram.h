// A log-linear histogram of non-negative integers (latencies in microseconds, sizes in bytes):
// each power of two is split into 2^precision equal buckets, so a recorded value is known to
// within 2^-precision of itself (about 3% at the default 5) at any magnitude, in a few KiB.
// Histograms with the same precision merge by adding counts, so per-thread or per-agent
// histograms combine into exact totals.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "crucible/core/error.h"
#include "crucible/core/json.h"

namespace crucible {

class LogLinearHistogram {
 public:
  // precision: 1 to 10 bits of linear buckets per power of two.
  explicit LogLinearHistogram(int precision = 5);

  void record(uint64_t value, uint64_t count = 1);
  // kInvalidArgument when the precisions differ.
  [[nodiscard]] Status merge(const LogLinearHistogram& other);
  void clear();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }
  uint64_t sum() const { return sum_; }
  int precision() const { return precision_; }

  // The smallest bucket bound at or below which at least p percent (0-100) of the values fall,
  // clamped to [min, max]; 0 when empty.
  uint64_t percentile(double p) const;

  struct Bucket {
    uint64_t lower = 0;  // inclusive
    uint64_t upper = 0;  // exclusive
    uint64_t count = 0;
  };
  // The non-empty buckets in increasing order.
  std::vector<Bucket> buckets() const;

  // {"precision","count","min","max","sum","buckets":[[index,count],...]}: sparse and exact.
  Json to_json() const;
  // kInvalidArgument naming the field that is wrong.
  [[nodiscard]] static Result<LogLinearHistogram> from_json(const Json& j);

  // The bucket a value falls in, and a bucket's bounds.
  size_t index_of(uint64_t value) const;
  Bucket bounds(size_t index) const;

 private:
  int precision_;
  std::vector<uint64_t> counts_;  // grown to the highest bucket used
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace crucible
