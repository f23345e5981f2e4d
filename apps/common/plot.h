// Line plots into a PNG with cairo: loss curves for progress.png (and the evaluation's curves).
//
//   hdssl::app::plot_curves("run/progress.png", "pretraining", "step",
//                           {{"Lc", steps, lc}, {"10 x Lr", steps, lr10}}, /*log_y=*/false);
#pragma once
#include <string>
#include <vector>

namespace hdssl::app {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite y are skipped
  bool right_axis = false;   // drawn on an axis of its own, ticks on the right (e.g. a Dice next to losses)
};

// Draws every series on shared axes with a legend; throws hdssl::Error if the file cannot be written.
// With smooth > 1 each series is drawn faint as is, and bold as its trailing mean over `smooth` points.
void plot_curves(const std::string& png_path, const std::string& title, const std::string& xlabel,
                 const std::vector<Series>& series, bool log_y = false, int smooth = 0, int width = 900,
                 int height = 500);

}  // namespace hdssl::app
