// Autoguides: the prototype run, init strategies, AutoNormal and AutoDelta.
#include "inference/autoguide/autoguide.h"

#include <cmath>

#include "distributions/delta.h"
#include "distributions/normal.h"
#include "distributions/transformed_distribution.h"
#include "ppl/block.h"
#include "core/error.h"
#include "ppl/plate.h"
#include "ppl/primitives.h"

namespace ember::infer {

// ---------------------------------------------------------------- init strategies

namespace {

bool all_finite(const torch::Tensor& t) { return t.isfinite().all().item<bool>(); }

torch::Tensor feasible(const Site& site) {
  auto t = transforms::transform_to(site.fn->support());
  torch::Tensor value = site.fn->sample().detach();
  return t->forward(torch::zeros_like(t->inverse(value)));
}

torch::Tensor median_of_samples(const Site& site, int64_t num_samples) {
  if (site.fn->event_dim() > 0) return feasible(site);  // Pyro: multivariate sites are initialised feasibly
  torch::Tensor samples = site.fn->sample({num_samples}).detach();
  torch::Tensor value = std::get<0>(samples.median(0));
  if (!all_finite(value.to(torch::kDouble))) return feasible(site);
  return value;
}

}  // namespace

InitStrategy init_to_feasible() { return {feasible, {}}; }

InitStrategy init_to_sample() {
  return {[](const Site& site) { return site.fn->sample().detach(); }, {}};
}

InitStrategy init_to_median(int64_t num_samples) {
  if (num_samples < 1) throw ValueError(cat("init_to_median: num_samples must be positive, got ", num_samples));
  return {[num_samples](const Site& site) { return median_of_samples(site, num_samples); }, {}};
}

InitStrategy init_to_mean() {
  return {[](const Site& site) {
            torch::Tensor value;
            try {
              value = site.fn->mean().detach();
            } catch (const NotImplementedError&) {
              return median_of_samples(site, 15);  // no mean: Pyro falls back to the median
            }
            if (!all_finite(value.to(torch::kDouble))) return median_of_samples(site, 15);
            return value.expand(site.fn->extended_shape()).clone();
          },
          {}};
}

InitStrategy init_to_uniform(double radius) {
  if (!(radius > 0)) throw ValueError(cat("init_to_uniform: radius must be positive, got ", radius));
  return {[radius](const Site& site) {
            auto t = transforms::transform_to(site.fn->support());
            torch::Tensor u = t->inverse(site.fn->sample().detach());
            return t->forward(torch::rand_like(u) * (2 * radius) - radius);
          },
          {}};
}

InitStrategy init_to_value(ValueMap values, InitStrategy fallback) {
  std::vector<std::string> names = fallback.named_sites;
  for (const auto& [k, v] : values) names.push_back(k);
  return {[values = std::move(values), fallback = std::move(fallback)](const Site& site) {
            auto it = values.find(site.name);
            if (it != values.end()) return it->second;
            return fallback(site);
          },
          std::move(names)};
}

namespace detail {

namespace {

/// Replaces the value of each latent sample site by the init strategy's (Pyro's InitMessenger).
class InitMessenger : public Messenger {
 public:
  explicit InitMessenger(const InitStrategy& init) : init_(init) { enter(); }
  void process(Message& msg) override {
    if (msg.type != SiteType::sample || msg.value.defined() || msg.infer.is_subsample) return;
    torch::NoGradGuard no_grad;
    torch::Tensor v = init_(msg);
    if (!v.defined()) throw ValueError(cat("autoguide init strategy returned no value for site '", msg.name, "'"));
    if (v.sizes().vec() != msg.fn->extended_shape())
      throw ShapeError(cat("autoguide init strategy gave site '", msg.name, "' a value of shape ", shape_str(v.sizes()),
                           ", but its distribution ", msg.fn->to_string(), " has shape ", shape_str(msg.fn->extended_shape()),
                           " (batch + event) under ", msg.plates_str()));
    msg.value = v.to(msg.fn->options());
  }

 private:
  const InitStrategy& init_;
};

torch::Tensor sum_rightmost(const torch::Tensor& x, int64_t n) {
  if (n <= 0) return x;
  std::vector<int64_t> dims;
  for (int64_t i = 1; i <= n; ++i) dims.push_back(-i);
  return x.sum(dims);
}

/// Repeats `x` along `dim` until it has `size` entries (Pyro's periodic_repeat).
torch::Tensor periodic_repeat(const torch::Tensor& x, int64_t size, int64_t dim) {
  int64_t n = x.size(dim);
  int64_t reps = (size + n - 1) / n;
  std::vector<int64_t> r(x.dim(), 1);
  r[dim] = reps;
  return x.repeat(r).narrow(dim, 0, size).contiguous();
}

}  // namespace

AutoGuideCore::AutoGuideCore(std::string kind_, AutoGuideOptions options)
    : kind(std::move(kind_)), options_(std::move(options)) {
  prefix_ = options_.prefix().empty() ? kind : options_.prefix();
}

const std::vector<LatentSite>& AutoGuideCore::latents() const {
  if (!prototyped_)
    throw RuntimeError(cat(kind, ": the guide has not run yet; call it (or setup) with the model's arguments first"));
  return latents_;
}

void AutoGuideCore::setup(const Program& model) {
  if (prototyped_) return;
  Trace proto;
  {
    BlockMessenger hide_all;  // nothing of the prototype run leaks to the caller's handlers
    TraceMessenger tm;
    BlockMessenger only_latents(BlockOptions().hide_fn([](const Message& m) {
      return m.type != SiteType::sample || m.is_observed || m.infer.is_subsample;
    }));
    InitMessenger init(options_.init_loc_fn());
    model();
    proto = tm.get_trace();
  }
  std::vector<LatentSite> latents;
  std::map<std::string, PlateFrame> frames;
  for (const Site& s : proto) {
    if (s.type != SiteType::sample || s.is_observed || s.infer.is_subsample) continue;
    auto support = s.fn->support();
    if (support->is_discrete()) {
      if (!s.infer.enumerate.empty()) continue;  // the model enumerates it (TraceEnum_ELBO)
      throw NotImplementedError(
          cat(kind, ": latent site '", s.name, "' has discrete support (", s.fn->to_string(),
              "); autoguides cover continuous latents only. Enumerate it instead: mark it with "
              "config_enumerate / InferConfig{.enumerate = \"parallel\"} and train with TraceEnum_ELBO, "
              "or write a guide for it and combine the guides with AutoGuideList."));
    }
    LatentSite ls;
    ls.name = s.name;
    ls.fn = s.fn;
    try {
      ls.transform = transforms::biject_to(support);
    } catch (const Error& e) {
      throw NotImplementedError(cat(kind, ": latent site '", s.name, "' has support ", support->name(),
                                    ", which has no bijection from the reals (biject_to): ", e.what()));
    }
    ls.event_dim = s.fn->event_dim();
    torch::Tensor value = s.value.detach();
    torch::Tensor u = ls.transform->inverse(value).detach();
    ls.unconstrained_event_dim = ls.event_dim + u.dim() - value.dim();
    for (const PlateFrame& f : s.cond_indep_stack) {
      if (!f.vectorized)
        throw NotImplementedError(cat(kind, ": latent site '", s.name, "' is inside the sequential plate '", f.name,
                                      "'; autoguides support vectorised plates only (as Pyro)"));
      if (f.world) continue;
      if (f.full_size != f.size) {
        if (!supports_subsampling_)
          throw NotImplementedError(cat(kind, ": latent site '", s.name, "' is local to the subsampled plate '", f.name,
                                        "' (", f.size, " of ", f.full_size,
                                        "); a flattened guide cannot index its params by the subsample: use AutoNormal "
                                        "or AutoDelta, or combine guides with AutoGuideList"));
        value = periodic_repeat(value, f.full_size, value.dim() + f.dim - ls.event_dim);
        u = periodic_repeat(u, f.full_size, u.dim() + f.dim - ls.unconstrained_event_dim);
      }
      ls.frames.push_back(f);
      frames[f.name] = f;
    }
    ls.init_value = value;
    ls.init_unconstrained = u;
    latents.push_back(std::move(ls));
  }
  for (const auto& name : options_.init_loc_fn().named_sites) {
    bool found = false;
    for (const auto& l : latents) found = found || l.name == name;
    if (!found) {
      std::string names;
      for (const auto& l : latents) names += (names.empty() ? "'" : ", '") + l.name + "'";
      throw ValueError(cat(kind, ": init_to_value names site '", name, "', which is not a latent site of the model (",
                           "its latent sites: ", names.empty() ? std::string("none") : names, ")"));
    }
  }
  latents_ = std::move(latents);
  frames_ = std::move(frames);
  prototyped_ = true;
}

ValueMap AutoGuideCore::forward(const Program& model) {
  setup(model);
  return sample_sites();
}

ValueMap AutoGuideCore::quantiles(const std::vector<double>&) {
  throw NotImplementedError(cat(kind, " has no quantiles (a point estimate); use median()"));
}

std::map<std::string, torch::Tensor> AutoGuideCore::draw_subsamples() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, f] : frames_) {
    Plate p(name, f.full_size, PlateOptions().subsample_size(f.size).dim(f.dim));
    out[name] = p.indices();
  }
  return out;
}

torch::Tensor AutoGuideCore::subsample_param(const torch::Tensor& p, const LatentSite& site, int64_t event_dim,
                                             const std::map<std::string, torch::Tensor>& subsamples) {
  torch::Tensor out = p;
  for (const PlateFrame& f : site.frames) {
    const torch::Tensor& idx = subsamples.at(f.name);
    if (idx.size(0) == f.full_size) continue;
    int64_t d = out.dim() + f.dim - event_dim;
    if (d < 0 || out.size(d) != f.full_size)
      throw ShapeError(cat(site.name, ": param of shape ", shape_str(out.sizes()), " has no dim of size ", f.full_size,
                           " for plate '", f.name, "'"));
    out = out.index_select(d, idx.to(out.device()));
  }
  return out;
}

torch::Tensor AutoGuideCore::sample_transformed(const LatentSite& site, const torch::Tensor& u,
                                                const std::map<std::string, torch::Tensor>&) const {
  torch::Tensor value = site.transform->forward(u);
  torch::Tensor log_density = -site.transform->log_abs_det_jacobian(u, value);
  log_density = sum_rightmost(log_density, log_density.dim() - value.dim() + site.event_dim);
  return sample(site.name, std::make_shared<dist::Delta>(value, log_density, site.event_dim));
}

SitePlates::SitePlates(const std::vector<PlateFrame>& frames, const std::map<std::string, torch::Tensor>& subsamples) {
  hide_ = std::make_unique<BlockMessenger>(BlockOptions().hide_fn([](const Message& m) { return m.infer.is_subsample; }));
  for (const PlateFrame& f : frames)
    plates_.push_back(std::make_unique<Plate>(f.name, f.full_size,
                                              PlateOptions().subsample(subsamples.at(f.name)).dim(f.dim)));
}

SitePlates::~SitePlates() {
  while (!plates_.empty()) plates_.pop_back();  // innermost first
}

// ---------------------------------------------------------------- AutoNormal

AutoNormalCore::AutoNormalCore(AutoGuideOptions options) : AutoGuideCore("AutoNormal", std::move(options)) {}

std::pair<torch::Tensor, torch::Tensor> AutoNormalCore::loc_scale(const LatentSite& site) const {
  torch::Tensor loc = param(prefix_ + ".locs." + site.name, site.init_unconstrained.clone());
  torch::Tensor scale = param(prefix_ + ".scales." + site.name,
                              torch::full_like(site.init_unconstrained, options_.init_scale()), constraints::positive());
  return {loc, scale};
}

ValueMap AutoNormalCore::sample_sites() {
  auto subsamples = draw_subsamples();
  ValueMap out;
  for (const LatentSite& site : latents_) {
    SitePlates plates(site.frames, subsamples);
    auto [loc, scale] = loc_scale(site);
    loc = subsample_param(loc, site, site.unconstrained_event_dim, subsamples);
    scale = subsample_param(scale, site, site.unconstrained_event_dim, subsamples);
    InferConfig aux;
    aux.is_auxiliary = true;
    torch::Tensor u = sample(site.name + "_unconstrained",
                             dist::Normal(loc, scale).to_event(site.unconstrained_event_dim), SampleOptions().infer(aux));
    out[site.name] = sample_transformed(site, u, subsamples);
  }
  return out;
}

ValueMap AutoNormalCore::median() {
  torch::NoGradGuard no_grad;
  ValueMap out;
  for (const LatentSite& site : latents()) out[site.name] = site.transform->forward(loc_scale(site).first).clone();
  return out;
}

ValueMap AutoNormalCore::quantiles(const std::vector<double>& qs) {
  torch::NoGradGuard no_grad;
  ValueMap out;
  for (const LatentSite& site : latents()) {
    auto [loc, scale] = loc_scale(site);
    std::vector<int64_t> shape(loc.dim() + 1, 1);
    shape[0] = static_cast<int64_t>(qs.size());
    torch::Tensor q = torch::tensor(qs, loc.options()).reshape(shape);
    torch::Tensor z = torch::erfinv(2 * q - 1) * std::sqrt(2.0);
    out[site.name] = site.transform->forward(loc + scale * z);
  }
  return out;
}

dist::DistPtr AutoNormalCore::posterior(const std::string& name) const {
  for (const LatentSite& site : latents()) {
    if (site.name != name) continue;
    auto [loc, scale] = loc_scale(site);
    return std::make_shared<dist::TransformedDistribution>(dist::Normal(loc, scale).to_event(site.unconstrained_event_dim),
                                                           std::vector<transforms::TransformPtr>{site.transform});
  }
  throw ValueError(cat("AutoNormal: no latent site '", name, "'"));
}

// ---------------------------------------------------------------- AutoDelta

AutoDeltaCore::AutoDeltaCore(AutoGuideOptions options) : AutoGuideCore("AutoDelta", std::move(options)) {}

torch::Tensor AutoDeltaCore::value(const LatentSite& site) const {
  return param(prefix_ + "." + site.name, site.init_value.clone(), site.fn->support());
}

ValueMap AutoDeltaCore::sample_sites() {
  auto subsamples = draw_subsamples();
  ValueMap out;
  for (const LatentSite& site : latents_) {
    SitePlates plates(site.frames, subsamples);
    torch::Tensor v = subsample_param(value(site), site, site.event_dim, subsamples);
    out[site.name] = sample(site.name, std::make_shared<dist::Delta>(v, site.event_dim));
  }
  return out;
}

ValueMap AutoDeltaCore::median() {
  torch::NoGradGuard no_grad;
  ValueMap out;
  for (const LatentSite& site : latents()) out[site.name] = value(site).clone();
  return out;
}

void merge_sites(ValueMap& out, const ValueMap& part, const char* what) {
  for (const auto& [name, v] : part) {
    if (out.count(name))
      throw ValueError(cat("AutoGuideList: site '", name, "' is covered by two guides (in their ", what,
                           "); hide it from one of them with block(model, BlockOptions().hide({\"", name, "\"}))"));
    out[name] = v;
  }
}

}  // namespace detail
}  // namespace ember::infer
