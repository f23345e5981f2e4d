// Loss curves with cairo: axes with "nice" ticks, one colour per series, a legend, written atomically.
#include "apps/common/plot.h"

#include <cairo.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/check.h"

namespace hdssl::app {
namespace {
// Tick positions 1, 2 or 5 x 10^k apart covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target = 6) {
  double span = hi - lo;
  if (!(span > 0)) return {lo};
  double step = std::pow(10.0, std::floor(std::log10(span / target)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (span / (step * m) <= target) { step *= m; break; }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}
const double kColors[][3] = {{0.12, 0.47, 0.71}, {1.0, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                             {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.5, 0.5, 0.5}};
}  // namespace

void plot_curves(const std::string& png_path, const std::string& title, const std::string& xlabel,
                 const std::vector<Series>& series, bool log_y, int smooth, int width, int height) {
  auto ty = [&](double y) { return log_y ? std::log10(y) : y; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY, r0 = INFINITY, r1 = -INFINITY;
  bool right = false;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (s.right_axis && std::isfinite(s.y[i])) {  // linear, own range
        right = true;
        x0 = std::min(x0, s.x[i]); x1 = std::max(x1, s.x[i]);
        r0 = std::min(r0, s.y[i]); r1 = std::max(r1, s.y[i]);
        continue;
      }
      if (s.right_axis || !std::isfinite(s.y[i]) || (log_y && s.y[i] <= 0)) continue;
      x0 = std::min(x0, s.x[i]); x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, ty(s.y[i])); y1 = std::max(y1, ty(s.y[i]));
    }
  if (!std::isfinite(y0)) { y0 = 0; y1 = 1; }
  if (right) {
    if (r1 <= r0) { r0 -= 0.5; r1 += 0.5; }
    const double rp = 0.05 * (r1 - r0);
    r0 -= rp; r1 += rp;
  }
  if (!std::isfinite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) { y0 -= 0.5; y1 += 0.5; }
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad; y1 += pad;

  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  const double L = 70, R = width - (right ? 70 : 20), T = 40, B = height - 50;  // plot box
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (R - L); };
  auto py = [&](double y) { return B - (y - y0) / (y1 - y0) * (B - T); };
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  char buf[64];
  // grid and tick labels
  cairo_set_line_width(cr, 1);
  for (double v : ticks(y0, y1)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, L, py(v)); cairo_line_to(cr, R, py(v)); cairo_stroke(cr);
    std::snprintf(buf, sizeof(buf), "%.4g", log_y ? std::pow(10.0, v) : v);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_text_extents_t e; cairo_text_extents(cr, buf, &e);
    cairo_move_to(cr, L - 6 - e.width, py(v) + e.height / 2); cairo_show_text(cr, buf);
  }
  for (double v : ticks(x0, x1)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(v), T); cairo_line_to(cr, px(v), B); cairo_stroke(cr);
    std::snprintf(buf, sizeof(buf), "%.6g", v);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_text_extents_t e; cairo_text_extents(cr, buf, &e);
    cairo_move_to(cr, px(v) - e.width / 2, B + 16); cairo_show_text(cr, buf);
  }
  auto pr = [&](double y) { return B - (y - r0) / (r1 - r0) * (B - T); };
  if (right)
    for (double v : ticks(r0, r1)) {  // the right axis: labels only (the grid is the left axis')
      std::snprintf(buf, sizeof(buf), "%.4g", v);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      cairo_move_to(cr, R + 6, pr(v) + 4); cairo_show_text(cr, buf);
    }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, L, T, R - L, B - T); cairo_stroke(cr);
  { cairo_text_extents_t e; cairo_text_extents(cr, xlabel.c_str(), &e);
    cairo_move_to(cr, (L + R) / 2 - e.width / 2, B + 36); cairo_show_text(cr, xlabel.c_str()); }
  cairo_set_font_size(cr, 15);
  std::string full = title + (log_y ? " (log scale)" : "");
  if (smooth > 1) full += "  (bold: mean of " + std::to_string(smooth) + " points)";
  cairo_move_to(cr, L, T - 14); cairo_show_text(cr, full.c_str());
  cairo_set_font_size(cr, 12);
  // curves and legend
  cairo_rectangle(cr, L, T, R - L, B - T);
  cairo_save(cr);
  cairo_clip(cr);
  auto draw = [&](const std::vector<double>& xs, const std::vector<double>& ys) {
    bool pen = false;
    for (size_t i = 0; i < xs.size() && i < ys.size(); ++i) {
      double y = ys[i];
      if (!std::isfinite(y) || (log_y && y <= 0)) { pen = false; continue; }
      if (pen) cairo_line_to(cr, px(xs[i]), py(ty(y)));
      else cairo_move_to(cr, px(xs[i]), py(ty(y)));
      pen = true;
    }
    cairo_stroke(cr);
  };
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& c = kColors[k % 8];
    if (series[k].right_axis) {  // sparse points: a line with a dot at each
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      cairo_set_line_width(cr, 1.6);
      const auto& s = series[k];
      bool pen = false;
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.y[i])) { pen = false; continue; }
        if (pen) cairo_line_to(cr, px(s.x[i]), pr(s.y[i]));
        else cairo_move_to(cr, px(s.x[i]), pr(s.y[i]));
        pen = true;
      }
      cairo_stroke(cr);
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
        if (std::isfinite(s.y[i])) { cairo_arc(cr, px(s.x[i]), pr(s.y[i]), 3, 0, 2 * M_PI); cairo_fill(cr); }
      continue;
    }
    if (smooth <= 1) {
      cairo_set_line_width(cr, 1.6);
      cairo_set_source_rgb(cr, c[0], c[1], c[2]);
      draw(series[k].x, series[k].y);
      continue;
    }
    cairo_set_line_width(cr, 1.0);
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.25);
    draw(series[k].x, series[k].y);
    std::vector<double> mean(series[k].y.size());
    double sum = 0;
    size_t count = 0;
    for (size_t i = 0; i < mean.size(); ++i) {  // trailing mean over the finite points of the window
      if (std::isfinite(series[k].y[i])) { sum += series[k].y[i]; ++count; }
      if (i >= size_t(smooth) && std::isfinite(series[k].y[i - size_t(smooth)])) { sum -= series[k].y[i - size_t(smooth)]; --count; }
      mean[i] = count ? sum / double(count) : NAN;
    }
    cairo_set_line_width(cr, 2.2);
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    draw(series[k].x, mean);
  }
  cairo_restore(cr);
  cairo_new_path(cr);
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& c = kColors[k % 8];
    const double yk = T + 16 + 18 * double(k);
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 3);
    const double lx = R - (right ? 200 : 130);  // legend: room for "(right axis)"
    cairo_move_to(cr, lx, yk - 4); cairo_line_to(cr, lx + 22, yk - 4); cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    const std::string name = series[k].name + (series[k].right_axis ? " (right axis)" : "");
    cairo_move_to(cr, lx + 28, yk); cairo_show_text(cr, name.c_str());
  }
  const std::string tmp = png_path + ".tmp." + std::to_string(::getpid());
  cairo_status_t st = cairo_surface_write_to_png(surf, tmp.c_str());
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
  HDSSL_CHECK(st == CAIRO_STATUS_SUCCESS) << "cannot write " << tmp << ": " << cairo_status_to_string(st);
  HDSSL_CHECK(std::rename(tmp.c_str(), png_path.c_str()) == 0) << "cannot rename " << tmp << " to " << png_path;
}

}  // namespace hdssl::app
