// Parallel enumeration (EnumMessenger) and TraceEnum_ELBO.
#include "inference/enum.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
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
                                  "': sequential enumeration is implemented for guide sites under TraceEnum_ELBO only "
                                  "(as in Pyro); enumerate model sites \"parallel\""));
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

// ---------------------------------------------------------------- SequentialEnumMessenger

SequentialEnumMessenger::SequentialEnumMessenger(const std::vector<SequentialChoice>& assignment,
                                                 std::vector<SequentialChoice>& discovered)
    : assignment_(assignment), discovered_(discovered) {
  enter();
}

void SequentialEnumMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.is_observed || msg.done || msg.value.defined()) return;
  if (msg.infer.enumerate != "sequential") return;
  if (msg.infer.num_samples > 0)
    throw NotImplementedError(cat("site '", msg.name,
                                  "': enumeration by sampling (num_samples) is not implemented; enumerate exactly"));
  if (!msg.fn->has_enumerate_support())
    throw ValueError(cat("site '", msg.name, "' is marked for sequential enumeration, but its distribution ", msg.fn->name(),
                         " has no finite support to enumerate"));
  // As Pyro's iter_discrete_extend: the support unexpanded unless the site asks otherwise.
  torch::Tensor support = msg.fn->enumerate_support(msg.infer.expand);
  const int64_t total = support.size(0);
  int64_t index = 0;
  auto chosen = std::find_if(assignment_.begin(), assignment_.end(),
                             [&](const SequentialChoice& c) { return c.site == msg.name; });
  if (chosen != assignment_.end()) {
    if (chosen->total != total)
      throw ValueError(cat("site '", msg.name, "': its support has ", total, " values in this run but ", chosen->total,
                           " in the run that enumerated it first"));
    index = chosen->index;
  } else {
    discovered_.push_back({msg.name, 0, total});
  }
  msg.value = support[index];
  msg.infer.extra["_enum_total"] = total;
  msg.done = true;
}

// ---------------------------------------------------------------- TraceEnum_ELBO

namespace {

using Ordinal = std::set<std::string>;

bool is_sample(const Site& s) { return s.type == SiteType::sample && !is_subsample_site(s); }

// The vectorised plates a site is in (sequential plates have no dim and, as in Pyro, do not
// enter the dependency ordering).
Ordinal ordinal_of(const Site& s) {
  Ordinal o;
  for (const auto& f : s.cond_indep_stack)
    if (f.vectorized) o.insert(f.name);
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
    const std::vector<torch::Tensor> terms = std::move(it->second);
    pending.erase(it);
    // As Pyro's _partition_terms: the terms at this leaf fall into groups connected through
    // the enumerated dims that live here; each group is contracted on its own, so independent
    // components (e.g. in crossed plates) never meet.
    std::vector<int64_t> leaf_dims;
    for (int64_t d : e.sum_dims)
      if (e.home.at(d) == leaf) leaf_dims.push_back(d);
    std::vector<size_t> root(terms.size());
    for (size_t i = 0; i < root.size(); ++i) root[i] = i;
    std::function<size_t(size_t)> find = [&](size_t i) { return root[i] == i ? i : root[i] = find(root[i]); };
    for (int64_t d : leaf_dims) {
      std::optional<size_t> first;
      for (size_t i = 0; i < terms.size(); ++i) {
        if (!has_dim(terms[i], d)) continue;
        if (first) root[find(i)] = find(*first);
        else first = i;
      }
    }
    std::map<size_t, torch::Tensor> groups;
    for (size_t i = 0; i < terms.size(); ++i) {
      auto& g = groups[find(i)];
      g = g.defined() ? g + terms[i] : terms[i];
    }
    for (auto& [group_root, group_term] : groups) {
      torch::Tensor t = group_term;
      for (int64_t d : leaf_dims)
        if (t.dim() >= -d) t = t.logsumexp(d, /*keepdim=*/true);
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
                             " depend jointly on enumerated sites ", names,
                             " that live in independent plates; enumerate fewer sites or restructure the plates"));
      }
      for (int64_t d : e.guide_dims)
        if (has_dim(t, d) && !subset(e.home.at(d), parent))
          throw ValueError(cat("TraceEnum_ELBO: expected model enumeration to be no more global than guide enumeration, "
                               "but model-enumerated sites in ", ordinal_str(parent),
                               " are upstream of guide-enumerated site '", e.site.at(d), "' in ", ordinal_str(e.home.at(d)),
                               ". Try enumerating some of the model's sites in the guide instead"));
      for (const auto& p : leaf) {
        if (parent.count(p)) continue;
        const int64_t d = e.plate_dim.at(p);
        if (t.dim() >= -d) t = t.sum(d, /*keepdim=*/true);  // product over the plate, in log space
      }
      pending[parent].push_back(t);
    }
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
    discovered_.clear();
    SequentialEnumMessenger seq(assignment_, discovered_);
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
      for (const auto& f : s.cond_indep_stack)
        if (f.vectorized) e.plate_dim[f.name] = f.dim;
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
    // As Pyro: the mask applies inside the log-expectation to the sites that depend on an
    // enumerated value, but the prior of a model-enumerated site itself is used unmasked.
    const bool enumerated_here = s.infer.enum_dim != 0 && !s.is_observed && !guide_trace.contains(s.name);
    factors[ordinal_of(s)].push_back(enumerated_here ? s.unscaled_log_prob : masked(s));
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
  // A sequentially enumerated site weighs the costs downstream of it by q(value) (summed over
  // the runs, that is the exact expectation) and divides the costs not downstream of it by the
  // number of its values (they are counted once per run), as Pyro's Dice.
  std::vector<std::pair<Ordinal, torch::Tensor>> weights;
  std::vector<std::pair<Ordinal, double>> log_denoms;
  for (const auto& s : guide_trace) {
    if (!is_sample(s) || s.is_observed) continue;
    if (s.infer.enumerate == "sequential" && s.infer.extra.contains("_enum_total")) {
      weights.emplace_back(ordinal_of(s), s.unscaled_log_prob);
      log_denoms.emplace_back(ordinal_of(s), std::log(s.infer.extra["_enum_total"].get<double>()));
    } else if (s.infer.enum_dim != 0) weights.emplace_back(ordinal_of(s), s.unscaled_log_prob);
    else if (!s.fn->has_rsample()) weights.emplace_back(ordinal_of(s), s.unscaled_log_prob - s.unscaled_log_prob.detach());
  }
  torch::Tensor elbo;
  for (const auto& [o, c] : costs) {
    torch::Tensor lw;
    for (const auto& [wo, w] : weights)
      if (subset(wo, o)) lw = lw.defined() ? lw + w : w;
    torch::Tensor term;
    if (!lw.defined()) {
      term = c.sum();
    } else {
      // As Pyro's Dice: values of probability 0 contribute nothing (their cost may be
      // infinite, e.g. -log q; 0 * inf would be NaN, in the value and in the gradient).
      auto prob = lw.exp();
      auto safe_cost = torch::where(prob > 0, c, torch::zeros({}, c.options()));
      term = (prob * safe_cost).sum();
    }
    double log_denom = 0;
    for (const auto& [d_ord, d] : log_denoms)
      if (!subset(d_ord, o)) log_denom += d;
    if (log_denom != 0) term = term * std::exp(-log_denom);
    elbo = elbo.defined() ? elbo + term : term;
  }
  if (!elbo.defined()) elbo = torch::zeros({}, torch::kDouble);
  Particle p;
  p.loss = -elbo.detach().item<double>();
  p.surrogate = -elbo;
  return p;
}

double TraceEnum_ELBO::run_particles(const Program& model, const Program& guide,
                                     const std::function<void(torch::Tensor)>& on_surrogate) {
  const int64_t k = o_.num_particles();
  if (k < 1) throw ValueError(cat(name(), ": num_particles must be >= 1, got ", k));
  const int64_t iters = o_.vectorize_particles() ? 1 : k;
  double total = 0;
  for (int64_t i = 0; i < iters; ++i) {
    // Every combination of the sequentially enumerated guide sites' values, depth first: the
    // last site with values left moves to its next value, the sites after it are found anew
    // (the guide's structure may depend on the values).
    assignment_.clear();
    while (true) {
      auto [model_trace, guide_trace] = get_traces(model, guide);
      Particle p = particle(model_trace, guide_trace);
      if (o_.check_finite() && !std::isfinite(p.loss)) throw_non_finite(p.loss, model_trace, guide_trace, name());
      total += p.loss / static_cast<double>(k);
      if (on_surrogate && p.surrogate.defined()) on_surrogate(p.surrogate / static_cast<double>(k));
      std::vector<SequentialChoice> next = assignment_;
      next.insert(next.end(), discovered_.begin(), discovered_.end());
      while (!next.empty() && next.back().index + 1 >= next.back().total) next.pop_back();
      if (next.empty()) break;
      ++next.back().index;
      assignment_ = std::move(next);
    }
    assignment_.clear();
  }
  return total;
}

}  // namespace ember::infer
