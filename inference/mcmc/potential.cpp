// The potential energy of a conditioned model in unconstrained space (Pyro's initialize_model).
#include <torch/autograd.h>

#include <cmath>

#include "inference/mcmc/mcmc.h"
#include "ppl/condition.h"
#include "core/error.h"
#include "ppl/seed.h"
#include "ppl/trace.h"

namespace ember::infer::mcmc {

namespace {
std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
}  // namespace

Potential::Potential(Model model, uint64_t seed) : model_(std::move(model)) {
  if (!model_) throw ValueError("mcmc::Potential: the model is empty");
  Trace prototype;
  {
    SeedMessenger seeded(seed);
    TraceMessenger tm;
    model_();
    prototype = tm.get_trace();
  }
  int64_t offset = 0;
  for (const auto& name : prototype.stochastic_nodes()) {
    const Site& site = prototype.at(name);
    if (site.fn->is_discrete())
      throw ValueError(cat("mcmc: latent site '", name, "' is discrete (", site.fn->name(),
                           "); HMC/NUTS need continuous latents: observe it, or marginalise it in the model "
                           "(enumerating discrete latents out is not supported by Ember's MCMC yet)"));
    LatentSite ls;
    ls.name = name;
    ls.shape = site.value.sizes().vec();
    ls.transform = transforms::biject_to(site.fn->support());
    ls.unconstrained_shape = ls.transform->inverse_shape(ls.shape);
    ls.numel = 1;
    for (auto d : ls.unconstrained_shape) ls.numel *= d;
    ls.offset = offset;
    offset += ls.numel;
    if (sites_.empty()) options_ = site.value.options();
    sites_.push_back(std::move(ls));
  }
  dim_ = offset;
  if (sites_.empty()) options_ = torch::TensorOptions().dtype(torch::kFloat64);
}

ValueMap Potential::unflatten(const torch::Tensor& z) const {
  if (z.dim() != 1 || z.size(0) != dim_)
    throw ShapeError(cat("mcmc::Potential: expected a flat vector of ", dim_, " unconstrained values, got shape ",
                         shape_str(z.sizes())));
  ValueMap out;
  for (const auto& s : sites_) out[s.name] = z.narrow(0, s.offset, s.numel).reshape(s.unconstrained_shape);
  return out;
}

ValueMap Potential::constrain(const torch::Tensor& z) const {
  ValueMap u = unflatten(z), out;
  for (const auto& s : sites_) out[s.name] = s.transform->forward(u.at(s.name));
  return out;
}

torch::Tensor Potential::unconstrain(const ValueMap& values) const {
  std::vector<torch::Tensor> parts;
  for (const auto& s : sites_) {
    auto it = values.find(s.name);
    if (it == values.end()) throw ValueError(cat("mcmc::Potential::unconstrain: no value for latent site '", s.name, "'"));
    if (it->second.sizes().vec() != s.shape)
      throw ShapeError(cat("mcmc: value of site '", s.name, "' has shape ", shape_str(it->second.sizes()),
                           ", the site's shape is ", shape_str(s.shape)));
    parts.push_back(s.transform->inverse(it->second.to(options_)).reshape({-1}));
  }
  return parts.empty() ? torch::zeros({0}, options_) : torch::cat(parts);
}

torch::Tensor Potential::energy(const torch::Tensor& z) const {
  ValueMap u = unflatten(z), constrained;
  torch::Tensor log_det = torch::zeros({}, options_);
  for (const auto& s : sites_) {
    const torch::Tensor& x = u.at(s.name);
    torch::Tensor y = s.transform->forward(x);
    // The Jacobian sums over the site's whole value: batch dims are independent coordinates.
    log_det = log_det + s.transform->log_abs_det_jacobian(x, y).sum();
    constrained[s.name] = y;
  }
  Trace tr;
  {
    ConditionMessenger given(constrained);
    TraceMessenger tm;
    model_();
    tr = std::move(tm.trace());
  }
  return -(tr.log_prob_sum() + log_det);
}

std::pair<double, torch::Tensor> Potential::energy_and_grad(const torch::Tensor& z) const {
  torch::Tensor zz = z.detach().requires_grad_(true);
  torch::Tensor u = energy(zz);
  const double value = u.item<double>();
  if (!std::isfinite(value)) return {INFINITY, torch::zeros_like(z)};
  if (!u.requires_grad()) return {value, torch::zeros_like(z)};
  torch::Tensor g = torch::autograd::grad({u}, {zz}, {}, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!g.defined()) g = torch::zeros_like(z);
  return {value, g};
}

}  // namespace ember::infer::mcmc
