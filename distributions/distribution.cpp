// The Distribution base class, shape helpers, and the generic wrappers
// (Independent, MaskedDistribution, Delta, Unit).
#include "distributions/distribution.h"

#include <atomic>
#include <cmath>
#include <limits>

#include "distributions/delta.h"
#include "distributions/independent.h"
#include "distributions/masked.h"
#include "distributions/unit.h"
#include "distributions/util.h"

namespace ember {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  Shape r(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < r.size(); ++i) {
    int64_t x = i < a.size() ? a[a.size() - 1 - i] : 1;
    int64_t y = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (x != y && x != 1 && y != 1)
      throw ShapeError(cat(what, ": shapes ", shape_str(a), " and ", shape_str(b), " do not broadcast"));
    r[r.size() - 1 - i] = x == 1 ? y : x;
  }
  return r;
}

bool shapes_broadcast(const Shape& a, const Shape& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    int64_t x = a[a.size() - 1 - i], y = b[b.size() - 1 - i];
    if (x != y && x != 1 && y != 1) return false;
  }
  return true;
}

torch::Tensor sum_rightmost(const torch::Tensor& x, int64_t n) {
  if (n <= 0) return x;
  if (x.dim() < n)
    throw ShapeError(cat("sum_rightmost: cannot sum ", n, " dims of a tensor of shape ", shape_str(x.sizes())));
  return x.flatten(x.dim() - n).sum(-1);
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

namespace dist {

namespace {
std::atomic<bool> g_validation{true};
}

void enable_validation(bool on) { g_validation.store(on); }
bool is_validation_enabled() { return g_validation.load(); }

std::ostream& operator<<(std::ostream& os, const Distribution& d) { return os << d.to_string(); }

Shape Distribution::extended_shape(const Shape& sample_shape) const {
  return concat(sample_shape, batch_shape_, event_shape_);
}

torch::Tensor Distribution::sample(const Shape& sample_shape) const {
  if (!has_rsample()) throw NotImplementedError(cat(name(), " does not implement sample"));
  torch::NoGradGuard no_grad;
  return rsample(sample_shape);
}

torch::Tensor Distribution::rsample(const Shape&) const {
  throw NotImplementedError(cat(name(), " has no reparameterised sampler (rsample); use sample()"));
}
torch::Tensor Distribution::mean() const { throw NotImplementedError(cat(name(), " does not implement mean")); }
torch::Tensor Distribution::variance() const { throw NotImplementedError(cat(name(), " does not implement variance")); }
torch::Tensor Distribution::entropy() const { throw NotImplementedError(cat(name(), " does not implement entropy")); }
torch::Tensor Distribution::mode() const { throw NotImplementedError(cat(name(), " does not implement mode")); }
torch::Tensor Distribution::cdf(const torch::Tensor&) const {
  throw NotImplementedError(cat(name(), " does not implement cdf"));
}
torch::Tensor Distribution::icdf(const torch::Tensor&) const {
  throw NotImplementedError(cat(name(), " does not implement icdf"));
}
torch::Tensor Distribution::enumerate_support(bool) const {
  throw NotImplementedError(cat(name(), " does not have an enumerable support"));
}

std::string Distribution::to_string() const {
  return cat(name(), "(batch_shape=", shape_str(batch_shape_), ", event_shape=", shape_str(event_shape_), ")");
}

DistPtr Distribution::to_event(std::optional<int64_t> n) const {
  int64_t total = n ? *n : static_cast<int64_t>(batch_shape_.size());
  // As Pyro: unwrap nested Independents so that one Independent holds every reinterpreted dim.
  DistPtr base = clone();
  while (const auto* ind = dynamic_cast<const Independent*>(base.get())) {
    total += ind->reinterpreted_batch_ndims();
    base = ind->base();
  }
  if (total == 0) return base;
  if (total < 0)
    throw ValueError(cat("to_event(", *n, "): cannot remove more event dims than ", to_string(),
                         " reinterprets (", total - *n, ")"));
  return std::make_shared<Independent>(base, total);
}

DistPtr Distribution::expand_by(const Shape& sample_shape) const {
  return expand(concat(sample_shape, batch_shape_));
}

DistPtr Distribution::mask(const torch::Tensor& m) const { return std::make_shared<MaskedDistribution>(clone(), m); }

DistPtr Distribution::mask(bool m) const { return std::make_shared<MaskedDistribution>(clone(), m); }

DistPtr Distribution::with_validation(bool on) const {
  auto copy = clone();
  copy->validate_args_ = on;
  return copy;
}

void Distribution::validate_sample(const torch::Tensor& value) const {
  if (!validate_args()) return;
  const auto ev = event_dim();
  if (value.dim() < ev)
    throw ShapeError(cat(name(), ".log_prob: value of shape ", shape_str(value.sizes()), " has fewer dims than event shape ",
                         shape_str(event_shape_)));
  for (int64_t i = 0; i < ev; ++i) {
    if (value.size(value.dim() - ev + i) != event_shape_[i])
      throw ShapeError(cat(name(), ".log_prob: the rightmost dims of value shape ", shape_str(value.sizes()),
                           " must match event shape ", shape_str(event_shape_)));
  }
  if (!shapes_broadcast(to_shape(value.sizes()), extended_shape()))
    throw ShapeError(cat(name(), ".log_prob: value shape ", shape_str(value.sizes()),
                         " does not broadcast with batch_shape + event_shape ", shape_str(extended_shape())));
  const auto support_set = support();
  if (constraints::all_satisfied(*support_set, value)) return;
  auto ok = support_set->check(value.detach());
  throw ValueError(cat(name(), ".log_prob: value of shape ", shape_str(value.sizes()), " is outside the support ",
                         support()->name(), first_false_index(ok, value),
                         ". Pass validate_args=false or call ember::dist::enable_validation(false) to allow it."));
}

// ---------------------------------------------------------------- util.h

torch::TensorOptions common_options(const std::vector<TensorArg>& args) {
  for (const auto& a : args)
    if (a.is_tensor() && a.tensor().is_floating_point()) return a.tensor().options();
  for (const auto& a : args)
    if (a.is_tensor()) return a.tensor().options().dtype(torch::get_default_dtype());
  return torch::TensorOptions().dtype(torch::get_default_dtype());
}

std::vector<torch::Tensor> broadcast_all(const std::vector<TensorArg>& args) {
  auto options = common_options(args);
  std::vector<torch::Tensor> ts;
  ts.reserve(args.size());
  for (const auto& a : args) {
    auto t = a.as_tensor(options);
    if (!t.is_floating_point()) t = t.to(options.dtype());
    ts.push_back(t);
  }
  if (ts.size() <= 1) return ts;
  Shape shape;
  for (const auto& t : ts) shape = broadcast_shapes(shape, to_shape(t.sizes()), "broadcast_all");
  for (auto& t : ts)
    if (t.sizes() != c10::IntArrayRef(shape)) t = t.expand(shape);  // no view (and no autograd node) when it fits
  return ts;
}

std::string first_false_index(const torch::Tensor& ok, const torch::Tensor& values) {
  auto bad = (~ok).nonzero();
  if (bad.size(0) == 0) return "";
  auto idx = bad[0].to(torch::kCPU).contiguous();
  Shape index(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
  std::string s = cat(" at index ", shape_str(index));
  if (values.defined() && values.dim() == ok.dim()) {
    torch::Tensor v = values.detach();
    for (auto i : index) v = v[i];
    s += cat(" (value ", v.item<double>(), ")");
  }
  return s;
}

torch::Tensor clamp_probs(const torch::Tensor& p) {
  double eps = finfo_eps(p.scalar_type());
  return p.clamp(eps, 1 - eps);
}

torch::Tensor probs_to_logits_binary(const torch::Tensor& probs) {
  auto p = clamp_probs(probs);
  return p.log() - (-p).log1p();
}

torch::Tensor normalize_logits(const torch::Tensor& logits) { return logits - logits.logsumexp(-1, true); }

torch::Tensor probs_to_logits(const torch::Tensor& probs) { return clamp_probs(probs).log(); }

double finfo_eps(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kDouble: return std::numeric_limits<double>::epsilon();
    case torch::kHalf: return 0.0009765625;
    case torch::kBFloat16: return 0.0078125;
    default: return std::numeric_limits<float>::epsilon();
  }
}

double finfo_tiny(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kDouble: return std::numeric_limits<double>::min();
    case torch::kHalf: return 6.103515625e-05;
    case torch::kBFloat16: return 1.1754943508222875e-38;
    default: return std::numeric_limits<float>::min();
  }
}

torch::Tensor lbeta(const torch::Tensor& a, const torch::Tensor& b) { return a.lgamma() + b.lgamma() - (a + b).lgamma(); }

// ---------------------------------------------------------------- Independent

Independent::Independent(DistPtr base, int64_t n, std::optional<bool> validate_args) : base_(std::move(base)), n_(n) {
  const auto& b = base_->batch_shape();
  if (n < 0 || n > static_cast<int64_t>(b.size()))
    throw ShapeError(cat("Independent: cannot reinterpret ", n, " batch dims of ", base_->to_string(), " with batch shape ",
                         shape_str(b)));
  validate_args_ = validate_args;
  Shape batch(b.begin(), b.end() - n);
  Shape event = concat(Shape(b.end() - n, b.end()), base_->event_shape());
  set_shapes(std::move(batch), std::move(event));
}

torch::Tensor Independent::log_prob(const torch::Tensor& value) const {
  if (validate_args_) validate_sample(value);
  return sum_rightmost(base_->log_prob(value), n_);
}

torch::Tensor Independent::entropy() const { return sum_rightmost(base_->entropy(), n_); }

torch::Tensor Independent::enumerate_support(bool expand) const {
  if (n_ > 0) throw NotImplementedError("Independent with reinterpreted dims does not enumerate its support");
  return base_->enumerate_support(expand);
}

DistPtr Independent::expand(const Shape& batch_shape) const {
  Shape base_batch = concat(batch_shape, Shape(base_->batch_shape().end() - n_, base_->batch_shape().end()));
  auto r = std::make_shared<Independent>(base_->expand(base_batch), n_);
  r->validate_args_ = validate_args_;
  return r;
}

DistPtr Independent::to(const torch::TensorOptions& options) const {
  return std::make_shared<Independent>(base_->to(options), n_, validate_args_);
}

std::string Independent::to_string() const { return cat("Independent(", base_->to_string(), ", ", n_, ")"); }

// ---------------------------------------------------------------- MaskedDistribution

MaskedDistribution::MaskedDistribution(DistPtr base, torch::Tensor mask) : base_(std::move(base)), mask_(std::move(mask)) {
  if (!mask_.defined() || mask_.scalar_type() != torch::kBool)
    throw ValueError(cat("mask: expected a bool tensor, got ", mask_.defined() ? mask_.dtype().name() : "an undefined tensor"));
  // As Pyro: the mask and the base are both expanded to their broadcast batch shape.
  const Shape mask_shape = to_shape(mask_.sizes());
  if (!shapes_broadcast(mask_shape, base_->batch_shape()))
    throw ShapeError(cat("mask: mask of shape ", shape_str(mask_shape), " does not broadcast with batch shape ",
                         shape_str(base_->batch_shape()), " of ", base_->to_string()));
  const Shape batch = broadcast_shapes(mask_shape, base_->batch_shape(), "mask");
  if (mask_shape != batch) mask_ = mask_.expand(batch);
  if (base_->batch_shape() != batch) base_ = base_->expand(batch);
  set_shapes(base_->batch_shape(), base_->event_shape());
}

MaskedDistribution::MaskedDistribution(DistPtr base, bool mask) : base_(std::move(base)), constant_(mask) {
  set_shapes(base_->batch_shape(), base_->event_shape());
}

torch::Tensor MaskedDistribution::mask_tensor() const {
  if (mask_.defined()) return mask_;
  return torch::scalar_tensor(*constant_, torch::TensorOptions().dtype(torch::kBool).device(options().device()));
}

torch::Tensor MaskedDistribution::log_prob(const torch::Tensor& value) const {
  if (constant_ == false) {
    // Pyro skips the base entirely: zeros of the broadcast batch shape.
    const int64_t value_batch_dims = std::max<int64_t>(0, value.dim() - event_dim());
    const Shape value_batch(value.sizes().begin(), value.sizes().begin() + value_batch_dims);
    const auto shape = broadcast_shapes(base_->batch_shape(), value_batch, "MaskedDistribution.log_prob");
    return torch::zeros(shape, options().device(value.device()));
  }
  auto lp = base_->log_prob(value);
  if (constant_) return lp;
  return torch::where(mask_, lp, torch::zeros({}, lp.options()));
}

DistPtr MaskedDistribution::expand(const Shape& batch_shape) const {
  if (constant_) return std::make_shared<MaskedDistribution>(base_->expand(batch_shape), *constant_);
  return std::make_shared<MaskedDistribution>(base_->expand(batch_shape), mask_.expand(batch_shape));
}

DistPtr MaskedDistribution::to(const torch::TensorOptions& options) const {
  if (constant_) return std::make_shared<MaskedDistribution>(base_->to(options), *constant_);
  return std::make_shared<MaskedDistribution>(base_->to(options), mask_.to(options.device()));
}

std::string MaskedDistribution::to_string() const {
  if (constant_) return cat("MaskedDistribution(", base_->to_string(), ", mask: ", *constant_ ? "true" : "false", ")");
  return cat("MaskedDistribution(", base_->to_string(), ", mask: ", shape_str(mask_.sizes()), ")");
}

// ---------------------------------------------------------------- Delta

Delta::Delta(torch::Tensor v_, int64_t event_dim, std::optional<bool> validate)
    : Delta(v_, torch::zeros({}, v_.options()), event_dim, validate) {}

Delta::Delta(torch::Tensor v_, torch::Tensor log_density_, int64_t event_dim, std::optional<bool> validate)
    : v(std::move(v_)), log_density(std::move(log_density_)) {
  if (event_dim < 0 || event_dim > v.dim())
    throw ShapeError(cat("Delta: event_dim ", event_dim, " is out of range for v of shape ", shape_str(v.sizes())));
  Shape shape = to_shape(v.sizes());
  Shape batch(shape.begin(), shape.end() - event_dim), event(shape.end() - event_dim, shape.end());
  log_density = log_density.expand(batch);
  init(std::move(batch), std::move(event), validate);
}

torch::Tensor Delta::rsample(const Shape& sample_shape) const { return v.expand(extended_shape(sample_shape)); }

torch::Tensor Delta::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto lp = (value == v).to(v.dtype()).log();
  return sum_rightmost(lp, event_dim()) + log_density;
}

// ---------------------------------------------------------------- Unit

Unit::Unit(torch::Tensor lf) : log_factor(std::move(lf)) { init(to_shape(log_factor.sizes()), {0}, false); }

torch::Tensor Unit::rsample(const Shape& sample_shape) const { return log_factor.new_empty(extended_shape(sample_shape)); }

torch::Tensor Unit::log_prob(const torch::Tensor& value) const {
  Shape value_batch(value.sizes().begin(), value.sizes().end() - std::min<int64_t>(1, value.dim()));
  return log_factor.expand(broadcast_shapes(batch_shape_, value_batch, "Unit.log_prob"));
}

}  // namespace dist
}  // namespace ember
