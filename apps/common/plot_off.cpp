// plot_curves in a build without cairo (-DHDSSL_PLOTS=OFF, e.g. on a GPU machine that lacks its
// development files): draws nothing, and says so once per process on stderr.
#include <cstdio>

#include "apps/common/plot.h"

namespace hdssl::app {

void plot_curves(const std::string& png_path, const std::string&, const std::string&, const std::vector<Series>&,
                 bool, int, int, int) {
  static bool said = false;
  if (said) return;
  said = true;
  std::fprintf(stderr, "note: this build draws no plots (configured with -DHDSSL_PLOTS=OFF): %s not written\n",
               png_path.c_str());
}

}  // namespace hdssl::app
