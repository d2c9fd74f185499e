#pragma once
/// \file Line plots (loss curves) rendered to PNG with PLplot's cairo driver.
///
/// ```
/// viz::write_line_plot(out + "/loss.png",
///                      {{"train", epochs, train_loss}, {"test", epochs, test_loss}},
///                      viz::PlotOptions().title("Causal VAE").x_label("epoch").y_label("-ELBO per image"));
/// ```
///
/// Thread safety: PLplot keeps process-wide state (its stream table, the current stream,
/// error handlers). Every call Ember makes into PLplot holds plplot_mutex(), so Ember's plots
/// may be drawn from several threads; other code calling PLplot directly while Ember plots must
/// take the same mutex. Each plot uses a fresh PLplot stream, ends it, and restores the
/// caller's current stream.
///
/// Requires the PLplot "pngcairo" device (Debian: plplot-driver-cairo); its absence is an
/// ember::RuntimeError, checked before PLplot is initialised (PLplot itself would exit()).

#include <torch/arg.h>

#include <mutex>
#include <string>
#include <vector>

namespace ember::viz {

/// One named curve: points (x[i], y[i]) joined in order.
struct Series {
  /// Legend text (printable ASCII or UTF-8; shown verbatim).
  std::string name;
  /// Abscissae, e.g. epochs.
  std::vector<double> x;
  /// Ordinates, e.g. losses; same length as x.
  std::vector<double> y;
  /// Optional band (e.g. a 95% interval) drawn as a light fill behind the curve: both empty,
  /// or both as long as x with lower[i] <= upper[i].
  std::vector<double> lower = {};
  std::vector<double> upper = {};
};

/// Labels and size of a plot.
struct PlotOptions {
  /// Title above the plot. Default: none.
  TORCH_ARG(std::string, title);
  /// Label of the x axis. Default: none.
  TORCH_ARG(std::string, x_label);
  /// Label of the y axis. Default: none.
  TORCH_ARG(std::string, y_label);
  /// Image width in pixels, in [100, 8192]. Default 800.
  TORCH_ARG(int, width) = 800;
  /// Image height in pixels, in [100, 8192]. Default 600.
  TORCH_ARG(int, height) = 600;
  /// Logarithmic y axis (all y, and bands, must be > 0). Default false.
  TORCH_ARG(bool, log_y) = false;
  /// Logarithmic x axis (all x must be > 0). Default false.
  TORCH_ARG(bool, log_x) = false;
  /// Marks every point with a dot: 1 always, 0 never, -1 (default) when a series has <= 50 points.
  TORCH_ARG(int, markers) = -1;

 public:
  /// Image size in pixels: `width(w).height(h)`.
  PlotOptions& size(int w, int h) { return width(w).height(h); }
};

/// Renders `series` (at least one, each with >= 1 point, all values finite) as a line plot
/// with axes, grid, title, axis labels and a legend (bands first, then the curves), and
/// returns the PNG file's bytes. Throws ember::ValueError naming the series and index of a bad
/// value (non-finite, <= 0 on a log axis, a band with lower > upper), mismatched x/y/band
/// lengths, or bad options; ember::RuntimeError if PLplot's
/// pngcairo device is missing or PLplot reports an error; ember::IOError if its temporary
/// file cannot be made or read.
std::string render_line_plot_png(const std::vector<Series>& series, const PlotOptions& options = {});

/// render_line_plot_png(), written to `path` atomically (temporary file + rename). Errors as
/// there; ember::IOError naming `path` when it cannot be written.
void write_line_plot(const std::string& path, const std::vector<Series>& series, const PlotOptions& options = {});

/// The mutex serialising Ember's use of PLplot's global state (see the file comment).
std::mutex& plplot_mutex();

}  // namespace ember::viz
