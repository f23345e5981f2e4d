// apps/common, the pieces every program shares: the run-folder lock, metrics.csv on resume, the progress
// line's pieces and the PNG plot.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "engine/check.h"

namespace fs = std::filesystem;
using namespace hdssl;

namespace {
std::string scratch(const std::string& name) {
  auto d = fs::temp_directory_path() / ("hdssl_app_common_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d.parent_path());
  return d.string();
}
}  // namespace

TEST(RunFolder, ASecondHolderIsRefusedUntilTheFirstLetsGo) {
  const std::string dir = scratch("locked");
  {
    app::RunFolder first(dir);
    try {
      app::RunFolder second(dir);  // a second open file description: flock conflicts even in one process
      FAIL() << "a second RunFolder on " << dir << " was allowed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(::getpid())), std::string::npos) << e.what();
    }
    first.log_file_only("hello");
  }
  app::RunFolder again(dir);  // released with the first
  std::ifstream log(dir + "/log.txt");
  std::string line;
  std::getline(log, line);
  EXPECT_NE(line.find("hello"), std::string::npos);
}

TEST(MetricsCsv, ResumeKeepsRowsUpToTheStepAndDropsTornLines) {
  const std::string dir = scratch("metrics");
  fs::create_directories(dir);
  const std::string path = dir + "/metrics.csv";
  {
    app::MetricsCsv m(path, {"step", "a"}, -1);
    for (int s = 1; s <= 5; ++s) m.row({double(s), 0.1 * s});
  }
  std::ofstream(path, std::ios::app) << "6,0.";  // a row cut by a kill
  app::MetricsCsv resumed(path, {"step", "a"}, 3);
  resumed.row({4, 42});
  std::vector<std::string> cols;
  std::vector<std::vector<double>> rows;
  app::MetricsCsv::read(path, cols, rows);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[2][0], 3);
  EXPECT_EQ(rows[3][1], 42);
  EXPECT_EQ(rows[1][1], 0.2);  // 17 digits: a double comes back exactly
}

TEST(Progress, DurationsReadLikeAClock) {
  EXPECT_EQ(app::format_duration(12.4), "12s");
  EXPECT_EQ(app::format_duration(185), "3m05s");
  EXPECT_EQ(app::format_duration(3720), "1h02m");
  EXPECT_EQ(app::format_duration(NAN), "?");
  app::Progress p(0, 10, 0.0);
  std::string line = p.update(1, {{"Lc", 5.25}});
  EXPECT_NE(line.find("step 1/10"), std::string::npos) << line;
  EXPECT_NE(line.find("Lc 5.25"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
}

TEST(Plot, WritesAPngWithGapsAndSmoothing) {
  const std::string dir = scratch("plot");
  fs::create_directories(dir);
  app::Series a{"a", {}, {}}, b{"b", {}, {}};
  for (int i = 0; i < 100; ++i) {
    a.x.push_back(i); a.y.push_back(std::exp(-0.03 * i) + (i == 50 ? NAN : 0.0));
    b.x.push_back(i); b.y.push_back(0.5);
  }
  app::plot_curves(dir + "/p.png", "test", "step", {a, b}, false, 10);
  std::ifstream f(dir + "/p.png", std::ios::binary);
  char sig[8] = {0};
  f.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  EXPECT_GT(fs::file_size(dir + "/p.png"), 5000u);
  EXPECT_THROW(app::plot_curves(dir + "/no/such/dir/p.png", "t", "x", {a}), Error);
}
