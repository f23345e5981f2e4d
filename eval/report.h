// Reports: the per-fold summary.json and the cross-validation table in the paper's form.
//
// summary.json (one per fold) holds the label names, the Dice of every class for every validation case,
// the per-class mean over cases and the fold's overall mean (the mean over all classes of the per-class
// means; classes absent from both prediction and reference count 1.0, see dice.h).
//
// The table has the paper's columns (Tables 1-3): Sp, Kid, Gb, Es, Li, St, Aor, IVC, (PVC), Pa, AG,
// Overall. Kidneys and adrenal glands are the mean of left and right. A column is shown only when the
// dataset has a label for it (matched by name, e.g. "right kidney", "inferior vena cava" or "postcava");
// classes that match no paper column follow under their own names, before Overall. Organ cells are the
// mean over folds; Overall is "mean +- std" over folds of the fold's overall mean, std being the
// population standard deviation (numpy's np.std). Values are Dice in percent.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hdssl::eval {

struct CaseResult {
  std::string id;
  std::vector<double> dice;  // classes 1..K (index k-1)
};

// Model selection (eval/selection.h), under "selection" in summary.json: the step whose checkpoint was
// tested, its validation Dice, the validation cases and every (step, validation Dice). selected_step = -1
// (no "selection" key): the last step was tested.
struct SelectionRecord {
  int64_t selected_step = -1, last_step = -1;
  double val_dice = 0;
  std::vector<std::string> val_cases, train_cases;
  std::vector<std::pair<int64_t, double>> history;
};

struct FoldSummary {
  int fold = 0;
  std::vector<std::string> labels;  // names of classes 1..K
  std::vector<CaseResult> cases;
  SelectionRecord selection;
  std::vector<double> class_means() const;  // per class, mean over cases
  double overall() const;                   // mean of class_means()
};

nlohmann::json summary_to_json(const FoldSummary& s);
FoldSummary summary_from_json(const nlohmann::json& j);
void write_summary(const std::string& path, const FoldSummary& s);
FoldSummary read_summary(const std::string& path);

// A column of the table: its header and the classes (0-based) averaged into it.
struct TableColumn {
  std::string name;
  std::vector<int> classes;
};
std::vector<TableColumn> paper_columns(const std::vector<std::string>& labels);

// One table row: a method (a run) and its folds.
struct TableRow {
  std::string method;
  std::vector<FoldSummary> folds;
};

struct TableCell {
  double mean = 0, std = 0;  // over folds
};
// The organ columns and the overall cell of one row (all folds must share the labels).
std::vector<TableCell> row_cells(const TableRow& row, const std::vector<TableColumn>& cols, TableCell* overall);

// The table as Markdown and CSV. With per_fold, each method also gets one row per fold (fold column).
std::string table_markdown(const std::vector<TableRow>& rows, bool per_fold);
std::string table_csv(const std::vector<TableRow>& rows, bool per_fold);

}  // namespace hdssl::eval
