// Learning-rate schedulers over the per-param optimiser states (Pyro's PyroLRScheduler).
#include "inference/lr_scheduler.h"

#include <cmath>

#include "core/error.h"

namespace ember::infer {

// The per-param schedules as the optimiser's attached checkpoint state.
struct LRScheduler::Book : Optimizer::AttachedState {
  std::string kind;
  std::map<std::string, Schedule> schedules;

  nlohmann::json save() const override {
    nlohmann::json out = {{"scheduler", kind}, {"schedules", nlohmann::json::object()}};
    for (const auto& [param, s] : schedules)
      out["schedules"][param] = {{"epoch", s.epoch},
                                 {"seen_steps", s.seen_steps},
                                 {"best", s.best ? nlohmann::json(*s.best) : nlohmann::json()},
                                 {"num_bad_epochs", s.num_bad_epochs},
                                 {"cooldown_counter", s.cooldown_counter}};
    return out;
  }
  static std::map<std::string, Schedule> parse(const nlohmann::json& saved) {
    std::map<std::string, Schedule> out;
    for (const auto& [param, j] : saved.at("schedules").items()) {
      Schedule s;
      s.epoch = j.at("epoch").get<int64_t>();
      s.seen_steps = j.at("seen_steps").get<int64_t>();
      if (!j.at("best").is_null()) s.best = j.at("best").get<double>();
      s.num_bad_epochs = j.at("num_bad_epochs").get<int64_t>();
      s.cooldown_counter = j.at("cooldown_counter").get<int64_t>();
      out.emplace(param, s);
    }
    return out;
  }
  void check(const nlohmann::json& saved, const std::string& source) const override {
    const std::string saved_kind = saved.value("scheduler", std::string());
    if (saved_kind != kind)
      throw ValueError(cat("'", source, "': the learning-rate schedule was saved by ", saved_kind, " but this optimiser is scheduled by ",
                           kind));
    try {
      parse(saved);
    } catch (const nlohmann::json::exception& e) {
      throw IOError(cat("'", source, "': the ", kind, " schedule is malformed: ", e.what()));
    }
  }
  void load(const nlohmann::json& saved) override { schedules = parse(saved); }
};

LRScheduler::LRScheduler(OptimizerPtr optimizer, std::string kind)
    : optimizer_(std::move(optimizer)), book_(std::make_shared<Book>()) {
  if (!optimizer_) throw ValueError("learning-rate scheduler: the optimiser is null");
  book_->kind = std::move(kind);
  optimizer_->attach_state("lr_scheduler", book_);
}

void LRScheduler::step() { advance(std::nullopt); }

void LRScheduler::step(double) {
  throw ValueError(cat(name(), ".step(metric): this scheduler is driven by epochs; call step() without a metric"));
}

int64_t LRScheduler::epoch(const std::string& param) const {
  auto it = book_->schedules.find(param);
  return it == book_->schedules.end() ? 0 : it->second.epoch;
}

void LRScheduler::advance(std::optional<double> metric) {
  for (const auto& param : optimizer_->state_names()) {
    const int64_t steps = optimizer_->step_count(param);
    auto& schedules = book_->schedules;
    auto it = schedules.find(param);
    // A state whose step count went down was re-created for a new tensor (the store was
    // cleared or the param replaced): as Pyro's per-tensor optimisers, it starts afresh.
    if (it == schedules.end() || steps < it->second.seen_steps) it = schedules.insert_or_assign(param, Schedule{}).first;
    Schedule& s = it->second;
    s.seen_steps = steps;
    ++s.epoch;
    optimizer_->set_learning_rate(param, next_lr(optimizer_->learning_rate(param), s, metric));
  }
}

// ---------------------------------------------------------------- StepLR, ExponentialLR

StepLR::StepLR(OptimizerPtr optimizer, StepLROptions options) : LRScheduler(std::move(optimizer), "StepLR"), o_(options) {
  if (o_.step_size() < 1) throw ValueError(cat("StepLR: step_size must be >= 1, got ", o_.step_size()));
}

double StepLR::next_lr(double lr, Schedule& s, std::optional<double>) const {
  return s.epoch % o_.step_size() == 0 ? lr * o_.gamma() : lr;
}

ExponentialLR::ExponentialLR(OptimizerPtr optimizer, ExponentialLROptions options)
    : LRScheduler(std::move(optimizer), "ExponentialLR"), o_(options) {}

double ExponentialLR::next_lr(double lr, Schedule&, std::optional<double>) const { return lr * o_.gamma(); }

// ---------------------------------------------------------------- ReduceLROnPlateau

ReduceLROnPlateau::ReduceLROnPlateau(OptimizerPtr optimizer, ReduceLROnPlateauOptions options)
    : LRScheduler(std::move(optimizer), "ReduceLROnPlateau"), o_(options) {
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
