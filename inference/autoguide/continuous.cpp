// Flattened autoguides (Pyro's AutoContinuous): AutoDiagonalNormal, AutoMultivariateNormal,
// AutoLowRankMultivariateNormal. One auxiliary site carries every latent's unconstrained
// value; each model site is a Delta at its slice, with the bijection's log-det-Jacobian.
#include <cmath>

#include "distributions/delta.h"
#include "distributions/lowrank_multivariate_normal.h"
#include "distributions/multivariate_normal.h"
#include "distributions/normal.h"
#include "inference/autoguide/autoguide.h"
#include "core/error.h"
#include "ppl/param_store.h"
#include "ppl/replay.h"
#include "ppl/primitives.h"

namespace ember::infer::detail {

AutoContinuousCore::AutoContinuousCore(std::string kind_, AutoGuideOptions options)
    : AutoGuideCore(std::move(kind_), std::move(options)) {
  if (kind != "AutoDiagonalNormal" && kind != "AutoMultivariateNormal" && kind != "AutoLowRankMultivariateNormal" &&
      kind != "AutoLaplaceApproximation")
    throw ValueError(cat("AutoContinuous: unknown kind '", kind, "'"));
  supports_subsampling_ = false;
}

int64_t AutoContinuousCore::latent_dim() const {
  int64_t n = 0;
  for (const LatentSite& s : latents()) n += s.init_unconstrained.numel();
  return n;
}

torch::Tensor AutoContinuousCore::init_loc() const {
  std::vector<torch::Tensor> parts;
  for (const LatentSite& s : latents()) parts.push_back(s.init_unconstrained.reshape({-1}));
  if (parts.empty()) throw RuntimeError(cat(kind, " found no latent variables; use an empty guide instead"));
  return torch::cat(parts);
}

ValueMap AutoContinuousCore::unpack_latent(const torch::Tensor& latent) const {
  ValueMap out;
  int64_t pos = 0;
  std::vector<int64_t> batch(latent.sizes().begin(), latent.sizes().end() - 1);
  for (const LatentSite& s : latents()) {
    int64_t n = s.init_unconstrained.numel();
    std::vector<int64_t> shape = batch;
    for (int64_t d : s.init_unconstrained.sizes()) shape.push_back(d);
    out[s.name] = latent.narrow(-1, pos, n).reshape(shape);
    pos += n;
  }
  return out;
}

namespace {

struct FlatParams {
  torch::Tensor loc, scale, scale_tril, cov_factor;
};

}  // namespace

static FlatParams flat_params(const AutoContinuousCore& core, const std::string& prefix, double init_scale,
                              int64_t rank_option, const torch::Tensor& init) {
  FlatParams p;
  const int64_t n = init.size(0);
  p.loc = param(prefix + ".loc", init.clone());
  if (core.kind == "AutoDiagonalNormal") {
    p.scale = param(prefix + ".scale", torch::full_like(init, init_scale), constraints::positive());
  } else if (core.kind == "AutoMultivariateNormal") {
    p.scale = param(prefix + ".scale", torch::full_like(init, init_scale), constraints::positive());
    // Stored unconstrained; only its strictly lower part is used (a unit lower-triangular
    // factor), so the other entries get zero gradients and keep their initial values.
    torch::Tensor raw = param(prefix + ".scale_tril", torch::eye(n, init.options()));
    p.scale_tril = raw.tril(-1) + torch::eye(n, init.options());
  } else if (core.kind == "AutoLaplaceApproximation") {
    // loc only: a point mass
  } else {
    int64_t rank = rank_option > 0 ? rank_option : static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(n))));
    p.scale = param(prefix + ".scale", torch::full_like(init, std::sqrt(0.5) * init_scale), constraints::positive());
    p.cov_factor = param(prefix + ".cov_factor", [&] { return torch::randn({n, rank}, init.options()) / std::sqrt(rank); });
    if (p.cov_factor.size(0) != n)
      throw ShapeError(cat(prefix, ".cov_factor has shape ", shape_str(p.cov_factor.sizes()), ", expected [", n, ", rank]"));
  }
  return p;
}

dist::DistPtr AutoContinuousCore::get_posterior() const {
  FlatParams p = flat_params(*this, prefix_, options_.init_scale(), options_.rank(), init_loc());
  if (kind == "AutoDiagonalNormal") return dist::Normal(p.loc, p.scale).to_event(1);
  if (kind == "AutoLaplaceApproximation") return std::make_shared<dist::Delta>(p.loc, 1);
  if (kind == "AutoMultivariateNormal")
    return std::make_shared<dist::MultivariateNormal>(p.loc, dist::ScaleTril{p.scale.unsqueeze(-1) * p.scale_tril});
  return std::make_shared<dist::LowRankMultivariateNormal>(p.loc, p.cov_factor * p.scale.unsqueeze(-1),
                                                           p.scale * p.scale);
}

ValueMap AutoContinuousCore::sample_sites() {
  InferConfig aux;
  aux.is_auxiliary = true;
  torch::Tensor latent = sample("_" + prefix_ + "_latent", get_posterior(), SampleOptions().infer(aux));
  auto subsamples = draw_subsamples();
  ValueMap unpacked = unpack_latent(latent);
  ValueMap out;
  for (const LatentSite& site : latents_) {
    SitePlates plates(site.frames, subsamples);
    out[site.name] = sample_transformed(site, unpacked.at(site.name), subsamples);
  }
  return out;
}

ValueMap AutoContinuousCore::median() {
  torch::NoGradGuard no_grad;
  FlatParams p = flat_params(*this, prefix_, options_.init_scale(), options_.rank(), init_loc());
  ValueMap u = unpack_latent(p.loc);
  ValueMap out;
  for (const LatentSite& site : latents_) out[site.name] = site.transform->forward(u.at(site.name)).clone();
  return out;
}

ValueMap AutoContinuousCore::quantiles(const std::vector<double>& qs) {
  torch::NoGradGuard no_grad;
  FlatParams p = flat_params(*this, prefix_, options_.init_scale(), options_.rank(), init_loc());
  if (kind == "AutoLaplaceApproximation")
    throw NotImplementedError("AutoLaplaceApproximation has no quantiles (a point estimate); use median(), or "
                              "laplace_approximation(args...).quantiles(qs)");
  torch::Tensor scale = p.scale;  // marginal standard deviations
  if (kind == "AutoMultivariateNormal") scale = (p.scale.unsqueeze(-1) * p.scale_tril).pow(2).sum(-1).sqrt();
  if (kind == "AutoLowRankMultivariateNormal") scale = p.scale * (p.cov_factor.pow(2).sum(-1) + 1).sqrt();
  torch::Tensor q = torch::tensor(qs, p.loc.options()).unsqueeze(-1);
  ValueMap u = unpack_latent(p.loc + scale * torch::erfinv(2 * q - 1) * std::sqrt(2.0));
  ValueMap out;
  for (const LatentSite& site : latents_) out[site.name] = site.transform->forward(u.at(site.name));
  return out;
}

std::pair<torch::Tensor, torch::Tensor> AutoContinuousCore::laplace(const Program& model) {
  if (kind != "AutoLaplaceApproximation") throw RuntimeError(cat(kind, ": laplace() is AutoLaplaceApproximation's"));
  setup(model);
  Trace guide_tr;
  {
    TraceMessenger tm;
    sample_sites();
    guide_tr = tm.get_trace();
  }
  Trace model_tr;
  {
    ReplayMessenger rp(guide_tr);
    TraceMessenger tm;
    model();
    model_tr = tm.get_trace();
  }
  torch::Tensor loss = guide_tr.log_prob_sum() - model_tr.log_prob_sum();
  torch::Tensor u = get_param_store().unconstrained(prefix_ + ".loc");
  torch::Tensor grad = torch::autograd::grad({loss}, {u}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  const int64_t n = u.numel();
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < n; ++i)
    rows.push_back(torch::autograd::grad({grad[i]}, {u}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true)[0]);
  torch::Tensor hessian = torch::stack(rows).detach();
  torch::Tensor cov = torch::inverse(hessian);
  if (!std::get<1>(torch::linalg_cholesky_ex(cov)).eq(0).all().item<bool>())
    throw RuntimeError(cat(kind, ": the Hessian of -log p(x, z) at the current loc is not positive definite: the loc is "
                           "not a local MAP (train longer, or check the model)"));
  return {get_param_store().get(prefix_ + ".loc").detach().clone(), cov};
}

void set_mvn_params(const std::string& prefix, const torch::Tensor& loc, const torch::Tensor& cov) {
  torch::Tensor L = torch::linalg_cholesky(cov);
  torch::Tensor d = L.diagonal();
  get_param_store().set(prefix + ".loc", loc);
  get_param_store().set(prefix + ".scale", d, constraints::positive());
  get_param_store().set(prefix + ".scale_tril", L / d.unsqueeze(-1));
}

}  // namespace ember::infer::detail
