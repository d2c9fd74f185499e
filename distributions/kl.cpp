// The KL-divergence registry and the analytic pairs.
#include <torch/nn/functional/activation.h>

#include "distributions/kl.h"

#include <limits>
#include <map>
#include <optional>
#include <mutex>

#include "distributions/bernoulli.h"
#include "distributions/beta.h"
#include "distributions/binomial.h"
#include "distributions/categorical.h"
#include "distributions/dirichlet.h"
#include "distributions/exponential.h"
#include "distributions/gamma.h"
#include "distributions/geometric.h"
#include "distributions/gumbel.h"
#include "distributions/half_normal.h"
#include "distributions/independent.h"
#include "distributions/laplace.h"
#include "distributions/log_normal.h"
#include "distributions/lowrank_multivariate_normal.h"
#include "distributions/masked.h"
#include "distributions/multivariate_normal.h"
#include "distributions/normal.h"
#include "distributions/one_hot_categorical.h"
#include "distributions/pareto.h"
#include "distributions/poisson.h"
#include "distributions/uniform.h"

namespace ember::dist {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

torch::Tensor inf_where(const torch::Tensor& cond, const torch::Tensor& x) {
  return torch::where(cond, torch::full({}, kInf, x.options()), x);
}
torch::Tensor zero_where(const torch::Tensor& cond, const torch::Tensor& x) {
  return torch::where(cond, torch::zeros({}, x.options()), x);
}

torch::Tensor kl_normal(const Normal& p, const Normal& q) {
  auto var_ratio = (p.scale / q.scale).pow(2);
  auto t1 = ((p.loc - q.loc) / q.scale).pow(2);
  return 0.5 * (var_ratio + t1 - 1 - var_ratio.log());
}

torch::Tensor kl_bernoulli(const Bernoulli& p, const Bernoulli& q) {
  namespace F = torch::nn::functional;
  auto t1 = p.probs * (F::softplus(-q.logits) - F::softplus(-p.logits));
  t1 = zero_where(p.probs == 0, inf_where(q.probs == 0, t1));
  auto t2 = (1 - p.probs) * (F::softplus(q.logits) - F::softplus(p.logits));
  t2 = zero_where(p.probs == 1, inf_where(q.probs == 1, t2));
  return t1 + t2;
}

torch::Tensor kl_categorical_impl(const torch::Tensor& pp, const torch::Tensor& pl, const torch::Tensor& qp,
                                  const torch::Tensor& ql) {
  auto t = pp * (pl - ql);
  auto shape = broadcast_shapes(to_shape(t.sizes()), to_shape(qp.sizes()), "kl_divergence");
  t = t.expand(shape);
  t = zero_where((pp == 0).expand(shape), inf_where((qp == 0).expand(shape), t));
  return t.sum(-1);
}

torch::Tensor kl_beta(const Beta& p, const Beta& q) {
  auto sum_p = p.concentration1 + p.concentration0;
  auto sum_q = q.concentration1 + q.concentration0;
  auto t1 = q.concentration1.lgamma() + q.concentration0.lgamma() + sum_p.lgamma();
  auto t2 = p.concentration1.lgamma() + p.concentration0.lgamma() + sum_q.lgamma();
  auto t3 = (p.concentration1 - q.concentration1) * torch::digamma(p.concentration1);
  auto t4 = (p.concentration0 - q.concentration0) * torch::digamma(p.concentration0);
  auto t5 = (sum_q - sum_p) * torch::digamma(sum_p);
  return t1 - t2 + t3 + t4 + t5;
}

torch::Tensor kl_gamma(const Gamma& p, const Gamma& q) {
  auto t1 = q.concentration * (p.rate / q.rate).log();
  auto t2 = torch::lgamma(q.concentration) - torch::lgamma(p.concentration);
  auto t3 = (p.concentration - q.concentration) * torch::digamma(p.concentration);
  auto t4 = (q.rate - p.rate) * (p.concentration / p.rate);
  return t1 + t2 + t3 + t4;
}

torch::Tensor kl_dirichlet(const Dirichlet& p, const Dirichlet& q) {
  auto sum_p = p.concentration.sum(-1);
  auto sum_q = q.concentration.sum(-1);
  auto t1 = sum_p.lgamma() - sum_q.lgamma();
  auto t2 = (p.concentration.lgamma() - q.concentration.lgamma()).sum(-1);
  auto t3 = p.concentration - q.concentration;
  auto t4 = p.concentration.digamma() - sum_p.digamma().unsqueeze(-1);
  return t1 - t2 + (t3 * t4).sum(-1);
}

torch::Tensor kl_exponential(const Exponential& p, const Exponential& q) {
  auto ratio = q.rate / p.rate;
  return -ratio.log() + ratio - 1;
}

torch::Tensor kl_laplace(const Laplace& p, const Laplace& q) {
  auto scale_ratio = p.scale / q.scale;
  auto loc_abs_diff = (p.loc - q.loc).abs();
  return -scale_ratio.log() + loc_abs_diff / q.scale + scale_ratio * torch::exp(-loc_abs_diff / p.scale) - 1;
}

torch::Tensor kl_poisson(const Poisson& p, const Poisson& q) {
  return p.rate * (p.rate.log() - q.rate.log()) - (p.rate - q.rate);
}

torch::Tensor kl_uniform(const Uniform& p, const Uniform& q) {
  auto r = ((q.high - q.low) / (p.high - p.low)).log();
  return inf_where((q.low > p.low) | (q.high < p.high), r);
}

torch::Tensor kl_mvn(const MultivariateNormal& p, const MultivariateNormal& q) {
  if (p.event_shape() != q.event_shape())
    throw ShapeError(cat("kl_divergence(MultivariateNormal, MultivariateNormal): event shapes ", shape_str(p.event_shape()),
                         " and ", shape_str(q.event_shape()), " differ"));
  const auto n = p.event_shape()[0];
  auto half_term1 = q.scale_tril.diagonal(0, -2, -1).log().sum(-1) - p.scale_tril.diagonal(0, -2, -1).log().sum(-1);
  Shape batch = broadcast_shapes(p.batch_shape(), q.batch_shape(), "kl_divergence");
  auto ql = q.scale_tril.expand(concat(batch, {n, n}));
  auto pl = p.scale_tril.expand(concat(batch, {n, n}));
  auto term2 = torch::linalg_solve_triangular(ql, pl, /*upper=*/false).pow(2).flatten(-2).sum(-1);
  auto term3 = batch_mahalanobis(q.scale_tril, q.loc - p.loc);
  return half_term1 + 0.5 * (term2 + term3 - n);
}

// ---------------------------------------------------------------- pairs added with issue #15

constexpr double kEuler = 0.57721566490153286061;

torch::Tensor kl_lognormal(const LogNormal& p, const LogNormal& q) {
  // KL is invariant under the shared bijection exp: that of the underlying Normals.
  return kl_normal(Normal(p.loc, p.scale, false), Normal(q.loc, q.scale, false));
}

torch::Tensor kl_halfnormal(const HalfNormal& p, const HalfNormal& q) {
  auto var_ratio = (p.scale / q.scale).pow(2);
  return 0.5 * (var_ratio - 1 - var_ratio.log());
}

torch::Tensor kl_binomial(const Binomial& p, const Binomial& q) {
  if ((p.total_count < q.total_count).any().item<bool>())
    throw NotImplementedError(cat("kl_divergence(Binomial, Binomial): p's total_count is below q's somewhere; "
                                  "that KL is not implemented (as in torch)"));
  auto kl = p.total_count * (p.probs * (p.logits - q.logits) + (-p.probs).log1p() - (-q.probs).log1p());
  return inf_where(p.total_count > q.total_count, kl);
}

torch::Tensor kl_geometric(const Geometric& p, const Geometric& q) {
  return -p.entropy() - torch::log1p(-q.probs) / p.probs - q.logits;
}

torch::Tensor kl_gumbel(const Gumbel& p, const Gumbel& q) {
  auto ct1 = p.scale / q.scale, ct2 = q.loc / q.scale, ct3 = p.loc / q.scale;
  auto t1 = -ct1.log() - ct2 + ct3;
  auto t2 = ct1 * kEuler;
  auto t3 = torch::exp(ct2 + (1 + ct1).lgamma() - ct3);
  return t1 + t2 + t3 - (1 + kEuler);
}

torch::Tensor kl_pareto(const Pareto& p, const Pareto& q) {
  auto scale_ratio = p.scale / q.scale, alpha_ratio = q.alpha / p.alpha;
  auto r = q.alpha * scale_ratio.log() - alpha_ratio.log() + alpha_ratio - 1;
  return inf_where(p.scale < q.scale, r);  // p puts mass below q's support
}

// Low-rank Gaussians through their dense covariance (O(n^3), exact).
MultivariateNormal dense(const LowRankMultivariateNormal& d) {
  return MultivariateNormal(d.loc, CovarianceMatrix{d.covariance_matrix()}, false);
}

struct KLEntry {
  std::optional<KLType> p, q;  // absent for pairs registered by type_index only (exact match)
  KLFn fn;
};

struct KLRegistry {
  std::mutex mutex;
  std::map<std::pair<std::type_index, std::type_index>, KLEntry> fns;
  KLRegistry();
};

// Whether registered class `derived` is `base` or derives from it.
bool derives(const KLType& derived, const KLType& base) {
  return derived.type == base.type || base.catches(derived.throw_null);
}

KLRegistry& registry() {
  static KLRegistry r;
  return r;
}

template <class P, class Q, class F>
void add(KLRegistry& r, F fn) {
  r.fns[{std::type_index(typeid(P)), std::type_index(typeid(Q))}] =
      KLEntry{KLType::of<P>(), KLType::of<Q>(), [fn](const Distribution& p, const Distribution& q) {
                return fn(static_cast<const P&>(p), static_cast<const Q&>(q));
              }};
}

KLRegistry::KLRegistry() {
  add<Normal, Normal>(*this, kl_normal);
  add<Bernoulli, Bernoulli>(*this, kl_bernoulli);
  add<Categorical, Categorical>(*this, [](const Categorical& p, const Categorical& q) {
    return kl_categorical_impl(p.probs, p.logits, q.probs, q.logits);
  });
  add<OneHotCategorical, OneHotCategorical>(*this, [](const OneHotCategorical& p, const OneHotCategorical& q) {
    return kl_categorical_impl(p.probs, p.logits, q.probs, q.logits);
  });
  add<Beta, Beta>(*this, kl_beta);
  add<Gamma, Gamma>(*this, kl_gamma);
  add<Dirichlet, Dirichlet>(*this, kl_dirichlet);
  add<Exponential, Exponential>(*this, kl_exponential);
  add<Laplace, Laplace>(*this, kl_laplace);
  add<Poisson, Poisson>(*this, kl_poisson);
  add<Uniform, Uniform>(*this, kl_uniform);
  add<MultivariateNormal, MultivariateNormal>(*this, kl_mvn);
  add<LowRankMultivariateNormal, LowRankMultivariateNormal>(
      *this, [](const LowRankMultivariateNormal& p, const LowRankMultivariateNormal& q) { return kl_mvn(dense(p), dense(q)); });
  add<LowRankMultivariateNormal, MultivariateNormal>(
      *this, [](const LowRankMultivariateNormal& p, const MultivariateNormal& q) { return kl_mvn(dense(p), q); });
  add<MultivariateNormal, LowRankMultivariateNormal>(
      *this, [](const MultivariateNormal& p, const LowRankMultivariateNormal& q) { return kl_mvn(p, dense(q)); });
  add<LogNormal, LogNormal>(*this, kl_lognormal);
  add<HalfNormal, HalfNormal>(*this, kl_halfnormal);
  add<Binomial, Binomial>(*this, kl_binomial);
  add<Geometric, Geometric>(*this, kl_geometric);
  add<Gumbel, Gumbel>(*this, kl_gumbel);
  add<Pareto, Pareto>(*this, kl_pareto);
  // As Pyro: the masks are and-ed; a constant false mask skips the base KL.
  add<MaskedDistribution, MaskedDistribution>(*this, [](const MaskedDistribution& p, const MaskedDistribution& q) {
    const auto pc = p.constant_mask(), qc = q.constant_mask();
    if (pc == false || qc == false) {
      const Shape batch = broadcast_shapes(p.batch_shape(), q.batch_shape(), "kl_divergence");
      return torch::zeros(batch, p.options());
    }
    auto kl = kl_divergence(*p.base(), *q.base());
    if (pc && qc) return kl;
    const torch::Tensor mask = pc ? q.mask_tensor() : qc ? p.mask_tensor() : p.mask_tensor() & q.mask_tensor();
    return torch::where(mask, kl, torch::zeros({}, kl.options()));
  });
  // As Pyro: the dims both reinterpret are peeled off and summed after the KL of what is left.
  add<Independent, Independent>(*this, [](const Independent& p, const Independent& q) {
    const int64_t shared = std::min(p.reinterpreted_batch_ndims(), q.reinterpreted_batch_ndims());
    const int64_t p_rest = p.reinterpreted_batch_ndims() - shared, q_rest = q.reinterpreted_batch_ndims() - shared;
    const DistPtr p_inner = p_rest ? std::make_shared<Independent>(p.base(), p_rest) : p.base();
    const DistPtr q_inner = q_rest ? std::make_shared<Independent>(q.base(), q_rest) : q.base();
    return sum_rightmost(kl_divergence(*p_inner, *q_inner), shared);
  });
}

KLFn lookup(const Distribution& p, const Distribution& q) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.fns.find({std::type_index(typeid(p)), std::type_index(typeid(q))});
  if (it != r.fns.end()) return it->second.fn;
  // As torch: among pairs registered for parent types, the most specific one, p compared first.
  const KLEntry* best = nullptr;
  for (const auto& [types, entry] : r.fns) {
    if (!entry.p || !entry.p->is_instance(p) || !entry.q->is_instance(q)) continue;
    if (!best) {
      best = &entry;
      continue;
    }
    const bool p_narrower = derives(*entry.p, *best->p) && entry.p->type != best->p->type;
    const bool same_p = entry.p->type == best->p->type;
    if (p_narrower || (same_p && derives(*entry.q, *best->q))) best = &entry;
  }
  return best ? best->fn : KLFn{};
}
}  // namespace

torch::Tensor kl_divergence(const Distribution& p, const Distribution& q) {
  auto fn = lookup(p, q);
  if (!fn)
    throw NotImplementedError(cat("kl_divergence: no KL is registered for the pair (", p.name(), ", ", q.name(),
                                  ") [p = ", p.to_string(), ", q = ", q.to_string(),
                                  "]; register one with ember::dist::register_kl<P, Q>(fn)"));
  return fn(p, q);
}

torch::Tensor kl_divergence(const DistPtr& p, const DistPtr& q) {
  if (!p || !q) throw ValueError("kl_divergence: null distribution");
  return kl_divergence(*p, *q);
}

bool has_kl(const Distribution& p, const Distribution& q) { return static_cast<bool>(lookup(p, q)); }

void register_kl(std::type_index p_type, std::type_index q_type, KLFn fn) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.fns[{p_type, q_type}] = KLEntry{std::nullopt, std::nullopt, std::move(fn)};
}

void register_kl(KLType p, KLType q, KLFn fn) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const std::pair<std::type_index, std::type_index> key{p.type, q.type};
  r.fns[key] = KLEntry{std::move(p), std::move(q), std::move(fn)};
}

}  // namespace ember::dist
