#include "crucible/core/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

namespace crucible {

namespace {
constexpr int kMinPrecision = 1;
constexpr int kMaxPrecision = 10;
}  // namespace

LogLinearHistogram::LogLinearHistogram(int precision)
    : precision_(std::clamp(precision, kMinPrecision, kMaxPrecision)) {}

size_t LogLinearHistogram::index_of(uint64_t value) const {
  const uint64_t sub = uint64_t{1} << precision_;
  if (value < sub) return static_cast<size_t>(value);
  const int msb = 63 - std::countl_zero(value);
  const int shift = msb - precision_;
  const uint64_t top = value >> shift;  // in [sub, 2 * sub)
  return static_cast<size_t>(static_cast<uint64_t>(shift + 1) * sub + (top - sub));
}

LogLinearHistogram::Bucket LogLinearHistogram::bounds(size_t index) const {
  const uint64_t sub = uint64_t{1} << precision_;
  const uint64_t group = index >> precision_;
  const uint64_t offset = index & (sub - 1);
  if (group == 0) return {offset, offset + 1, 0};
  const uint64_t lower = (sub + offset) << (group - 1);
  const uint64_t width = uint64_t{1} << (group - 1);
  const uint64_t upper = lower > UINT64_MAX - width ? UINT64_MAX : lower + width;
  return {lower, upper, 0};
}

void LogLinearHistogram::record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  const size_t i = index_of(value);
  if (i >= counts_.size()) counts_.resize(i + 1, 0);
  counts_[i] += count;
  count_ += count;
  sum_ += value * count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

Status LogLinearHistogram::merge(const LogLinearHistogram& other) {
  if (other.precision_ != precision_) {
    return make_error(ErrorCode::kInvalidArgument, "cannot merge a histogram of precision " +
                                                       std::to_string(other.precision_) + " into one of precision " +
                                                       std::to_string(precision_));
  }
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (size_t i = 0; i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.count_ > 0) {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  return {};
}

void LogLinearHistogram::clear() {
  counts_.clear();
  count_ = sum_ = max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t LogLinearHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(bounds(i).upper - 1, min(), max_);
  }
  return max_;
}

std::vector<LogLinearHistogram::Bucket> LogLinearHistogram::buckets() const {
  std::vector<Bucket> out;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    Bucket b = bounds(i);
    b.count = counts_[i];
    out.push_back(b);
  }
  return out;
}

Json LogLinearHistogram::to_json() const {
  Json buckets = Json::array();
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) buckets.push_back(Json::array({i, counts_[i]}));
  }
  return Json{{"precision", precision_},      {"count", count_}, {"min", min()}, {"max", max_}, {"sum", sum_},
              {"buckets", std::move(buckets)}};
}

Result<LogLinearHistogram> LogLinearHistogram::from_json(const Json& j) {
  auto bad = [](const std::string& what) { return make_error(ErrorCode::kInvalidArgument, "histogram: " + what); };
  if (!j.is_object()) return bad("expected an object");
  const Json* precision = j.contains("precision") ? &j["precision"] : nullptr;
  if (precision == nullptr || !precision->is_number_integer() || precision->get<int64_t>() < kMinPrecision ||
      precision->get<int64_t>() > kMaxPrecision) {
    return bad("'precision' must be an integer from 1 to 10");
  }
  LogLinearHistogram h(precision->get<int>());
  if (!j.contains("buckets") || !j["buckets"].is_array()) return bad("'buckets' must be an array of [index, count]");
  uint64_t total = 0;
  const size_t max_index = static_cast<size_t>(65 - h.precision_) << h.precision_;
  for (const Json& b : j["buckets"]) {
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_unsigned() || !b[1].is_number_unsigned()) {
      return bad("each bucket must be [index, count] with non-negative integers");
    }
    const auto index = b[0].get<uint64_t>();
    if (index >= max_index) return bad("bucket index " + std::to_string(index) + " is out of range");
    if (index >= h.counts_.size()) h.counts_.resize(static_cast<size_t>(index) + 1, 0);
    h.counts_[static_cast<size_t>(index)] += b[1].get<uint64_t>();
    total += b[1].get<uint64_t>();
  }
  for (const char* field : {"count", "min", "max", "sum"}) {
    if (!j.contains(field) || !j[field].is_number_unsigned()) {
      return bad(std::string("'") + field + "' must be a non-negative integer");
    }
  }
  if (j["count"].get<uint64_t>() != total) return bad("'count' does not equal the sum of the buckets");
  h.count_ = total;
  h.sum_ = j["sum"].get<uint64_t>();
  h.max_ = j["max"].get<uint64_t>();
  h.min_ = total == 0 ? UINT64_MAX : j["min"].get<uint64_t>();
  return h;
}

}  // namespace crucible
