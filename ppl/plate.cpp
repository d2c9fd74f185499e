// Plates: vectorised (`plate`) and sequential (`plate_range`), their subsample sites, the
// broadcasting of sample sites over them, and the allocation of batch dims.
#include "ppl/plate.h"

#include "core/error.h"
#include "distributions/constraints.h"
#include "distributions/mixin.h"
#include "ppl/messenger.h"

namespace ember {

// ---------------------------------------------------------------- dims

int64_t DimAllocator::allocate(const std::string& name, std::optional<int64_t> dim) {
  for (const auto& s : slots_)
    if (s == name) throw RuntimeError(cat("plate '", name, "' is already active: nested plates need distinct names"));
  int64_t d;
  if (dim) {
    d = *dim;
    if (d >= 0) throw ValueError(cat("plate '", name, "': dim must be negative (counted from the right), got ", d));
  } else {
    d = -1;
    while (-d <= static_cast<int64_t>(slots_.size()) && !slots_[-1 - d].empty()) --d;
  }
  while (static_cast<int64_t>(slots_.size()) < -d) slots_.emplace_back();
  auto& slot = slots_[-1 - d];
  if (!slot.empty())
    throw RuntimeError(cat("plates '", slot, "' and '", name, "' both use dim=", d, "; move one of them to the left, e.g. dim=",
                           d - 1));
  slot = name;
  return d;
}

void DimAllocator::free(const std::string& name, int64_t dim) {
  auto i = static_cast<size_t>(-1 - dim);
  if (i < slots_.size() && slots_[i] == name) slots_[i].clear();
  while (!slots_.empty() && slots_.back().empty()) slots_.pop_back();
}

DimAllocator& plate_dim_allocator() {
  thread_local DimAllocator allocator;
  return allocator;
}

// ---------------------------------------------------------------- plates

namespace {

// Draws a plate's subsample indices; log_prob is 0 so the plate's scaling alone makes the
// subsampled log-likelihood unbiased.
class Subsample : public dist::DistributionMixin<Subsample> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Subsample, (torch::Tensor, dummy));
  Subsample(int64_t size, int64_t subsample_size, torch::Device device)
      : size_(size), subsample_size_(subsample_size), device_(device) {
    init({}, {subsample_size}, false);
  }
  static dist::ConstraintPtr arg_constraint(std::string_view) { return nullptr; }
  std::string name() const override { return "Subsample"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override {
    if (!sample_shape.empty()) throw NotImplementedError("plate subsample sites cannot be drawn with a sample_shape");
    auto opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
    if (subsample_size_ >= size_) return torch::arange(size_, opts);
    return torch::randperm(size_, opts).narrow(0, 0, subsample_size_).clone();
  }
  torch::Tensor log_prob(const torch::Tensor&) const override {
    return torch::zeros({}, torch::TensorOptions().device(device_));
  }
  dist::ConstraintPtr support() const override { return constraints::independent(constraints::nonnegative_integer(), 1); }

 private:
  int64_t size_, subsample_size_;
  torch::Device device_;
};

// Draws a plate's subsample indices through a sample site named after the plate, so that
// replay shares them between model and guide.
torch::Tensor draw_subsample(const std::string& name, int64_t size, const PlateOptions& options) {
  if (size < 0) throw ValueError(cat("plate '", name, "': size must be nonnegative, got ", size));
  int64_t sub = options.subsample().defined() ? options.subsample().size(0) : options.subsample_size().value_or(size);
  if (options.subsample_size() && options.subsample().defined() && *options.subsample_size() != options.subsample().size(0))
    throw ValueError(cat("plate '", name, "': subsample_size ", *options.subsample_size(),
                         " does not match len(subsample) ", options.subsample().size(0)));
  if (sub > size || sub < 0)
    throw ValueError(cat("plate '", name, "': subsample_size ", sub, " must be between 0 and the plate size ", size));
  Message msg;
  msg.type = SiteType::sample;
  msg.name = name;
  msg.fn = std::make_shared<Subsample>(size, sub, options.device());
  msg.value = options.subsample();
  msg.infer.is_subsample = true;
  if (am_i_wrapped()) {
    apply_stack(msg);
  } else if (!msg.value.defined()) {
    msg.value = msg.fn->sample();
  }
  if (msg.value.dim() != 1 || msg.value.size(0) != sub)
    throw ShapeError(cat("plate '", name, "': subsample indices have shape ", shape_str(msg.value.sizes()), ", expected [",
                         sub, "]. Did the model and guide use different subsample sizes?"));
  return msg.value;
}

}  // namespace

Plate::Plate(std::string name, int64_t size, PlateOptions options) {
  indices_ = draw_subsample(name, size, options);
  frame_.name = std::move(name);
  frame_.size = indices_.size(0);
  frame_.full_size = size;
  frame_.dim = plate_dim_allocator().allocate(frame_.name, options.dim());
  enter();
}

Plate::~Plate() {
  if (active()) exit();
  plate_dim_allocator().free(frame_.name, frame_.dim);
}

torch::Tensor Plate::subsample(const torch::Tensor& data, int64_t event_dim) const {
  if (frame_.size == frame_.full_size) return data;
  const int64_t d = frame_.dim - event_dim;
  if (data.dim() < -d || data.size(d) != frame_.full_size)
    throw ShapeError(cat("plate '", frame_.name, "'.subsample: data of shape ", shape_str(data.sizes()),
                         " has no dim of size ", frame_.full_size, " at dim ", d));
  return data.index_select(d, indices_.to(data.device()));
}

void Plate::process(Message& msg) {
  msg.cond_indep_stack.insert(msg.cond_indep_stack.begin(), frame_);
  if (frame_.size != frame_.full_size)
    msg.scale *= static_cast<double>(frame_.full_size) / static_cast<double>(frame_.size);
  if (msg.type == SiteType::sample && !msg.infer.is_subsample) broadcast_to_plates(msg);
}

// ---------------------------------------------------------------- sequential plates

SequentialPlateMessenger::SequentialPlateMessenger(const PlateFrame& frame) : frame_(frame) { enter(); }

SequentialPlateMessenger::~SequentialPlateMessenger() {
  if (active()) exit();
}

void SequentialPlateMessenger::process(Message& msg) {
  msg.cond_indep_stack.insert(msg.cond_indep_stack.begin(), frame_);
  if (frame_.size != frame_.full_size)
    msg.scale *= static_cast<double>(frame_.full_size) / static_cast<double>(frame_.size);
}

PlateRange::PlateRange(std::string name, int64_t size, PlateOptions options) {
  if (options.dim()) throw ValueError(cat("plate_range '", name, "': a sequential plate has no dim"));
  indices_ = draw_subsample(name, size, options);
  auto cpu = indices_.to(torch::kCPU).contiguous();
  index_values_.assign(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel());
  frame_.name = std::move(name);
  frame_.size = indices_.size(0);
  frame_.full_size = size;
  frame_.dim = 0;
  frame_.vectorized = false;
}

int64_t PlateRange::iterator::operator*() {
  range_->scope_.reset();
  range_->scope_.emplace(range_->frame_);
  return range_->index_values_[static_cast<size_t>(position_)];
}

PlateRange::iterator& PlateRange::iterator::operator++() {
  range_->scope_.reset();
  ++position_;
  return *this;
}

void broadcast_to_plates(Message& msg) {
  if (msg.done || !msg.fn) return;
  const Shape& actual = msg.fn->batch_shape();
  // target[i] for dim -(i+1); -1 means "no plate here".
  std::vector<int64_t> target;
  for (const auto& f : msg.cond_indep_stack) {
    if (!f.vectorized) continue;
    const auto pos = static_cast<size_t>(-1 - f.dim);
    if (target.size() <= pos) target.resize(pos + 1, -1);
    const bool has_actual = pos < actual.size();
    const int64_t have = has_actual ? actual[actual.size() - 1 - pos] : 1;
    if (have != 1 && have != f.size)
      throw ShapeError(cat("Shape mismatch inside plate('", f.name, "') at site '", msg.name, "' dim ", f.dim, ": the plate has size ",
                           f.size, " but the distribution ", msg.fn->name(), " has batch shape ", shape_str(actual),
                           " with size ", have, " there"));
    target[pos] = f.size;
  }
  const size_t n = std::max(target.size(), actual.size());
  Shape shape(n);
  for (size_t pos = 0; pos < n; ++pos) {
    const bool has_actual = pos < actual.size();
    const int64_t t = pos < target.size() ? target[pos] : -1;
    shape[n - 1 - pos] = t >= 0 ? t : (has_actual ? actual[actual.size() - 1 - pos] : 1);
  }
  if (shape != actual) msg.fn = msg.fn->expand(shape);
}

}  // namespace ember
