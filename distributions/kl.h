#pragma once
/// \file The KL-divergence registry: `kl_divergence(p, q)` and `register_kl<P, Q>(fn)`.
///
/// KL(p || q) is looked up by the dynamic types of `p` and `q`: an exact `typeid` match first,
/// else (as torch) the most specific pair registered for parent types of `p` and `q` (so a
/// `Chi2`, which is a `Gamma`, uses the (Gamma, Gamma) KL); the p side is compared first when
/// two matches are each more specific on one side.
/// Built in: (Normal, Normal), (Bernoulli, Bernoulli), (Categorical, Categorical),
/// (OneHotCategorical, OneHotCategorical), (Beta, Beta), (Gamma, Gamma),
/// (Dirichlet, Dirichlet), (Exponential, Exponential), (Laplace, Laplace),
/// (Poisson, Poisson), (Uniform, Uniform), (MultivariateNormal, MultivariateNormal),
/// (Independent, Independent) by peeling the reinterpreted dims both share and summing them
/// after the KL of the rest (as Pyro), and (MaskedDistribution, MaskedDistribution) with the
/// two masks and-ed (masked entries 0; as Pyro).
/// Added with issue #15: (LowRankMultivariateNormal, LowRankMultivariateNormal),
/// (LowRankMultivariateNormal, MultivariateNormal), (MultivariateNormal, LowRankMultivariateNormal),
/// (LogNormal, LogNormal), (HalfNormal, HalfNormal), (Binomial, Binomial) (inf where p's
/// total_count exceeds q's; NotImplementedError where it is smaller, as torch),
/// (Geometric, Geometric), (Gumbel, Gumbel), (Pareto, Pareto); Chi2 through (Gamma, Gamma).
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

/// Registers (or replaces) the KL for the dynamic type pair (p_type, q_type); found only for
/// exactly these types (use `register_kl<P, Q>` to have subclasses find it too).
void register_kl(std::type_index p_type, std::type_index q_type, KLFn fn);

/// What KL lookup knows about a registered distribution class: its type, a test for its
/// instances (subclasses included), and a runtime test of whether another registered class
/// derives from it (a null `const T*` thrown by one and caught as the other's pointer).
struct KLType {
  std::type_index type;
  std::function<bool(const Distribution&)> is_instance;
  std::function<void()> throw_null;
  std::function<bool(const std::function<void()>&)> catches;

  /// The descriptor of class T (derived from Distribution).
  template <class T>
  static KLType of() {
    return KLType{std::type_index(typeid(T)),
                  [](const Distribution& d) { return dynamic_cast<const T*>(&d) != nullptr; },
                  [] { throw static_cast<const T*>(nullptr); },
                  [](const std::function<void()>& thrower) {
                    try {
                      thrower();
                    } catch (const T*) {
                      return true;
                    } catch (const Distribution*) {
                      return false;  // a pointer to an unrelated class: not derived from T
                    }
                    return false;
                  }};
  }
};

/// Registers (or replaces) the KL for classes P and Q (and, through parent-type lookup, their subclasses).
void register_kl(KLType p, KLType q, KLFn fn);

/// Whether a KL is registered for this pair of dynamic types.
bool has_kl(const Distribution& p, const Distribution& q);

/// Registers KL(P || Q): `register_kl<MyDist, Normal>([](const MyDist& p, const Normal& q) {...})`.
template <class P, class Q, class F>
void register_kl(F fn) {
  register_kl(KLType::of<P>(), KLType::of<Q>(),
              [fn](const Distribution& p, const Distribution& q) {
                return fn(static_cast<const P&>(p), static_cast<const Q&>(q));
              });
}

}  // namespace ember::dist
