// Small causal models with exact answers, and the query functions that ask Ember for them.
#include "examples/causal_basics/causal_basics.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include "inference/inference.h"
#include "ppl/ppl.h"

namespace ember::causal_basics {

namespace {

torch::Tensor vec(const std::vector<double>& v) { return torch::tensor(v, torch::kFloat64); }

torch::Tensor twin_value(const torch::Tensor& v) { return gather(v, {{kTwinWorld, {1}}}); }

}  // namespace

torch::Tensor scalar(double v) { return torch::tensor(v, torch::kFloat64); }

// ------------------------------------------------------------------ exact queries

double log_joint(const Model& model, const Query& query) {
  auto program = [&] {
    // Outermost of the program, so that it sees which sites the evidence observes.
    auto enumerate = config_enumerate();
    std::optional<TwinWorldCounterfactual> twin;
    if (query.worlds() == Worlds::twin) twin.emplace();
    auto act = do_(query.intervention());
    auto obs = condition(query.evidence());
    ValueMap values = model();
    // log 1[event]: 0 where it holds, -inf elsewhere; summed with the rest by the enumeration.
    if (query.event()) factor("event", torch::log(query.event()(values).to(torch::kFloat64)));
  };
  auto no_guide = [] {};
  // A world dim counts as a plate dim; enumeration takes the dims left of it. The loss is
  // +inf for an impossible event, which is a legitimate answer here (probability 0).
  infer::TraceEnum_ELBO elbo(infer::ELBOOptions().max_plate_nesting(1).check_finite(false));
  return -elbo.loss(program, no_guide);
}

double probability(const Model& model, const Query& query) {
  Query evidence_only = query;
  evidence_only.event(nullptr);
  const double log_evidence = log_joint(model, evidence_only);
  if (!std::isfinite(log_evidence))
    throw ValueError(cat("probability: the evidence has probability 0 (log p = ", log_evidence, "); the event cannot be conditioned on it"));
  return std::exp(log_joint(model, query) - log_evidence);
}

// ------------------------------------------------------------------ mechanisms

torch::Tensor binary_mechanism(const std::string& name, const torch::Tensor& p, const torch::Tensor& parent_config, Noise noise) {
  auto probs = p.to(torch::kFloat64).flatten();
  auto p_parents = probs.index({parent_config.to(torch::kLong)});
  if (noise == Noise::uniform) {
    auto u = sample("U_" + name, dist::Uniform(scalar(0.0), scalar(1.0)));
    auto value = (u < p_parents).to(torch::kFloat64);
    return sample(name, dist::Delta(value), SampleOptions().obs(value));
  }
  std::vector<double> cuts = {0.0, 1.0};
  for (int64_t k = 0; k < probs.size(0); ++k) {
    const double pk = probs[k].item<double>();
    if (!(pk >= 0.0 && pk <= 1.0)) throw ValueError(cat("binary_mechanism '", name, "': P(", name, " = 1 | config ", k, ") = ", pk, " is not in [0, 1]"));
    cuts.push_back(pk);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  // Cell j is (cuts[j], cuts[j + 1]); U < p[k] exactly when the cell's upper end is <= p[k]
  // (the values compared are the same doubles).
  std::vector<double> upper(cuts.begin() + 1, cuts.end()), width;
  for (size_t j = 0; j + 1 < cuts.size(); ++j) width.push_back(cuts[j + 1] - cuts[j]);
  auto u = sample("U_" + name, dist::Categorical(vec(width)));
  auto value = (vec(upper).index({u.to(torch::kLong)}) <= p_parents).to(torch::kFloat64);
  return sample(name, dist::Delta(value), SampleOptions().obs(value));
}

// ------------------------------------------------------------------ sunscreen -> sunburn

ValueMap Sunscreen::operator()() const {
  if (!confounded) {
    auto c = sample("C", dist::Bernoulli(scalar(p_c)));
    auto o = binary_mechanism("O", vec(p_o_given_c), c);
    return {{"C", c}, {"O", o}};
  }
  auto u = sample("U", dist::Bernoulli(scalar(p_sun)));
  auto c = binary_mechanism("C", vec(p_c_given_u), u);
  auto o = binary_mechanism("O", vec(p_o_given_cu), 2 * u + c);
  return {{"U", u}, {"C", c}, {"O", o}};
}

// ------------------------------------------------------------------ confounder and mediator

ValueMap Mediator::operator()() const {
  auto z = sample("Z", dist::Bernoulli(scalar(p_z)));
  auto x = binary_mechanism("X", vec(p_x), z, noise);
  auto m = binary_mechanism("M", vec(p_m), x, noise);
  auto y = binary_mechanism("Y", vec(p_y), 2 * m + z, noise);
  return {{"Z", z}, {"X", x}, {"M", m}, {"Y", y}};
}

double p_y_do_x(const Mediator& m, double x) {
  return probability(m, Query().intervention({{"X", scalar(x)}}).event([](const ValueMap& v) { return v.at("Y") == 1; }));
}

double p_counterfactual_y(const Mediator& m, double x, double y, double x_cf) {
  return probability(m, Query()
                            .worlds(Worlds::twin)
                            .intervention({{"X", scalar(x_cf)}})
                            .evidence({{"X", scalar(x)}, {"Y", scalar(y)}})
                            .event([](const ValueMap& v) { return twin_value(v.at("Y")) == 1; }));
}

Causation probabilities_of_causation(const Model& model) {
  // Y had X been `x_cf`, for the units with X = x, Y = y: the event Y_{x_cf} = y_cf.
  auto unit = [&](double x, double y, double x_cf, double y_cf) {
    return Query()
        .worlds(Worlds::twin)
        .intervention({{"X", scalar(x_cf)}})
        .evidence({{"X", scalar(x)}, {"Y", scalar(y)}})
        .event([y_cf](const ValueMap& v) { return twin_value(v.at("Y")) == y_cf; });
  };
  Causation r;
  r.pn = probability(model, unit(1, 1, 0, 0));
  r.ps = probability(model, unit(0, 0, 1, 1));
  // Y_1 = 1 and Y_0 = 0: by consistency, Y = 1 and Y_0 = 0 where X = 1; Y_1 = 1 and Y = 0 where X = 0.
  r.pns = std::exp(log_joint(model, unit(1, 1, 0, 0))) + std::exp(log_joint(model, unit(0, 0, 1, 1)));
  return r;
}

// ------------------------------------------------------------------ linear-Gaussian SCM

ValueMap LinearGaussian::operator()() const {
  auto z = sample("Z", dist::Normal(scalar(0.0), scalar(s_z)));
  auto x = sample("X", dist::Normal(a * z, scalar(s_x)));
  auto m = sample("M", dist::Normal(b * x, scalar(s_m)));
  auto y = sample("Y", dist::Normal(c * m + d * z, scalar(s_y)));
  return {{"Z", z}, {"X", x}, {"M", m}, {"Y", y}};
}

namespace {

// d outputs[k] / d inputs[i] (0 where an output does not depend on an input).
torch::Tensor jacobian(const std::vector<torch::Tensor>& outputs, const std::vector<torch::Tensor>& inputs, bool create_graph) {
  std::vector<torch::Tensor> rows;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (!outputs[k].requires_grad()) {
      rows.push_back(torch::zeros({static_cast<int64_t>(inputs.size())}, torch::kFloat64));
      continue;
    }
    auto g = torch::autograd::grad({outputs[k]}, inputs, {}, /*retain_graph=*/true, create_graph, /*allow_unused=*/true);
    std::vector<torch::Tensor> row;
    for (size_t i = 0; i < inputs.size(); ++i)
      row.push_back(g[i].defined() ? g[i].reshape({}) : torch::zeros({}, torch::kFloat64));
    rows.push_back(torch::stack(row));
  }
  return torch::stack(rows);
}

std::vector<torch::Tensor> latent_points(const std::vector<std::string>& latents, const torch::Tensor& at) {
  std::vector<torch::Tensor> theta;
  for (size_t i = 0; i < latents.size(); ++i)
    theta.push_back(at[static_cast<int64_t>(i)].detach().clone().requires_grad_(true));
  return theta;
}

}  // namespace

Gaussian gaussian_posterior(const Model& model, const ValueMap& evidence, const std::vector<std::string>& latents) {
  const auto n = static_cast<int64_t>(latents.size());
  auto theta = latent_points(latents, torch::zeros({n}, torch::kFloat64));
  ValueMap fixed = evidence;
  for (size_t i = 0; i < latents.size(); ++i) fixed[latents[i]] = theta[i];
  auto tr = trace();
  {
    auto obs = condition(fixed);
    model();
  }
  Trace t = tr.get_trace();
  for (const auto& name : latents)
    if (!t.contains(name) || t.at(name).value.dim() != 0)
      throw ValueError(cat("gaussian_posterior: latent '", name, "' must be a scalar sample site of the model"));
  t.compute_log_prob();
  auto log_p = t.log_prob_sum();
  // log p is quadratic in the latents: gradient g and Hessian H at 0 give the mode -H^-1 g.
  auto g = jacobian({log_p}, theta, /*create_graph=*/true)[0];
  std::vector<torch::Tensor> g_parts;
  for (int64_t i = 0; i < n; ++i) g_parts.push_back(g[i]);
  auto H = jacobian(g_parts, theta, /*create_graph=*/false).detach();
  auto cov = torch::linalg_inv(-H);
  if (!torch::all(torch::linalg_eigvalsh(cov) > 0).item<bool>())
    throw ValueError("gaussian_posterior: the log density is not concave in the latents; the model is not linear-Gaussian in them");
  return {cov.matmul(g.detach()), cov};
}

Gaussian gaussian_counterfactual(const Model& model, const ValueMap& evidence, const ValueMap& intervention,
                                 const std::vector<std::string>& latents, const std::vector<std::string>& outputs) {
  const Gaussian post = gaussian_posterior(model, evidence, latents);
  auto theta = latent_points(latents, post.mean);
  ValueMap factual = evidence;
  for (size_t i = 0; i < latents.size(); ++i) factual[latents[i]] = theta[i];
  std::vector<torch::Tensor> cf;
  {
    // Abduction: the factual world takes the latents' values; action: do_; prediction: world 1.
    auto worlds = twin_world();
    auto act = do_(intervention);
    auto obs = condition(factual);
    ValueMap v = model();
    for (const auto& name : outputs) cf.push_back(worlds.gather(v.at(name), worlds.counterfactual()).reshape({}));
  }
  // The counterfactual values are affine in the latents: exact mean and covariance.
  auto J = jacobian(cf, theta, /*create_graph=*/false);
  return {torch::stack(cf).detach(), J.matmul(post.cov).matmul(J.t())};
}

// ------------------------------------------------------------------ smoking, tar and cancer

SmokingData load_smoking_data(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ValueError(cat("load_smoking_data: cannot open '", path, "'"));
  std::string line;
  std::getline(in, line);
  if (line != "C,S,T,L") throw ValueError(cat(path, ":1: expected the header 'C,S,T,L', got '", line, "'"));
  std::vector<int64_t> S;
  std::vector<double> T, L;
  auto code = [&](const std::string& v, const std::vector<std::string>& levels, int64_t line_no, const char* column) {
    for (size_t i = 0; i < levels.size(); ++i)
      if (v == levels[i]) return static_cast<int64_t>(i);
    throw ValueError(cat(path, ":", line_no, ": column ", column, " has '", v, "', not one of the expected levels"));
  };
  for (int64_t line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (f.size() != 4) throw ValueError(cat(path, ":", line_no, ": expected 4 comma-separated fields, got ", f.size()));
    S.push_back(code(f[1], {"Low", "Med", "High"}, line_no, "S"));
    T.push_back(static_cast<double>(code(f[2], {"Low", "High"}, line_no, "T")));
    L.push_back(static_cast<double>(code(f[3], {"FALSE", "TRUE"}, line_no, "L")));
  }
  if (S.empty()) throw ValueError(cat(path, ": no data rows"));
  return {torch::tensor(S, torch::kLong), torch::tensor(T, torch::kFloat64), torch::tensor(L, torch::kFloat64)};
}

void smoking_model(const SmokingData& data) {
  auto two = [](std::vector<int64_t> shape) { return torch::full(shape, 2.0, torch::kFloat64); };
  auto theta_s = sample("theta_S", dist::Dirichlet(two({3})));
  auto theta_t = sample("theta_T", dist::Beta(two({3}), two({3})).to_event(1));
  auto theta_l = sample("theta_L", dist::Beta(two({2, 3}), two({2, 3})).to_event(2));
  auto smokers = plate("smokers", data.size());
  sample("S", dist::Categorical(theta_s), data.S);
  sample("T", dist::Bernoulli(theta_t.index({data.S})), data.T);
  sample("L", dist::Bernoulli(theta_l.index({data.T.to(torch::kLong), data.S})), data.L);
}

void smoking_guide(const SmokingData&) {
  auto half = [](std::vector<int64_t> shape) { return torch::full(shape, 0.5, torch::kFloat64); };
  sample("theta_S", dist::Delta(param("theta_S_map", torch::full({3}, 1.0 / 3, torch::kFloat64), constraints::simplex()), 1));
  sample("theta_T", dist::Delta(param("theta_T_map", half({3}), constraints::unit_interval()), 1));
  sample("theta_L", dist::Delta(param("theta_L_map", half({2, 3}), constraints::unit_interval()), 2));
}

SmokingCPTs fit_smoking(const SmokingData& data, const FitOptions& options, std::vector<double>* losses) {
  infer::SVI svi(smoking_model, smoking_guide, infer::ClippedAdam(infer::ClippedAdamOptions().lr(options.lr()).lrd(options.lrd())),
                 infer::Trace_ELBO());
  for (int64_t i = 0; i < options.steps(); ++i) {
    const double loss = svi.step(data);
    if (losses) losses->push_back(loss);
  }
  auto& store = get_param_store();
  return {store.get("theta_S_map").detach().clone(), store.get("theta_T_map").detach().clone(),
          store.get("theta_L_map").detach().clone()};
}

ValueMap Smoking::operator()() const {
  auto d = sample("D", dist::Categorical(cpt.p_s));
  auto s_value = d.to(torch::kFloat64);
  auto s = sample("S", dist::Delta(s_value), SampleOptions().obs(s_value));
  auto t = binary_mechanism("T", cpt.p_t, s);
  auto l = binary_mechanism("L", cpt.p_l.flatten(), 3 * t + d);
  return {{"D", d}, {"S", s}, {"T", t}, {"L", l}};
}

}  // namespace ember::causal_basics
