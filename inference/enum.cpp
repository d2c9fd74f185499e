// Parallel enumeration (EnumMessenger) and TraceEnum_ELBO.
#include "inference/enum.h"

#include <algorithm>
#include <map>
#include <set>

#include "core/error.h"
#include "ppl/replay.h"

namespace ember::infer {

// ---------------------------------------------------------------- EnumMessenger

EnumMessenger::EnumMessenger(int64_t first_available_dim) : next_(first_available_dim) {
  if (first_available_dim >= 0)
    throw ValueError(cat("EnumMessenger: first_available_dim must be negative, got ", first_available_dim));
  enter();
}

void EnumMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.is_observed || msg.done || msg.value.defined()) return;
  const std::string& how = msg.infer.enumerate;
  if (how.empty()) return;
  if (how == "sequential")
    throw NotImplementedError(cat("site '", msg.name,
                                  "': sequential enumeration is not implemented; use the default \"parallel\" strategy"));
  if (how != "parallel")
    throw ValueError(cat("site '", msg.name, "': unknown enumeration strategy \"", how, "\" (expected \"parallel\")"));
  if (msg.infer.num_samples > 0)
    throw NotImplementedError(cat("site '", msg.name,
                                  "': enumeration by sampling (num_samples) is not implemented; enumerate exactly"));
  if (!msg.fn->has_enumerate_support())
    throw ValueError(cat("site '", msg.name, "' is marked for enumeration, but its distribution ", msg.fn->name(),
                         " has no finite support to enumerate"));
  const int64_t dim = next_;
  const auto batch_rank = static_cast<int64_t>(msg.fn->batch_shape().size());
  if (batch_rank > -dim - 1)
    throw ShapeError(cat("site '", msg.name, "' (", msg.plates_str(), "): cannot enumerate at dim ", dim,
                         " because its distribution's batch shape ", shape_str(msg.fn->batch_shape()), " already has ",
                         batch_rank, " dims. Dims left of max_plate_nesting are reserved for enumeration: "
                         "declare batch dims with plates and raise max_plate_nesting"));
  torch::Tensor support = msg.fn->enumerate_support(msg.infer.expand);
  std::vector<int64_t> shape{support.size(0)};
  shape.insert(shape.end(), static_cast<size_t>(-dim - 1 - batch_rank), 1);
  for (int64_t i = 1; i < support.dim(); ++i) shape.push_back(support.size(i));
  msg.value = support.reshape(shape);
  msg.infer.enum_dim = dim;
  msg.done = true;
  --next_;
}

// ---------------------------------------------------------------- TraceEnum_ELBO

namespace {

using Ordinal = std::set<std::string>;

bool is_sample(const Site& s) { return s.type == SiteType::sample && !is_subsample_site(s); }

Ordinal ordinal_of(const Site& s) {
  Ordinal o;
  for (const auto& f : s.cond_indep_stack) o.insert(f.name);
  return o;
}

bool subset(const Ordinal& a, const Ordinal& b) { return std::includes(b.begin(), b.end(), a.begin(), a.end()); }

std::string ordinal_str(const Ordinal& o) {
  if (o.empty()) return "no plate";
  std::string r = "plates {";
  bool first = true;
  for (const auto& n : o) {
    r += (first ? "'" : ", '") + n + "'";
    first = false;
  }
  return r + "}";
}

bool has_dim(const torch::Tensor& t, int64_t d) { return t.dim() >= -d && t.size(d) > 1; }

torch::Tensor masked(const Site& s) {
  if (!s.mask.defined()) return s.unscaled_log_prob;
  return torch::where(s.mask, s.unscaled_log_prob, torch::zeros({}, s.unscaled_log_prob.options()));
}

struct EnumInfo {
  std::map<int64_t, Ordinal> home;        // enum dim -> plates of the site that allocated it
  std::map<int64_t, std::string> site;    // enum dim -> site name
  std::set<int64_t> sum_dims;             // enumerated in the model only: summed out
  std::set<int64_t> guide_dims;           // enumerated in the guide: averaged under q
  std::map<std::string, int64_t> plate_dim;
};

// Variable elimination of the model-enumerated dims along the plate tree: each term is a
// log-factor at an ordinal; returns the contracted terms (no sum dims left) at ordinals.
std::vector<std::pair<Ordinal, torch::Tensor>> contract(std::map<Ordinal, std::vector<torch::Tensor>> pending,
                                                        const EnumInfo& e) {
  std::vector<std::pair<Ordinal, torch::Tensor>> out;
  while (!pending.empty()) {
    auto it = std::max_element(pending.begin(), pending.end(),
                               [](const auto& a, const auto& b) { return a.first.size() < b.first.size(); });
    const Ordinal leaf = it->first;
    torch::Tensor t;
    for (const auto& x : it->second) t = t.defined() ? t + x : x;
    pending.erase(it);
    for (int64_t d : e.sum_dims)
      if (e.home.at(d) == leaf && t.dim() >= -d) t = t.logsumexp(d, /*keepdim=*/true);
    Ordinal parent;
    std::vector<int64_t> remaining;
    for (int64_t d : e.sum_dims) {
      if (!has_dim(t, d)) continue;
      const Ordinal& h = e.home.at(d);
      if (!subset(h, leaf))
        throw ValueError(cat("TraceEnum_ELBO: site '", e.site.at(d), "' is enumerated in ", ordinal_str(h),
                             " but a site in ", ordinal_str(leaf),
                             " depends on it; a variable enumerated inside a plate may only be used inside that plate"));
      parent.insert(h.begin(), h.end());
      remaining.push_back(d);
    }
    if (remaining.empty()) {
      out.emplace_back(leaf, t);
      continue;
    }
    if (parent == leaf) {
      std::string names;
      for (int64_t d : remaining) names += (names.empty() ? "'" : ", '") + e.site.at(d) + "'";
      throw ValueError(cat("TraceEnum_ELBO: expected tree-structured plate nesting, but sites in ", ordinal_str(leaf),
                           " depend on enumerated sites ", names,
                           " that live in independent plates; enumerate fewer sites or restructure the plates"));
    }
    for (int64_t d : e.guide_dims)
      if (has_dim(t, d) && !subset(e.home.at(d), parent))
        throw ValueError(cat("TraceEnum_ELBO: expected model enumeration to be no more global than guide enumeration, but "
                             "model-enumerated sites in ", ordinal_str(parent), " are upstream of guide-enumerated site '",
                             e.site.at(d), "' in ", ordinal_str(e.home.at(d)),
                             ". Try enumerating some of the model's sites in the guide instead"));
    for (const auto& p : leaf) {
      if (parent.count(p)) continue;
      const int64_t d = e.plate_dim.at(p);
      if (t.dim() >= -d) t = t.sum(d, /*keepdim=*/true);  // product over the plate, in log space
    }
    pending[parent].push_back(t);
  }
  return out;
}

}  // namespace

std::pair<Trace, Trace> TraceEnum_ELBO::get_traces(const Program& model, const Program& guide) {
  const int64_t nesting = plate_nesting(model, guide);
  const bool vec = o_.vectorize_particles() && o_.num_particles() > 1;
  const int64_t eff = nesting + (vec ? 1 : 0);
  auto [m, g] = vectorized(model, guide);
  Trace guide_trace;
  int64_t next_dim;
  {
    TraceMessenger tm;
    EnumMessenger en(-1 - eff);
    try {
      g();
    } catch (const Error&) {
      detail::rethrow_with_shapes(tm.trace());
    }
    guide_trace = std::move(tm.trace());
    next_dim = en.next_available_dim();
  }
  Trace model_trace;
  {
    TraceMessenger tm;
    EnumMessenger en(next_dim);
    ReplayMessenger rm(borrow(guide_trace));
    try {
      m();
    } catch (const Error&) {
      detail::rethrow_with_shapes(tm.trace());
    }
    model_trace = std::move(tm.trace());
  }
  if (o_.validate()) check_model_guide_match(model_trace, guide_trace, eff, o_.mismatch(), name());
  model_trace.compute_log_prob();
  guide_trace.compute_log_prob();
  if (o_.validate()) {
    std::set<int64_t> enum_dims;
    for (const auto* tr : {&model_trace, &guide_trace})
      for (const auto& s : *tr)
        if (is_sample(s) && s.infer.enum_dim != 0) enum_dims.insert(s.infer.enum_dim);
    for (const auto* tr : {&model_trace, &guide_trace})
      for (const auto& s : *tr) {
        if (!is_sample(s)) continue;
        check_site_shape(s, eff);
        const auto& lp = s.log_prob;
        for (int64_t pos = eff; pos < lp.dim(); ++pos) {
          const int64_t d = -1 - pos;
          if (lp.size(d) != 1 && !enum_dims.count(d))
            throw ValueError(cat("at site '", s.name, "' (", s.plates_str(), "): log_prob of shape ", shape_str(lp.sizes()),
                                 " has size ", lp.size(d), " at dim ", d, ", left of max_plate_nesting = ", eff,
                                 ", where only enumeration dims may be; declare that batch dim with a plate and raise "
                                 "max_plate_nesting"));
        }
      }
  }
  return {std::move(model_trace), std::move(guide_trace)};
}

ELBO::Particle TraceEnum_ELBO::particle(Trace& model_trace, Trace& guide_trace) {
  EnumInfo e;
  for (const auto* tr : {&model_trace, &guide_trace})
    for (const auto& s : *tr)
      for (const auto& f : s.cond_indep_stack) {
        if (!f.vectorized)
          throw ValueError(cat("TraceEnum_ELBO: site '", s.name, "' is inside the sequential plate '", f.name,
                               "'; enumeration needs vectorised plates (ember::plate)"));
        e.plate_dim[f.name] = f.dim;
      }
  for (const auto& s : guide_trace) {
    if (!is_sample(s) || s.infer.enum_dim == 0) continue;
    e.guide_dims.insert(s.infer.enum_dim);
    e.home[s.infer.enum_dim] = ordinal_of(s);
    e.site[s.infer.enum_dim] = s.name;
  }
  for (const auto& s : model_trace) {
    if (!is_sample(s) || s.is_observed || s.infer.enum_dim == 0 || guide_trace.contains(s.name)) continue;
    e.sum_dims.insert(s.infer.enum_dim);
    e.home[s.infer.enum_dim] = ordinal_of(s);
    e.site[s.infer.enum_dim] = s.name;
  }

  // Costs (log-prob terms whose expectation under the guide is the ELBO) and log-factors
  // (model terms that touch a model-enumerated dim, to be summed out first).
  std::vector<std::pair<Ordinal, torch::Tensor>> costs;
  std::map<Ordinal, std::vector<torch::Tensor>> factors;
  const Site* scale_site = nullptr;
  for (const auto& s : model_trace) {
    if (!is_sample(s)) continue;
    bool touches = false;
    for (int64_t d : e.sum_dims) touches = touches || has_dim(s.log_prob, d);
    if (!touches) {
      costs.emplace_back(ordinal_of(s), s.log_prob);
      continue;
    }
    if (s.scale_tensor.defined())
      throw ValueError(cat("TraceEnum_ELBO: site '", s.name,
                           "' depends on model-enumerated sites and has tensor-valued scale weights, which enumeration "
                           "does not support; use a scalar scale"));
    if (!scale_site) scale_site = &s;
    if (s.scale != scale_site->scale)
      throw ValueError(cat("TraceEnum_ELBO: expected all sites that depend on model-enumerated sites to share one scale "
                           "(subsampling ratio), but '", scale_site->name, "' has ", scale_site->scale, " and '", s.name,
                           "' has ", s.scale));
    factors[ordinal_of(s)].push_back(masked(s));
  }
  if (!factors.empty()) {
    for (auto& [o, t] : contract(std::move(factors), e))
      costs.emplace_back(o, scale_site->scale != 1.0 ? t * scale_site->scale : t);
  }
  for (const auto& s : guide_trace)
    if (is_sample(s)) costs.emplace_back(ordinal_of(s), -s.log_prob);

  // Weights: the guide's probabilities of enumerated values (exact expectation), and Dice
  // factors exp(log q - stop_grad(log q)) of sampled non-reparameterised guide sites
  // (value 1, score-function gradient), each applied to the costs in the same or deeper plates.
  std::vector<std::pair<Ordinal, torch::Tensor>> weights;
  for (const auto& s : guide_trace) {
    if (!is_sample(s) || s.is_observed) continue;
    if (s.infer.enum_dim != 0) weights.emplace_back(ordinal_of(s), s.unscaled_log_prob);
    else if (!s.fn->has_rsample()) weights.emplace_back(ordinal_of(s), s.unscaled_log_prob - s.unscaled_log_prob.detach());
  }
  torch::Tensor elbo;
  for (const auto& [o, c] : costs) {
    torch::Tensor lw;
    for (const auto& [wo, w] : weights)
      if (subset(wo, o)) lw = lw.defined() ? lw + w : w;
    torch::Tensor term = lw.defined() ? (lw.exp() * c).sum() : c.sum();
    elbo = elbo.defined() ? elbo + term : term;
  }
  if (!elbo.defined()) elbo = torch::zeros({}, torch::kDouble);
  Particle p;
  p.loss = -elbo.detach().item<double>();
  p.surrogate = -elbo;
  return p;
}

}  // namespace ember::infer
