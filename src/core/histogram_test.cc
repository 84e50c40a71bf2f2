#include "crucible/core/histogram.h"

#include <gtest/gtest.h>

#include <random>

namespace crucible {
namespace {

TEST(HistogramTest, SmallValuesAreExact) {
  LogLinearHistogram h(5);
  for (uint64_t v = 0; v < 32; ++v) h.record(v);
  EXPECT_EQ(h.count(), 32u);
  EXPECT_EQ(h.percentile(50), 15u);
  EXPECT_EQ(h.percentile(100), 31u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 31u);
}

TEST(HistogramTest, EveryValueLandsInABucketThatHoldsIt) {
  LogLinearHistogram h(5);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const auto b = h.bounds(h.index_of(v));
    ASSERT_LE(b.lower, v);
    ASSERT_TRUE(v < b.upper || b.upper == UINT64_MAX) << v;
    // Relative width at most 2^-precision.
    if (b.lower >= 32) {
      ASSERT_LE(static_cast<double>(b.upper - b.lower) / static_cast<double>(b.lower), 1.0 / 32 + 1e-12);
    }
  }
  const auto top = h.bounds(h.index_of(UINT64_MAX));
  EXPECT_LE(top.lower, UINT64_MAX);
}

TEST(HistogramTest, PercentilesAreWithinThePrecision) {
  LogLinearHistogram h(5);
  for (uint64_t v = 1; v <= 100000; ++v) h.record(v);
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const double exact = p / 100.0 * 100000.0;
    const auto got = static_cast<double>(h.percentile(p));
    EXPECT_GE(got, exact - 1);
    EXPECT_LE(got, exact * (1.0 + 1.0 / 32));
  }
  EXPECT_EQ(h.percentile(100), 100000u);
  EXPECT_NEAR(h.mean(), 50000.5, 1e-6);
}

TEST(HistogramTest, MergeAddsCountsExactly) {
  LogLinearHistogram a(5), b(5), both(5);
  for (uint64_t v = 0; v < 5000; v += 3) {
    a.record(v * 17);
    both.record(v * 17);
  }
  for (uint64_t v = 0; v < 7000; v += 7) {
    b.record(v * 1001, 2);
    both.record(v * 1001, 2);
  }
  ASSERT_TRUE(a.merge(b).has_value());
  EXPECT_EQ(a.to_json(), both.to_json());
  LogLinearHistogram other(4);
  EXPECT_FALSE(a.merge(other).has_value());
}

TEST(HistogramTest, JsonRoundTripsAndRejectsBadInput) {
  LogLinearHistogram h(6);
  for (uint64_t v : {0u, 5u, 900u, 123456u}) h.record(v);
  auto back = LogLinearHistogram::from_json(h.to_json());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->to_json(), h.to_json());
  EXPECT_EQ(back->percentile(99), h.percentile(99));

  Json bad = h.to_json();
  bad["count"] = 99;
  auto r = LogLinearHistogram::from_json(bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("count"), std::string::npos);
  bad = h.to_json();
  bad["precision"] = 40;
  EXPECT_FALSE(LogLinearHistogram::from_json(bad).has_value());
  bad = h.to_json();
  bad["buckets"] = Json::array({Json::array({1u << 20, 1})});
  EXPECT_FALSE(LogLinearHistogram::from_json(bad).has_value());
  EXPECT_FALSE(LogLinearHistogram::from_json(Json::array()).has_value());
}

TEST(HistogramTest, EmptyHistogramReportsZeros) {
  LogLinearHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(99), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_TRUE(h.buckets().empty());
  h.record(10);
  h.clear();
  EXPECT_EQ(h.count(), 0u);
}

}  // namespace
}  // namespace crucible
