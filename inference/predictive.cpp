// Predictive and Importance.
#include "inference/predictive.h"

#include <c10/util/accumulate.h>

#include <cmath>

#include "core/error.h"
#include "ppl/block.h"
#include "ppl/condition.h"
#include "ppl/plate.h"
#include "ppl/replay.h"
#include "ppl/trace.h"

namespace ember::infer {

namespace {

bool is_sample(const Site& s) { return s.type == SiteType::sample && !is_subsample_site(s); }

ValueMap stack_all(std::map<std::string, std::vector<torch::Tensor>>& collected) {
  ValueMap out;
  for (auto& [name, values] : collected) {
    try {
      out.emplace(name, torch::stack(values));
    } catch (const c10::Error&) {
      throw ShapeError(cat("site '", name, "' has values of different shapes in different draws (first ",
                           shape_str(values.front().sizes()), "); they cannot be stacked"));
    }
  }
  return out;
}

// Pyro's shape of a returned site: [num_samples] + ones up to max_plate_nesting (counted
// against the site's batch dims) + the site's value shape in one run. A global site thus
// comes back as [S, 1, ...] when the model has a plate.
std::vector<int64_t> returned_shape(const Site& s, int64_t num_samples, int64_t max_plate_nesting) {
  std::vector<int64_t> shape{num_samples};
  const auto batch_rank = s.fn ? static_cast<int64_t>(s.fn->batch_shape().size()) : 0;
  shape.insert(shape.end(), static_cast<size_t>(std::max<int64_t>(0, max_plate_nesting - batch_rank)), 1);
  const auto one = s.value.sizes();
  shape.insert(shape.end(), one.begin(), one.end());
  return shape;
}

int64_t deepest_plate(const Trace& t) {
  int64_t n = 0;
  for (const auto& s : t)
    for (const auto& f : s.cond_indep_stack)
      if (f.vectorized) n = std::max(n, -f.dim);
  return n;
}

// The sites to return: those asked for, else (as Pyro) every sample site of the model with a
// guide, and the sites not among the posterior samples without one.
std::vector<std::string> returned_sites(const Trace& model_trace, const PredictiveOptions& o, bool with_guide,
                                        const ValueMap& posterior_samples) {
  std::vector<std::string> names = o.return_sites();
  if (!names.empty()) {
    for (const auto& name : names)
      if (!model_trace.find(name)) throw ValueError(cat("Predictive: return site '", name, "' is not a site of the model"));
    return names;
  }
  for (const auto& s : model_trace)
    if (is_sample(s) && (with_guide || !posterior_samples.count(s.name))) names.push_back(s.name);
  return names;
}

}  // namespace

namespace {

// One run of `program` traced, hidden from outer handlers.
Trace dry_run(const Program& program, const ValueMap& condition_on = {}) {
  BlockMessenger hide;
  TraceMessenger tm;
  ConditionMessenger cm(condition_on);
  program();
  return tm.get_trace();
}

// All draws at once in a plate left of the model's plates; values reshaped to the shapes of
// sequential draws ([n] + the value shape of one run).
ValueMap predictive_parallel(const Program& model, const Program* guide, const ValueMap& posterior_samples, int64_t n,
                             const PredictiveOptions& o) {
  // Shapes of one run, and the plate nesting (guessed unless given).
  ValueMap first;
  Trace g0;
  if (guide) {
    g0 = dry_run(*guide);
    for (const auto& s : g0)
      if (is_sample(s) && !s.is_observed) first.emplace(s.name, s.value);
  } else {
    for (const auto& [name, v] : posterior_samples) first.emplace(name, v[0]);
  }
  Trace m0 = dry_run(model, first);
  const int64_t nesting =
      o.max_plate_nesting() >= 0 ? o.max_plate_nesting() : std::max(deepest_plate(m0), guide ? deepest_plate(g0) : 0);
  const int64_t dim = -nesting - 1;
  ValueMap latent;
  if (guide) {
    TraceMessenger tm;
    {
      Plate draws("_num_predictive_samples", n, PlateOptions().dim(dim));
      (*guide)();
    }
    for (const auto& s : tm.trace())
      if (is_sample(s) && !s.is_observed) latent.emplace(s.name, s.value);
  } else {
    for (const auto& [name, v] : posterior_samples) {
      auto sample = v.narrow(0, 0, n);
      std::vector<int64_t> shape{n};
      const auto rest = sample.sizes().slice(1);
      // Pad the batch dims (not the event dims) up to the plates: the site's batch rank in
      // one run. (Pyro counts the event dims too, which misplaces an event-shaped sample.)
      auto batch_rank = static_cast<int64_t>(rest.size());
      if (const Site* s0 = m0.find(name); s0 && s0->fn) batch_rank = static_cast<int64_t>(s0->fn->batch_shape().size());
      shape.insert(shape.end(), static_cast<size_t>(std::max<int64_t>(0, nesting - batch_rank)), 1);
      shape.insert(shape.end(), rest.begin(), rest.end());
      latent.emplace(name, sample.reshape(shape));
    }
  }
  Trace m;
  {
    TraceMessenger tm;
    ConditionMessenger cm(latent);
    Plate draws("_num_predictive_samples", n, PlateOptions().dim(dim));
    try {
      model();
    } catch (const Error&) {
      ember::detail::rethrow_with_shapes(tm.trace());
    }
    m = tm.get_trace();
  }
  const int64_t model_nesting = deepest_plate(m0);
  ValueMap out;
  for (const auto& name : returned_sites(m0, o, guide != nullptr, posterior_samples)) {
    const Site* s = m.find(name);
    const Site* s0 = m0.find(name);
    if (!s) throw ValueError(cat("Predictive: return site '", name, "' is not a site of the model"));
    const std::vector<int64_t> shape = returned_shape(*s0, n, model_nesting);
    int64_t want = 1;
    for (auto d : shape) want *= d;
    try {
      out.emplace(name, s->value.numel() == want ? s->value.reshape(shape) : s->value.expand(shape).clone());
    } catch (const c10::Error&) {
      throw ShapeError(cat("Predictive(parallel): site '", name, "' has shape ", shape_str(s->value.sizes()),
                           " in the vectorised run, which does not give ", shape_str(shape),
                           "; does the model broadcast over the sample plate at dim ", dim, "?"));
    }
  }
  return out;
}

}  // namespace

ValueMap detail::predictive(const Program& model, const Program* guide, const ValueMap& posterior_samples,
                            const PredictiveOptions& o) {
  torch::NoGradGuard no_grad;
  int64_t n = o.num_samples();
  if (!guide) {
    for (const auto& [name, v] : posterior_samples) {
      if (!v.defined() || v.dim() == 0)
        throw ShapeError(cat("Predictive: posterior sample '", name, "' needs a leading sample dim"));
      if (n == 0) n = v.size(0);
      if (v.size(0) < n)
        throw ShapeError(cat("Predictive: posterior sample '", name, "' has ", v.size(0), " draws but num_samples is ", n));
    }
  }
  if (n == 0) n = 1;
  if (o.parallel()) return predictive_parallel(model, guide, posterior_samples, n, o);
  std::map<std::string, std::vector<torch::Tensor>> collected;
  std::map<std::string, std::vector<int64_t>> shapes;  // from the first draw
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) {
    ValueMap latent;
    if (guide) {
      Trace g = trace(*guide).get_trace();
      for (const auto& s : g)
        if (is_sample(s) && !s.is_observed) latent.emplace(s.name, s.value);
    } else {
      for (const auto& [name, v] : posterior_samples) latent.emplace(name, v[i]);
    }
    Trace m;
    {
      TraceMessenger tm;
      ConditionMessenger cm(latent);
      try {
        model();
      } catch (const Error&) {
        ember::detail::rethrow_with_shapes(tm.trace());
      }
      m = std::move(tm.trace());
    }
    if (i == 0) {
      names = returned_sites(m, o, guide != nullptr, posterior_samples);
      const int64_t model_nesting = deepest_plate(m);
      for (const auto& name : names) shapes[name] = returned_shape(m.at(name), n, model_nesting);
    }
    for (const auto& name : names) {
      const Site* s = m.find(name);
      if (!s) throw ValueError(cat("Predictive: site '", name, "' is in the first draw of the model but not in draw ", i));
      collected[name].push_back(s->value);
    }
  }
  ValueMap out = stack_all(collected);
  for (auto& [name, value] : out) {
    const auto& shape = shapes.at(name);
    if (value.numel() != c10::multiply_integers(shape))
      throw ShapeError(cat("Predictive: site '", name, "' has draws of shape ", shape_str(value.sizes()),
                           ", which does not give Pyro's shape ", shape_str(shape)));
    value = value.reshape(shape);
  }
  return out;
}

ImportanceResult detail::importance(const Program& model, const Program* guide, int64_t num_samples) {
  if (num_samples < 1) throw ValueError(cat("Importance: num_samples must be >= 1, got ", num_samples));
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> log_w;
  std::map<std::string, std::vector<torch::Tensor>> collected;
  for (int64_t i = 0; i < num_samples; ++i) {
    Trace m;
    torch::Tensor lw;
    if (guide) {
      Trace g = trace(*guide).get_trace();
      {
        TraceMessenger tm;
        ReplayMessenger rm(borrow(g));
        model();
        m = std::move(tm.trace());
      }
      lw = m.log_prob_sum() - g.log_prob_sum();
    } else {
      m = trace(model).get_trace();
      // The prior is the proposal: the weight is the likelihood of the observations.
      lw = m.log_prob_sum([](const Site& s) { return s.is_observed; });
    }
    log_w.push_back(lw.to(torch::kDouble).reshape({}));
    for (const auto& s : m)
      if (is_sample(s) && !s.is_observed) collected[s.name].push_back(s.value);
  }
  ImportanceResult r;
  r.log_weights = torch::stack(log_w);
  r.samples = stack_all(collected);
  return r;
}

double ImportanceResult::log_evidence() const {
  return (torch::logsumexp(log_weights, 0) - std::log(static_cast<double>(log_weights.size(0)))).item<double>();
}

double ImportanceResult::effective_sample_size() const {
  return torch::exp(2 * torch::logsumexp(log_weights, 0) - torch::logsumexp(2 * log_weights, 0)).item<double>();
}

torch::Tensor ImportanceResult::normalized_weights() const { return torch::softmax(log_weights, 0); }

torch::Tensor ImportanceResult::mean(const std::string& site) const {
  auto it = samples.find(site);
  if (it == samples.end()) throw ValueError(cat("Importance: no latent site named '", site, "'"));
  auto w = normalized_weights().to(it->second.dtype());
  std::vector<int64_t> shape(static_cast<size_t>(it->second.dim()), 1);
  shape[0] = w.size(0);
  return (w.reshape(shape) * it->second).sum(0);
}

}  // namespace ember::infer
