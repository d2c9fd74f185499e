// MCMC: the potential energy against Pyro 1.8.4 (tests/fixtures/pyro/mcmc.json), diagnostics
// against Stan's definitions, and NUTS/HMC posteriors against closed forms within Monte-Carlo
// error (from the measured bulk ESS), fixed seeds.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <ATen/CPUGeneratorImpl.h>

#include "inference/mcmc/mcmc.h"
#ifdef EMBER_CAUSAL_BASICS_DATA
#include "examples/causal_basics/causal_basics.h"
#endif
#include "inference/predictive.h"
#include "ppl/ppl.h"
#include "pyro_fixture.h"

using namespace ember;
using namespace ember::infer::mcmc;
using ember::testing::fixture_tensor;
using ember::testing::pyro_cases;

namespace {

torch::Tensor T(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), torch::kDouble); }
torch::Tensor S(double v) { return torch::tensor(v, torch::kDouble); }

// The models of scripts/pyro_fixtures/mcmc.py.
void normal_normal() {
  auto mu = sample("mu", dist::Normal(S(0.0), S(10.0)));
  auto p = plate("data", 5);
  sample("y", dist::Normal(mu, S(1.0)), T({0.3, 1.9, 1.1, -0.4, 2.2}));
}

void constrained() {
  auto loc = sample("loc", dist::Normal(S(0.0), S(1.0)));
  auto scale = sample("scale", dist::Gamma(S(2.0), S(1.0)));
  auto p = sample("p", dist::Beta(S(2.0), S(3.0)));
  auto w = sample("w", dist::Dirichlet(T({1.0, 2.0, 3.0})));
  auto u = sample("u", dist::Uniform(S(-1.0), S(3.0)));
  auto data = plate("data", 4);
  sample("y", dist::LogNormal(loc + u, scale), T({0.5, 1.7, 2.9, 0.8}));
  sample("k", dist::Categorical(w), torch::tensor({0, 2, 2, 1}, torch::kLong));
  sample("b", dist::Bernoulli(p), T({1.0, 0.0, 1.0, 1.0}));
}

void eight_schools() {
  auto mu = sample("mu", dist::Normal(S(0.0), S(5.0)));
  auto tau = sample("tau", dist::HalfCauchy(S(5.0)));
  auto schools = plate("schools", 8);
  auto theta = sample("theta", dist::Normal(mu, tau));
  sample("y", dist::Normal(theta, T({15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0})),
         T({28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0}));
}

// The models of scripts/pyro_fixtures/mcmc_enum.py (discrete latents enumerated out).
void gmm() {
  auto weights = sample("weights", dist::Dirichlet(T({1.0, 1.0, 1.0})));
  torch::Tensor locs;
  {
    auto components = plate("components", 3);
    locs = sample("locs", dist::Normal(S(0.0), S(10.0)));
  }
  auto scale = sample("scale", dist::LogNormal(S(0.0), S(1.0)));
  auto data = plate("data", 6);
  auto z = sample("z", dist::Categorical(weights));
  sample("x", dist::Normal(locs.index({z}), scale), T({-2.1, -1.7, 0.2, 2.5, 3.1, 2.2}));
}

void global_local() {
  auto p = sample("p", dist::Beta(S(2.0), S(2.0)));
  auto mu = sample("mu", dist::Normal(S(0.0), S(3.0)));
  auto delta = sample("delta", dist::Normal(S(0.0), S(1.0)));
  auto c = sample("c", dist::Bernoulli(S(0.3)));
  auto data = plate("data", 5);
  auto z = sample("z", dist::Bernoulli(p));
  sample("x", dist::Normal(mu * z + delta * c, S(1.0)), T({0.3, 2.9, 3.4, -0.2, 1.1}));
}

InferConfig parallel() {
  InferConfig c;
  c.enumerate = "parallel";
  return c;
}

void marked() {
  auto locs = sample("locs", dist::Normal(T({0.0, 1.0}), S(2.0)).to_event(1));
  auto data = plate("data", 4);
  auto z = sample("z", dist::Categorical(T({0.4, 0.6})), SampleOptions().infer(parallel()));
  sample("k", dist::Bernoulli(S(0.5)), T({1.0, 0.0, 1.0, 1.0}));
  sample("x", dist::Normal(locs.index({z}), S(1.0)), T({1.2, -0.4, 2.2, 0.9}));
}

// Eight schools, non-centred (posteriordb's eight_schools_noncentered; Stan's theta_trans).
void eight_schools_noncentered() {
  auto mu = sample("mu", dist::Normal(S(0.0), S(5.0)));
  auto tau = sample("tau", dist::HalfCauchy(S(5.0)));
  auto schools = plate("schools", 8);
  auto theta_trans = sample("theta_trans", dist::Normal(S(0.0), S(1.0)));
  sample("y", dist::Normal(mu + tau * theta_trans, T({15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0})),
         T({28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0}));
}

Model fixture_model(const std::string& name) {
  if (name == "gmm") return gmm;
  if (name == "global_local") return global_local;
  if (name == "marked") return marked;
  if (name == "normal_normal") return normal_normal;
  if (name == "constrained") return constrained;
  if (name == "eight_schools") return eight_schools;
  throw std::runtime_error("unknown fixture model " + name);
}

// Posterior mean and variance of a site's scalar draws match (mean, var) within `k` Monte-Carlo
// standard errors: sd/sqrt(ess) for the mean, var*sqrt(2/ess) for the variance (normal-theory).
void check_moments(const MCMC& mcmc, const std::string& site, double mean, double var, double k = 4.0) {
  const torch::Tensor draws = mcmc.get_samples(/*group_by_chain=*/true).at(site);
  const double ess = ess_bulk(draws);
  const torch::Tensor flat = draws.flatten();
  const double m = flat.mean().item<double>(), v = flat.var().item<double>();
  INFO(site, ": mean ", m, " vs ", mean, ", var ", v, " vs ", var, ", bulk ESS ", ess);
  CHECK(ess > 100);
  CHECK(std::abs(m - mean) < k * std::sqrt(var / ess));
  CHECK(std::abs(v - var) < k * var * std::sqrt(2.0 / ess));
}

}  // namespace

TEST_CASE("MCMC potential energy and gradient match Pyro's initialize_model potential_fn") {
  const auto& cases = pyro_cases("mcmc").at("potential");
  for (const auto& [name, points] : cases.items()) {
    const Potential potential(fixture_model(name));
    for (const auto& point : points) {
      ValueMap z_sites;
      for (const auto& [site, v] : point.at("z").items()) z_sites[site] = fixture_tensor(v);
      std::vector<torch::Tensor> parts;
      for (const auto& s : potential.sites()) parts.push_back(z_sites.at(s.name).reshape({-1}));
      CHECK(static_cast<size_t>(potential.sites().size()) == z_sites.size());
      const torch::Tensor z = torch::cat(parts);
      auto [u, grad] = potential.energy_and_grad(z);
      INFO(name, " at ", point.at("z").dump());
      CHECK(u == doctest::Approx(fixture_tensor(point.at("potential")).item<double>()).epsilon(1e-6));
      const ValueMap g = potential.unflatten(grad);
      const ValueMap c = potential.constrain(z);
      for (const auto& s : potential.sites()) {
        INFO("site ", s.name);
        CHECK(torch::allclose(g.at(s.name), fixture_tensor(point.at("grad").at(s.name)), 1e-6, 1e-6));
        CHECK(torch::allclose(c.at(s.name), fixture_tensor(point.at("constrained").at(s.name)), 1e-6, 1e-9));
      }
      CHECK(torch::allclose(potential.unconstrain(c), z, 1e-6, 1e-9));
    }
  }
}

TEST_CASE("MCMC potential with discrete latents enumerated out matches Pyro's (TraceEnum potential)") {
  // Pyro's initialize_model(model, max_plate_nesting=1) enumerates every discrete latent and
  // contracts the log joint along the plate tree; the energies and gradients must agree.
  const auto& cases = pyro_cases("mcmc_enum");
  for (const auto& [name, points] : cases.items()) {
    const Potential potential(fixture_model(name), PotentialOptions().max_plate_nesting(1));
    CHECK(!potential.enumerated_sites().empty());
    for (const auto& point : points) {
      std::vector<torch::Tensor> parts;
      for (const auto& s : potential.sites()) parts.push_back(fixture_tensor(point.at("z").at(s.name)).reshape({-1}));
      CHECK(potential.sites().size() == point.at("z").size());
      auto [u, grad] = potential.energy_and_grad(torch::cat(parts));
      INFO(name, " at ", point.at("z").dump());
      CHECK(u == doctest::Approx(fixture_tensor(point.at("potential")).item<double>()).epsilon(1e-6));
      const ValueMap g = potential.unflatten(grad);
      for (const auto& s : potential.sites()) {
        INFO("site ", s.name);
        CHECK(torch::allclose(g.at(s.name), fixture_tensor(point.at("grad").at(s.name)), 1e-6, 1e-6));
      }
    }
  }
  // max_plate_nesting guessed from the prototype run gives the same energy.
  const Potential guessed(global_local);
  CHECK(guessed.max_plate_nesting() == 1);
  CHECK(guessed.enumerated_sites() == std::vector<std::string>{"c", "z"});
  const torch::Tensor z = T({0.4, 2.5, 0.3});
  CHECK(guessed.energy_and_grad(z).first ==
        doctest::Approx(fixture_tensor(cases.at("global_local")[0].at("potential")).item<double>()).epsilon(1e-6));
}

TEST_CASE("NUTS on a Gaussian mixture with the assignment enumerated out matches quadrature") {
  // Two components with known weights (0.35, 0.65) and unit scale; the component means have
  // priors N(-2, 2^2) and N(2, 2^2). The exact posterior of (mu_0, mu_1) is computed on a grid
  // (the marginal likelihood prod_i sum_k w_k N(x_i | mu_k, 1) in closed form at each point);
  // NUTS must match its means and variances within Monte-Carlo error. The posterior has a
  // label-switched local mode (mu_0 near 2.5, mu_1 near -2) of negligible mass (checked on the
  // grid) in which a chain started there would stay, as HMC does not jump between modes:
  // the chains start at the prior means.
  const torch::Tensor x = T({-2.92, 2.24, 2.65, 2.57, -1.68, 5.78, 1.09, -1.79, 3.32, 1.60, 4.05, 3.16, -0.03, 2.89, 3.65,
                             1.41, 2.84, 1.47, 2.94, -1.69, 1.21, -1.45, 1.80, 3.11, 3.75, 1.64, 3.99, -2.08, 4.61, 2.02});
  const torch::Tensor weights = T({0.35, 0.65}), prior_loc = T({-2.0, 2.0});
  auto model = [&] {
    torch::Tensor locs;
    {
      auto components = plate("components", 2);
      locs = sample("locs", dist::Normal(prior_loc, S(2.0)));
    }
    auto data = plate("data", x.size(0));
    auto z = sample("z", dist::Categorical(weights));  // enumerated by the potential
    sample("x", dist::Normal(locs.index({z}), S(1.0)), x);
  };
  // Quadrature on a 481 x 481 grid over [-6, 6]^2 (posterior sds are about 0.2 to 0.4).
  const torch::Tensor g0 = torch::linspace(-6.0, 6.0, 481, torch::kDouble), g1 = g0;
  const torch::Tensor m0 = g0.view({-1, 1, 1}), m1 = g1.view({1, -1, 1}), xs = x.view({1, 1, -1});
  auto log_n = [](const torch::Tensor& v, const torch::Tensor& loc, double sd) {
    return -0.5 * ((v - loc) / sd).pow(2) - std::log(sd) - 0.5 * std::log(2 * M_PI);
  };
  const torch::Tensor log_lik = torch::logaddexp(std::log(0.35) + log_n(xs, m0, 1.0), std::log(0.65) + log_n(xs, m1, 1.0)).sum(-1);
  const torch::Tensor log_post = log_lik + log_n(g0, S(-2.0), 2.0).view({-1, 1}) + log_n(g1, S(2.0), 2.0).view({1, -1});
  const torch::Tensor w = (log_post - log_post.max()).exp() / (log_post - log_post.max()).exp().sum();
  const torch::Tensor w0 = w.sum(1), w1 = w.sum(0);
  const double mean0 = (w0 * g0).sum().item<double>(), mean1 = (w1 * g1).sum().item<double>();
  const double var0 = (w0 * (g0 - mean0).pow(2)).sum().item<double>(), var1 = (w1 * (g1 - mean1).pow(2)).sum().item<double>();
  // The grid covers the posterior: negligible mass at its edges.
  CHECK((w0.narrow(0, 0, 20).sum() + w0.narrow(0, 461, 20).sum()).item<double>() < 1e-9);
  CHECK((w1.narrow(0, 0, 20).sum() + w1.narrow(0, 461, 20).sum()).item<double>() < 1e-9);
  CHECK((w * (g0.view({-1, 1}) > g1.view({1, -1}))).sum().item<double>() < 1e-3);  // the switched mode

  MCMC mcmc(NUTS(), MCMCOptions().num_samples(400).warmup_steps(300).num_chains(2).seed(4).progress(false)
                        .initial_values({{"locs", prior_loc}}));
  mcmc.run(model);
  const ValueMap by_chain = mcmc.get_samples(true);
  CHECK(by_chain.count("z") == 0);  // summed out, not sampled
  REQUIRE(by_chain.at("locs").sizes() == torch::IntArrayRef({2, 400, 2}));
  for (int k = 0; k < 2; ++k) {
    const torch::Tensor draws = by_chain.at("locs").select(2, k);
    const double ess = ess_bulk(draws), m = draws.mean().item<double>(), v = draws.var().item<double>();
    const double mean = k == 0 ? mean0 : mean1, var = k == 0 ? var0 : var1;
    INFO("locs[", k, "]: mean ", m, " vs ", mean, ", var ", v, " vs ", var, ", bulk ESS ", ess);
    CHECK(ess > 100);
    CHECK(std::abs(m - mean) < 4 * std::sqrt(var / ess));
    CHECK(std::abs(v - var) < 4 * var * std::sqrt(2.0 / ess));
  }
}

TEST_CASE("NUTS on eight schools (non-centred) matches posteriordb's Stan reference within Monte-Carlo error") {
  // tests/fixtures/posteriordb: mean and sd of mu, tau and theta[1..8] over posteriordb's
  // 10,000 reference draws (rstan, bulk ESS about 10,000 each). The difference of two
  // Monte-Carlo estimates has variance mcse_ember^2 + mcse_reference^2; for the sd, the MCSE of
  // the variance is sqrt((m4 - var^2) / ess) (no normality assumed: tau is heavy-tailed).
  std::ifstream in(std::string(EMBER_TEST_DATA_DIR) + "/posteriordb/eight_schools-eight_schools_noncentered.json");
  REQUIRE(in);
  nlohmann::json ref;
  in >> ref;
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(500).warmup_steps(250).num_chains(2).seed(3).progress(false));
  mcmc.run(eight_schools_noncentered);
  const ValueMap draws = mcmc.get_samples(true);
  std::map<std::string, torch::Tensor> params = {{"mu", draws.at("mu")}, {"tau", draws.at("tau")}};
  const torch::Tensor theta = draws.at("mu").unsqueeze(-1) + draws.at("tau").unsqueeze(-1) * draws.at("theta_trans");
  for (int j = 0; j < 8; ++j) params[cat("theta[", j + 1, "]")] = theta.select(2, j);
  CHECK(ref.at("parameters").size() == params.size());
  for (const auto& [name, d] : params) {
    const auto& r = ref.at("parameters").at(name);
    const double ess = ess_bulk(d), ref_ess = r.at("ess_bulk").get<double>();
    const torch::Tensor flat = d.flatten();
    const double mean = flat.mean().item<double>(), var = flat.var().item<double>(), sd = std::sqrt(var);
    const double m4 = (flat - mean).pow(4).mean().item<double>();
    const double ref_mean = r.at("mean").get<double>(), ref_sd = r.at("sd").get<double>();
    const double mcse_mean = std::sqrt(var / ess + ref_sd * ref_sd / ref_ess);
    const double mcse_sd = std::sqrt((m4 - var * var) / (4 * var)) * std::sqrt(1.0 / ess + 1.0 / ref_ess);
    INFO(name, ": mean ", mean, " vs ", ref_mean, " (mcse ", mcse_mean, "), sd ", sd, " vs ", ref_sd, " (mcse ", mcse_sd,
         "), bulk ESS ", ess);
    CHECK(ess > 200);
    CHECK(std::abs(mean - ref_mean) < 4 * mcse_mean);
    CHECK(std::abs(sd - ref_sd) < 4 * mcse_sd);
  }
  for (auto d : mcmc.divergences()) CHECK(d <= 2);  // non-centred: divergence-free up to the odd one (Stan's 0 at adapt_delta 0.95)
}

TEST_CASE("NUTS on eight schools (centred) reports divergences, as Stan does") {
  // The centred funnel: at the default target_accept the sampler cannot follow the neck
  // (small tau), and Stan reports divergent transitions after warmup; so must Ember, in
  // divergences(), the JSON summary and the table.
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(300).warmup_steps(200).num_chains(2).seed(1).progress(false));
  mcmc.run(eight_schools);
  const std::vector<int64_t> per_chain = mcmc.divergences();
  const int64_t divergent = per_chain.at(0) + per_chain.at(1);
  MESSAGE("centred eight schools, seed 1: ", per_chain[0], " + ", per_chain[1], " divergent transitions of 2 x 300");
  CHECK(divergent > 0);
  CHECK(mcmc.summary()["divergences"].get<std::vector<int64_t>>() == per_chain);
  CHECK(mcmc.summary_table().find(cat("Number of divergences: ", divergent)) != std::string::npos);
  for (int c = 0; c < 2; ++c) {
    int64_t from_stats = 0;
    for (const auto& s : mcmc.stats()[c]) from_stats += s.divergent;
    CHECK(from_stats == per_chain[c]);
  }
}

#ifdef EMBER_CAUSAL_BASICS_DATA
TEST_CASE("NUTS on the smoking-tar-cancer model (book data): conjugate posteriors and the front-door effect") {
  // causal_basics::smoking_model: theta_S ~ Dirichlet(2, 2, 2), theta_T[s] ~ Beta(2, 2),
  // theta_L[t, s] ~ Beta(2, 2), every row observed. Each table's posterior is conjugate and
  // the three are independent: Dirichlet(2 + counts of S) and Beta(2 + ones, 2 + zeros) per
  // cell. The front-door effect P(L = 1 | do(S = s)) = sum_t P(t | s) sum_s' P(s') P(L | t, s')
  // has posterior mean sum_t E[P(t | s)] sum_s' E[P(s')] E[P(L | t, s')] (independent factors).
  using namespace ember::causal_basics;
  const SmokingData data = load_smoking_data(std::string(EMBER_CAUSAL_BASICS_DATA) + "/cigs_and_cancer.csv");
  const int64_t n = 300;
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(n).warmup_steps(250).num_chains(2).seed(5).progress(false));
  mcmc.run([&] { smoking_model(data); });
  const ValueMap draws = mcmc.get_samples(true);
  // Conjugate posterior parameters from the counts.
  const torch::Tensor s_counts = torch::bincount(data.S, {}, 3).to(torch::kFloat64);
  const torch::Tensor alpha_s = 2 + s_counts;
  torch::Tensor a_t = torch::full({3}, 2.0, torch::kFloat64), b_t = a_t.clone();
  torch::Tensor a_l = torch::full({2, 3}, 2.0, torch::kFloat64), b_l = a_l.clone();
  for (int64_t i = 0; i < data.size(); ++i) {
    const int64_t s = data.S[i].item<int64_t>(), t = data.T[i].item<double>() > 0.5;
    (data.T[i].item<double>() > 0.5 ? a_t : b_t)[s] += 1;
    (data.L[i].item<double>() > 0.5 ? a_l : b_l)[t][s] += 1;
  }
  auto check_site = [&](const std::string& site, const torch::Tensor& mean, const torch::Tensor& var) {
    const torch::Tensor d = draws.at(site).reshape({2, n, -1});
    const torch::Tensor m = mean.reshape({-1}), v = var.reshape({-1});
    for (int64_t e = 0; e < d.size(2); ++e) {
      const torch::Tensor x = d.select(2, e);
      const double ess = ess_bulk(x), em = x.mean().item<double>(), ev = x.var().item<double>();
      // The variance's MCSE from the ESS of the squared deviations (NUTS draws are often
      // antithetic for the mean, bulk ESS > draws, but not for the variance).
      const torch::Tensor sq = (x - em).pow(2);
      const double ess_sq = ::ember::infer::mcmc::ess(sq);
      const double tm = m[e].item<double>(), tv = v[e].item<double>();
      const double mcse_var = std::sqrt(((sq - sq.mean()).pow(2).mean()).item<double>() / ess_sq);
      INFO(site, "[", e, "]: mean ", em, " vs ", tm, ", var ", ev, " vs ", tv, " (mcse ", mcse_var, "), bulk ESS ", ess,
           ", ESS of squares ", ess_sq);
      CHECK(ess > 200);
      CHECK(std::abs(em - tm) < 4 * std::sqrt(tv / ess));
      CHECK(std::abs(ev - tv) < 4 * mcse_var);
    }
  };
  const double a0 = alpha_s.sum().item<double>();
  const torch::Tensor mean_s = alpha_s / a0;
  check_site("theta_S", mean_s, mean_s * (1 - mean_s) / (a0 + 1));
  auto beta_var = [](const torch::Tensor& a, const torch::Tensor& b) { return a * b / ((a + b).pow(2) * (a + b + 1)); };
  check_site("theta_T", a_t / (a_t + b_t), beta_var(a_t, b_t));
  check_site("theta_L", a_l / (a_l + b_l), beta_var(a_l, b_l));
  // The front-door effect per draw, against its exact posterior mean.
  const torch::Tensor th_s = draws.at("theta_S").flatten(0, 1), th_t = draws.at("theta_T").flatten(0, 1);
  const torch::Tensor th_l = draws.at("theta_L").flatten(0, 1);  // [n, 2, 3]
  const torch::Tensor mean_t = a_t / (a_t + b_t), mean_l = a_l / (a_l + b_l);
  for (int64_t s = 0; s < 3; ++s) {
    // sum_t P(t | s) sum_s' P(s') P(L = 1 | t, s'), t = 1 with P(T = High | s).
    const torch::Tensor inner = (th_l * th_s.unsqueeze(1)).sum(2);  // [n, 2]
    const torch::Tensor effect = th_t.select(1, s) * inner.select(1, 1) + (1 - th_t.select(1, s)) * inner.select(1, 0);
    const torch::Tensor exact_inner = (mean_l * mean_s.unsqueeze(0)).sum(1);
    const double exact = (mean_t[s] * exact_inner[1] + (1 - mean_t[s]) * exact_inner[0]).item<double>();
    const double ess = ess_bulk(effect.reshape({2, n}));
    const double m = effect.mean().item<double>(), sd = effect.std().item<double>();
    MESSAGE("P(L = 1 | do(S = ", s, ")): posterior mean ", m, " (exact ", exact, "), sd ", sd, ", 90% interval [",
            torch::quantile(effect, 0.05).item<double>(), ", ", torch::quantile(effect, 0.95).item<double>(), "], bulk ESS ", ess);
    CHECK(std::abs(m - exact) < 4 * sd / std::sqrt(ess));
  }
  for (auto d : mcmc.divergences()) CHECK(d == 0);
}
#endif

TEST_CASE("Split R-hat and ESS match Stan's definitions on fixed draws") {
  // References: split R-hat from pyro.ops.stats.split_gelman_rubin; ESS (Geyer's initial
  // monotone sequence on multi-chain autocorrelations) and bulk ESS (split chains, rank
  // normalised) written out in plain Python in scripts/pyro_fixtures/mcmc.py.
  for (const auto& c : pyro_cases("mcmc").at("diagnostics")) {
    const torch::Tensor draws = fixture_tensor(c.at("draws"));
    INFO("draws of shape ", draws.sizes());
    CHECK(split_rhat(draws) == doctest::Approx(fixture_tensor(c.at("split_rhat")).item<double>()).epsilon(1e-9));
    CHECK(ess(draws) == doctest::Approx(c.at("ess").get<double>()).epsilon(1e-9));
    CHECK(ess_bulk(draws) == doctest::Approx(c.at("ess_bulk").get<double>()).epsilon(1e-9));
    CHECK(ess_tail(draws) == doctest::Approx(c.at("ess_tail").get<double>()).epsilon(1e-9));
  }
  // Hand check: two constant-offset chains of iid-like alternation have R-hat far above 1.
  CHECK(split_rhat(torch::stack({T({0, 1, 0, 1, 0, 1, 0, 1}), T({5, 6, 5, 6, 5, 6, 5, 6})})) > 3.0);
}

TEST_CASE("NUTS recovers the Normal-Normal posterior within Monte-Carlo error") {
  // mu ~ N(0, 10^2), y_i ~ N(mu, 1): posterior precision 1/100 + 5.
  const double precision = 1.0 / 100 + 5, sum_y = 0.3 + 1.9 + 1.1 - 0.4 + 2.2;
  MCMC mcmc(NUTS(NUTSOptions().target_accept(0.8).max_tree_depth(8)),
            MCMCOptions().num_samples(500).warmup_steps(500).num_chains(2).seed(1).progress(false));
  mcmc.run(normal_normal);
  check_moments(mcmc, "mu", sum_y / precision, 1 / precision);
  for (auto d : mcmc.divergences()) CHECK(d == 0);
  const auto summary = mcmc.summary();
  CHECK(summary["sites"]["mu"]["r_hat"][0].get<double>() < 1.05);
  CHECK(mcmc.summary_table().find("mu") != std::string::npos);
}

TEST_CASE("Predictive accepts MCMC draws: the Normal-Normal posterior predictive") {
  // y_new | data ~ N(posterior mean, 1 + posterior variance).
  const double precision = 1.0 / 100 + 5, sum_y = 0.3 + 1.9 + 1.1 - 0.4 + 2.2;
  auto model = [](const torch::Tensor& y) {
    auto mu = sample("mu", dist::Normal(S(0.0), S(10.0)));
    auto p = plate("data", 5);
    sample("y", dist::Normal(mu, S(1.0)), y);
  };
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(500).warmup_steps(300).num_chains(2).seed(2).progress(false));
  mcmc.run([&] { model(T({0.3, 1.9, 1.1, -0.4, 2.2})); });
  auto seeded = ember::seed(0);  // the predictive noise
  const ValueMap draws = mcmc.get_samples();
  infer::Predictive predictive(model, draws, infer::PredictiveOptions().return_sites({"y"}));
  const torch::Tensor y = predictive(torch::Tensor()).at("y");
  REQUIRE(y.sizes() == torch::IntArrayRef({1000, 5}));
  // Each y_new is mu + unit noise: compare with the draws of mu (exact up to the noise's MC error).
  const torch::Tensor noise = y - draws.at("mu").unsqueeze(1);
  CHECK(std::abs(noise.mean().item<double>()) < 4 / std::sqrt(5000.0));
  CHECK(noise.var().item<double>() == doctest::Approx(1.0).epsilon(4 * std::sqrt(2.0 / 5000)));
  CHECK(y.mean().item<double>() == doctest::Approx(sum_y / precision).epsilon(0.1));
}

TEST_CASE("NUTS recovers constrained conjugate posteriors (Gamma-Poisson, Beta-Binomial)") {
  // rate ~ Gamma(2, 1), y_i ~ Poisson(rate): Gamma(2 + sum y, 1 + n).
  // p ~ Beta(2, 2), k ~ Binomial(10, p): Beta(2 + k, 2 + 10 - k).
  const torch::Tensor y = T({3, 1, 4, 2, 2, 5});
  const double a = 2 + 17, b = 1 + 6, k = 7, alpha = 2 + k, beta = 2 + 10 - k;
  auto model = [&] {
    auto rate = sample("rate", dist::Gamma(S(2.0), S(1.0)));
    {
      auto data = plate("data", 6);
      sample("y", dist::Poisson(rate), y);
    }
    auto p = sample("p", dist::Beta(S(2.0), S(2.0)));
    sample("k", dist::Binomial(S(10.0), p), S(k));
  };
  MCMC mcmc(NUTS(NUTSOptions().adapt_mass_matrix(true)),
            MCMCOptions().num_samples(500).warmup_steps(500).num_chains(2).seed(7).progress(false));
  mcmc.run(model);
  check_moments(mcmc, "rate", a / b, a / (b * b));
  const double pm = alpha / (alpha + beta);
  check_moments(mcmc, "p", pm, pm * (1 - pm) / (alpha + beta + 1));
  CHECK((mcmc.get_samples().at("rate") > 0).all().item<bool>());
}

TEST_CASE("HMC and dense-mass NUTS recover a correlated Gaussian posterior") {
  // x ~ N(0, 1), z ~ N(x, 0.3): the posterior is the prior, strongly correlated (corr ~0.96).
  auto model = [] {
    auto x = sample("x", dist::Normal(S(0.0), S(1.0)));
    sample("z", dist::Normal(x, S(0.3)));
  };
  const double var_z = 1 + 0.09;
  SUBCASE("HMC") {
    MCMC mcmc(HMC(HMCOptions().trajectory_length(2.0)),
              MCMCOptions().num_samples(500).warmup_steps(300).num_chains(2).seed(3).progress(false));
    mcmc.run(model);
    check_moments(mcmc, "x", 0, 1);
    check_moments(mcmc, "z", 0, var_z);
  }
  SUBCASE("NUTS, dense mass matrix") {
    MCMC mcmc(NUTS(NUTSOptions().dense_mass(true)),
              MCMCOptions().num_samples(500).warmup_steps(300).num_chains(2).seed(3).progress(false));
    mcmc.run(model);
    check_moments(mcmc, "x", 0, 1);
    check_moments(mcmc, "z", 0, var_z);
  }
}

TEST_CASE("MCMC with the same seed gives bit-identical draws, another seed different ones") {
  auto run = [](uint64_t seed) {
    MCMC mcmc(NUTS(NUTSOptions().max_tree_depth(4)),
              MCMCOptions().num_samples(50).warmup_steps(50).num_chains(2).seed(seed).progress(false));
    mcmc.run(eight_schools);
    return mcmc.get_samples(true);
  };
  const ValueMap a = run(11), b = run(11), c = run(12);
  for (const char* site : {"mu", "tau", "theta"}) {
    CHECK(torch::equal(a.at(site), b.at(site)));
    CHECK(!torch::equal(a.at(site), c.at(site)));
  }
  CHECK(a.at("theta").sizes() == torch::IntArrayRef({2, 50, 8}));
}

TEST_CASE("MCMC chains on threads give the same draws as chains run one after another") {
  auto run = [](int64_t threads) {
    MCMC mcmc(NUTS(NUTSOptions().max_tree_depth(4)),
              MCMCOptions().num_samples(25).warmup_steps(25).num_chains(3).num_threads(threads).seed(5).progress(false));
    mcmc.run(constrained);
    return mcmc.get_samples(true);
  };
  const ValueMap sequential = run(1), threaded = run(2);
  for (const char* site : {"loc", "scale", "p", "w", "u"}) CHECK(torch::equal(sequential.at(site), threaded.at(site)));
  CHECK(threaded.at("w").sizes() == torch::IntArrayRef({3, 25, 3}));
}

namespace {
// A checkpoint file of its own per test run, removed at the end.
struct TempCheckpoint {
  std::string path = (std::filesystem::temp_directory_path() / ("ember-mcmc-ckpt-" + std::to_string(::getpid()) + ".ember")).string();
  ~TempCheckpoint() { std::filesystem::remove(path); }
};

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

void check_same_run(const MCMC& a, const MCMC& b) {
  const ValueMap x = a.get_samples(true), y = b.get_samples(true);
  REQUIRE(x.size() == y.size());
  for (const auto& [site, v] : x) {
    INFO("site ", site);
    CHECK(torch::equal(v, y.at(site)));
  }
  REQUIRE(a.stats().size() == b.stats().size());
  for (size_t c = 0; c < a.stats().size(); ++c) {
    REQUIRE(a.stats()[c].size() == b.stats()[c].size());
    for (size_t i = 0; i < a.stats()[c].size(); ++i) {
      CHECK(a.stats()[c][i].step_size == b.stats()[c][i].step_size);
      CHECK(a.stats()[c][i].accept_prob == b.stats()[c][i].accept_prob);
      CHECK(a.stats()[c][i].num_leapfrog == b.stats()[c][i].num_leapfrog);
    }
  }
}
}  // namespace

TEST_CASE("MCMC checkpoint and resume: an interrupted run goes on to the uninterrupted run's draws, bit for bit") {
  // 60 warmup iterations adapt in Stan's windows (9 / 45 / 6 here), so interruptions land in
  // the middle of a metric window (iteration 37, 45), and in the sampling phase (71).
  auto options = [](int64_t threads) {
    return MCMCOptions().num_samples(20).warmup_steps(60).num_chains(2).num_threads(threads).seed(21).progress(false);
  };
  for (const bool dense : {false, true}) {
    const NUTS kernel(NUTSOptions().max_tree_depth(3).dense_mass(dense));
    MCMC reference(kernel, options(1));
    reference.run(eight_schools);
    using Case = std::tuple<int64_t, int64_t, int64_t>;  // chain, iteration, threads
    const std::vector<Case> cases = dense ? std::vector<Case>{{1, 45, 1}} : std::vector<Case>{{0, 37, 1}, {1, 71, 2}};
    for (const auto& [chain, iteration, threads] : cases) {
      INFO("dense ", dense, ", interrupted at chain ", chain, " iteration ", iteration, ", threads ", threads);
      TempCheckpoint file;
      MCMC interrupted(kernel, options(threads).checkpoint_path(file.path).checkpoint_every(10).hook(
                                   [chain = chain, iteration = iteration](int64_t c, int64_t i, const TransitionStats&) {
                                     if (c == chain && i == iteration) throw Interrupted();
                                   }));
      CHECK_THROWS_AS(interrupted.run(eight_schools), Interrupted);
      CHECK_THROWS_AS(interrupted.get_samples(), RuntimeError);
      const TensorArchive saved = read_tensor_archive(file.path);
      const auto at = saved.meta.at("chains").get<std::vector<int64_t>>();
      CHECK(at[chain] == iteration / 10 * 10);  // the last multiple of checkpoint_every reached
      MCMC resumed(kernel, options(threads));
      resumed.resume(eight_schools, file.path);
      check_same_run(reference, resumed);
    }
  }
}

TEST_CASE("MCMC checkpoint writes are atomic: a failed write keeps the previous checkpoint, which resumes exactly") {
  TempCheckpoint file;
  const NUTS kernel(NUTSOptions().max_tree_depth(5));
  const auto options = MCMCOptions().num_samples(30).warmup_steps(40).num_chains(1).seed(8).progress(false);
  MCMC reference(kernel, options);
  reference.run(eight_schools);
  int writes = 0;
  set_atomic_write_hook([&](const std::string&) {
    if (++writes == 3) throw std::runtime_error("disk full");
  });
  MCMC failing(kernel, MCMCOptions(options).checkpoint_path(file.path).checkpoint_every(20));
  CHECK_THROWS_WITH_AS(failing.run(eight_schools), doctest::Contains(file.path.c_str()), IOError);
  set_atomic_write_hook(nullptr);
  const TensorArchive saved = read_tensor_archive(file.path);  // the second write, intact
  CHECK(saved.meta.at("chains").get<std::vector<int64_t>>() == std::vector<int64_t>{40});
  MCMC resumed(kernel, options);
  resumed.resume(eight_schools, file.path);
  check_same_run(reference, resumed);
  // A checkpoint of another run is refused, naming the file.
  MCMC other(kernel, MCMCOptions(options).num_samples(31));
  CHECK_THROWS_WITH_AS(other.resume(eight_schools, file.path), doctest::Contains("num_samples is 30, this run's is 31"), ValueError);
  MCMC other_kernel(NUTS(NUTSOptions().max_tree_depth(6)), options);
  CHECK_THROWS_WITH_AS(other_kernel.resume(eight_schools, file.path), doctest::Contains(file.path.c_str()), ValueError);
  MCMC other_model(kernel, options);
  CHECK_THROWS_WITH_AS(other_model.resume(normal_normal, file.path), doctest::Contains("belongs to another run"), ValueError);
}

TEST_CASE("Batched potential: B points in one model run give each point's energy and gradient") {
  // The vectorised chains' evaluation (a plate of size B left of the model's plates) against
  // one evaluation per point, on models with constrained latents (Gamma, Beta, stick-breaking
  // Dirichlet, Uniform) and plates.
  for (const Model& model : {Model(constrained), Model(eight_schools)}) {
    const Potential potential(model);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(17);
    const torch::Tensor z = torch::randn({5, potential.dim()}, gen, torch::kFloat64);
    torch::Tensor grad;
    const std::vector<double> energies = potential.energy_and_grad_batch(z, grad);
    REQUIRE(energies.size() == 5);
    REQUIRE(grad.sizes() == z.sizes());
    for (int64_t i = 0; i < 5; ++i) {
      auto [u, g] = potential.energy_and_grad(z[i]);
      CHECK(energies[i] == doctest::Approx(u).epsilon(1e-12));
      CHECK(torch::allclose(grad[i], g, 1e-10, 1e-12));
    }
  }
}

TEST_CASE("Vectorised chains: reproducible draws, the Normal-Normal posterior within Monte-Carlo error") {
  const double precision = 1.0 / 100 + 5, sum_y = 0.3 + 1.9 + 1.1 - 0.4 + 2.2;
  auto run = [](uint64_t seed) {
    auto mcmc = std::make_unique<MCMC>(
        NUTS(), MCMCOptions().num_samples(300).warmup_steps(300).num_chains(4).vectorize_chains(true).seed(seed).progress(false));
    mcmc->run(normal_normal);
    return mcmc;
  };
  const auto a = run(6), b = run(6);
  CHECK(torch::equal(a->get_samples(true).at("mu"), b->get_samples(true).at("mu")));
  CHECK(a->get_samples(true).at("mu").sizes() == torch::IntArrayRef({4, 300}));
  check_moments(*a, "mu", sum_y / precision, 1 / precision);
  // A chain that fails does not hold up the others; the error reaches the caller.
  MCMC failing(NUTS(), MCMCOptions().num_samples(20).warmup_steps(20).num_chains(3).vectorize_chains(true).progress(false).hook(
                           [](int64_t chain, int64_t i, const TransitionStats&) {
                             if (chain == 1 && i == 5) throw std::runtime_error("chain 1 stops");
                           }));
  CHECK_THROWS_WITH(failing.run(normal_normal), "chain 1 stops");
  MCMC enumerated(NUTS(), MCMCOptions().num_samples(20).warmup_steps(20).num_chains(2).vectorize_chains(true).progress(false));
  CHECK_THROWS_WITH_AS(enumerated.run(global_local), doctest::Contains("vectorize_chains with enumerated discrete latents ('c')"),
                       NotImplementedError);
}

TEST_CASE("MCMC bad input: discrete latents that cannot be enumerated and zero samples are clear errors") {
  auto infinite = [] {
    auto n = sample("count", dist::Poisson(S(3.0)));
    sample("x", dist::Normal(n, S(1.0)), S(0.5));
  };
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(10).warmup_steps(10).progress(false));
  CHECK_THROWS_WITH_AS(mcmc.run(infinite), doctest::Contains("'count' is discrete (Poisson) and its support is not finite"),
                       ValueError);
  auto sequential = [] {
    InferConfig seq;
    seq.enumerate = "sequential";
    auto z = sample("assignment", dist::Bernoulli(S(0.3)), SampleOptions().infer(seq));
    sample("x", dist::Normal(z, S(1.0)), S(0.5));
  };
  CHECK_THROWS_WITH_AS(mcmc.run(sequential), doctest::Contains("'assignment' is discrete (Bernoulli) and marked for \"sequential\""),
                       ValueError);
  auto dependent = [] {  // a continuous latent whose distribution depends on an enumerated one
    auto z = sample("assignment", dist::Bernoulli(S(0.3)));
    auto y = sample("y", dist::Normal(z, S(1.0)));
    sample("x", dist::Normal(y, S(1.0)), S(0.5));
  };
  CHECK_THROWS_WITH_AS(mcmc.run(dependent), doctest::Contains("continuous latent site 'y'"), ValueError);
  CHECK_THROWS_WITH_AS(MCMC(NUTS(), MCMCOptions().num_samples(0)), doctest::Contains("num_samples must be at least 1"),
                       ValueError);
  CHECK_THROWS_AS(NUTS(NUTSOptions().target_accept(1.5)), ValueError);
  CHECK_THROWS_AS(MCMC(NUTS(), MCMCOptions().num_threads(0)), ValueError);
  CHECK_THROWS_AS(mcmc.get_samples(), RuntimeError);
}
