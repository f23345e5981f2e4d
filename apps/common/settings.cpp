#include "apps/common/settings.h"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <utility>

namespace hdssl::app {

using json = nlohmann::json;

namespace {
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
template <class T> std::vector<double> as_numbers(const T& v) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return {double(v)};
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
    return std::vector<double>(v.begin(), v.end());
  } else {
    return {};
  }
}
}  // namespace

void Setting::update_help() {
  const std::string r = range_text();
  if (opt_) opt_->description(r.empty() ? help_ : help_ + " (" + r + ")");
}

Setting& Setting::above(double lo) {
  rules_.push_back({"> " + num(lo), [lo](double x) { return x > lo; }});
  update_help();
  return *this;
}

Setting& Setting::at_least(double lo) {
  rules_.push_back({">= " + num(lo), [lo](double x) { return x >= lo; }});
  update_help();
  return *this;
}

Setting& Setting::at_most(double hi) {
  rules_.push_back({"<= " + num(hi), [hi](double x) { return x <= hi; }});
  update_help();
  return *this;
}

Setting& Setting::below(double hi) {
  rules_.push_back({"< " + num(hi), [hi](double x) { return x < hi; }});
  update_help();
  return *this;
}

Setting& Setting::finite() {
  rules_.push_back({"finite", [](double x) { return std::isfinite(x); }});
  update_help();
  return *this;
}

Setting& Setting::one_of(const std::vector<std::string>& allowed) {
  opt_->check(CLI::IsMember(allowed));
  return *this;
}

Setting& Setting::required() {
  opt_->required();
  return *this;
}

Setting& Setting::check(std::function<std::string(const json&)> problem) {
  check_ = std::move(problem);
  return *this;
}

std::string Setting::range_text() const {
  std::string t;
  for (const Rule& r : rules_) t += (t.empty() ? "" : ", ") + r.text;
  return t;
}

std::string Setting::range_problem() const {
  if (!numbers_) return "";
  const std::vector<double> v = numbers_();
  for (double x : v)
    for (const Rule& r : rules_)
      if (!r.ok(x)) {
        std::string all;
        for (const Rule& q : rules_) all += (all.empty() ? "" : " and ") + q.text;
        return std::string(v.size() > 1 ? "each value must be " : "must be ") + all;
      }
  return "";
}

SettingsTable::SettingsTable(CLI::App& app) : app_(app) {
  app_.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

template <class T>
Setting& SettingsTable::add(const std::string& flag, const std::string& key, T& field, const std::string& help,
                            Kind kind, int count) {
  auto s = std::make_unique<Setting>();
  s->flag_ = flag;
  s->key_ = key;
  s->kind_ = kind;
  s->help_ = help;
  if constexpr (std::is_same_v<T, bool>) {
    s->opt_ = app_.add_flag(flag, field, help);
  } else {
    s->opt_ = app_.add_option(flag, field, help)->capture_default_str();
    if (count > 0) s->opt_->expected(count)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    if constexpr (std::is_same_v<T, std::vector<std::string>>)
      if (count == 0) s->opt_->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);  // a list: every value
  }
  s->get_ = [&field] { return json(field); };
  s->set_ = [&field](const json& v) { field = v.get<T>(); };
  s->numbers_ = [&field] { return as_numbers(field); };
  settings_.push_back(std::move(s));
  return *settings_.back();
}

template Setting& SettingsTable::add(const std::string&, const std::string&, bool&, const std::string&, Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, int&, const std::string&, Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, int64_t&, const std::string&, Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, uint64_t&, const std::string&, Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, double&, const std::string&, Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, std::string&, const std::string&, Kind,
                                     int);
template Setting& SettingsTable::add(const std::string&, const std::string&, std::vector<int64_t>&, const std::string&,
                                     Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, std::vector<double>&, const std::string&,
                                     Kind, int);
template Setting& SettingsTable::add(const std::string&, const std::string&, std::vector<std::string>&,
                                     const std::string&, Kind, int);

void SettingsTable::check_ranges() const {
  for (const auto& s : settings_) {
    if (!s->given()) continue;
    const std::string p = s->range_problem();
    if (p.empty()) continue;
    std::string shown;
    for (double x : s->numbers_()) shown += " " + num(x);
    throw UsageError(s->flag_ + shown + ": out of range, " + p);
  }
  for (const auto& s : settings_) {
    if (!s->given() || !s->check_) continue;
    const std::string p = s->check_(s->get());
    if (!p.empty()) throw UsageError(s->flag_ + ": " + p);
  }
}

Setting& Setting::legacy(const json& before) {
  legacy_ = before;
  return *this;
}

json SettingsTable::to_json() const {
  json j = json::object();
  for (const auto& s : settings_)
    if (s->kind_ != Kind::NotSaved) j[s->key_] = s->get();
  return j;
}

std::vector<std::string> SettingsTable::resume(const json& saved) {
  std::vector<std::string> notes;
  for (auto& s : settings_) {
    if (!saved.contains(s->key_)) {  // a setting added after the run was saved: what the run did then
      if (!s->legacy_.is_null() && s->kind_ == Kind::Defines) s->set(s->legacy_);
      continue;
    }
    const json was = saved.at(s->key_), now = s->get();
    if (s->kind_ == Kind::Defines) {
      if (s->given() && now != was)
        notes.push_back("note: " + s->flag_ + " " + now.dump() + " ignored: a resumed run keeps its " + s->key_ +
                        " = " + was.dump());
      s->set(was);
    } else if (s->kind_ == Kind::Resumable) {
      if (!s->given()) s->set(was);
      else if (now != was)
        notes.push_back("note: " + s->key_ + " changed on resume from " + was.dump() + " to " + now.dump() + " (" +
                        s->flag_ + ")");
    }
  }
  return notes;
}

bool SettingsTable::given(const std::string& flag) const {
  for (const auto& s : settings_)
    if (s->flag_ == flag) return s->given();
  return app_.count(flag) > 0;
}

Setting& SettingsTable::operator[](const std::string& flag) {
  for (auto& s : settings_)
    if (s->flag_ == flag) return *s;
  throw Error("no setting " + flag);
}

int parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // -h prints the help and exits 0; a bad command line exits 2
  }
  return -1;
}

ResumeFlag::ResumeFlag(CLI::App& app, const std::string& help) {
  opt_ = app.add_option("--resume", dir_, help)->expected(0, 1)->type_name("[RUN]");
}

bool ResumeFlag::apply(std::string* out, bool out_given) const {
  if (opt_->count() == 0) return false;
  if (!dir_.empty()) {
    if (out_given && *out != dir_)
      throw UsageError("--resume " + dir_ + " and -o " + *out + " name different run folders; give one of them");
    *out = dir_;
  }
  return true;
}

}  // namespace hdssl::app
