// ./predict refuses an output folder it cannot write before it loads a model or reads an image, naming
// -o, the folder and the reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/apps/program_test_util.h"

namespace fs = std::filesystem;

TEST(Predict, AnOutputFolderThatCannotBeWrittenIsRefusedAtStart) {
  const std::string bin = std::string(HDSSL_BINARY_DIR) + "/predict";
  ASSERT_TRUE(fs::exists(bin)) << "build the predict target first";
  auto dir = fs::path(HDSSL_BINARY_DIR) / "tests_tmp" / "predict_out";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "a_file") << "x";  // a folder cannot be made under a file (root ignores permissions)
  const std::string out = (dir / "a_file" / "sub").string();
  const hdssl::test::ProgramResult r = hdssl::test::run_command(
      bin + " -i " + std::string(HDSSL_SOURCE_DIR) + "/tests/data/fixtures/dt_uint8.nii -o " + out + " -m " +
      (dir / "no_model").string());
  const std::string& text = r.output;
  ASSERT_TRUE(r.exited) << text;  // also false when no shell could be started
  EXPECT_NE(r.code, 0) << text;
  EXPECT_NE(text.find("-o " + out + ": cannot create the output folder"), std::string::npos) << text;
  EXPECT_EQ(text.find("no_model"), std::string::npos) << "the model must not be looked at first: " << text;
}
