// Terminal progress bar: in-place redraw on a TTY, periodic plain lines elsewhere.
#include "viz/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "core/error.h"

namespace ember::viz {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto total = static_cast<long long>(std::llround(seconds));
  long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buf[64];
  if (h > 0) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, s);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", m, s);
  return buf;
}

ProgressBar::ProgressBar(const ProgressOptions& options) : options_(options) {
  if (options.steps_per_epoch() < 1) throw ValueError(cat("progress bar: steps_per_epoch is ", options.steps_per_epoch(), "; it must be >= 1"));
  if (options.epochs() < 0) throw ValueError(cat("progress bar: epochs is ", options.epochs(), "; it must be >= 0"));
  if (options.every_percent() < 1 || options.every_percent() > 100) {
    throw ValueError(cat("progress bar: every_percent is ", options.every_percent(), "; it must be in [1, 100]"));
  }
  if (options.bar_width() < 0 || options.bar_width() > 200) throw ValueError(cat("progress bar: bar_width ", options.bar_width(), " is not in [0, 200]"));
  if (!(options.redraw_seconds() >= 0)) throw ValueError(cat("progress bar: redraw_seconds ", options.redraw_seconds(), " is negative"));
  os_ = options.stream() ? options.stream() : &std::cerr;
  if (options.tty()) tty_ = *options.tty();
  else tty_ = options.stream() == nullptr && ::isatty(::fileno(stderr));
  run_start_ = now();
  epoch_start_ = run_start_;
}

ProgressBar::~ProgressBar() {
  if (tty_ && open_line_) {
    *os_ << '\n';
    os_->flush();
  }
}

double ProgressBar::now() const {
  if (options_.clock()) return options_.clock()();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void ProgressBar::start_epoch(int64_t epoch) {
  if (epoch < 1 || (options_.epochs() > 0 && epoch > options_.epochs())) {
    throw ValueError(cat("progress bar: epoch ", epoch, " is outside [1, ", options_.epochs() > 0 ? std::to_string(options_.epochs()) : "inf", "]"));
  }
  if (tty_ && open_line_) *os_ << '\n';
  open_line_ = false;
  if (epoch_ == 0) run_start_ = now();
  epoch_ = epoch;
  step_ = 0;
  has_loss_ = false;
  epoch_start_ = now();
  last_draw_ = -1e300;
  next_percent_ = options_.every_percent();
}

void ProgressBar::update(int64_t step, double loss) {
  if (epoch_ == 0) throw ValueError("progress bar: update() before start_epoch()");
  if (step < 1 || step > options_.steps_per_epoch()) {
    throw ValueError(cat("progress bar: step ", step, " is outside [1, ", options_.steps_per_epoch(), "]"));
  }
  if (step < step_) throw ValueError(cat("progress bar: step ", step, " after step ", step_, " in epoch ", epoch_));
  step_ = step;
  loss_ = loss;
  has_loss_ = true;
  if (tty_) {
    double t = now();
    if (t - last_draw_ >= options_.redraw_seconds() || step == options_.steps_per_epoch()) {
      last_draw_ = t;
      draw(false);
    }
  } else {
    int percent = static_cast<int>(100 * step / options_.steps_per_epoch());
    if (percent >= next_percent_ && percent < 100) {
      next_percent_ = (percent / options_.every_percent() + 1) * options_.every_percent();
      draw(false);
    }
  }
}

void ProgressBar::finish_epoch(double loss) {
  if (epoch_ == 0) throw ValueError("progress bar: finish_epoch() before start_epoch()");
  loss_ = loss;
  has_loss_ = true;
  finish_epoch();
}

void ProgressBar::finish_epoch() {
  if (epoch_ == 0) throw ValueError("progress bar: finish_epoch() before start_epoch()");
  step_ = options_.steps_per_epoch();
  draw(true);
  if (tty_) *os_ << '\n';
  open_line_ = false;
  os_->flush();
  epochs_finished_ += 1;
  finished_epochs_seconds_ = now() - run_start_;
}

std::string ProgressBar::line() const {
  const int64_t total = options_.steps_per_epoch();
  const double elapsed = now() - epoch_start_;
  std::ostringstream s;
  if (!options_.label().empty()) s << options_.label() << ' ';
  s << "epoch " << epoch_;
  if (options_.epochs() > 0) s << '/' << options_.epochs();
  if (options_.bar_width() > 0) {
    int filled = static_cast<int>(options_.bar_width() * step_ / total);
    s << " [" << std::string(filled, '#') << std::string(options_.bar_width() - filled, '.') << ']';
  }
  char pct[16];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(100 * step_ / total));
  s << ' ' << step_ << '/' << total << ' ' << pct;
  if (has_loss_) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", loss_);
    s << " loss " << buf;
  }
  if (step_ > 0 && elapsed > 0) {
    double rate = step_ / elapsed;
    char buf[32];
    std::snprintf(buf, sizeof buf, rate >= 100 ? "%.0f" : "%.3g", rate);
    s << " | " << buf << " it/s";
    if (step_ < total) {
      double eta = (total - step_) / rate;
      s << " | ETA " << format_duration(eta);
      if (options_.epochs() > epoch_) {
        // Later epochs at the average pace of finished ones (evaluation included), else this one's.
        double per_epoch = epochs_finished_ > 0 ? finished_epochs_seconds_ / epochs_finished_ : total / rate;
        s << " (run " << format_duration(eta + per_epoch * double(options_.epochs() - epoch_)) << ')';
      }
    } else {
      s << " | " << format_duration(elapsed);
    }
  }
  return s.str();
}

void ProgressBar::draw(bool final) {
  if (tty_) {
    std::string text = line();
    // Never wrap: a wrapped line cannot be redrawn with '\r'.
    struct winsize ws {};
    if (options_.stream() == nullptr && ::ioctl(::fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
        text.size() >= ws.ws_col) {
      text.resize(ws.ws_col - 1);
    }
    *os_ << '\r' << text << "\x1b[K";
    open_line_ = true;
  } else {
    *os_ << line() << '\n';
  }
  if (!final) os_->flush();
}

}  // namespace ember::viz
