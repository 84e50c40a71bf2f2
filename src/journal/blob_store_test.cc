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

void age(const std::string& path, std::chrono::hours by) {
  std::filesystem::last_write_time(path, std::filesystem::last_write_time(path) - by);
}

TEST(BlobStore, SweepRemovesOldUnreferencedBlobsAndTemporaries) {
  std::string dir = fresh_dir("blobs-sweep");
  BlobStore blobs(dir);
  auto keep = blobs.put("referenced");
  auto drop = blobs.put("unreferenced");
  auto again = blobs.put("stored again");
  ASSERT_TRUE(keep && drop && again);
  std::string hex_keep = keep->substr(7), hex_drop = drop->substr(7), hex_again = again->substr(7);
  std::string path_of_drop = dir + "/" + hex_drop.substr(0, 2) + "/" + hex_drop;
  std::string path_of_again = dir + "/" + hex_again.substr(0, 2) + "/" + hex_again;
  std::string temporary = path_of_drop + ".tmp.123.0";
  std::ofstream(temporary) << "half written";
  std::filesystem::create_directories(dir + "/llm-cache");
  std::ofstream(dir + "/llm-cache/k") << *drop << "\n";  // not a blob: never touched by a sweep
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) age(e.path().string(), std::chrono::hours(2));
  }
  ASSERT_TRUE(blobs.put("stored again"));  // refreshed: counts as new
  std::unordered_set<std::string> live = {hex_keep};
  auto none = blobs.sweep(live, std::chrono::hours(3));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->removed, 0u);
  auto swept = blobs.sweep(live, std::chrono::hours(1));
  ASSERT_TRUE(swept) << swept.error().to_string();
  EXPECT_EQ(swept->removed, 2u);  // the unreferenced blob and the temporary
  EXPECT_EQ(swept->bytes_freed, static_cast<int64_t>(std::string("unreferenced").size() + 12));
  EXPECT_FALSE(std::filesystem::exists(path_of_drop));
  EXPECT_FALSE(std::filesystem::exists(temporary));
  EXPECT_TRUE(std::filesystem::exists(path_of_again));
  EXPECT_TRUE(blobs.get(*keep));
  EXPECT_TRUE(std::filesystem::exists(dir + "/llm-cache/k"));
  EXPECT_EQ(BlobStore(fresh_dir("blobs-none")).sweep({}, std::chrono::hours(0))->removed, 0u);
}

TEST(BlobStore, CollectsReferencesFromText) {
  std::unordered_set<std::string> refs;
  std::string hex(64, 'a');
  collect_blob_refs(R"({"$blob":"sha256:)" + hex + R"("} sha256:short sha256:)" + std::string(64, 'G'), refs);
  EXPECT_EQ(refs, (std::unordered_set<std::string>{hex}));
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
