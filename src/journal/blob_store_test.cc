#include "crucible/journal/blob_store.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace crucible {
namespace {

std::string fresh_dir(const char* name) {
  std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(BlobStore, StoresByContentAndReadsBack) {
  BlobStore blobs(fresh_dir("blobs1"));
  auto ref = blobs.put("hello");
  ASSERT_TRUE(ref);
  EXPECT_EQ(*ref, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  auto again = blobs.put("hello");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *ref);
  EXPECT_EQ(*blobs.get(*ref), "hello");
}

TEST(BlobStore, MissingAndCorruptBlobsAreReported) {
  std::string dir = fresh_dir("blobs2");
  BlobStore blobs(dir);
  auto ref = blobs.put("payload");
  ASSERT_TRUE(ref);
  std::string hex = ref->substr(7);
  std::ofstream(dir + "/" + hex.substr(0, 2) + "/" + hex) << "tampered";
  auto corrupt = blobs.get(*ref);
  ASSERT_FALSE(corrupt);
  EXPECT_EQ(corrupt.error().code(), ErrorCode::kDataLoss);
  auto missing = blobs.get("sha256:" + std::string(64, '0'));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(BlobStore, LargeValuesAreExternalizedAndSmallOnesKept) {
  BlobStore blobs(fresh_dir("blobs3"));
  Json small = "tiny";
  EXPECT_EQ(*externalize(small, blobs, 16), small);
  Json big = std::string(100, 'x');
  auto ref = externalize(big, blobs, 16);
  ASSERT_TRUE(ref);
  ASSERT_TRUE(ref->contains("$blob"));
  EXPECT_EQ(*internalize(*ref, blobs), big);
}

}  // namespace
}  // namespace crucible
