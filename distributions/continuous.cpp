// Continuous distributions.
#include <cmath>

#include "distributions/normal.h"

namespace ember::dist {

namespace {
constexpr double kLogSqrt2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))
constexpr double kSqrt2 = 1.41421356237309504880;
}  // namespace

// ---------------------------------------------------------------- Normal

Normal::Normal(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(to_shape(loc.sizes()), {}, validate);
}

ConstraintPtr Normal::arg_constraint(std::string_view p) {
  return p == "scale" ? constraints::positive() : constraints::real();
}

torch::Tensor Normal::rsample(const Shape& sample_shape) const {
  auto eps = torch::randn(extended_shape(sample_shape), loc.options());
  return loc + eps * scale;
}

torch::Tensor Normal::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  return at::normal(loc.expand(extended_shape(sample_shape)), scale.expand(extended_shape(sample_shape)));
}

torch::Tensor Normal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = (value - loc) / scale;
  return -0.5 * z * z - scale.log() - kLogSqrt2Pi;
}

torch::Tensor Normal::entropy() const { return 0.5 + kLogSqrt2Pi + scale.log(); }

torch::Tensor Normal::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return 0.5 * (1 + torch::erf((value - loc) / (scale * kSqrt2)));
}

torch::Tensor Normal::icdf(const torch::Tensor& prob) const { return loc + scale * torch::erfinv(2 * prob - 1) * kSqrt2; }

}  // namespace ember::dist
