// Learning-rate schedulers over the per-param optimiser states (Pyro's PyroLRScheduler).
#include "inference/lr_scheduler.h"

#include <cmath>

#include "core/error.h"

namespace ember::infer {

LRScheduler::LRScheduler(OptimizerPtr optimizer) : optimizer_(std::move(optimizer)) {
  if (!optimizer_) throw ValueError("learning-rate scheduler: the optimiser is null");
}

void LRScheduler::step() { advance(std::nullopt); }

void LRScheduler::step(double) {
  throw ValueError(cat(name(), ".step(metric): this scheduler is driven by epochs; call step() without a metric"));
}

int64_t LRScheduler::epoch(const std::string& param) const {
  auto it = schedules_.find(param);
  return it == schedules_.end() ? 0 : it->second.epoch;
}

void LRScheduler::advance(std::optional<double> metric) {
  for (const auto& param : optimizer_->state_names()) {
    const int64_t steps = optimizer_->step_count(param);
    auto it = schedules_.find(param);
    // A state whose step count went down was re-created for a new tensor (the store was
    // cleared or the param replaced): as Pyro's per-tensor optimisers, it starts afresh.
    if (it == schedules_.end() || steps < it->second.seen_steps) it = schedules_.insert_or_assign(param, Schedule{}).first;
    Schedule& s = it->second;
    s.seen_steps = steps;
    ++s.epoch;
    optimizer_->set_learning_rate(param, next_lr(optimizer_->learning_rate(param), s, metric));
  }
}

// ---------------------------------------------------------------- StepLR, ExponentialLR

StepLR::StepLR(OptimizerPtr optimizer, StepLROptions options) : LRScheduler(std::move(optimizer)), o_(options) {
  if (o_.step_size() < 1) throw ValueError(cat("StepLR: step_size must be >= 1, got ", o_.step_size()));
}

double StepLR::next_lr(double lr, Schedule& s, std::optional<double>) const {
  return s.epoch % o_.step_size() == 0 ? lr * o_.gamma() : lr;
}

ExponentialLR::ExponentialLR(OptimizerPtr optimizer, ExponentialLROptions options)
    : LRScheduler(std::move(optimizer)), o_(options) {}

double ExponentialLR::next_lr(double lr, Schedule&, std::optional<double>) const { return lr * o_.gamma(); }

// ---------------------------------------------------------------- ReduceLROnPlateau

ReduceLROnPlateau::ReduceLROnPlateau(OptimizerPtr optimizer, ReduceLROnPlateauOptions options)
    : LRScheduler(std::move(optimizer)), o_(options) {
  if (!(o_.factor() < 1.0)) throw ValueError(cat("ReduceLROnPlateau: factor must be < 1, got ", o_.factor()));
  if (o_.patience() < 0 || o_.cooldown() < 0)
    throw ValueError(cat("ReduceLROnPlateau: patience and cooldown must be >= 0, got ", o_.patience(), " and ", o_.cooldown()));
}

void ReduceLROnPlateau::step() {
  throw ValueError("ReduceLROnPlateau.step(): this scheduler needs the epoch's metric; call step(metric)");
}

void ReduceLROnPlateau::step(double metric) {
  if (std::isnan(metric)) throw ValueError("ReduceLROnPlateau.step(metric): the metric is NaN");
  advance(metric);
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  const bool rel = o_.threshold_mode() == ThresholdMode::rel;
  if (o_.mode() == PlateauMode::min) return rel ? a < best * (1.0 - o_.threshold()) : a < best - o_.threshold();
  return rel ? a > best * (1.0 + o_.threshold()) : a > best + o_.threshold();
}

double ReduceLROnPlateau::next_lr(double lr, Schedule& s, std::optional<double> metric) const {
  const double value = *metric;
  if (!s.best || is_better(value, *s.best)) {
    s.best = value;
    s.num_bad_epochs = 0;
  } else {
    ++s.num_bad_epochs;
  }
  if (s.cooldown_counter > 0) {
    --s.cooldown_counter;
    s.num_bad_epochs = 0;  // bad epochs in cooldown do not count
  }
  if (s.num_bad_epochs <= o_.patience()) return lr;
  s.cooldown_counter = o_.cooldown();
  s.num_bad_epochs = 0;
  const double reduced = std::max(lr * o_.factor(), o_.min_lr());
  return lr - reduced > o_.eps() ? reduced : lr;
}

}  // namespace ember::infer
