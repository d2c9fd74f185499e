// Trace_ELBO, TraceMeanField_ELBO, RenyiELBO and the model-guide checks they share.
#include "inference/elbo.h"

#include <cmath>
#include <iostream>
#include <map>
#include <set>

#include "core/error.h"
#include "distributions/independent.h"
#include "distributions/normal.h"
#include "ppl/block.h"
#include "ppl/param_store.h"
#include "ppl/plate.h"
#include "ppl/primitives.h"
#include "ppl/replay.h"

#if __has_include("distributions/kl.h")
#include "distributions/kl.h"
#define EMBER_HAVE_KL_REGISTRY 1
#endif

namespace ember::infer {

namespace {

bool is_latent(const Site& s) { return s.type == SiteType::sample && !s.is_observed && !is_subsample_site(s); }
bool is_sample(const Site& s) { return s.type == SiteType::sample && !is_subsample_site(s); }

std::string names_str(const std::vector<std::string>& names) {
  std::string r;
  for (const auto& n : names) r += (r.empty() ? "'" : ", '") + n + "'";
  return r;
}

Shape full_shape(const dist::Distribution& d) { return concat(d.batch_shape(), d.event_shape()); }

// Device-agnostic accumulation: totals start undefined and take the device of their terms.
void add_to(torch::Tensor& total, const torch::Tensor& x) { total = total.defined() ? total + x : x; }
torch::Tensor or_zero(const torch::Tensor& t) { return t.defined() ? t : torch::zeros({}, torch::kDouble); }

// Sum of scalar terms in one op when they share dtype and device (else one op per term).
torch::Tensor sum_all(const std::vector<torch::Tensor>& terms) {
  if (terms.empty()) return {};
  if (terms.size() == 1) return terms[0];
  bool same = true;
  for (const auto& t : terms)
    same = same && t.dim() == 0 && t.scalar_type() == terms[0].scalar_type() && t.device() == terms[0].device();
  if (same) return torch::stack(terms).sum();
  torch::Tensor total;
  for (const auto& t : terms) add_to(total, t);
  return total;
}

bool all_finite(const torch::Tensor& t) {
  if (!t.defined() || !t.is_floating_point()) return true;
  return torch::isfinite(t.detach()).all().item<bool>();
}

// Pyro's MultiFrameTensor: log-prob terms keyed by the plates they live in.
struct LogR {
  std::vector<std::pair<const std::vector<PlateFrame>*, torch::Tensor>> terms;
  void add(const std::vector<PlateFrame>& frames, const torch::Tensor& t) { terms.emplace_back(&frames, t); }
  // Sums every term down to the plates in `target` (other plate dims summed out).
  torch::Tensor sum_to(const std::vector<PlateFrame>& target) const {
    torch::Tensor total;
    for (const auto& [frames, value] : terms) {
      torch::Tensor v = value;
      for (const auto& f : *frames) {
        if (!f.vectorized) continue;  // sequential plates have no dim (as Pyro's MultiFrameTensor)
        bool in_target = false;
        for (const auto& t : target) in_target = in_target || t.name == f.name;
        if (!in_target && v.dim() >= -f.dim && v.size(f.dim) != 1) v = v.sum(f.dim, true);
      }
      while (v.dim() > 0 && v.size(0) == 1) v = v.squeeze(0);
      total = total.defined() ? total + v : v;
    }
    return total;
  }
};

// The analytic KL of a guide site times its tensor scale weights, which must broadcast to
// the KL's (batch) shape exactly as they must to the site's log-prob.
torch::Tensor scale_kl(const torch::Tensor& kl, const torch::Tensor& weights, const Site& g) {
  if (broadcast_shapes(to_shape(kl.sizes()), to_shape(weights.sizes()), "scale") != to_shape(kl.sizes()))
    throw ShapeError(cat("TraceMeanField_ELBO: guide site '", g.name, "' (", g.plates_str(), "): scale weights of shape ",
                         shape_str(weights.sizes()), " do not broadcast to its KL's shape ", shape_str(kl.sizes())));
  return kl * weights;
}

}  // namespace

// ---------------------------------------------------------------- checks

void check_model_guide_match(const Trace& model_trace, const Trace& guide_trace, int64_t max_plate_nesting,
                             Mismatch mismatch, const std::string& elbo_name) {
  std::set<std::string> guide_vars, aux_vars, model_vars, enum_vars;
  for (const auto& s : guide_trace)
    if (is_sample(s)) {
      guide_vars.insert(s.name);
      if (s.infer.is_auxiliary) aux_vars.insert(s.name);
    }
  for (const auto& s : model_trace)
    if (is_latent(s)) {
      model_vars.insert(s.name);
      if (s.infer.enum_dim != 0 && !guide_vars.count(s.name)) enum_vars.insert(s.name);
    }
  auto report = [&](const std::string& msg) {
    if (mismatch == Mismatch::error) throw ValueError(cat(elbo_name, ": ", msg));
    std::cerr << "ember warning: " << elbo_name << ": " << msg << "\n";
  };
  std::vector<std::string> aux_in_model, guide_only, model_only;
  for (const auto& n : aux_vars)
    if (model_vars.count(n)) aux_in_model.push_back(n);
  for (const auto& n : guide_vars)
    if (!aux_vars.count(n) && !model_vars.count(n) && !guide_trace.at(n).is_observed) guide_only.push_back(n);
  for (const auto& n : model_vars)
    if (!guide_vars.count(n) && !enum_vars.count(n)) model_only.push_back(n);
  if (!aux_in_model.empty()) report(cat("found auxiliary guide sites that are also in the model: ", names_str(aux_in_model)));
  if (!guide_only.empty())
    report(cat("found guide sites that the model does not have: ", names_str(guide_only),
               ". Rename them to match the model, or mark them InferConfig{.is_auxiliary = true}."));
  if (!model_only.empty())
    report(cat("found latent sites in the model that the guide does not sample: ", names_str(model_only),
               ". The guide must sample every unobserved model site (or the model must enumerate it with "
               "TraceEnum_ELBO); otherwise the model draws it from its prior."));
  for (const auto& n : model_vars) {
    if (!guide_vars.count(n)) continue;
    const Site& m = model_trace.at(n);
    const Site& g = guide_trace.at(n);
    if (m.fn->event_dim() != g.fn->event_dim())
      throw ValueError(cat(elbo_name, ": model and guide event_dims disagree at site '", n, "': ", m.fn->event_dim(), " vs ",
                           g.fn->event_dim()));
    Shape ms = full_shape(*m.fn), gs = full_shape(*g.fn);
    if (ms == gs) continue;
    if (max_plate_nesting >= 0) {
      auto trim = [&](Shape s, int64_t ev) {
        const auto keep = static_cast<size_t>(max_plate_nesting + ev);
        if (s.size() > keep) s.erase(s.begin(), s.end() - static_cast<std::ptrdiff_t>(keep));
        return s;
      };
      ms = trim(ms, m.fn->event_dim());
      gs = trim(gs, g.fn->event_dim());
      // Dims the enumeration added on the left are allowed to differ.
      while (!ms.empty() && ms.size() > gs.size() && ms.front() == 1) ms.erase(ms.begin());
      while (!gs.empty() && gs.size() > ms.size() && gs.front() == 1) gs.erase(gs.begin());
    }
    if (ms != gs)
      throw ValueError(cat(elbo_name, ": model and guide shapes disagree at site '", n, "': ", shape_str(full_shape(*m.fn)),
                           " (model, ", m.plates_str(), ") vs ", shape_str(full_shape(*g.fn)), " (guide, ", g.plates_str(),
                           ")"));
  }
}

void check_site_shape(const Site& site, int64_t max_plate_nesting) {
  if (!site.log_prob.defined()) return;
  const auto actual = site.log_prob.sizes().vec();
  std::vector<int64_t> expected;  // expected[i] for dim -(i+1); -1 = any
  for (const auto& f : site.cond_indep_stack) {
    if (!f.vectorized) continue;
    const auto pos = static_cast<size_t>(-1 - f.dim);
    if (expected.size() <= pos) expected.resize(pos + 1, -1);
    expected[pos] = f.size;
  }
  if (max_plate_nesting >= 0 && static_cast<int64_t>(expected.size()) > max_plate_nesting)
    throw ValueError(cat("at site '", site.name, "', max_plate_nesting == ", max_plate_nesting, ", but the site is in ",
                         site.plates_str(), ", which needs max_plate_nesting >= ", expected.size()));
  const size_t checked =
      max_plate_nesting >= 0 ? std::min(actual.size(), static_cast<size_t>(max_plate_nesting)) : actual.size();
  for (size_t pos = 0; pos < checked; ++pos) {
    const int64_t have = actual[actual.size() - 1 - pos];
    const int64_t want = pos < expected.size() ? expected[pos] : 1;
    if (want != -1 && want != have)
      throw ValueError(cat("at site '", site.name, "' (", site.plates_str(), "), invalid log_prob shape ",
                           shape_str(actual), ": dim ", -1 - static_cast<int64_t>(pos), " has size ", have, " but ",
                           want == 1 ? std::string("no plate declares that dim") : cat("its plate has size ", want),
                           ". Try one of: enclose the batched tensor in a plate; .to_event(...) the distribution; "
                           "permute the data dims."));
  }
}

void throw_non_finite(double loss, const Trace& model_trace, const Trace& guide_trace, const std::string& elbo_name) {
  for (const auto* tr : {&model_trace, &guide_trace}) {
    const char* which = tr == &model_trace ? "model" : "guide";
    for (const auto& s : *tr) {
      if (!is_sample(s)) continue;
      std::string what;
      if (!all_finite(s.value)) what = "value";
      else if (!all_finite(s.log_prob_sum)) what = cat("log_prob (sum ", s.log_prob_sum.item<double>(), ")");
      if (what.empty()) continue;
      throw ValueError(cat(elbo_name, ": the loss is ", loss, " because ", which, " site '", s.name, "' (", s.plates_str(),
                           ", ", s.fn->to_string(), ") has a non-finite ", what,
                           ". Check its parameters, its support, and the values the guide proposes."));
    }
  }
  throw ValueError(cat(elbo_name, ": the loss is ", loss, " although every site's value and log_prob are finite"));
}

std::optional<torch::Tensor> analytic_kl(const dist::Distribution& q, const dist::Distribution& p) {
#ifdef EMBER_HAVE_KL_REGISTRY
  try {
    return dist::kl_divergence(q, p);
  } catch (const NotImplementedError&) {
  }
#endif
  if (auto* qi = dynamic_cast<const dist::Independent*>(&q)) {
    if (auto* pi = dynamic_cast<const dist::Independent*>(&p)) {
      if (qi->reinterpreted_batch_ndims() != pi->reinterpreted_batch_ndims()) return std::nullopt;
      auto kl = analytic_kl(*qi->base(), *pi->base());
      if (!kl) return std::nullopt;
      return sum_rightmost(*kl, qi->reinterpreted_batch_ndims());
    }
    return std::nullopt;
  }
  auto* qn = dynamic_cast<const dist::Normal*>(&q);
  auto* pn = dynamic_cast<const dist::Normal*>(&p);
  if (qn && pn) {
    auto var_ratio = (qn->scale / pn->scale).pow(2);
    auto t1 = ((qn->loc - pn->loc) / pn->scale).pow(2);
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log());
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- ELBO base

int64_t ELBO::plate_nesting(const Program& model, const Program& guide) {
  if (o_.max_plate_nesting() >= 0) return o_.max_plate_nesting();
  if (guessed_nesting_) return *guessed_nesting_;
  // Pyro's _guess_max_plate_nesting: one blocked run of guide and model.
  BlockMessenger hide;
  Trace g = trace(guide).get_trace();
  auto replayed = replay(model, g);
  Trace m = trace(replayed).get_trace();
  int64_t n = 0;
  for (const auto* tr : {&g, &m})
    for (const auto& s : *tr)
      for (const auto& f : s.cond_indep_stack)
        if (f.vectorized) n = std::max(n, -f.dim);
  guessed_nesting_ = n;
  return n;
}

std::pair<Program, Program> ELBO::vectorized(const Program& model, const Program& guide) {
  if (!o_.vectorize_particles() || o_.num_particles() == 1) return {model, guide};
  const int64_t dim = -plate_nesting(model, guide) - 1;
  const int64_t k = o_.num_particles();
  auto wrap = [k, dim](const Program& p) -> Program {
    return [p, k, dim] {
      Plate particles("num_particles_vectorized", k, PlateOptions().dim(dim));
      p();
    };
  };
  return {wrap(model), wrap(guide)};
}

std::pair<Trace, Trace> ELBO::get_traces(const Program& model, const Program& guide) {
  auto [m, g] = vectorized(model, guide);
  Trace guide_trace = trace(g).get_trace();
  Trace model_trace;
  {
    TraceMessenger tm;
    ReplayMessenger rm(borrow(guide_trace));
    try {
      m();
    } catch (const Error&) {
      detail::rethrow_with_shapes(tm.trace());
    }
    model_trace = std::move(tm.trace());
  }
  const int64_t nesting = o_.vectorize_particles() || o_.max_plate_nesting() >= 0 ? plate_nesting(model, guide) : -1;
  const int64_t check_nesting = o_.vectorize_particles() && o_.num_particles() > 1 ? nesting + 1 : nesting;
  if (o_.validate()) check_model_guide_match(model_trace, guide_trace, check_nesting, o_.mismatch(), name());
  model_trace.compute_log_prob();
  guide_trace.compute_log_prob();
  if (o_.validate()) {
    for (const auto* tr : {&model_trace, &guide_trace})
      for (const auto& s : *tr)
        if (is_sample(s)) check_site_shape(s, check_nesting);
  }
  return {std::move(model_trace), std::move(guide_trace)};
}

double ELBO::run_particles(const Program& model, const Program& guide, const std::function<void(torch::Tensor)>& on_surrogate) {
  const int64_t k = o_.num_particles();
  if (k < 1) throw ValueError(cat(name(), ": num_particles must be >= 1, got ", k));
  const int64_t iters = o_.vectorize_particles() ? 1 : k;
  double total = 0;
  for (int64_t i = 0; i < iters; ++i) {
    auto [model_trace, guide_trace] = get_traces(model, guide);
    Particle p = particle(model_trace, guide_trace);
    if (o_.check_finite() && !std::isfinite(p.loss)) throw_non_finite(p.loss, model_trace, guide_trace, name());
    total += p.loss / static_cast<double>(k);
    if (on_surrogate && p.surrogate.defined()) on_surrogate(p.surrogate / static_cast<double>(k));
  }
  return total;
}

double ELBO::compute_loss(const Program& model, const Program& guide) {
  torch::NoGradGuard no_grad;
  return run_particles(model, guide, nullptr);
}

double ELBO::compute_loss_and_grads(const Program& model, const Program& guide) {
  return run_particles(model, guide, [](torch::Tensor s) {
    if (s.requires_grad()) s.backward();
  });
}

torch::Tensor ELBO::compute_differentiable_loss(const Program& model, const Program& guide) {
  torch::Tensor total;
  const double loss = run_particles(model, guide, [&](torch::Tensor s) { total = total.defined() ? total + s : s; });
  if (!total.defined()) return torch::tensor(loss, torch::kDouble);
  // As Pyro: the value is the loss, the gradient the surrogate's (they differ when the
  // surrogate has score-function terms).
  return loss + (total - total.detach());
}

// ---------------------------------------------------------------- Trace_ELBO

ELBO::Particle Trace_ELBO::particle(Trace& model_trace, Trace& guide_trace) {
  // Terms are collected and summed in one op each (a per-site running sum costs a LibTorch
  // op per site): log p of model sites, log q of reparameterised guide sites (pathwise),
  // log q of the other guide sites (value only) and their score-function terms.
  std::vector<torch::Tensor> log_p, log_q_path, log_q_sf, score_terms;
  for (const auto& s : model_trace)
    if (is_sample(s)) log_p.push_back(s.log_prob_sum);
  std::optional<LogR> log_r;
  for (const auto& s : guide_trace) {
    if (!is_sample(s)) continue;
    if (s.is_observed || s.fn->has_rsample()) {
      // Pathwise: the entropy term log q(z(eps)) carries the gradient.
      log_q_path.push_back(s.log_prob_sum);
      continue;
    }
    log_q_sf.push_back(s.log_prob_sum.detach());
    // Score function: log q(z) * stop_grad(log p - log q), summed to z's plates.
    if (!log_r) {
      log_r.emplace();
      for (const auto& m : model_trace) {
        if (!is_sample(m)) continue;
        torch::Tensor term = m.log_prob;
        if (!m.is_observed)
          if (const Site* g = guide_trace.find(m.name)) term = term - g->log_prob;
        log_r->add(m.cond_indep_stack, term.detach());
      }
    }
    // (As Pyro, no -log q term: its expected gradient is zero for a normalised q.)
    torch::Tensor r = log_r->sum_to(s.cond_indep_stack);
    if (r.defined()) score_terms.push_back((r * s.unscaled_log_prob).sum());
  }
  torch::Tensor p_sum = sum_all(log_p), q_sum = sum_all(log_q_path);
  torch::Tensor surrogate = q_sum.defined() ? (p_sum.defined() ? p_sum - q_sum : -q_sum) : p_sum;
  torch::Tensor elbo = surrogate.defined() ? surrogate.detach() : torch::Tensor();
  if (!log_q_sf.empty()) {
    add_to(elbo, -sum_all(log_q_sf));
    if (!score_terms.empty()) add_to(surrogate, sum_all(score_terms));
  }
  Particle p;
  p.loss = -or_zero(elbo).item<double>();
  p.surrogate = -or_zero(surrogate);
  return p;
}

// ---------------------------------------------------------------- TraceGraph_ELBO

namespace {

// The baseline of guide site `g` for its downstream cost `cost` (Pyro's _construct_baseline):
// the baseline (undefined if none) and the learned baseline's squared-error loss (undefined).
std::pair<torch::Tensor, torch::Tensor> baseline_for(const Site& g, const torch::Tensor& cost) {
  if (!g.infer.baseline) return {};
  const BaselineOptions& o = *g.infer.baseline;
  const bool use_nn = static_cast<bool>(o.nn_baseline());
  const bool use_value = o.baseline_value().defined();
  if (use_nn && use_value)
    throw ValueError(cat("TraceGraph_ELBO: guide site '", g.name,
                         "' sets both nn_baseline and baseline_value; use one learned baseline"));
  if (use_nn && !o.nn_baseline_input().defined())
    throw ValueError(cat("TraceGraph_ELBO: guide site '", g.name, "' sets nn_baseline but no nn_baseline_input"));
  torch::Tensor baseline, baseline_loss;
  if (o.use_decaying_avg_baseline()) {
    // As Pyro: the average lives in the param store, so checkpoints keep it.
    const std::string avg_name = "__baseline_avg_downstream_cost_" + g.name;
    torch::Tensor old_avg;
    {
      torch::NoGradGuard no_grad;
      old_avg = param(avg_name, torch::zeros(cost.sizes(), cost.options())).detach();
      if (old_avg.sizes() != cost.sizes())
        throw ValueError(cat("TraceGraph_ELBO: the decaying-average baseline '", avg_name, "' has shape ",
                             shape_str(old_avg.sizes()), " but site '", g.name, "' has a downstream cost of shape ",
                             shape_str(cost.sizes()), " (", g.plates_str(), ")"));
      get_param_store().set(avg_name, (1 - o.baseline_beta()) * cost.detach() + o.baseline_beta() * old_avg);
    }
    baseline = old_avg;
  }
  if (use_nn || use_value) {
    torch::Tensor learned = use_nn ? o.nn_baseline()(o.nn_baseline_input().detach()) : o.baseline_value();
    if (learned.sizes() != cost.sizes())
      throw ValueError(cat("TraceGraph_ELBO: expected the baseline of guide site '", g.name, "' (", g.plates_str(),
                           ") to have the shape of its downstream cost, ", shape_str(cost.sizes()),
                           ", but it has shape ", shape_str(learned.sizes())));
    baseline = baseline.defined() ? baseline + learned : learned;
    baseline_loss = (cost.detach() - baseline).pow(2).sum();
  }
  return {baseline, baseline_loss};
}

}  // namespace

ELBO::Particle TraceGraph_ELBO::particle(Trace& model_trace, Trace& guide_trace) {
  std::vector<const Site*> guide_sites, model_sites;
  std::map<std::string, size_t> model_pos;
  for (const auto& s : guide_trace) {
    if (!is_sample(s)) continue;
    if (!s.infer.enumerate.empty())
      throw ValueError(cat(name(), ": guide site '", s.name, "' is marked for enumeration (\"", s.infer.enumerate,
                           "\"); TraceGraph_ELBO does not enumerate, use TraceEnum_ELBO"));
    guide_sites.push_back(&s);
  }
  for (const auto& s : model_trace)
    if (is_sample(s)) {
      model_pos[s.name] = model_sites.size();
      model_sites.push_back(&s);
    }
  // log p of every model site; -log q of every reparameterised guide site (its entropy term
  // carries the pathwise gradient); non-reparameterised ones count in the value only.
  std::vector<torch::Tensor> log_p, log_q_path, log_q_sf, score_terms, baseline_losses;
  for (const Site* m : model_sites) log_p.push_back(m->log_prob_sum);
  for (size_t i = 0; i < guide_sites.size(); ++i) {
    const Site& g = *guide_sites[i];
    if (g.is_observed || g.fn->has_rsample()) {
      log_q_path.push_back(g.log_prob_sum);
      continue;
    }
    log_q_sf.push_back(g.log_prob_sum.detach());
    // Downstream cost: this site and every later guide site (log p - log q), then the model
    // sites after the first of those in the model that are not among them.
    LogR cost;
    std::set<std::string> included;
    size_t first_in_model = model_sites.size();
    for (size_t j = i; j < guide_sites.size(); ++j) {
      const Site& d = *guide_sites[j];
      included.insert(d.name);
      auto mp = model_pos.find(d.name);
      if (mp == model_pos.end()) {
        cost.add(d.cond_indep_stack, -d.log_prob.detach());
        continue;
      }
      const Site& m = *model_sites[mp->second];
      first_in_model = std::min(first_in_model, mp->second);
      cost.add(m.cond_indep_stack, (m.log_prob - d.log_prob).detach());
    }
    for (size_t k = first_in_model + 1; k < model_sites.size(); ++k)
      if (!included.count(model_sites[k]->name)) cost.add(model_sites[k]->cond_indep_stack, model_sites[k]->log_prob.detach());
    torch::Tensor downstream = cost.sum_to(g.cond_indep_stack);
    auto [baseline, baseline_loss] = baseline_for(g, downstream);
    if (baseline.defined()) downstream = downstream - baseline;
    if (baseline_loss.defined()) baseline_losses.push_back(baseline_loss);
    // As Pyro: the score function is log q unscaled and unmasked.
    score_terms.push_back((g.unscaled_log_prob * downstream.detach()).sum());
  }
  torch::Tensor p_sum = sum_all(log_p), q_sum = sum_all(log_q_path);
  torch::Tensor surrogate = q_sum.defined() ? (p_sum.defined() ? p_sum - q_sum : -q_sum) : p_sum;
  torch::Tensor elbo = surrogate.defined() ? surrogate.detach() : torch::Tensor();
  if (!log_q_sf.empty()) add_to(elbo, -sum_all(log_q_sf));
  if (!score_terms.empty()) add_to(surrogate, sum_all(score_terms));
  Particle p;
  p.loss = -or_zero(elbo).item<double>();
  p.surrogate = -or_zero(surrogate);
  if (!baseline_losses.empty()) p.surrogate = p.surrogate + sum_all(baseline_losses);
  return p;
}

std::pair<double, torch::Tensor> TraceGraph_ELBO::compute_loss_and_surrogate(const Program& model, const Program& guide) {
  auto [model_trace, guide_trace] = get_traces(model, guide);
  Particle p = particle(model_trace, guide_trace);
  return {p.loss, p.surrogate};
}

// ---------------------------------------------------------------- TraceMeanField_ELBO

ELBO::Particle TraceMeanField_ELBO::particle(Trace& model_trace, Trace& guide_trace) {
  torch::Tensor elbo;
  for (const auto& m : model_trace) {
    if (!is_sample(m)) continue;
    if (m.is_observed) {
      add_to(elbo, m.log_prob_sum);
      continue;
    }
    const Site* g = guide_trace.find(m.name);
    if (!g) continue;  // only with Mismatch::warn: drawn from the prior, contributes 0
    if (!g->fn->has_rsample())
      throw ValueError(cat(name(), " needs reparameterisable guide sites, but guide site '", g->name, "' (", g->fn->name(),
                           ") has no rsample; use Trace_ELBO or TraceEnum_ELBO"));
    auto kl = analytic_kl(*g->fn, *m.fn);
    if (kl) {
      torch::Tensor k = *kl;
      if (g->mask.defined()) k = torch::where(g->mask, k, torch::zeros({}, k.options()));
      if (g->scale != 1.0) k = k * g->scale;
      // Tensor scale weights apply per element, as on the Monte-Carlo path (and in Pyro).
      if (g->scale_tensor.defined()) k = scale_kl(k, g->scale_tensor, *g);
      add_to(elbo, -k.sum());
    } else {
      add_to(elbo, m.log_prob_sum - g->log_prob_sum);
    }
  }
  for (const auto& g : guide_trace) {
    if (!is_sample(g) || model_trace.contains(g.name)) continue;
    if (!g.fn->has_rsample())
      throw ValueError(cat(name(), " needs reparameterisable guide sites, but auxiliary guide site '", g.name, "' (",
                           g.fn->name(), ") has no rsample"));
    add_to(elbo, -g.log_prob_sum);
  }
  elbo = or_zero(elbo);
  Particle p;
  p.loss = -elbo.detach().item<double>();
  p.surrogate = -elbo;
  return p;
}

// ---------------------------------------------------------------- RenyiELBO

RenyiELBO::RenyiELBO(double alpha, ELBOOptions options) : ELBO(options), alpha_(alpha) {
  if (alpha == 1.0)
    throw ValueError("RenyiELBO: alpha = 1 is the ordinary ELBO; use Trace_ELBO (alpha must differ from 1)");
}

ELBO::Particle RenyiELBO::particle(Trace&, Trace&) {
  throw NotImplementedError("RenyiELBO combines its particles jointly; call compute_loss");
}

std::pair<torch::Tensor, torch::Tensor> RenyiELBO::particles(const Program& model, const Program& guide, bool with_grad) {
  const int64_t k = o_.num_particles();
  if (k < 1) throw ValueError(cat(name(), ": num_particles must be >= 1, got ", k));
  std::vector<torch::Tensor> elbos, surrogates;
  const bool vec = o_.vectorize_particles() && k > 1;
  const int64_t iters = vec ? 1 : k;
  for (int64_t i = 0; i < iters; ++i) {
    auto [model_trace, guide_trace] = get_traces(model, guide);
    // As Pyro: the plates that every model sample site is in (the data plate of an amortised
    // model, and the vectorised particle plate) are kept apart; the others are summed out,
    // in model and guide terms alike. The bound is then per element of the shared plates.
    std::set<int64_t> sum_dims;
    {
      std::map<std::string, std::pair<int64_t, size_t>> plates;  // name -> (dim, number of sites in it)
      size_t num_sites = 0;
      for (const auto& s : model_trace) {
        if (!is_sample(s)) continue;
        ++num_sites;
        for (const auto& f : s.cond_indep_stack) {
          auto& entry = plates.emplace(f.name, std::make_pair(f.vectorized ? f.dim : 0, size_t{0})).first->second;
          ++entry.second;
        }
      }
      for (const auto& [plate_name, entry] : plates)
        if (entry.second < num_sites && entry.first != 0) sum_dims.insert(entry.first);
    }
    auto reduce = [&](torch::Tensor lp) {
      for (int64_t d : sum_dims)
        if (lp.dim() >= -d) lp = lp.sum(d, /*keepdim=*/true);
      return lp;
    };
    torch::Tensor elbo, surrogate;
    for (const auto& s : model_trace) {
      if (!is_sample(s)) continue;
      auto lp = reduce(s.log_prob);
      add_to(elbo, lp.detach());
      add_to(surrogate, lp);
    }
    for (const auto& s : guide_trace) {
      if (!is_sample(s)) continue;
      auto lp = reduce(s.log_prob);
      add_to(elbo, -lp.detach());
      if (s.is_observed || s.fn->has_rsample()) add_to(surrogate, -lp);
      else add_to(surrogate, (alpha_ / (1.0 - alpha_)) * lp);
    }
    elbo = or_zero(elbo);
    surrogate = or_zero(surrogate);
    if (o_.check_finite() && !all_finite(elbo)) throw_non_finite(elbo.sum().item<double>(), model_trace, guide_trace, name());
    elbos.push_back(elbo);
    if (with_grad) surrogates.push_back(surrogate);
  }
  // Particles along dim 0: the particle plate's dim when vectorised, else stacked.
  auto particles_first = [&](std::vector<torch::Tensor>& ts) -> torch::Tensor {
    if (ts.empty()) return {};
    if (!vec) return torch::stack(torch::broadcast_tensors(ts));
    torch::Tensor t = ts[0];
    const int64_t pdim = -plate_nesting(model, guide) - 1;
    while (t.dim() < -pdim) t = t.unsqueeze(0);
    std::vector<int64_t> shape = t.sizes().vec();
    shape[static_cast<size_t>(t.dim() + pdim)] = k;
    return t.expand(shape).movedim(pdim, 0);
  };
  return {particles_first(elbos), particles_first(surrogates)};
}

double RenyiELBO::compute_loss(const Program& model, const Program& guide) {
  torch::NoGradGuard no_grad;
  auto [e, s] = particles(model, guide, false);
  const double k = static_cast<double>(o_.num_particles());
  auto log_w = (1.0 - alpha_) * e;
  return -(torch::logsumexp(log_w, 0) - std::log(k)).sum().item<double>() / (1.0 - alpha_);
}

namespace {
// Pyro's RenyiELBO surrogate: the particles' surrogates weighted by their self-normalised
// (detached) weights, per element of the shared plates.
torch::Tensor renyi_surrogate(const torch::Tensor& log_w, const torch::Tensor& log_mean_w, const torch::Tensor& s,
                              double k) {
  return -((log_w - log_mean_w).exp() * s).sum() / k;
}
}  // namespace

torch::Tensor RenyiELBO::compute_differentiable_loss(const Program& model, const Program& guide) {
  auto [e, s] = particles(model, guide, true);
  const double k = static_cast<double>(o_.num_particles());
  auto log_w = (1.0 - alpha_) * e;
  auto log_mean_w = torch::logsumexp(log_w, 0, /*keepdim=*/true) - std::log(k);
  const double loss = -log_mean_w.sum().item<double>() / (1.0 - alpha_);
  auto surrogate = renyi_surrogate(log_w, log_mean_w, s, k);
  return loss + (surrogate - surrogate.detach());
}

double RenyiELBO::compute_loss_and_grads(const Program& model, const Program& guide) {
  auto [e, s] = particles(model, guide, true);
  const double k = static_cast<double>(o_.num_particles());
  auto log_w = (1.0 - alpha_) * e;
  auto log_mean_w = torch::logsumexp(log_w, 0, /*keepdim=*/true) - std::log(k);
  auto surrogate = renyi_surrogate(log_w, log_mean_w, s, k);
  if (surrogate.requires_grad()) surrogate.backward();
  return -log_mean_w.sum().item<double>() / (1.0 - alpha_);
}

}  // namespace ember::infer
