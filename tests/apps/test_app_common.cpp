// apps/common, the pieces every program shares: the run-folder lock, metrics.csv on resume, the progress
// line's pieces and the PNG plot.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <tuple>
#include <utility>
#include <vector>

#include "apps/common/ct_window_setting.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/settings.h"
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

// A run folder from before a column was appended (pretrain's probe_dice): resumed, its rows stay, padded.
TEST(MetricsCsv, ResumeOfAFileWithFewerColumnsPadsItsRowsWithNan) {
  const std::string dir = scratch("metrics_appended");
  fs::create_directories(dir);
  const std::string path = dir + "/metrics.csv";
  {
    app::MetricsCsv m(path, {"step", "a"}, -1);
    for (int s = 1; s <= 3; ++s) m.row({double(s), 0.1 * s});
  }
  std::ofstream(path, std::ios::app) << "4,0.";  // a row cut by a kill
  app::MetricsCsv resumed(path, {"step", "a", "b"}, 2);
  resumed.row({3, 7, 0.5});
  std::vector<std::string> cols;
  std::vector<std::vector<double>> rows;
  app::MetricsCsv::read(path, cols, rows);
  ASSERT_EQ(cols, (std::vector<std::string>{"step", "a", "b"}));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1][1], 0.2);
  EXPECT_TRUE(std::isnan(rows[1][2]));
  EXPECT_EQ(rows[2][2], 0.5);
  // A header that is not a prefix (another column list): nothing kept, as before.
  app::MetricsCsv other(path, {"step", "z", "b", "c"}, 10);
  app::MetricsCsv::read(path, cols, rows);
  EXPECT_TRUE(rows.empty());
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

// The settings table: one declaration gives the flag, the range check, the JSON and the resume rule.
namespace {
struct Demo {
  double tau = 0.1, lr = 3e-4;
  int64_t steps = 10;
  std::vector<int64_t> patch{16, 16, 8};
  std::string cache;
  bool flag = false;
};
void declare(app::SettingsTable& t, Demo& d) {
  t.add("--tau", "tau", d.tau, "temperature", app::Kind::Defines).above(0).finite();
  t.add("--lr", "lr", d.lr, "learning rate", app::Kind::Resumable).above(0);
  t.add("--steps", "steps", d.steps, "steps", app::Kind::Resumable).at_least(1);
  t.add("--patch", "patch", d.patch, "patch", app::Kind::Defines, 3).at_least(1);
  t.add("--cache", "cache", d.cache, "cache", app::Kind::NotSaved);
  t.add("--flag", "flag", d.flag, "a switch", app::Kind::Defines);
}
int parse(CLI::App& app, std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int rc = app::parse_command_line(app, int(argv.size()), argv.data());
  testing::internal::GetCapturedStdout();
  testing::internal::GetCapturedStderr();
  return rc;
}
}  // namespace

TEST(SettingsTable, RangesAreCheckedOnGivenFlagsNamingTheFlagAndTheRange) {
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--tau", "0"}, "--tau 0: out of range, must be > 0 and finite"},
           {{"--tau", "inf"}, "--tau inf: out of range, must be > 0 and finite"},
           {{"--steps", "0"}, "--steps 0: out of range, must be >= 1"},
           {{"--patch", "16", "0", "8"}, "--patch 16 0 8: out of range, each value must be >= 1"}}) {
    Demo d;
    CLI::App cli;
    app::SettingsTable t(cli);
    declare(t, d);
    ASSERT_EQ(parse(cli, args), -1);
    try {
      t.check_ranges();
      ADD_FAILURE() << says << ": accepted";
    } catch (const app::UsageError& e) {
      EXPECT_EQ(std::string(e.what()), says);
    }
  }
  Demo d;
  CLI::App cli;
  app::SettingsTable t(cli);
  declare(t, d);
  EXPECT_EQ(parse(cli, {"--tau", "0.5", "--patch", "1", "2", "3", "--steps", "1"}), -1);
  EXPECT_NO_THROW(t.check_ranges());
  EXPECT_EQ(parse(cli, {"--tau", "x"}), 2);  // not a number: CLI11's refusal, exit 2
  EXPECT_NE(cli.get_option("--tau")->get_description().find("(> 0, finite)"), std::string::npos);
}

TEST(SettingsTable, JsonRoundTripAndTheResumeRule) {
  Demo first;
  CLI::App a;
  app::SettingsTable ta(a);
  declare(ta, first);
  ASSERT_EQ(parse(a, {"--tau", "0.2", "--lr", "0.001", "--patch", "8", "8", "4", "--flag", "--cache", "/tmp/c"}), -1);
  const nlohmann::json saved = ta.to_json();
  EXPECT_EQ(saved.at("tau"), 0.2);
  EXPECT_EQ(saved.at("patch"), nlohmann::json({8, 8, 4}));
  EXPECT_EQ(saved.at("flag"), true);
  EXPECT_FALSE(saved.contains("cache"));  // NotSaved

  // A resumed session: no flags -> every saved value comes back.
  Demo second;
  CLI::App b;
  app::SettingsTable tb(b);
  declare(tb, second);
  ASSERT_EQ(parse(b, {}), -1);
  EXPECT_TRUE(tb.resume(saved).empty());
  EXPECT_EQ(tb.to_json(), saved);

  // Flags given on resume: a defining one is ignored with a note, a resumable one wins with a note.
  Demo third;
  CLI::App c;
  app::SettingsTable tc(c);
  declare(tc, third);
  ASSERT_EQ(parse(c, {"--tau", "0.7", "--lr", "0.0005", "--steps", "10"}), -1);
  nlohmann::json older = saved;
  older.erase("steps");  // a run saved before the setting existed keeps its default
  const std::vector<std::string> notes = tc.resume(older);
  EXPECT_EQ(third.tau, 0.2);
  EXPECT_EQ(third.lr, 0.0005);
  EXPECT_EQ(third.steps, 10);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[0], "note: --tau 0.7 ignored: a resumed run keeps its tau = 0.2");
  EXPECT_EQ(notes[1], "note: lr changed on resume from 0.001 to 0.0005 (--lr)");
}

TEST(ResumeFlag, TakesTheRunFolderOrGoesWithO) {
  for (const auto& [args, out, resumed] : std::vector<std::tuple<std::vector<std::string>, std::string, bool>>{
           {{"--resume", "RUN"}, "RUN", true},
           {{"-o", "RUN", "--resume"}, "RUN", true},
           {{"--resume", "-o", "RUN"}, "RUN", true},
           {{"--resume", "RUN", "-o", "RUN"}, "RUN", true},
           {{"-o", "RUN"}, "RUN", false}}) {
    CLI::App cli;
    std::string o;
    cli.add_option("-o", o);
    app::ResumeFlag r(cli, "resume");
    ASSERT_EQ(parse(cli, args), -1);
    EXPECT_EQ(r.apply(&o, cli.count("-o") > 0), resumed);
    EXPECT_EQ(o, out);
  }
  CLI::App cli;
  std::string o;
  cli.add_option("-o", o);
  app::ResumeFlag r(cli, "resume");
  ASSERT_EQ(parse(cli, {"--resume", "A", "-o", "B"}), -1);
  EXPECT_THROW(r.apply(&o, true), app::UsageError);
}

// --ct-window, declared once for ./pretrain and ./evaluate: its help, kind and legacy value, and the check
// that check_ranges() runs after the ranges (exit 2 in the programs).
TEST(CtWindowSetting, OneDeclarationWithItsHelpKindLegacyAndCheck) {
  for (const auto& [value, says] : std::vector<std::pair<std::string, std::string>>{
           {"250,-175", "--ct-window: CT window '250,-175': expected paper, program or LO,HI in HU with LO < HI"},
           {"abdomen", "--ct-window: CT window 'abdomen': expected paper, program or LO,HI in HU with LO < HI"},
           {"-175,nan", "--ct-window: CT window '-175,nan': expected paper, program or LO,HI in HU with LO < HI"}}) {
    CLI::App cli;
    app::SettingsTable t(cli);
    std::string w = "program";
    app::add_ct_window(t, w);
    ASSERT_EQ(parse(cli, {"--ct-window", value}), -1);
    try {
      t.check_ranges();
      ADD_FAILURE() << value << ": accepted";
    } catch (const app::UsageError& e) {
      EXPECT_EQ(std::string(e.what()), says);
    }
  }
  for (const std::string value : {"paper", "program", "-100,300"}) {
    CLI::App cli;
    app::SettingsTable t(cli);
    std::string w = "program";
    app::add_ct_window(t, w);
    ASSERT_EQ(parse(cli, {"--ct-window", value}), -1);
    EXPECT_NO_THROW(t.check_ranges()) << value;
    EXPECT_EQ(w, value);
    EXPECT_EQ(t.to_json().at("ct_window"), value);
  }
  // The ranges come first: a command line with both a bad range and a bad window names the range.
  {
    Demo d;
    CLI::App cli;
    app::SettingsTable t(cli);
    std::string w = "program";
    app::add_ct_window(t, w);
    declare(t, d);
    ASSERT_EQ(parse(cli, {"--ct-window", "1,0", "--tau", "0"}), -1);
    try {
      t.check_ranges();
      ADD_FAILURE() << "accepted";
    } catch (const app::UsageError& e) {
      EXPECT_EQ(std::string(e.what()), "--tau 0: out of range, must be > 0 and finite");
    }
  }
  CLI::App cli;
  app::SettingsTable t(cli);
  std::string w = "program";
  app::Setting& s = app::add_ct_window(t, w);
  EXPECT_EQ(s.flag(), "--ct-window");
  EXPECT_EQ(s.key(), "ct_window");
  EXPECT_EQ(s.kind(), app::Kind::Defines);
  EXPECT_EQ(cli.get_option("--ct-window")->get_description(),
            "CT intensity window: paper [-1350,1000] | program [-175,250] | LO,HI (HU)");
  ASSERT_EQ(parse(cli, {}), -1);
  EXPECT_NO_THROW(t.check_ranges());
  EXPECT_TRUE(t.resume(nlohmann::json::object()).empty());  // a run saved before the setting existed
  EXPECT_EQ(w, "paper");                                    // used the paper's window, and keeps it
  std::string again = "program";
  CLI::App cli2;
  app::SettingsTable t2(cli2);
  app::add_ct_window(t2, again);
  ASSERT_EQ(parse(cli2, {"--ct-window", "paper"}), -1);
  const std::vector<std::string> notes = t2.resume({{"ct_window", "-100,300"}});  // Defines: the saved one wins
  EXPECT_EQ(again, "-100,300");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "note: --ct-window \"paper\" ignored: a resumed run keeps its ct_window = \"-100,300\"");
}
