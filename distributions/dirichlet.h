#pragma once
/// \file Dirichlet(concentration): distributions over the simplex, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

namespace detail {
/// A Dirichlet draw for each row of `concentration` (last dim) whose backward pass uses
/// ATen's `_dirichlet_grad` (implicit reparameterisation), as torch's `_Dirichlet` does.
torch::Tensor dirichlet_rsample(const torch::Tensor& concentration);
/// torch's Dirichlet mode: (alpha - 1)+ normalised; where every alpha < 1, the one-hot vector
/// at the argmax of that (NaN) row, as torch.
inline torch::Tensor dirichlet_mode(const torch::Tensor& concentration) {
  auto shifted = (concentration - 1).clamp_min(0);
  auto mode = shifted / shifted.sum(-1, true);
  auto all_below_one = (concentration < 1).all(-1, true);
  auto vertex = torch::one_hot(mode.argmax(-1), concentration.size(-1)).to(mode.dtype());
  return torch::where(all_below_one, vertex, mode);
}
}  // namespace detail

/// Dirichlet distribution with concentration vector `concentration` (last dim = event).
class Dirichlet : public DistributionMixin<Dirichlet> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Dirichlet, (torch::Tensor, concentration));

  /// `concentration` has shape `batch_shape + [K]`, K >= 1, entries positive.
  explicit Dirichlet(torch::Tensor concentration, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::independent(constraints::positive(), 1); }
  std::string name() const override { return "Dirichlet"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return concentration / concentration.sum(-1, true); }
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return detail::dirichlet_mode(concentration); }
  ConstraintPtr support() const override { return constraints::simplex(); }
};

}  // namespace ember::dist
