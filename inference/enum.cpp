// Parallel enumeration (EnumMessenger) and TraceEnum_ELBO.
#include "inference/enum.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <map>
#include <set>

#include "core/error.h"
#include "inference/discrete.h"
#include "ppl/block.h"
#include "ppl/replay.h"

namespace ember::infer {

// ---------------------------------------------------------------- EnumMessenger

EnumAllocator::EnumAllocator(int64_t first_available_dim) : next_dim(first_available_dim) {
  if (first_available_dim >= 0)
    throw ValueError(cat("EnumMessenger: first_available_dim must be negative, got ", first_available_dim));
}

EnumMessenger::EnumMessenger(int64_t first_available_dim)
    : EnumMessenger(std::make_shared<EnumAllocator>(first_available_dim)) {}

EnumMessenger::EnumMessenger(std::shared_ptr<EnumAllocator> allocator) : alloc_(std::move(allocator)) {
  if (!alloc_) throw ValueError("EnumMessenger: the allocator is null");
  enter();
}

void EnumMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.infer.is_subsample) return;
  // The enumerated variables this site can see: the global ones, and inside markov contexts
  // those of the visible sites whose context has not exited (as Pyro's EnumMessenger).
  std::map<int64_t, int64_t> visible = alloc_->global_dims;
  if (msg.infer.markov_depth > 0) {
    for (const auto& [name, depth] : msg.infer.markov_scope) {
      auto d = markov_depths_.find(name);
      if (d == markov_depths_.end() || d->second != depth) continue;
      auto v = value_dims_.find(name);
      if (v != value_dims_.end())
        for (const auto& [dim, id] : v->second) visible[dim] = id;
    }
    markov_depths_[msg.name] = msg.infer.markov_depth;
  }
  msg.infer.enum_ids = visible;
  if (msg.is_observed || msg.done || msg.value.defined()) return;
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
  int64_t dim = alloc_->next_dim;
  const int64_t id = alloc_->next_id++;
  if (msg.infer.markov_depth == 0) {
    alloc_->global_dims[dim] = id;
    --alloc_->next_dim;
  } else {
    while (visible.count(dim)) --dim;  // a local dim: any that no visible variable holds
  }
  const Shape& batch_shape = msg.fn->batch_shape();
  const auto batch_rank = static_cast<int64_t>(batch_shape.size());
  torch::Tensor support = msg.fn->enumerate_support(msg.infer.expand);
  std::vector<int64_t> shape{support.size(0)};
  if (!msg.infer.expand) {
    // The values go on `dim` whatever the batch rank (in a markov chain the distribution's
    // batch dims include its parents' enumeration dims, left of a recycled `dim`); only the
    // batch shape's size at `dim` itself must be 1.
    if (batch_rank >= -dim && batch_shape[static_cast<size_t>(batch_rank + dim)] != 1)
      throw ShapeError(cat("site '", msg.name, "' (", msg.plates_str(), "): cannot enumerate at dim ", dim,
                           " because its distribution's batch shape ", shape_str(batch_shape), " has size ",
                           batch_shape[static_cast<size_t>(batch_rank + dim)],
                           " there. Dims left of max_plate_nesting are reserved for enumeration: declare batch dims "
                           "with plates and raise max_plate_nesting; in a markov context, the site may depend on a "
                           "step older than `history` allows"));
    shape.insert(shape.end(), static_cast<size_t>(-dim - 1), 1);
    for (int64_t i = 1 + batch_rank; i < support.dim(); ++i) shape.push_back(support.size(i));
  } else {
    if (batch_rank > -dim - 1)
      throw ShapeError(cat("site '", msg.name, "' (", msg.plates_str(), "): cannot enumerate at dim ", dim,
                           " with expand = true because its distribution's batch shape ", shape_str(batch_shape),
                           " already has ", batch_rank, " dims. Dims left of max_plate_nesting are reserved for "
                           "enumeration: declare batch dims with plates and raise max_plate_nesting"));
    shape.insert(shape.end(), static_cast<size_t>(-dim - 1 - batch_rank), 1);
    for (int64_t i = 1; i < support.dim(); ++i) shape.push_back(support.size(i));
  }
  msg.value = support.reshape(shape);
  msg.infer.enum_dim = dim;
  msg.infer.enum_ids[dim] = id;
  msg.done = true;
}

void EnumMessenger::postprocess(Message& msg) {
  if (msg.type != SiteType::sample || msg.infer.is_subsample || !msg.value.defined() || !msg.fn) return;
  // The enumerated variables this site's value varies along (its own, or upstream ones its
  // value was computed from): later sites in its markov scope must not reuse their dims.
  const int64_t batch = msg.value.dim() - msg.fn->event_dim();
  std::map<int64_t, int64_t> spans;
  for (const auto& [dim, id] : msg.infer.enum_ids)
    if (batch >= -dim && msg.value.size(batch + dim) > 1) spans[dim] = id;
  value_dims_[msg.name] = std::move(spans);
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

torch::Tensor masked(const Site& s) {
  if (!s.mask.defined()) return s.unscaled_log_prob;
  return torch::where(s.mask, s.unscaled_log_prob, torch::zeros({}, s.unscaled_log_prob.options()));
}

// A log-factor over enumerated variables: `t` has one axis per variable in `ids` (in that
// order), then the `plates` rightmost dims, which are plate dims as in the traces. Variables
// are named by id because a markov dim stands for different variables in different sites.
struct Factor {
  torch::Tensor t;
  std::vector<int64_t> ids;
  bool has(int64_t id) const { return std::find(ids.begin(), ids.end(), id) != ids.end(); }
};

// A site's log-prob as a Factor: each enumeration dim (left of `plates`) of size > 1 becomes
// the axis of the variable the site saw at that dim.
Factor pack(const torch::Tensor& lp, const Site& s, int64_t plates) {
  torch::Tensor t = lp;
  while (t.dim() < plates) t = t.unsqueeze(0);
  std::vector<int64_t> shape, ids;
  for (int64_t i = 0; i < t.dim() - plates; ++i) {
    if (t.size(i) == 1) continue;
    const int64_t d = i - t.dim();
    auto it = s.infer.enum_ids.find(d);
    if (it == s.infer.enum_ids.end())
      throw ValueError(cat("site '", s.name, "' (", s.plates_str(), "): its log_prob of shape ", shape_str(lp.sizes()),
                           " has size ", t.size(i), " at dim ", d,
                           ", where no enumerated variable it can depend on lives. If it depends on a site of an "
                           "older markov step than `history` allows, raise the markov history"));
    shape.push_back(t.size(i));
    ids.push_back(it->second);
  }
  for (int64_t i = t.dim() - plates; i < t.dim(); ++i) shape.push_back(t.size(i));
  return {t.reshape(shape), ids};
}

// `f`'s tensor laid out over the variables `all` (size 1 where f does not have one).
torch::Tensor align(const Factor& f, const std::vector<int64_t>& all) {
  const int64_t n = static_cast<int64_t>(f.ids.size());
  std::vector<int64_t> perm, shape;
  for (int64_t id : all) {
    auto it = std::find(f.ids.begin(), f.ids.end(), id);
    if (it == f.ids.end()) {
      shape.push_back(1);
      continue;
    }
    const int64_t axis = it - f.ids.begin();
    perm.push_back(axis);
    shape.push_back(f.t.size(axis));
  }
  for (int64_t i = n; i < f.t.dim(); ++i) {
    perm.push_back(i);
    shape.push_back(f.t.size(i));
  }
  return f.t.permute(perm).reshape(shape);
}

Factor product(const std::vector<Factor>& fs) {
  std::vector<int64_t> all;
  for (const auto& f : fs)
    for (int64_t id : f.ids)
      if (std::find(all.begin(), all.end(), id) == all.end()) all.push_back(id);
  torch::Tensor t;
  for (const auto& f : fs) {
    auto a = align(f, all);
    t = t.defined() ? t + a : a;
  }
  return {t, all};
}

// One elimination step recorded for backtracking: `factor` is the product of every factor
// that held `id` when it was summed (or maxed) out.
struct EliminationStep {
  int64_t id;
  Factor factor;
};

struct EnumInfo {
  std::map<int64_t, Ordinal> home;        // variable id -> plates of the site that allocated it
  std::map<int64_t, std::string> site;    // variable id -> site name
  std::set<int64_t> sum_ids;              // enumerated in the model only: summed out
  std::set<int64_t> guide_ids;            // enumerated in the guide: averaged under q
  std::map<std::string, int64_t> plate_dim;
  std::string who = "TraceEnum_ELBO";     // the algorithm, in messages
  bool use_max = false;                   // max-product (MAP) instead of sum-product
  std::vector<EliminationStep>* tape = nullptr;
};

// Sums (or maxes) out of `fs` every variable of `ids` they hold, one at a time, cheapest first
// (the variable whose factors span the fewest elements), recording each step on the tape.
std::vector<Factor> eliminate(std::vector<Factor> fs, const std::vector<int64_t>& ids, EnumInfo& e) {
  std::set<int64_t> left(ids.begin(), ids.end());
  while (true) {
    int64_t best = -1;
    double best_cost = 0;
    for (int64_t id : left) {
      std::vector<int64_t> all;
      double cost = 0;
      bool any = false;
      for (const auto& f : fs)
        if (f.has(id)) {
          any = true;
          cost += static_cast<double>(f.t.numel());
        }
      if (!any) continue;
      if (best < 0 || cost < best_cost) {
        best = id;
        best_cost = cost;
      }
    }
    if (best < 0) break;
    left.erase(best);
    std::vector<Factor> with, without;
    for (auto& f : fs) (f.has(best) ? with : without).push_back(std::move(f));
    Factor joint = product(with);
    const auto axis = std::find(joint.ids.begin(), joint.ids.end(), best) - joint.ids.begin();
    Factor reduced;
    reduced.t = e.use_max ? std::get<0>(joint.t.max(axis)) : joint.t.logsumexp(axis);
    reduced.ids = joint.ids;
    reduced.ids.erase(reduced.ids.begin() + axis);
    if (e.tape) e.tape->push_back({best, std::move(joint)});
    without.push_back(std::move(reduced));
    fs = std::move(without);
  }
  return fs;
}

// Variable elimination of the model-enumerated variables along the plate tree: each term is a
// log-factor at an ordinal; returns the contracted terms (no summed variables left) at ordinals.
std::vector<std::pair<Ordinal, Factor>> contract(std::map<Ordinal, std::vector<Factor>> pending, EnumInfo& e,
                                                 int64_t plates) {
  std::vector<std::pair<Ordinal, Factor>> out;
  while (!pending.empty()) {
    auto it = std::max_element(pending.begin(), pending.end(),
                               [](const auto& a, const auto& b) { return a.first.size() < b.first.size(); });
    const Ordinal leaf = it->first;
    std::vector<Factor> terms = std::move(it->second);
    pending.erase(it);
    // As Pyro's _partition_terms: the terms at this leaf fall into groups connected through
    // the enumerated variables that live here; each group is contracted on its own, so
    // independent components (e.g. in crossed plates) never meet.
    std::vector<int64_t> leaf_ids;
    for (int64_t id : e.sum_ids)
      if (e.home.at(id) == leaf) leaf_ids.push_back(id);
    std::vector<size_t> root(terms.size());
    for (size_t i = 0; i < root.size(); ++i) root[i] = i;
    std::function<size_t(size_t)> find = [&](size_t i) { return root[i] == i ? i : root[i] = find(root[i]); };
    for (int64_t id : leaf_ids) {
      std::optional<size_t> first;
      for (size_t i = 0; i < terms.size(); ++i) {
        if (!terms[i].has(id)) continue;
        if (first) root[find(i)] = find(*first);
        else first = i;
      }
    }
    std::map<size_t, std::vector<Factor>> groups;
    for (size_t i = 0; i < terms.size(); ++i) groups[find(i)].push_back(std::move(terms[i]));
    for (auto& [group_root, group_terms] : groups) {
      Factor t = product(eliminate(std::move(group_terms), leaf_ids, e));
      Ordinal parent;
      std::vector<int64_t> remaining;
      for (int64_t id : t.ids) {
        if (!e.sum_ids.count(id)) continue;
        const Ordinal& h = e.home.at(id);
        if (!subset(h, leaf))
          throw ValueError(cat(e.who, ": site '", e.site.at(id), "' is enumerated in ", ordinal_str(h),
                               " but a site in ", ordinal_str(leaf),
                               " depends on it; a variable enumerated inside a plate may only be used inside that plate"));
        parent.insert(h.begin(), h.end());
        remaining.push_back(id);
      }
      if (remaining.empty()) {
        out.emplace_back(leaf, std::move(t));
        continue;
      }
      if (parent == leaf) {
        std::string names;
        for (int64_t id : remaining) names += (names.empty() ? "'" : ", '") + e.site.at(id) + "'";
        throw ValueError(cat(e.who, ": expected tree-structured plate nesting, but sites in ", ordinal_str(leaf),
                             " depend jointly on enumerated sites ", names,
                             " that live in independent plates; enumerate fewer sites or restructure the plates"));
      }
      for (int64_t id : t.ids)
        if (e.guide_ids.count(id) && !subset(e.home.at(id), parent))
          throw ValueError(cat(e.who, ": expected model enumeration to be no more global than guide enumeration, "
                               "but model-enumerated sites in ", ordinal_str(parent),
                               " are upstream of guide-enumerated site '", e.site.at(id), "' in ", ordinal_str(e.home.at(id)),
                               ". Try enumerating some of the model's sites in the guide instead"));
      for (const auto& p : leaf) {
        if (parent.count(p)) continue;
        const int64_t d = e.plate_dim.at(p);
        if (-d <= plates) t.t = t.t.sum(d, /*keepdim=*/true);  // product over the plate, in log space
      }
      pending[parent].push_back(std::move(t));
    }
  }
  return out;
}

// A contracted factor back in the traces' layout: each (guide-enumerated) variable on its dim.
torch::Tensor unpack(const Factor& f, const std::map<int64_t, int64_t>& dim_of, int64_t plates) {
  const int64_t n = static_cast<int64_t>(f.ids.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return dim_of.at(f.ids[static_cast<size_t>(a)]) < dim_of.at(f.ids[static_cast<size_t>(b)]);
  });
  int64_t rank = plates;
  for (int64_t id : f.ids) rank = std::max(rank, -dim_of.at(id));
  std::vector<int64_t> perm(order.begin(), order.end()), shape(static_cast<size_t>(rank), 1);
  for (int64_t i = n; i < f.t.dim(); ++i) perm.push_back(i);
  for (int64_t i = 0; i < n; ++i) shape[static_cast<size_t>(rank + dim_of.at(f.ids[static_cast<size_t>(i)]))] = f.t.size(i);
  for (int64_t j = 0; j < plates; ++j) shape[static_cast<size_t>(rank - plates + j)] = f.t.size(n + j);
  return f.t.permute(perm).reshape(shape);
}

}  // namespace

std::pair<Trace, Trace> TraceEnum_ELBO::get_traces(const Program& model, const Program& guide) {
  const int64_t nesting = plate_nesting(model, guide);
  const bool vec = o_.vectorize_particles() && o_.num_particles() > 1;
  const int64_t eff = nesting + (vec ? 1 : 0);
  auto [m, g] = vectorized(model, guide);
  plates_ = eff;
  Trace guide_trace;
  std::shared_ptr<EnumAllocator> allocator;
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
    allocator = en.allocator();
  }
  Trace model_trace;
  {
    TraceMessenger tm;
    EnumMessenger en(allocator);
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
  std::map<int64_t, int64_t> guide_dim_of;  // guide variable id -> its dim
  for (const auto& s : guide_trace) {
    if (!is_sample(s) || s.infer.enum_dim == 0) continue;
    const int64_t id = s.infer.enum_ids.at(s.infer.enum_dim);
    for (const auto& [other, d] : guide_dim_of)
      if (d == s.infer.enum_dim)
        throw NotImplementedError(cat("TraceEnum_ELBO: guide sites '", e.site.at(other), "' and '", s.name,
                                      "' are enumerated on the same (markov-recycled) dim ", d,
                                      "; recycling enumeration dims is implemented in the model only"));
    guide_dim_of[id] = s.infer.enum_dim;
    e.guide_ids.insert(id);
    e.home[id] = ordinal_of(s);
    e.site[id] = s.name;
  }
  for (const auto& s : model_trace) {
    if (!is_sample(s) || s.is_observed || s.infer.enum_dim == 0 || guide_trace.contains(s.name)) continue;
    const int64_t id = s.infer.enum_ids.at(s.infer.enum_dim);
    e.sum_ids.insert(id);
    e.home[id] = ordinal_of(s);
    e.site[id] = s.name;
  }

  // Costs (log-prob terms whose expectation under the guide is the ELBO) and log-factors
  // (model terms that touch a model-enumerated variable, to be summed out first).
  std::vector<std::pair<Ordinal, torch::Tensor>> costs;
  std::map<Ordinal, std::vector<Factor>> factors;
  const Site* scale_site = nullptr;
  for (const auto& s : model_trace) {
    if (!is_sample(s)) continue;
    bool touches = false;
    if (!e.sum_ids.empty()) {
      const int64_t lp_dim = s.log_prob.dim();
      for (const auto& [d, id] : s.infer.enum_ids)
        touches = touches || (e.sum_ids.count(id) && lp_dim >= -d && s.log_prob.size(d) > 1);
    }
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
    factors[ordinal_of(s)].push_back(pack(enumerated_here ? s.unscaled_log_prob : masked(s), s, plates_));
  }
  if (!factors.empty()) {
    for (auto& [o, f] : contract(std::move(factors), e, plates_)) {
      torch::Tensor t = unpack(f, guide_dim_of, plates_);
      costs.emplace_back(o, scale_site->scale != 1.0 ? t * scale_site->scale : t);
    }
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

// ---------------------------------------------------------------- infer_discrete

namespace ember::infer {

SetValuesMessenger::SetValuesMessenger(std::map<std::string, torch::Tensor> values) : values_(std::move(values)) {
  enter();
}

void SetValuesMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.is_observed || msg.value.defined()) return;
  auto it = values_.find(msg.name);
  if (it != values_.end()) msg.value = it->second;
}

namespace {

// The support of enumerated site `s` as [K] + event shape (its value has the support on its
// enumeration dim and size 1, or copies when expanded, on the other batch dims).
torch::Tensor enumerated_support(const Site& s) {
  const int64_t event_rank = s.fn->event_dim();
  const torch::Tensor& v = s.value;
  torch::Tensor sup = v.movedim(v.dim() - event_rank + s.infer.enum_dim, 0);
  while (sup.dim() > 1 + event_rank) sup = sup.select(1, 0);
  return sup;
}

// Draws (or maximises) each eliminated variable backwards, given the ones drawn after it:
// returns each variable's index, with `plates` plate dims.
std::map<int64_t, torch::Tensor> backtrack(const std::vector<EliminationStep>& tape, int64_t plates, bool use_max) {
  using namespace torch::indexing;
  std::map<int64_t, torch::Tensor> chosen;
  for (auto step = tape.rbegin(); step != tape.rend(); ++step) {
    const Factor& f = step->factor;
    const auto axis = std::find(f.ids.begin(), f.ids.end(), step->id) - f.ids.begin();
    torch::Tensor t = f.t.movedim(axis, 0);
    std::vector<int64_t> others;
    for (int64_t id : f.ids)
      if (id != step->id) others.push_back(id);
    const int64_t n = static_cast<int64_t>(f.ids.size());
    std::vector<int64_t> plate_shape(t.sizes().end() - plates, t.sizes().end());
    for (int64_t u : others) {
      const torch::Tensor& c = chosen.at(u);
      for (int64_t j = 0; j < plates; ++j) plate_shape[static_cast<size_t>(j)] = std::max(plate_shape[static_cast<size_t>(j)], c.size(j));
    }
    std::vector<int64_t> full(t.sizes().begin(), t.sizes().begin() + n);
    full.insert(full.end(), plate_shape.begin(), plate_shape.end());
    t = t.expand(full);
    if (!others.empty()) {
      std::vector<TensorIndex> index{Slice()};
      for (int64_t u : others) index.emplace_back(chosen.at(u).expand(plate_shape));
      for (int64_t j = 0; j < plates; ++j) {
        std::vector<int64_t> shape(static_cast<size_t>(plates), 1);
        shape[static_cast<size_t>(j)] = plate_shape[static_cast<size_t>(j)];
        index.emplace_back(torch::arange(plate_shape[static_cast<size_t>(j)], torch::TensorOptions().dtype(torch::kLong).device(t.device())).view(shape));
      }
      t = t.index(index);  // [K, plates...]: the conditional of this variable per plate element
    }
    if (!use_max) {
      // Gumbel-max: argmax of log-weights plus Gumbel noise is a draw from their softmax.
      auto u = torch::rand_like(t).clamp(1e-300, 1.0);
      t = t - (-u.log()).log();
    }
    chosen[step->id] = t.argmax(0);
  }
  return chosen;
}

}  // namespace

std::map<std::string, torch::Tensor> infer_discrete_values(const Program& model, const InferDiscreteOptions& options) {
  if (options.temperature() != 0 && options.temperature() != 1)
    throw ValueError(cat("infer_discrete: temperature must be 0 (MAP) or 1 (sample), got ", options.temperature()));
  int64_t first = -1;
  if (options.first_available_dim()) {
    first = *options.first_available_dim();
    if (first >= 0) throw ValueError(cat("infer_discrete: first_available_dim must be negative, got ", first));
  } else {
    BlockMessenger hide;
    Trace dry = trace(model).get_trace();
    for (const auto& s : dry)
      for (const auto& f : s.cond_indep_stack)
        if (f.vectorized) first = std::min(first, f.dim - 1);
  }
  const int64_t plates = -1 - first;
  Trace tr;
  {
    BlockMessenger hide;  // as Pyro: the enumerated run is invisible to handlers outside
    TraceMessenger tm;
    EnumMessenger en(first);
    try {
      model();
    } catch (const Error&) {
      detail::rethrow_with_shapes(tm.trace());
    }
    tr = std::move(tm.trace());
  }
  tr.compute_log_prob();
  EnumInfo e;
  e.who = "infer_discrete";
  e.use_max = options.temperature() == 0;
  std::vector<EliminationStep> tape;
  e.tape = &tape;
  std::map<int64_t, const Site*> site_of;
  for (const auto& s : tr) {
    for (const auto& f : s.cond_indep_stack)
      if (f.vectorized) e.plate_dim[f.name] = f.dim;
    if (!is_sample(s) || s.is_observed || s.infer.enum_dim == 0) continue;
    const int64_t id = s.infer.enum_ids.at(s.infer.enum_dim);
    e.sum_ids.insert(id);
    e.home[id] = ordinal_of(s);
    e.site[id] = s.name;
    site_of[id] = &s;
  }
  if (e.sum_ids.empty()) return {};
  std::map<Ordinal, std::vector<Factor>> factors;
  for (const auto& s : tr) {
    if (!is_sample(s)) continue;
    bool touches = false;
    for (const auto& [d, id] : s.infer.enum_ids)
      touches = touches || (e.sum_ids.count(id) && s.log_prob.dim() >= -d && s.log_prob.size(d) > 1);
    if (touches) factors[ordinal_of(s)].push_back(pack(s.log_prob, s, plates));
  }
  {
    torch::NoGradGuard no_grad;
    contract(std::move(factors), e, plates);
  }
  std::map<std::string, torch::Tensor> values;
  for (const auto& [id, index] : backtrack(tape, plates, e.use_max)) {
    const Site& s = *site_of.at(id);
    torch::Tensor sup = enumerated_support(s);
    std::vector<int64_t> shape = index.sizes().vec();
    for (int64_t i = 1; i < sup.dim(); ++i) shape.push_back(sup.size(i));
    torch::Tensor v = sup.index_select(0, index.flatten().to(sup.device())).reshape(shape);
    while (v.dim() > s.fn->event_dim() && v.size(0) == 1) v = v.squeeze(0);
    values[s.name] = v;
  }
  return values;
}

}  // namespace ember::infer
