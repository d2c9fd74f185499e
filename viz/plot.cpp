// Line plots with PLplot (C API, "pngcairo" device). See plot.h for the threading rules.
#include "viz/plot.h"

#include <plplot.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "ppl/tensor_archive.h"

namespace ember::viz {

std::mutex& plplot_mutex() {
  static std::mutex m;
  return m;
}

namespace {

// Messages PLplot passes to its abort handler during one plot (guarded by plplot_mutex()).
std::string g_plplot_errors;
void collect_plplot_error(const char* message) {
  if (!g_plplot_errors.empty()) g_plplot_errors += "; ";
  g_plplot_errors += message ? message : "(no message)";
}

/// PLplot treats '#' as its escape character; show the user's text verbatim.
std::string plplot_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '#') out += '#';
  }
  return out;
}

bool has_pngcairo() {
  // plgDevs fills caller-provided arrays; capacity in, count out.
  constexpr int capacity = 256;
  std::vector<const char*> menu(capacity), names(capacity);
  const char** menu_p = menu.data();
  const char** names_p = names.data();
  int n = capacity;
  plgDevs(&menu_p, &names_p, &n);
  for (int i = 0; i < n && i < capacity; ++i) {
    if (names_p[i] && std::strcmp(names_p[i], "pngcairo") == 0) return true;
  }
  return false;
}

/// A temporary file that is removed when this goes out of scope.
struct TempFile {
  std::string path;
  TempFile() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ember-plot-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    int fd = ::mkstemp(buf.data());
    if (fd < 0) throw IOError(cat("plot: cannot create a temporary file '", tmpl, "': ", std::strerror(errno)));
    ::close(fd);
    path = buf.data();
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

/// [lo, hi] widened by 5% (or to a unit interval around a single value).
std::pair<double, double> padded_range(double lo, double hi) {
  if (hi - lo <= 0) {
    double half = std::max(std::abs(lo) * 0.05, 0.5);
    return {lo - half, hi + half};
  }
  double margin = (hi - lo) * 0.05;
  return {lo - margin, hi + margin};
}

// Colour map 0: 0 background (white), 1 ink (black), 2 grid (light grey), 3.. series (tab10).
constexpr int kInk = 1, kGrid = 2, kFirstSeries = 3;
constexpr int kPalette[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                               {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

}  // namespace

std::string render_line_plot_png(const std::vector<Series>& series, const PlotOptions& o) {
  if (series.empty()) throw ValueError("plot: no series to draw");
  if (o.width() < 100 || o.width() > 8192 || o.height() < 100 || o.height() > 8192) {
    throw ValueError(cat("plot: size ", o.width(), " x ", o.height(), " is not within [100, 8192] pixels per side"));
  }
  if (o.markers() < -1 || o.markers() > 1) throw ValueError(cat("plot: markers mode ", o.markers(), " is not -1, 0 or 1"));
  // Validate and transform every value before PLplot is touched (PLplot exit()s on some errors).
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  // Values as drawn (log10 on a log axis): xs, ys, and each band's lows and highs.
  std::vector<std::vector<double>> xs, ys, lows, highs;
  auto axis_value = [&](const Series& s, size_t i, double v, bool log_axis, const char* what) {
    if (!log_axis) return v;
    if (v <= 0) throw ValueError(cat("plot: series '", s.name, "' point ", i, " has ", what, " = ", v, " <= 0 on a log axis"));
    return std::log10(v);
  };
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) {
      throw ValueError(cat("plot: series '", s.name, "' has ", s.x.size(), " x values but ", s.y.size(), " y values"));
    }
    if (s.x.empty()) throw ValueError(cat("plot: series '", s.name, "' has no points"));
    const bool band = !s.lower.empty() || !s.upper.empty();
    if (band && (s.lower.size() != s.x.size() || s.upper.size() != s.x.size())) {
      throw ValueError(cat("plot: series '", s.name, "' has ", s.x.size(), " points but a band of ", s.lower.size(), " lower and ",
                           s.upper.size(), " upper values"));
    }
    std::vector<double> x(s.x.size()), y(s.y.size()), lo, hi;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        throw ValueError(cat("plot: series '", s.name, "' point ", i, " is (", s.x[i], ", ", s.y[i], "); values must be finite"));
      }
      x[i] = axis_value(s, i, s.x[i], o.log_x(), "x");
      y[i] = axis_value(s, i, s.y[i], o.log_y(), "y");
      xmin = std::min(xmin, x[i]);
      xmax = std::max(xmax, x[i]);
      ymin = std::min(ymin, y[i]);
      ymax = std::max(ymax, y[i]);
      if (band) {
        if (!std::isfinite(s.lower[i]) || !std::isfinite(s.upper[i]) || s.lower[i] > s.upper[i]) {
          throw ValueError(cat("plot: series '", s.name, "' band at point ", i, " is [", s.lower[i], ", ", s.upper[i],
                               "]; bounds must be finite with lower <= upper"));
        }
        lo.push_back(axis_value(s, i, s.lower[i], o.log_y(), "band lower"));
        hi.push_back(axis_value(s, i, s.upper[i], o.log_y(), "band upper"));
        ymin = std::min(ymin, lo.back());
        ymax = std::max(ymax, hi.back());
      }
    }
    xs.push_back(std::move(x));
    ys.push_back(std::move(y));
    lows.push_back(std::move(lo));
    highs.push_back(std::move(hi));
  }
  // A small x margin keeps end markers inside the frame; the y axis gets a bigger one.
  auto [x0, x1] = xmin < xmax ? std::pair<double, double>(xmin - (xmax - xmin) * 0.015, xmax + (xmax - xmin) * 0.015)
                              : padded_range(xmin, xmax);
  auto [y0, y1] = padded_range(ymin, ymax);

  std::lock_guard<std::mutex> lock(plplot_mutex());
  if (!has_pngcairo()) {
    throw RuntimeError("plot: PLplot has no 'pngcairo' device (install Debian's plplot-driver-cairo)");
  }
  TempFile tmp;
  PLINT previous = 0, stream = 0;
  plgstrm(&previous);
  plmkstrm(&stream);
  if (stream < 0) throw RuntimeError("plot: PLplot has no free stream");
  g_plplot_errors.clear();
  plsabort(collect_plplot_error);

  plsdev("pngcairo");
  plsfnam(tmp.path.c_str());
  plspage(0, 0, o.width(), o.height(), 0, 0);
  plscmap0n(kFirstSeries + 2 * kPaletteSize);
  plscol0(0, 255, 255, 255);
  plscol0(kInk, 0, 0, 0);
  plscol0(kGrid, 220, 220, 220);
  for (int i = 0; i < kPaletteSize; ++i) {
    plscol0(kFirstSeries + i, kPalette[i][0], kPalette[i][1], kPalette[i][2]);
    // The band tint: the series colour at 25% over white (opaque, so overlapping bands stay legible).
    auto tint = [](int c) { return 255 - (255 - c) / 4; };
    plscol0(kFirstSeries + kPaletteSize + i, tint(kPalette[i][0]), tint(kPalette[i][1]), tint(kPalette[i][2]));
  }
  plinit();
  pladv(0);
  plschr(0, 1.1);
  plvpor(0.11, 0.96, 0.11, 0.91);
  plwind(x0, x1, y0, y1);
  const char* yopt = o.log_y() ? "bcnstvl" : "bcnstv";
  plwidth(1.0);
  plcol0(kGrid);
  plbox(o.log_x() ? "gl" : "g", 0, 0, o.log_y() ? "gl" : "g", 0, 0);
  // Bands under everything else, in series order.
  for (size_t k = 0; k < series.size(); ++k) {
    if (lows[k].empty()) continue;
    std::vector<PLFLT> px(xs[k]), py(highs[k]);
    px.insert(px.end(), xs[k].rbegin(), xs[k].rend());
    py.insert(py.end(), lows[k].rbegin(), lows[k].rend());
    plcol0(kFirstSeries + kPaletteSize + PLINT(k % kPaletteSize));
    if (xs[k].size() > 1) plfill(PLINT(px.size()), px.data(), py.data());
    plline(PLINT(px.size()), px.data(), py.data());  // a one-point band shows as a vertical bar
  }
  plcol0(kInk);
  plbox(o.log_x() ? "bcnstl" : "bcnst", 0, 0, yopt, 0, 0);
  pllab(plplot_text(o.x_label()).c_str(), plplot_text(o.y_label()).c_str(), plplot_text(o.title()).c_str());

  std::vector<std::string> names;
  std::vector<const char*> texts;
  std::vector<PLINT> opts, colors, styles, symbol_numbers;
  std::vector<PLFLT> widths, symbol_scales;
  std::vector<const char*> symbols;
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const PLINT color = kFirstSeries + PLINT(k % kPaletteSize);
    const bool mark = o.markers() == 1 || (o.markers() == -1 && s.x.size() <= 50);
    plcol0(color);
    plwidth(2.5);
    if (s.x.size() > 1) plline(PLINT(s.x.size()), xs[k].data(), ys[k].data());
    if (mark || s.x.size() == 1) {
      plschr(0, s.x.size() == 1 ? 3.0 : 1.8);
      plstring(PLINT(s.x.size()), xs[k].data(), ys[k].data(), "•");
      plschr(0, 1.1);
    }
    names.push_back(plplot_text(s.name));
    opts.push_back(PL_LEGEND_LINE | ((mark || s.x.size() == 1) ? PL_LEGEND_SYMBOL : 0));
    colors.push_back(color);
    styles.push_back(1);
    widths.push_back(2.5);
    symbol_numbers.push_back(1);
    symbol_scales.push_back(1.2);
    symbols.push_back("•");
  }
  for (auto& n : names) texts.push_back(n.c_str());
  PLFLT legend_width = 0, legend_height = 0;
  plwidth(1.0);
  pllegend(&legend_width, &legend_height, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
           PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02, 0.02, 0.08, 0, kInk, 1, 0, 0,
           PLINT(series.size()), opts.data(), 1.0, 1.0, 2.0, 0.0, colors.data(), texts.data(), nullptr, nullptr, nullptr,
           nullptr, colors.data(), styles.data(), widths.data(), colors.data(), symbol_scales.data(),
           symbol_numbers.data(), symbols.data());
  plend1();
  plsabort(nullptr);
  plsstrm(previous);
  if (!g_plplot_errors.empty()) throw RuntimeError(cat("plot: PLplot reported: ", g_plplot_errors));

  std::ifstream in(tmp.path, std::ios::binary);
  std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw IOError(cat("plot: cannot read PLplot's output '", tmp.path, "'"));
  if (png.size() < 8 || png.compare(1, 3, "PNG") != 0) {
    throw RuntimeError(cat("plot: PLplot's pngcairo device wrote no PNG (", png.size(), " bytes in '", tmp.path, "')"));
  }
  return png;
}

void write_line_plot(const std::string& path, const std::vector<Series>& series, const PlotOptions& options) {
  std::string png = render_line_plot_png(series, options);
  try {
    write_file_atomic(path, png);
  } catch (const IOError& e) {
    throw IOError(cat("plot: cannot write '", path, "': ", e.what()));
  }
}

}  // namespace ember::viz
