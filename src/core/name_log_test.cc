#include "crucible/core/name_log.h"

#include <gtest/gtest.h>

namespace crucible {
namespace {

std::vector<std::string> names(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back("s" + std::to_string(i));
  return out;
}

TEST(NameLog, CopiesShareTheHistoryAndAppendOnTheirOwn) {
  NameLog log(true);
  for (const std::string& n : names(0, 100)) log.push_back(n);
  log.share();
  NameLog a = log, b = log;
  a.push_back("a");
  b.push_back("b");
  EXPECT_EQ(log.size(), 100u);
  EXPECT_EQ(a.size(), 101u);
  EXPECT_TRUE(a.contains("a"));
  EXPECT_FALSE(a.contains("b"));
  EXPECT_TRUE(b.contains("s42"));
  EXPECT_FALSE(log.contains("a"));
  std::vector<std::string> added;
  a.for_each_from(log.size(), [&](const std::string& n) { added.push_back(n); });
  EXPECT_EQ(added, std::vector<std::string>{"a"});
  std::vector<std::string> expected = names(0, 100);
  expected.push_back("b");
  EXPECT_EQ(b.to_vector(), expected);
}

TEST(NameLog, PopBackReachesIntoTheSharedHistory) {
  NameLog log(true);
  for (const std::string& n : names(0, 20)) log.push_back(n);
  log.share();
  log.pop_back();
  log.pop_back();
  EXPECT_EQ(log.to_vector(), names(0, 18));
  EXPECT_FALSE(log.contains("s19"));
  EXPECT_TRUE(log.contains("s17"));
  log.push_back("s19");
  EXPECT_TRUE(log.contains("s19"));
}

TEST(NameLog, ManySharesKeepOrderAndMembership) {
  NameLog log(true);
  std::vector<std::string> all;
  for (int round = 0; round < 30; ++round) {  // past the chain depth that folds segments
    for (const std::string& n : names(round * 10, round * 10 + 10)) {
      log.push_back(n);
      all.push_back(n);
    }
    log.share();
  }
  EXPECT_EQ(log.to_vector(), all);
  EXPECT_EQ(log.size(), 300u);
  for (const std::string& n : all) EXPECT_TRUE(log.contains(n)) << n;
  EXPECT_FALSE(log.contains("s300"));
}

TEST(NameLog, UnindexedLogsAnswerMembershipByScanning) {
  NameLog trace;
  trace.push_back("x");
  trace.push_back("x");
  trace.share();
  trace.push_back("y");
  EXPECT_TRUE(trace.contains("x"));
  EXPECT_TRUE(trace.contains("y"));
  EXPECT_EQ(trace.to_vector(), (std::vector<std::string>{"x", "x", "y"}));
}

}  // namespace
}  // namespace crucible
