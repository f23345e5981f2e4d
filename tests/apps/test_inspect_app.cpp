// ./inspect --json agrees with nibabel (shape, spacing, min/max/mean within 1e-6 relative) on the nibabel
// fixtures and on the real files python3-nibabel ships; exit code 0 when all load, 3 when any is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/apps/program_test_util.h"

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(HDSSL_SOURCE_DIR) + "/tests/data/fixtures/";
const std::string kInspect = std::string(HDSSL_BINARY_DIR) + "/inspect";

// Runs inspect with `args`; returns its stdout lines and exit code.
std::vector<std::string> run(const std::string& args, int* code) {
  const hdssl::test::ProgramResult r = hdssl::test::run_command(kInspect + " " + args, hdssl::test::Stderr::kDropped);
  EXPECT_TRUE(r.exited) << r.output;
  *code = r.code;
  std::vector<std::string> lines;
  std::istringstream is(r.output);
  for (std::string l; std::getline(is, l);) lines.push_back(l);
  return lines;
}

void expect_rel(double got, double want, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), 1e-6 * std::max(1.0, std::fabs(want))) << what << ": inspect " << got << ", nibabel " << want;
}

void check_against(const std::string& dir, const json& expected) {
  ASSERT_TRUE(fs::exists(kInspect)) << "build the inspect target first";
  std::string args = "--json";
  for (auto& [name, e] : expected.items()) args += " " + dir + name;
  int code = -1;
  auto lines = run(args, &code);
  EXPECT_EQ(code, 0);
  ASSERT_EQ(lines.size(), expected.size());
  size_t i = 0;
  for (auto& [name, e] : expected.items()) {
    json j = json::parse(lines[i++]);
    SCOPED_TRACE(name);
    EXPECT_EQ(j["file"].get<std::string>(), dir + name);
    EXPECT_TRUE(j["ok"].get<bool>());
    EXPECT_TRUE(j["error"].is_null());
    EXPECT_EQ(j["shape"], e["shape"]);
    for (int a = 0; a < 3; ++a) expect_rel(j["spacing"][size_t(a)], e["zooms"][size_t(a)], "spacing");
    EXPECT_EQ(j["orientation"].get<std::string>(), e["orientation"].get<std::string>());
    EXPECT_EQ(j["datatype"].get<std::string>(), e["datatype"].get<std::string>());
    for (const char* k : {"min", "max", "mean", "sum"}) expect_rel(j[k], e[k], k);
    if (e.contains("labels")) EXPECT_EQ(j["labels"], e["labels"]);
  }
}

}  // namespace

TEST(Inspect, JsonAgreesWithNibabelOnFixtures) {
  std::ifstream f(kFixtures + "expected.json");
  check_against(kFixtures, json::parse(f));
}

TEST(Inspect, JsonAgreesWithNibabelOnRealFiles) {
  const std::string dir = "/usr/lib/python3/dist-packages/nibabel/tests/data/";
  std::ifstream f(kFixtures + "expected_nibabel_data.json");
  json e = json::parse(f);
  for (auto& [name, v] : e.items())
    if (!fs::exists(dir + name)) GTEST_SKIP() << "python3-nibabel's test data is not installed";
  check_against(dir, e);
}

TEST(Inspect, RefusedFilesGiveAReasonAndExitCode3) {
  auto dir = fs::path(HDSSL_BINARY_DIR) / "tests_tmp" / "inspect_bad";
  fs::create_directories(dir);
  std::ofstream(dir / "bad.nii") << "not a nifti file at all";
  int code = -1;
  auto lines = run("--json " + kFixtures + "dt_uint8.nii " + (dir / "bad.nii").string(), &code);
  EXPECT_EQ(code, 3);
  ASSERT_EQ(lines.size(), 2u);
  json bad = json::parse(lines[1]);
  EXPECT_FALSE(bad["ok"].get<bool>());
  EXPECT_NE(bad["error"].get<std::string>().find("sizeof_hdr"), std::string::npos);
  // An empty folder is a refusal too.
  auto empty = fs::path(HDSSL_BINARY_DIR) / "tests_tmp" / "inspect_empty";
  fs::create_directories(empty);
  lines = run("--json " + empty.string(), &code);
  EXPECT_EQ(code, 3);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(json::parse(lines[0])["error"].get<std::string>().find("without NIfTI files"), std::string::npos);
  // Plain text: one line per file, and a folder is searched recursively.
  lines = run(kFixtures, &code);
  EXPECT_EQ(code, 0);
  std::ifstream f(kFixtures + "expected.json");
  EXPECT_EQ(lines.size(), json::parse(f).size());  // one line per image; a pair is listed once, by its .hdr
  EXPECT_NE(lines[0].find("LPS"), std::string::npos);
}

TEST(Inspect, ZeroVoxelSizeIsRefusedByNameWithExitCode3) {
  // dt_uint8.nii with pixdim[1] = 0 (byte 80): inspect used to print "spacing": [0, ...] with "ok": true.
  auto dir = fs::path(HDSSL_BINARY_DIR) / "tests_tmp" / "inspect_spacing";
  fs::create_directories(dir);
  std::ifstream in(kFixtures + "dt_uint8.nii", std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(b.size(), 352u);
  const float zero = 0.f;
  b.replace(80, 4, reinterpret_cast<const char*>(&zero), 4);
  std::ofstream(dir / "zero.nii", std::ios::binary) << b;
  int code = -1;
  auto lines = run("--json " + (dir / "zero.nii").string(), &code);
  EXPECT_EQ(code, 3);
  ASSERT_EQ(lines.size(), 1u);
  json j = json::parse(lines[0]);
  EXPECT_FALSE(j["ok"].get<bool>());
  const std::string err = j["error"].get<std::string>();
  EXPECT_NE(err.find("zero.nii"), std::string::npos) << err;
  EXPECT_NE(err.find("pixdim[1]"), std::string::npos) << err;
}
