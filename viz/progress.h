#pragma once
/// \file A terminal progress bar for training loops.
///
/// ```
/// viz::ProgressBar bar(ProgressOptions().epochs(num_epochs).steps_per_epoch(batches));
/// for (int64_t epoch = 1; epoch <= num_epochs; ++epoch) {
///   bar.start_epoch(epoch);
///   for (int64_t step = 1; step <= batches; ++step) { ...; bar.update(step, running_loss); }
///   bar.finish_epoch(running_loss);
/// }
/// ```
///
/// On a terminal (`isatty(fileno(stderr))` by default) one line is redrawn in place:
/// `epoch 3/10 [#########...........] 120/235  51% loss 123.4567 | 41.2 it/s | ETA 0:03 (run 0:33)`,
/// at most every `redraw_seconds` and always at the end of an epoch. Elsewhere (CI logs,
/// files) a plain line is printed each time progress crosses another `every_percent` percent
/// of the epoch, so long runs show progress without carriage-return noise.
/// Not thread-safe: call it from the training thread.

#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

namespace ember::viz {

/// A stream to print to (an alias so that TORCH_ARG's `const T&` means a const pointer).
using OStreamPtr = std::ostream*;

/// Settings of a ProgressBar.
struct ProgressOptions {
  /// Number of epochs of the run (for "epoch e/E" and the run's ETA); 0: unknown. Default 0.
  TORCH_ARG(int64_t, epochs) = 0;
  /// Steps (batches) per epoch, >= 1. Required.
  TORCH_ARG(int64_t, steps_per_epoch) = 0;
  /// Where to print; nullptr (default): std::cerr.
  TORCH_ARG(OStreamPtr, stream) = nullptr;
  /// Redraw in place (true) or print plain lines (false). Default: whether stderr is a TTY
  /// (when stream() is left at std::cerr) and false for any other stream.
  TORCH_ARG(std::optional<bool>, tty) = std::nullopt;
  /// Plain mode: print a line every this many percent of an epoch, in [1, 100]. Default 10.
  TORCH_ARG(int, every_percent) = 10;
  /// TTY mode: minimum seconds between redraws. Default 0.1.
  TORCH_ARG(double, redraw_seconds) = 0.1;
  /// Width of the bar in characters. Default 24.
  TORCH_ARG(int, bar_width) = 24;
  /// Text before "epoch", e.g. "train". Default: none.
  TORCH_ARG(std::string, label);
  /// Clock in seconds (monotonic); for tests. Default (empty): std::chrono::steady_clock.
  TORCH_ARG(std::function<double()>, clock);

 public:
  /// Print to `os`.
  ProgressOptions& stream(std::ostream& os) { return stream(&os); }
};

/// Progress of a training run: epoch, step/total, loss, rate and ETA on one line.
class ProgressBar {
 public:
  /// Throws ember::ValueError naming the option for steps_per_epoch < 1, epochs < 0,
  /// every_percent outside [1, 100], bar_width outside [0, 200], or redraw_seconds < 0.
  explicit ProgressBar(const ProgressOptions& options);
  /// Ends an unfinished TTY line with a newline.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Starts epoch `epoch` (1-based): resets the step count and the epoch's timer.
  void start_epoch(int64_t epoch);
  /// Reports that `step` of steps_per_epoch steps (1-based) are done, with the current loss
  /// (e.g. the epoch's running mean). Throws ember::ValueError if step is outside
  /// [1, steps_per_epoch] or goes backwards within an epoch.
  void update(int64_t step, double loss);
  /// Ends the epoch: draws the final state (with `loss`, e.g. the epoch's mean) and a newline.
  void finish_epoch(double loss);
  /// Ends the epoch with the last loss given to update().
  void finish_epoch();
  /// Whether this bar redraws in place.
  bool is_tty() const { return tty_; }

  /// The status line for the current state (no control characters); also used in tests.
  std::string line() const;

 private:
  double now() const;
  void draw(bool final);

  ProgressOptions options_;
  std::ostream* os_;
  bool tty_;
  int64_t epoch_ = 0, step_ = 0;
  double loss_ = 0;
  bool has_loss_ = false, open_line_ = false;
  double run_start_ = 0, epoch_start_ = 0, last_draw_ = -1e300;
  int64_t epochs_finished_ = 0;
  double finished_epochs_seconds_ = 0;  // from the run's start to the last finish_epoch()
  int next_percent_ = 0;
};

/// Formats seconds as `m:ss` or `h:mm:ss` ("?" when not finite or negative).
std::string format_duration(double seconds);

}  // namespace ember::viz
