// The potential energy of a conditioned model in unconstrained space (Pyro's initialize_model).
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "inference/enum.h"
#include "inference/mcmc/mcmc.h"
#include "ppl/infer_config.h"
#include "ppl/plate.h"
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

Potential::Potential(Model model, uint64_t seed) : Potential(std::move(model), PotentialOptions().seed(seed)) {}

namespace {
// The latent and plate structure of one seeded run (config_enumerate marks the discrete sites).
Trace prototype_trace(const Model& model, uint64_t seed, int64_t enum_first_dim) {
  SeedMessenger seeded(seed);
  TraceMessenger tm;
  std::optional<infer::EnumMessenger> enumerate;
  if (enum_first_dim < 0) enumerate.emplace(enum_first_dim);
  InferConfigMessenger marked(enumerate_config());
  model();
  return tm.get_trace();
}
}  // namespace

Potential::Potential(Model model, const PotentialOptions& options) : model_(std::move(model)) {
  if (!model_) throw ValueError("mcmc::Potential: the model is empty");
  const Trace plain = prototype_trace(model_, options.seed(), 0);
  for (const auto& name : plain.stochastic_nodes()) {
    const Site& site = plain.at(name);
    if (!site.fn->is_discrete()) continue;
    if (!site.fn->has_enumerate_support())
      throw ValueError(cat("mcmc: latent site '", name, "' is discrete (", site.fn->name(),
                           ") and its support is not finite, so it cannot be enumerated out; HMC/NUTS need continuous "
                           "latents: observe it, or marginalise it in the model"));
    if (site.infer.enumerate != "parallel")
      throw ValueError(cat("mcmc: latent site '", name, "' is discrete (", site.fn->name(), ") and marked for \"",
                           site.infer.enumerate, "\" enumeration; HMC/NUTS sum discrete latents out by \"parallel\" "
                           "enumeration only"));
    enumerated_.push_back(name);
  }
  max_plate_nesting_ = options.max_plate_nesting();
  if (max_plate_nesting_ < 0) {
    max_plate_nesting_ = 0;
    for (const auto& site : plain)
      for (const auto& f : site.cond_indep_stack)
        if (f.vectorized) max_plate_nesting_ = std::max<int64_t>(max_plate_nesting_, -f.dim);
  }
  // With enumeration the latents' shapes are read from an enumerated run: a continuous latent
  // whose distribution depends on an enumerated value would get the enumeration dims.
  const Trace prototype = enumerated_.empty() ? plain : prototype_trace(model_, options.seed(), -1 - max_plate_nesting_);
  int64_t offset = 0;
  for (const auto& name : prototype.stochastic_nodes()) {
    const Site& site = prototype.at(name);
    if (site.fn->is_discrete()) continue;  // enumerated (checked above)
    if (!plain.contains(name) || plain.at(name).value.sizes() != site.value.sizes())
      throw ValueError(cat("mcmc: continuous latent site '", name, "' (", site.plates_str(), ") has shape ",
                           shape_str(site.value.sizes()), " when the discrete latents are enumerated but ",
                           plain.contains(name) ? shape_str(plain.at(name).value.sizes()) : std::string("no site"),
                           " when they are sampled: its distribution depends on an enumerated site, which HMC/NUTS "
                           "cannot sample; make the continuous latent independent of the discrete ones"));
    LatentSite ls;
    ls.name = name;
    ls.shape = site.value.sizes().vec();
    ls.transform = transforms::biject_to(site.fn->support());
    ls.unconstrained_shape = ls.transform->inverse_shape(ls.shape);
    ls.numel = 1;
    for (auto d : ls.unconstrained_shape) ls.numel *= d;
    ls.offset = offset;
    ls.event_dim = static_cast<int64_t>(site.fn->event_shape().size());
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
  if (!enumerated_.empty()) {
    // TraceEnum_ELBO with an empty guide: its loss is -log p(data, T(z)) with the discrete
    // latents summed out along the plate tree (Pyro's TraceEinsumEvaluator). A non-finite
    // value is the sampler's business (a divergence), not an error.
    infer::TraceEnum_ELBO marginal(infer::ELBOOptions().max_plate_nesting(max_plate_nesting_).check_finite(false));
    const torch::Tensor neg_log_joint = marginal.compute_differentiable_loss(
        [&] {
          InferConfigMessenger marked(enumerate_config());
          ConditionMessenger given(constrained);
          model_();
        },
        [] {});
    return neg_log_joint - log_det;
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

double Potential::energy_and_grad(const double* z, double* grad) const {
  // A view of the caller's array (not written to), converted when the latents are not CPU doubles.
  const torch::Tensor view = torch::from_blob(const_cast<double*>(z), {dim_}, torch::kFloat64);
  auto [u, g] = energy_and_grad(view.to(options_));
  const torch::Tensor gd = g.to(torch::kCPU, torch::kFloat64).contiguous();
  std::copy(gd.data_ptr<double>(), gd.data_ptr<double>() + dim_, grad);
  return u;
}

std::vector<double> Potential::energy_and_grad_batch(const torch::Tensor& z, torch::Tensor& grad) const {
  if (!enumerated_.empty())
    throw NotImplementedError(cat("mcmc: vectorised chains with enumerated discrete latents ('", enumerated_.front(),
                                  "') are not supported; run the chains unvectorised"));
  if (z.dim() != 2 || z.size(1) != dim_)
    throw ShapeError(cat("mcmc::Potential: expected a batch of flat vectors of shape [B, ", dim_, "], got shape ",
                         shape_str(z.sizes())));
  const int64_t b = z.size(0);
  const torch::Tensor zz = z.detach().to(options_).requires_grad_(true);
  ValueMap constrained;
  torch::Tensor log_joint = torch::zeros({b}, options_);
  for (const auto& s : sites_) {
    std::vector<int64_t> ushape{b};
    ushape.insert(ushape.end(), s.unconstrained_shape.begin(), s.unconstrained_shape.end());
    const torch::Tensor x = zz.narrow(1, s.offset, s.numel).reshape(ushape);
    const torch::Tensor y = s.transform->forward(x);
    log_joint = log_joint + s.transform->log_abs_det_jacobian(x, y).reshape({b, -1}).sum(1);
    // The batch dim goes left of the plates: [B, 1, ..., 1, site shape].
    const int64_t batch_rank = static_cast<int64_t>(s.shape.size()) - s.event_dim;
    if (batch_rank > max_plate_nesting_)
      throw ShapeError(cat("mcmc: latent site '", s.name, "' has ", batch_rank, " batch dims but max_plate_nesting is ",
                           max_plate_nesting_, "; declare its batch dims with plates"));
    std::vector<int64_t> vshape{b};
    vshape.insert(vshape.end(), static_cast<size_t>(max_plate_nesting_ - batch_rank), 1);
    vshape.insert(vshape.end(), s.shape.begin(), s.shape.end());
    constrained[s.name] = y.reshape(vshape);
  }
  Trace tr;
  {
    TraceMessenger tm;
    auto chains = plate("_mcmc_batch", b, PlateOptions().dim(-1 - max_plate_nesting_));
    ConditionMessenger given(constrained);
    model_();
    tr = std::move(tm.trace());
  }
  tr.compute_log_prob();
  for (const auto& site : tr) {
    if (site.type != SiteType::sample || !site.log_prob.defined()) continue;
    const torch::Tensor& lp = site.log_prob;
    if (lp.dim() > max_plate_nesting_ + 1)
      throw ShapeError(cat("mcmc: site '", site.name, "' (", site.plates_str(), ") has log_prob of shape ", shape_str(lp.sizes()),
                           " in a vectorised run, more dims than max_plate_nesting + 1 = ", max_plate_nesting_ + 1,
                           "; the model must broadcast over the batch dim left of its plates"));
    log_joint = log_joint + (lp.dim() == max_plate_nesting_ + 1 ? lp.reshape({lp.size(0), -1}).sum(1) : lp.sum());
  }
  const torch::Tensor energies = -log_joint;
  torch::Tensor g;
  if (energies.requires_grad())
    g = torch::autograd::grad({energies.sum()}, {zz}, {}, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!g.defined()) g = torch::zeros_like(zz);
  const torch::Tensor e = energies.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  std::vector<double> out(e.data_ptr<double>(), e.data_ptr<double>() + b);
  for (int64_t i = 0; i < b; ++i)
    if (!std::isfinite(out[i])) {
      out[i] = INFINITY;
      g[i].zero_();
    }
  grad = g;
  return out;
}

}  // namespace ember::infer::mcmc
