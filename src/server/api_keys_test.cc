#include "crucible/server/api_keys.h"

#include <gtest/gtest.h>

#include "crucible/journal/memory_journal.h"

namespace crucible::server {
namespace {

class ApiKeysTest : public ::testing::Test {
 protected:
  std::unique_ptr<Journal> journal_ = make_memory_journal();
  FakeClock clock_;
  ApiKeyStore store_{*journal_, clock_};
};

TEST_F(ApiKeysTest, ACreatedKeyVerifiesWithItsScope) {
  auto k = store_.create("ci", KeyScope::kWrite);
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_TRUE(k->key.starts_with("crucible_" + k->info.id + "_"));
  auto v = store_.verify(k->key);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->name, "ci");
  EXPECT_EQ(v->scope, KeyScope::kWrite);
}

TEST_F(ApiKeysTest, TheJournalHoldsOnlyAHash) {
  auto k = store_.create("ci", KeyScope::kRead);
  ASSERT_TRUE(k);
  auto values = journal_->list_values("", "apikey/");
  ASSERT_TRUE(values);
  ASSERT_EQ(values->size(), 1u);
  const std::string stored = json_dump(values->front().second);
  const std::string secret = k->key.substr(k->key.rfind('_') + 1);
  EXPECT_EQ(stored.find(secret), std::string::npos);
  EXPECT_EQ(stored.find(k->key), std::string::npos);
  EXPECT_EQ(json_string(values->front().second, "hash").size(), 64u);
}

TEST_F(ApiKeysTest, WrongMalformedAndUnknownKeysAreRefusedWithoutEchoingThem) {
  auto k = store_.create("ci", KeyScope::kAdmin);
  ASSERT_TRUE(k);
  std::string wrong = k->key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  for (const std::string& bad : {wrong, std::string("crucible_zz"), std::string(""), std::string("Bearer x"),
                                 "crucible_000000000000_" + k->key.substr(k->key.rfind('_') + 1)}) {
    auto v = store_.verify(bad);
    ASSERT_FALSE(v) << bad;
    EXPECT_EQ(v.error().code(), ErrorCode::kUnauthenticated);
    if (!bad.empty()) {
      EXPECT_EQ(v.error().message().find(bad), std::string::npos);
    }
  }
}

TEST_F(ApiKeysTest, RevokedKeysStopWorkingAtOnceHereAndWithinTheCacheElsewhere) {
  auto k = store_.create("ci", KeyScope::kWrite);
  ASSERT_TRUE(k);
  ApiKeyStore other(*journal_, clock_);
  ASSERT_TRUE(other.verify(k->key));  // cached there now
  auto r = store_.revoke("ci");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->revoked());
  EXPECT_FALSE(store_.verify(k->key));
  clock_.advance(ApiKeyStore::kCacheTtl + std::chrono::milliseconds(1));
  EXPECT_FALSE(other.verify(k->key));
  // Revoking again by id is harmless; an unknown one is not found.
  EXPECT_TRUE(store_.revoke(k->info.id));
  auto missing = store_.revoke("nobody");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(ApiKeysTest, NamesAreCheckedAndLiveNamesAreUnique) {
  EXPECT_EQ(store_.create("", KeyScope::kRead).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_.create("has space", KeyScope::kRead).error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(store_.create("dash", KeyScope::kRead));
  auto again = store_.create("dash", KeyScope::kWrite);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  ASSERT_TRUE(store_.revoke("dash"));
  clock_.advance(std::chrono::milliseconds(5));
  ASSERT_TRUE(store_.create("dash", KeyScope::kWrite));
  auto list = store_.list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].revoked());
  EXPECT_FALSE((*list)[1].revoked());
  EXPECT_FALSE((*list)[0].to_json().contains("hash"));
}

TEST(KeyScopeTest, NamesRoundTrip) {
  for (KeyScope s : {KeyScope::kRead, KeyScope::kWrite, KeyScope::kAdmin}) {
    EXPECT_EQ(parse_key_scope(key_scope_name(s)), s);
  }
  EXPECT_FALSE(parse_key_scope("root"));
}

}  // namespace
}  // namespace crucible::server
