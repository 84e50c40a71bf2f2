#include "crucible/core/file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace crucible {
namespace {

namespace fs = std::filesystem;

class WriteFileAtomically : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("crucible-file-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  size_t entries() {
    return static_cast<size_t>(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }
  fs::path dir_;
};

TEST_F(WriteFileAtomically, ReplacesTheWholeFileAndLeavesNoTemporary) {
  std::string path = (dir_ / "report.json").string();
  for (FileDurability d : {FileDurability::kNone, FileDurability::kFile, FileDurability::kFileAndDirectory}) {
    ASSERT_TRUE(write_file_atomically(path, "first", d));
    ASSERT_TRUE(write_file_atomically(path, std::string(100'000, 'x'), d));
    EXPECT_EQ(read(path), std::string(100'000, 'x'));
  }
  EXPECT_EQ(entries(), 1u);
}

TEST_F(WriteFileAtomically, AMissingDirectoryIsUnavailableAndWritesNothing) {
  Status s = write_file_atomically((dir_ / "absent" / "f").string(), "data");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(entries(), 0u);
}

TEST_F(WriteFileAtomically, AFailedRenameKeepsTheOldContentAndRemovesTheTemporary) {
  fs::create_directories(dir_ / "taken");  // a directory with files cannot be replaced by a file
  std::ofstream(dir_ / "taken" / "inside") << "x";
  Status s = write_file_atomically((dir_ / "taken").string(), "data");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::kDataLoss);
  EXPECT_TRUE(fs::is_directory(dir_ / "taken"));
  EXPECT_EQ(entries(), 1u);
}

}  // namespace
}  // namespace crucible
