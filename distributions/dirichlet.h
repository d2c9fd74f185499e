#pragma once
/// \file Dirichlet(concentration): distributions over the simplex, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

namespace detail {
/// A Dirichlet draw for each row of `concentration` (last dim) whose backward pass uses
/// ATen's `_dirichlet_grad` (implicit reparameterisation), as torch's `_Dirichlet` does.
torch::Tensor dirichlet_rsample(const torch::Tensor& concentration);
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
  ConstraintPtr support() const override { return constraints::simplex(); }
};

}  // namespace ember::dist
