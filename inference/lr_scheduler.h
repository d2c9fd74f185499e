#pragma once
/// \file Learning-rate schedulers for the per-param optimisers (Pyro's `PyroLRScheduler`).
///
///     auto sgd = std::make_shared<ember::infer::SGD>(ember::infer::SGDOptions().lr(0.01));
///     ember::infer::StepLR scheduler(sgd, ember::infer::StepLROptions(/*step_size=*/10).gamma(0.5));
///     ember::infer::SVI svi(model, guide, scheduler.optimizer(), ember::infer::Trace_ELBO());
///     for (int epoch = 0; epoch < epochs; ++epoch) {
///       for (auto& batch : batches) svi.step(batch);
///       scheduler.step();                 // ReduceLROnPlateau: scheduler.step(epoch_loss)
///     }
///
/// As in Pyro, every param has its own optimiser and its own scheduler: a param is scheduled
/// from the first `step()` after its optimiser state was created (a param created in epoch 5
/// starts at the initial learning rate, and its step-size count starts then), and each
/// `step()` advances every param's schedule and writes the new rate into its optimiser state,
/// which the next update uses (and a checkpoint saves). The rules are torch.optim.lr_scheduler's
/// chainable forms: they multiply the param's current rate, so they compose with ClippedAdam's
/// per-step decay `lrd` as torch's do.

#include <torch/arg.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "inference/optim.h"

namespace ember::infer {

/// torch.optim.lr_scheduler.StepLR: the rate is multiplied by `gamma` every `step_size` epochs.
struct StepLROptions {
  /* implicit */ StepLROptions(int64_t step_size) : step_size_(step_size) {}
  TORCH_ARG(int64_t, step_size);
  TORCH_ARG(double, gamma) = 0.1;
};

/// torch.optim.lr_scheduler.ExponentialLR: the rate is multiplied by `gamma` every epoch.
struct ExponentialLROptions {
  /* implicit */ ExponentialLROptions(double gamma) : gamma_(gamma) {}
  TORCH_ARG(double, gamma);
};

/// Whether ReduceLROnPlateau's metric should go down (a loss) or up (an accuracy).
enum class PlateauMode { min, max };
/// How ReduceLROnPlateau's `threshold` measures a significant improvement: relative to the best
/// value so far, or as an absolute difference.
enum class ThresholdMode { rel, abs };

/// torch.optim.lr_scheduler.ReduceLROnPlateau's options (same defaults).
struct ReduceLROnPlateauOptions {
  TORCH_ARG(PlateauMode, mode) = PlateauMode::min;
  /// The rate is multiplied by this when the metric stops improving.
  TORCH_ARG(double, factor) = 0.1;
  /// Epochs without improvement tolerated before the rate is reduced.
  TORCH_ARG(int64_t, patience) = 10;
  TORCH_ARG(double, threshold) = 1e-4;
  TORCH_ARG(ThresholdMode, threshold_mode) = ThresholdMode::rel;
  /// Epochs after a reduction during which bad epochs are not counted.
  TORCH_ARG(int64_t, cooldown) = 0;
  /// Lower bound of the rate.
  TORCH_ARG(double, min_lr) = 0.0;
  /// A reduction smaller than this is skipped.
  TORCH_ARG(double, eps) = 1e-8;
};

/// Base of the schedulers: owns (shares) the optimiser it schedules.
class LRScheduler {
 public:
  /// Schedules `optimizer`; `kind` names the scheduler in checkpoints. The per-param
  /// counters are attached to the optimiser, so that an SVI checkpoint saves them and
  /// `SVI::load` restores them (a resumed run decays at the same epochs).
  explicit LRScheduler(OptimizerPtr optimizer, std::string kind = "LRScheduler");
  virtual ~LRScheduler() = default;

  /// The scheduled optimiser: give this to SVI.
  const OptimizerPtr& optimizer() const { return optimizer_; }
  /// One epoch for epoch-driven schedulers (StepLR, ExponentialLR).
  virtual void step();
  /// One epoch for metric-driven schedulers (ReduceLROnPlateau), given the epoch's metric.
  virtual void step(double metric);
  /// Number of `step` calls a param's schedule has seen (0 before its first).
  int64_t epoch(const std::string& param) const;

 protected:
  /// One param's schedule.
  struct Schedule {
    int64_t epoch = 0;
    int64_t seen_steps = 0;  // the optimiser's step count at the last scheduler step
    std::optional<double> best;
    int64_t num_bad_epochs = 0;
    int64_t cooldown_counter = 0;
  };
  /// The param's new rate after `schedule.epoch` was advanced; `metric` only for metric-driven.
  virtual double next_lr(double lr, Schedule& schedule, std::optional<double> metric) const = 0;
  /// The scheduler's name in messages.
  virtual std::string name() const = 0;
  void advance(std::optional<double> metric);

 private:
  OptimizerPtr optimizer_;
  /// The schedules, shared with the optimiser's checkpoint state.
  struct Book;
  std::shared_ptr<Book> book_;
};

/// Pyro's `StepLR`.
class StepLR : public LRScheduler {
 public:
  StepLR(OptimizerPtr optimizer, StepLROptions options);

 protected:
  double next_lr(double lr, Schedule& schedule, std::optional<double> metric) const override;
  std::string name() const override { return "StepLR"; }

 private:
  StepLROptions o_;
};

/// Pyro's `ExponentialLR`.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(OptimizerPtr optimizer, ExponentialLROptions options);

 protected:
  double next_lr(double lr, Schedule& schedule, std::optional<double> metric) const override;
  std::string name() const override { return "ExponentialLR"; }

 private:
  ExponentialLROptions o_;
};

/// Pyro's `ReduceLROnPlateau`: `step(metric)` once per epoch.
class ReduceLROnPlateau : public LRScheduler {
 public:
  explicit ReduceLROnPlateau(OptimizerPtr optimizer, ReduceLROnPlateauOptions options = {});
  void step() override;
  void step(double metric) override;

 protected:
  double next_lr(double lr, Schedule& schedule, std::optional<double> metric) const override;
  std::string name() const override { return "ReduceLROnPlateau"; }

 private:
  bool is_better(double value, double best) const;
  ReduceLROnPlateauOptions o_;
};

}  // namespace ember::infer
