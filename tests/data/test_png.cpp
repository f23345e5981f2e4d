// PNG output: a valid file, and a failed write (a full disk) leaves the previous PNG intact.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/png.h"
#include "tests/file_size_limit.h"

namespace fs = std::filesystem;
using namespace hdssl;

namespace {
std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
}  // namespace

TEST(Png, FullDiskKeepsThePreviousFileAndLeavesNoTemporary) {
  const fs::path dir = fs::temp_directory_path() / ("hdssl_png_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "slice.png").string();
  data::write_rgb_png(path, 4, 3, std::vector<unsigned char>(4 * 3 * 3, 200));
  const std::string before = bytes_of(path);
  ASSERT_EQ(before.substr(1, 3), "PNG");

  // A larger, noisy image cannot be written under a 64-byte file size limit.
  std::vector<unsigned char> noisy(size_t(64 * 64 * 3));
  for (size_t i = 0; i < noisy.size(); ++i) noisy[i] = (unsigned char)(i * 2654435761u >> 13);
  const std::string err =
      test::error_with_file_size_limit(64, [&] { data::write_rgb_png(path, 64, 64, noisy); });
  EXPECT_NE(err.find("the previous file is kept"), std::string::npos) << err;
  EXPECT_EQ(bytes_of(path), before);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // no temporary left behind
  fs::remove_all(dir);
}
