// Autoguides: parity with Pyro 1.8.4 (scripts/pyro_fixtures/autoguide.py), closed-form
// posteriors, constrained latents, subsampled local latents, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "distributions/distributions.h"
#include "inference/inference.h"
#include "ppl/ppl.h"
#include "pyro_fixture.h"

using namespace ember;
using namespace ember::infer;
using ember::testing::fixture_tensor;
using ember::testing::pyro_cases;

namespace {

torch::Tensor T(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), torch::kDouble); }
torch::Tensor S(double v) { return torch::tensor(v, torch::kDouble); }

// The programs of scripts/pyro_fixtures/autoguide.py.
void model(const torch::Tensor& data) {
  auto mu = sample("mu", dist::Normal(S(0.), S(2.)));
  auto sigma = sample("sigma", dist::LogNormal(S(0.), S(1.)));
  auto p = sample("p", dist::Beta(S(2.), S(3.)));
  auto w = sample("w", dist::Dirichlet(T({1., 2., 3.})));
  auto pl = plate("data", 4);
  auto l = sample("l", dist::Normal(mu, S(1.)));
  sample("x", dist::Normal(l * p + w.select(-1, 0), sigma), data);
}
const torch::Tensor kData = T({0.3, -1.2, 2.0, 0.7});
ValueMap init_values() {
  return {{"mu", S(0.5)}, {"sigma", S(1.5)}, {"p", S(0.3)}, {"w", T({0.2, 0.3, 0.5})}, {"l", T({0.1, -0.4, 1.1, 0.6})}};
}

void model_sub(const torch::Tensor& data) {
  auto mu = sample("mu", dist::Normal(S(0.), S(1.)));
  auto pl = plate("data", 6, PlateOptions().subsample_size(3));
  auto l = sample("l", dist::Normal(mu, S(1.)));
  sample("x", dist::Normal(l, S(0.5)), pl.subsample(data));
}
const torch::Tensor kSubData = T({0.3, -1.2, 2.0, 0.7, 1.5, -0.1});
ValueMap sub_init_values() {
  // Pyro's SUB_INIT: l at the sorted subsample indices [1, 4, 5].
  return {{"mu", S(0.2)}, {"l", T({-0.4, 0.9, -0.3})}};
}

ValueMap fixture_map(const nlohmann::json& j) {
  ValueMap out;
  for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = fixture_tensor(it.value());
  return out;
}

void check_close(const torch::Tensor& ours, const torch::Tensor& ref, const std::string& what, double tol = 1e-6) {
  INFO(what << ": ours " << ours << " Pyro " << ref);
  REQUIRE(ours.sizes() == ref.sizes());
  CHECK(torch::allclose(ours.to(torch::kDouble), ref, tol, tol));
}

// Builds the guide with init_to_value, runs it once, and compares params, the fixed-draw
// ELBO and its gradients, site values, medians and quantiles with Pyro's.
template <class Guide, class Model>
void check_against_pyro(const std::string& case_name, Model mdl, const torch::Tensor& data, ValueMap init,
                        ValueMap cond = {}, AutoGuideOptions options = {}) {
  INFO("case " << case_name);
  const auto& ref = pyro_cases("autoguide").at(case_name);
  clear_param_store();
  ValueMap ref_params = fixture_map(ref.at("params"));
  for (const auto& [name, v] : ref_params)  // random in Pyro: take its draw
    if (name.find("cov_factor") != std::string::npos) get_param_store().set(name, v);
  Guide guide(mdl, options.init_loc_fn(init_to_value(std::move(init))));
  auto guide_fn = [&guide](const torch::Tensor& d) { guide(d); };
  {
    auto c = condition(cond);
    guide(data);
  }
  // Param names, shapes and values.
  std::set<std::string> ours_names;
  for (const auto& n : get_param_store().names()) ours_names.insert(n);
  std::set<std::string> ref_names;
  for (const auto& [n, v] : ref_params) ref_names.insert(n);
  CHECK(ours_names == ref_names);
  for (const auto& [n, v] : ref_params) {
    torch::Tensor ours = get_param_store().get(n);
    if (n.find("scale_tril") != std::string::npos) ours = ours.tril(-1) + torch::eye(ours.size(0), ours.options());
    check_close(ours, v, "param " + n);
  }
  // Fixed draws: the ELBO, the two log-densities and the gradients.
  ValueMap cond_all = fixture_map(ref.at("aux"));
  for (const auto& [k, v] : cond) cond_all[k] = v;
  Trace guide_tr = trace(condition(guide_fn, cond_all)).get_trace(data);
  Trace model_tr = trace(replay(condition(mdl, cond), guide_tr)).get_trace(data);
  torch::Tensor model_lp = model_tr.log_prob_sum(), guide_lp = guide_tr.log_prob_sum();
  check_close(model_lp, fixture_tensor(ref.at("model_log_prob")), "model log p");
  check_close(guide_lp, fixture_tensor(ref.at("guide_log_prob")), "guide log q");
  torch::Tensor elbo = model_lp - guide_lp;
  check_close(elbo, fixture_tensor(ref.at("elbo")), "ELBO");
  std::vector<std::string> names;
  std::vector<torch::Tensor> leaves;
  for (auto it = ref.at("grads").begin(); it != ref.at("grads").end(); ++it) {
    names.push_back(it.key());
    leaves.push_back(get_param_store().unconstrained(it.key()));
  }
  auto grads = torch::autograd::grad({elbo}, leaves, {}, false, false, /*allow_unused=*/true);
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& g_ref = ref.at("grads").at(names[i]);
    torch::Tensor g = grads[i].defined() ? grads[i] : torch::zeros_like(leaves[i]);
    if (g_ref.at("constrained").get<bool>()) {  // elementwise constraint: compare d ELBO / d value
      torch::Tensor u = leaves[i].detach().clone().requires_grad_();
      auto t = transforms::transform_to(get_param_store().constraint(names[i]));
      torch::Tensor dc = torch::autograd::grad({t->forward(u).sum()}, {u})[0];
      g = g / dc;
    }
    check_close(g, fixture_tensor(g_ref.at("grad")), "gradient of " + names[i]);
  }
  for (const auto& [site, v] : fixture_map(ref.at("values"))) check_close(guide_tr.at(site).value, v, "value of " + site);
  // Accessors.
  ValueMap med = guide.median();
  // Pyro's AutoDelta.median() reruns the guide, so under a subsampled plate it returns a random
  // subsample; Ember's returns the full-size params (compared above).
  if (case_name != "subsample_AutoDelta")
    for (const auto& [site, v] : fixture_map(ref.at("median"))) check_close(med.at(site), v, "median of " + site);
  if (ref.contains("quantiles")) {
    ValueMap q = guide.quantiles({0.1, 0.5, 0.9});
    for (const auto& [site, v] : fixture_map(ref.at("quantiles"))) check_close(q.at(site), v, "quantiles of " + site);
  }
}

}  // namespace

TEST_CASE("Pyro parity: autoguides' params, fixed-draw ELBO and gradients, medians, quantiles") {
  SUBCASE("AutoNormal") { check_against_pyro<AutoNormal<decltype(&model)>>("AutoNormal", &model, kData, init_values()); }
  SUBCASE("AutoDelta") { check_against_pyro<AutoDelta<decltype(&model)>>("AutoDelta", &model, kData, init_values()); }
  SUBCASE("AutoDiagonalNormal") {
    check_against_pyro<AutoDiagonalNormal<decltype(&model)>>("AutoDiagonalNormal", &model, kData, init_values());
  }
  SUBCASE("AutoMultivariateNormal") {
    check_against_pyro<AutoMultivariateNormal<decltype(&model)>>("AutoMultivariateNormal", &model, kData, init_values());
  }
  SUBCASE("AutoLowRankMultivariateNormal") {
    check_against_pyro<AutoLowRankMultivariateNormal<decltype(&model)>>(
        "AutoLowRankMultivariateNormal", &model, kData, init_values(), {}, AutoGuideOptions().rank(2));
  }
}

TEST_CASE("Pyro parity: AutoNormal and AutoDelta on a subsampled plate with local latents") {
  ValueMap cond{{"data", fixture_tensor(pyro_cases("autoguide").at("subsample_idx"), torch::kLong)}};
  SUBCASE("AutoNormal") {
    check_against_pyro<AutoNormal<decltype(&model_sub)>>("subsample_AutoNormal", &model_sub, kSubData,
                                                          sub_init_values(), cond);
  }
  SUBCASE("AutoDelta") {
    check_against_pyro<AutoDelta<decltype(&model_sub)>>("subsample_AutoDelta", &model_sub, kSubData, sub_init_values(),
                                                         cond);
  }
}

TEST_CASE("Pyro parity: init_to_mean and init_to_feasible") {
  auto m = [] {
    sample("a", dist::Normal(S(1.), S(2.)));
    sample("b", dist::LogNormal(S(0.5), S(1.)));
    sample("c", dist::Beta(S(2.), S(3.)));
    sample("d", dist::Dirichlet(T({1., 2., 3.})));
    sample("e", dist::Gamma(S(2.), S(3.)).expand({2})->to_event(1));
  };
  for (std::string strategy : {"init_to_mean", "init_to_feasible"}) {
    INFO(strategy);
    clear_param_store();
    AutoDelta guide(m, AutoGuideOptions().init_loc_fn(strategy == "init_to_mean" ? init_to_mean() : init_to_feasible()));
    guide();
    ValueMap med = guide.median();
    for (const auto& [site, v] : fixture_map(pyro_cases("autoguide").at(strategy)))
      check_close(med.at(site), v, strategy + " " + site);
  }
}
