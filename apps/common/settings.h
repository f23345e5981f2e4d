// One home per setting: each program declares every setting once, in one table, and the command line
// (CLI11 options with help and ranges), config.json, the checkpoint metadata and the resume rule all
// come from that one declaration (see README.md, "Adding a setting").
//
//   app::SettingsTable t(cli);
//   t.add("--tau", "tau", o.tau, "InfoNCE temperature", app::Kind::Defines).above(0);
//   if (int rc = app::parse_command_line(cli, argc, argv); rc >= 0) return rc;
//   t.check_ranges();          // a given flag out of range: UsageError naming the flag and the range
//   json j = t.to_json();      // every saved setting under its JSON key
//   auto notes = t.resume(saved_json);  // the resume rule, see Kind
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/check.h"

namespace hdssl::app {

// What a setting is to a run, and so what --resume does with it.
enum class Kind {
  Defines,    // defines the run: saved; a resumed run keeps its saved value (a different flag: a note)
  Resumable,  // saved; may change on resume: the flag when given, else the saved value (--lr, --steps)
  Recorded,   // saved for the record only (the run folder, the device used); never restored
  NotSaved,   // per session (threads, cache folder): not saved
};

// A bad command line: the program prints the message and exits 2.
struct UsageError : Error {
  using Error::Error;
};

class Setting {
 public:
  // Ranges, checked for every value of a flag given on the command line (each element of a list).
  Setting& above(double lo);     // > lo
  Setting& at_least(double lo);  // >= lo
  Setting& at_most(double hi);   // <= hi
  Setting& below(double hi);     // < hi
  Setting& finite();             // not NaN or Inf
  Setting& one_of(const std::vector<std::string>& allowed);  // for text settings, checked by CLI11
  Setting& required();  // CLI11 refuses a command line without it
  // A rule that ranges cannot say (a CT window "LO,HI"): `problem` returns "" for a good value, else what is
  // wrong with it; check_ranges() refuses a given flag that breaks it with "FLAG: problem".
  Setting& check(std::function<std::string(const nlohmann::json&)> problem);
  // The value a run saved before this setting existed used (its behaviour then), when that differs from
  // today's default: --resume of such a run takes it instead of the default.
  Setting& legacy(const nlohmann::json& before);

  const std::string& flag() const { return flag_; }
  const std::string& key() const { return key_; }
  Kind kind() const { return kind_; }
  bool given() const { return opt_ && opt_->count() > 0; }
  nlohmann::json get() const { return get_(); }
  void set(const nlohmann::json& v) { set_(v); }
  // "" when the value is in range, else the rule it breaks ("must be > 0").
  std::string range_problem() const;
  std::string range_text() const;  // "> 0, finite" (also appended to the help)

 private:
  friend class SettingsTable;
  std::string flag_, key_;
  Kind kind_ = Kind::Defines;
  CLI::Option* opt_ = nullptr;
  std::function<nlohmann::json()> get_;
  std::function<void(const nlohmann::json&)> set_;
  std::function<std::vector<double>()> numbers_;  // the values as numbers (empty for text)
  nlohmann::json legacy_;                          // null: a run saved without the key keeps the default
  struct Rule {
    std::string text;
    std::function<bool(double)> ok;
  };
  std::vector<Rule> rules_;
  std::function<std::string(const nlohmann::json&)> check_;  // empty: none
  std::string help_;
  void update_help();
};

class SettingsTable {
 public:
  // Sets the program's rule for a repeated flag: the last one wins (as in most Unix tools).
  explicit SettingsTable(CLI::App& app);

  // One declaration. T: bool (a flag), int, int64_t, uint64_t, double, std::string, or a vector of
  // int64_t / double / std::string (then `count` values are expected; 0: any number).
  template <class T>
  Setting& add(const std::string& flag, const std::string& key, T& field, const std::string& help, Kind kind,
               int count = 0);

  // Every given flag against its ranges, then against its check(); throws UsageError "--tau 0: out of
  // range, must be > 0" (a check(): "FLAG: problem").
  void check_ranges() const;
  // Every setting except NotSaved ones, under its JSON key.
  nlohmann::json to_json() const;
  // The resume rule, applied to the settings a run saved: Defines take the saved value, Resumable take
  // the saved one unless the flag was given, Recorded and NotSaved are left alone; keys the saved run
  // does not have (settings added later) keep their defaults, or take their legacy() value. Returns the
  // notes to log (ignored flags, changed values).
  std::vector<std::string> resume(const nlohmann::json& saved);
  // Was this setting (by flag) given on the command line?
  bool given(const std::string& flag) const;
  Setting& operator[](const std::string& flag);
  const std::vector<std::unique_ptr<Setting>>& all() const { return settings_; }

 private:
  CLI::App& app_;
  std::vector<std::unique_ptr<Setting>> settings_;
};

// Parses the command line; -h prints the help and returns 0, a bad command line prints CLI11's message
// and returns 2 (exit codes: apps/README.md). Returns -1 when the program should go on.
int parse_command_line(CLI::App& app, int argc, char** argv);

// --resume [RUN]: a flag that may carry the run folder. After parsing, fills *out from it (a different
// -o at the same time is a UsageError) and returns whether --resume was given.
class ResumeFlag {
 public:
  ResumeFlag(CLI::App& app, const std::string& help);
  bool apply(std::string* out, bool out_given) const;

 private:
  CLI::Option* opt_;
  std::string dir_;
};

}  // namespace hdssl::app
