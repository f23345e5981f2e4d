// summary.json in and out, the paper's column mapping, and the Markdown / CSV tables.
#include "eval/report.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "data/volume.h"

namespace hdssl::eval {

std::vector<double> FoldSummary::class_means() const {
  std::vector<double> m(labels.size(), 0.0);
  if (cases.empty()) return m;
  for (const CaseResult& c : cases)
    for (size_t k = 0; k < m.size(); ++k) m[k] += c.dice.at(k);
  for (double& v : m) v /= double(cases.size());
  return m;
}

double FoldSummary::overall() const {
  std::vector<double> m = class_means();
  double s = 0;
  for (double v : m) s += v;
  return m.empty() ? 0.0 : s / double(m.size());
}

nlohmann::json summary_to_json(const FoldSummary& s) {
  nlohmann::json cases = nlohmann::json::array();
  for (const CaseResult& c : s.cases) {
    nlohmann::json d = nlohmann::json::object();
    for (size_t k = 0; k < s.labels.size(); ++k) d[s.labels[k]] = c.dice.at(k);
    cases.push_back({{"case", c.id}, {"dice", d}});
  }
  nlohmann::json mean = nlohmann::json::object();
  std::vector<double> m = s.class_means();
  for (size_t k = 0; k < s.labels.size(); ++k) mean[s.labels[k]] = m[k];
  nlohmann::json labels = nlohmann::json::object();
  for (size_t k = 0; k < s.labels.size(); ++k) labels[std::to_string(k + 1)] = s.labels[k];
  nlohmann::json out = {
      {"fold", s.fold},
      {"labels", labels},
      {"dice_rule", "class absent from both prediction and reference: 1.0; predicted but absent from reference: 0.0"},
      {"cases", cases},
      {"mean", mean},
      {"overall_mean", s.overall()}};
  if (s.selection.selected_step >= 0) {
    const SelectionRecord& r = s.selection;
    out["selection"] = {
        {"rule", "the checkpoint with the best mean validation Dice is tested (ties: the earlier step)"},
        {"selected_step", r.selected_step},
        {"last_step", r.last_step},
        {"val_dice", r.val_dice},
        {"val_cases", r.val_cases},
        {"train_cases", r.train_cases},
        {"history", r.history}};
  }
  return out;
}

FoldSummary summary_from_json(const nlohmann::json& j) {
  FoldSummary s;
  s.fold = j.at("fold").get<int>();
  const auto& labels = j.at("labels");
  for (size_t k = 1; k <= labels.size(); ++k) s.labels.push_back(labels.at(std::to_string(k)).get<std::string>());
  for (const auto& c : j.at("cases")) {
    CaseResult r;
    r.id = c.at("case").get<std::string>();
    for (const std::string& name : s.labels) r.dice.push_back(c.at("dice").at(name).get<double>());
    s.cases.push_back(r);
  }
  if (j.contains("selection")) {
    const auto& r = j.at("selection");
    s.selection.selected_step = r.at("selected_step").get<int64_t>();
    s.selection.last_step = r.at("last_step").get<int64_t>();
    s.selection.val_dice = r.at("val_dice").get<double>();
    s.selection.val_cases = r.at("val_cases").get<std::vector<std::string>>();
    s.selection.train_cases = r.at("train_cases").get<std::vector<std::string>>();
    s.selection.history = r.at("history").get<std::vector<std::pair<int64_t, double>>>();
  }
  return s;
}

void write_summary(const std::string& path, const FoldSummary& s) {
  std::ofstream out(path);
  if (!out) throw data::DataError(path + ": cannot write");
  out << summary_to_json(s).dump(2) << "\n";
}

FoldSummary read_summary(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw data::DataError(path + ": cannot open");
  try {
    nlohmann::json j;
    in >> j;
    return summary_from_json(j);
  } catch (const std::exception& e) {
    throw data::DataError(path + ": not a summary.json: " + e.what());
  }
}

// Lower-case letters and digits only: "Right Kidney" -> "rightkidney".
static std::string squash(const std::string& s) {
  std::string r;
  for (char c : s)
    if (std::isalnum(static_cast<unsigned char>(c))) r += char(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

static bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// The paper column of a label name, or "" when it has none.
static std::string paper_column_of(const std::string& label) {
  const std::string s = squash(label);
  if (s == "spleen") return "Sp";
  if (has(s, "kidney")) return "Kid";
  if (has(s, "gallbladder")) return "Gb";
  if (has(s, "esophagus") || has(s, "oesophagus")) return "Es";
  if (s == "liver") return "Li";
  if (s == "stomach") return "St";
  if (s == "aorta") return "Aor";
  if (has(s, "venacava") || s == "ivc" || s == "postcava") return "IVC";
  if (has(s, "portalvein") || has(s, "splenicvein")) return "PVC";
  if (s == "pancreas") return "Pa";
  if (has(s, "adrenal")) return "AG";
  return "";
}

std::vector<TableColumn> paper_columns(const std::vector<std::string>& labels) {
  static const char* order[] = {"Sp", "Kid", "Gb", "Es", "Li", "St", "Aor", "IVC", "PVC", "Pa", "AG"};
  std::vector<TableColumn> cols;
  for (const char* name : order) {
    TableColumn c{name, {}};
    for (size_t k = 0; k < labels.size(); ++k)
      if (paper_column_of(labels[k]) == name) c.classes.push_back(int(k));
    if (!c.classes.empty()) cols.push_back(c);
  }
  for (size_t k = 0; k < labels.size(); ++k)
    if (paper_column_of(labels[k]).empty()) cols.push_back({labels[k], {int(k)}});
  return cols;
}

static TableCell mean_std(const std::vector<double>& v) {
  TableCell c;
  if (v.empty()) return c;
  for (double x : v) c.mean += x;
  c.mean /= double(v.size());
  for (double x : v) c.std += (x - c.mean) * (x - c.mean);
  c.std = std::sqrt(c.std / double(v.size()));
  return c;
}

std::vector<TableCell> row_cells(const TableRow& row, const std::vector<TableColumn>& cols, TableCell* overall) {
  std::vector<std::vector<double>> per_col(cols.size());
  std::vector<double> overalls;
  for (const FoldSummary& f : row.folds) {
    std::vector<double> m = f.class_means();
    for (size_t c = 0; c < cols.size(); ++c) {
      double s = 0;
      for (int k : cols[c].classes) s += m.at(size_t(k));
      per_col[c].push_back(s / double(cols[c].classes.size()));
    }
    overalls.push_back(f.overall());
  }
  std::vector<TableCell> cells;
  for (const auto& v : per_col) cells.push_back(mean_std(v));
  if (overall) *overall = mean_std(overalls);
  return cells;
}

static std::string pct(double v, int digits) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, 100.0 * v);
  return b;
}

static std::vector<TableColumn> columns_of(const std::vector<TableRow>& rows) {
  if (rows.empty() || rows[0].folds.empty()) throw data::DataError("table: no folds to report");
  const std::vector<std::string>& labels = rows[0].folds[0].labels;
  for (const TableRow& r : rows)
    for (const FoldSummary& f : r.folds)
      if (f.labels != labels) throw data::DataError("table: runs with different label names cannot share a table");
  return paper_columns(labels);
}

std::string table_markdown(const std::vector<TableRow>& rows, bool per_fold) {
  std::vector<TableColumn> cols = columns_of(rows);
  std::ostringstream o;
  o << "| method |" << (per_fold ? " fold |" : "");
  for (const TableColumn& c : cols) o << " " << c.name << " |";
  o << " Overall |\n|---|" << (per_fold ? "---|" : "");
  for (size_t i = 0; i < cols.size(); ++i) o << "---:|";
  o << "---:|\n";
  for (const TableRow& r : rows) {
    if (per_fold)
      for (const FoldSummary& f : r.folds) {
        TableRow one{r.method, {f}};
        TableCell all;
        std::vector<TableCell> cells = row_cells(one, cols, &all);
        o << "| " << r.method << " | " << f.fold << " |";
        for (const TableCell& c : cells) o << " " << pct(c.mean, 1) << " |";
        o << " " << pct(all.mean, 1) << " |\n";
      }
    TableCell all;
    std::vector<TableCell> cells = row_cells(r, cols, &all);
    o << "| " << r.method << " |" << (per_fold ? " mean |" : "");
    for (const TableCell& c : cells) o << " " << pct(c.mean, 1) << " |";
    o << " " << pct(all.mean, 1) << " ± " << pct(all.std, 1) << " |\n";
  }
  return o.str();
}

static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) r += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

std::string table_csv(const std::vector<TableRow>& rows, bool per_fold) {
  std::vector<TableColumn> cols = columns_of(rows);
  std::ostringstream o;
  o << "method,fold";
  for (const TableColumn& c : cols) o << "," << csv_field(c.name);
  o << ",overall_mean,overall_std,folds\n";
  for (const TableRow& r : rows) {
    if (per_fold)
      for (const FoldSummary& f : r.folds) {
        TableCell all;
        std::vector<TableCell> cells = row_cells(TableRow{r.method, {f}}, cols, &all);
        o << csv_field(r.method) << "," << f.fold;
        for (const TableCell& c : cells) o << "," << pct(c.mean, 2);
        o << "," << pct(all.mean, 2) << ",,1\n";
      }
    TableCell all;
    std::vector<TableCell> cells = row_cells(r, cols, &all);
    o << csv_field(r.method) << ",mean";
    for (const TableCell& c : cells) o << "," << pct(c.mean, 2);
    o << "," << pct(all.mean, 2) << "," << pct(all.std, 2) << "," << r.folds.size() << "\n";
  }
  return o.str();
}

}  // namespace hdssl::eval
