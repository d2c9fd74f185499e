#pragma once
/// \file The KL-divergence registry: `kl_divergence(p, q)` and `register_kl<P, Q>(fn)`.
///
/// KL(p || q) is looked up by the dynamic types of `p` and `q` (exact `typeid` match).
/// Built in: (Normal, Normal), (Bernoulli, Bernoulli), (Categorical, Categorical),
/// (OneHotCategorical, OneHotCategorical), (Beta, Beta), (Gamma, Gamma),
/// (Dirichlet, Dirichlet), (Exponential, Exponential), (Laplace, Laplace),
/// (Poisson, Poisson), (Uniform, Uniform), (MultivariateNormal, MultivariateNormal),
/// (Independent, Independent) by peeling the reinterpreted dims both share and summing them
/// after the KL of the rest (as Pyro), and (MaskedDistribution, MaskedDistribution) with the
/// two masks and-ed (masked entries 0; as Pyro).
/// User code adds pairs with `register_kl`.

#include <functional>
#include <typeindex>

#include "distributions/distribution.h"

namespace ember::dist {

/// A KL implementation on type-erased distributions.
using KLFn = std::function<torch::Tensor(const Distribution& p, const Distribution& q)>;

/// KL(p || q), of shape broadcast(p.batch_shape, q.batch_shape). Throws NotImplementedError
/// naming both distributions if no implementation is registered for their types.
torch::Tensor kl_divergence(const Distribution& p, const Distribution& q);
/// As above, for shared handles.
torch::Tensor kl_divergence(const DistPtr& p, const DistPtr& q);

/// Registers (or replaces) the KL for the dynamic type pair (p_type, q_type).
void register_kl(std::type_index p_type, std::type_index q_type, KLFn fn);

/// Whether a KL is registered for this pair of dynamic types.
bool has_kl(const Distribution& p, const Distribution& q);

/// Registers KL(P || Q): `register_kl<MyDist, Normal>([](const MyDist& p, const Normal& q) {...})`.
template <class P, class Q, class F>
void register_kl(F fn) {
  register_kl(std::type_index(typeid(P)), std::type_index(typeid(Q)),
              [fn](const Distribution& p, const Distribution& q) {
                return fn(static_cast<const P&>(p), static_cast<const Q&>(q));
              });
}

}  // namespace ember::dist
