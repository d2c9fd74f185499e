// Predictive and Importance.
#include "inference/predictive.h"

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

int64_t deepest_plate(const Trace& t) {
  int64_t n = 0;
  for (const auto& s : t)
    for (const auto& f : s.cond_indep_stack)
      if (f.vectorized) n = std::max(n, -f.dim);
  return n;
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
      shape.insert(shape.end(), static_cast<size_t>(std::max<int64_t>(0, nesting - static_cast<int64_t>(rest.size()))), 1);
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
  std::vector<std::string> names = o.return_sites();
  if (names.empty())
    for (const auto& s : m0)
      if (is_sample(s) && !first.count(s.name)) names.push_back(s.name);
  ValueMap out;
  for (const auto& name : names) {
    const Site* s = m.find(name);
    const Site* s0 = m0.find(name);
    if (!s || !s0) throw ValueError(cat("Predictive: return site '", name, "' is not a site of the model"));
    std::vector<int64_t> shape{n};
    const auto one = s0->value.sizes();
    shape.insert(shape.end(), one.begin(), one.end());
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
    if (o.return_sites().empty()) {
      for (const auto& s : m)
        if (is_sample(s) && !latent.count(s.name)) collected[s.name].push_back(s.value);
    } else {
      for (const auto& name : o.return_sites()) {
        const Site* s = m.find(name);
        if (!s) throw ValueError(cat("Predictive: return site '", name, "' is not a site of the model"));
        collected[name].push_back(s->value);
      }
    }
  }
  return stack_all(collected);
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
