// Small causal models (examples/causal_basics): Ember's observational, interventional and
// counterfactual answers against exact ones computed here by hand from the models' CPTs and
// coefficients, with code independent of Ember's (joint tables, continuous-noise intervals,
// Gaussian conditioning).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "examples/causal_basics/causal_basics.h"
#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::causal_basics;

namespace {

// Exact answers: only float64 rounding separates them.
constexpr double kExact = 1e-12;

Event site_is(const std::string& name, double value) {
  return [name, value](const ValueMap& v) { return v.at(name) == value; };
}
Event twin_site_is(const std::string& name, double value) {
  return [name, value](const ValueMap& v) { return gather(v.at(name), {{kTwinWorld, {1}}}) == value; };
}

// ------------------------------------------------------------------ sunscreen, by hand

double bern(double p, int v) { return v ? p : 1 - p; }

// P(O = 1 | C = c) and P(O = 1 | do(C = c)) of the confounded model, from its CPTs.
double sun_observational(const Sunscreen& s, int c) {
  double num = 0, den = 0;
  for (int u = 0; u < 2; ++u) {
    const double p_uc = bern(s.p_sun, u) * bern(s.p_c_given_u[u], c);
    num += p_uc * s.p_o_given_cu[2 * u + c];
    den += p_uc;
  }
  return num / den;
}
double sun_interventional(const Sunscreen& s, int c) {
  double r = 0;
  for (int u = 0; u < 2; ++u) r += bern(s.p_sun, u) * s.p_o_given_cu[2 * u + c];
  return r;
}

// ------------------------------------------------------------------ mediator, by hand

// The joint table P(z, x, m, y) of the mediator model.
struct Joint {
  double p[2][2][2][2] = {};
  explicit Joint(const Mediator& md) {
    for (int z = 0; z < 2; ++z)
      for (int x = 0; x < 2; ++x)
        for (int m = 0; m < 2; ++m)
          for (int y = 0; y < 2; ++y)
            p[z][x][m][y] = bern(md.p_z, z) * bern(md.p_x[z], x) * bern(md.p_m[x], m) * bern(md.p_y[2 * m + z], y);
  }
  // Marginal over the variables left as -1.
  double P(int z, int x, int m, int y) const {
    double s = 0;
    for (int zz = 0; zz < 2; ++zz)
      for (int xx = 0; xx < 2; ++xx)
        for (int mm = 0; mm < 2; ++mm)
          for (int yy = 0; yy < 2; ++yy)
            if ((z < 0 || z == zz) && (x < 0 || x == xx) && (m < 0 || m == mm) && (y < 0 || y == yy)) s += p[zz][xx][mm][yy];
    return s;
  }
  // Back-door adjustment for Z, from the observational joint: sum_z P(z) P(Y = 1 | x, z).
  double backdoor(int x) const {
    double r = 0;
    for (int z = 0; z < 2; ++z) r += P(z, -1, -1, -1) * P(z, x, -1, 1) / P(z, x, -1, -1);
    return r;
  }
};

// Length of {u in (0, 1): (u < t_i) == want_i for every i}: the probability of a set of
// threshold outcomes of one Uniform(0, 1) noise.
double interval(const std::vector<std::pair<double, bool>>& conditions) {
  double lo = 0, hi = 1;
  for (auto [t, below] : conditions) {
    if (below) hi = std::min(hi, t);
    else lo = std::max(lo, t);
  }
  return std::max(0.0, hi - lo);
}

// The twin network of the mediator model with continuous Uniform noises U_M, U_Y (Y depends
// on the noises only through these thresholds): P(X = x, Y = y, Y_{x_cf} = y_cf).
double twin_network(const Mediator& md, int x, int y, int x_cf, int y_cf) {
  double r = 0;
  for (int z = 0; z < 2; ++z)
    for (int m = 0; m < 2; ++m)
      for (int m_cf = 0; m_cf < 2; ++m_cf) {
        const double p_m = interval({{md.p_m[x], m == 1}, {md.p_m[x_cf], m_cf == 1}});
        const double p_y = interval({{md.p_y[2 * m + z], y == 1}, {md.p_y[2 * m_cf + z], y_cf == 1}});
        r += bern(md.p_z, z) * bern(md.p_x[z], x) * p_m * p_y;
      }
  return r;
}

}  // namespace

// ================================================================== sunscreen -> sunburn

TEST_CASE("sunscreen: without a confounder, conditioning on C and intervening on C agree") {
  Sunscreen s;
  for (int c = 0; c < 2; ++c) {
    const double obs = probability(s, Query().evidence({{"C", scalar(c)}}).event(site_is("O", 1)));
    const double act = probability(s, Query().intervention({{"C", scalar(c)}}).event(site_is("O", 1)));
    CHECK(obs == doctest::Approx(s.p_o_given_c[c]).epsilon(kExact));
    CHECK(act == doctest::Approx(s.p_o_given_c[c]).epsilon(kExact));
  }
}

TEST_CASE("sunscreen: a sunny-day confounder makes P(O | C = c) and P(O | do(C = c)) differ, each exact") {
  Sunscreen s;
  s.confounded = true;
  for (int c = 0; c < 2; ++c) {
    const double obs = probability(s, Query().evidence({{"C", scalar(c)}}).event(site_is("O", 1)));
    const double act = probability(s, Query().intervention({{"C", scalar(c)}}).event(site_is("O", 1)));
    CHECK(obs == doctest::Approx(sun_observational(s, c)).epsilon(kExact));
    CHECK(act == doctest::Approx(sun_interventional(s, c)).epsilon(kExact));
  }
  // The confounder reverses the sign: sunscreen users burn more often, yet sunscreen protects.
  CHECK(sun_observational(s, 1) > sun_observational(s, 0));
  CHECK(sun_interventional(s, 1) < sun_interventional(s, 0));
}

TEST_CASE("sunscreen: the effect of treatment on the treated equals the causal effect only without a confounder") {
  // P(O_{c'} = 1 | C = c): evidence on the cause alone. Without confounding C carries no
  // information about O's noise, so it is P(O = 1 | do(c')); with U it is sum_u P(u | c) P(O | c', u).
  for (bool confounded : {false, true}) {
    Sunscreen s;
    s.confounded = confounded;
    for (int c = 0; c < 2; ++c) {
      const int c_cf = 1 - c;
      const double ett = probability(s, Query()
                                            .worlds(Worlds::twin)
                                            .intervention({{"C", scalar(c_cf)}})
                                            .evidence({{"C", scalar(c)}})
                                            .event(twin_site_is("O", 1)));
      const double act = probability(s, Query().intervention({{"C", scalar(c_cf)}}).event(site_is("O", 1)));
      if (!confounded) {
        CHECK(ett == doctest::Approx(act).epsilon(kExact));
      } else {
        double expected = 0, p_c = 0;
        for (int u = 0; u < 2; ++u) {
          const double p_uc = bern(s.p_sun, u) * bern(s.p_c_given_u[u], c);
          expected += p_uc * s.p_o_given_cu[2 * u + c_cf];
          p_c += p_uc;
        }
        CHECK(ett == doctest::Approx(expected / p_c).epsilon(kExact));
        CHECK(std::abs(ett - act) > 0.05);
      }
    }
  }
}

TEST_CASE("sunscreen: observing the outcome makes the counterfactual differ from the intervention") {
  // A sunscreen user who got burnt: had they not worn it, with the same noise U_O (threshold
  // model), O_{c=0} = 1 for sure, since p(O | C=0) = 0.6 >= p(O | C=1) = 0.2.
  Sunscreen s;
  const double cf = probability(s, Query()
                                       .worlds(Worlds::twin)
                                       .intervention({{"C", scalar(0)}})
                                       .evidence({{"C", scalar(1)}, {"O", scalar(1)}})
                                       .event(twin_site_is("O", 1)));
  CHECK(cf == doctest::Approx(1.0).epsilon(kExact));
  // One who did not burn: P(U_O > 0.2) = 0.8 of such units; O_{c=0} = 1 when U_O < 0.6.
  const double cf0 = probability(s, Query()
                                        .worlds(Worlds::twin)
                                        .intervention({{"C", scalar(0)}})
                                        .evidence({{"C", scalar(1)}, {"O", scalar(0)}})
                                        .event(twin_site_is("O", 1)));
  CHECK(cf0 == doctest::Approx((0.6 - 0.2) / 0.8).epsilon(kExact));
  CHECK(std::abs(cf0 - s.p_o_given_c[0]) > 0.05);
}

// ================================================================== confounder and mediator

TEST_CASE("mediator DAG: Ember's do_ equals the back-door adjustment computed from the joint table") {
  Mediator md;
  Joint j(md);
  for (int x = 0; x < 2; ++x) {
    const double observational = probability(md, Query().evidence({{"X", scalar(x)}}).event(site_is("Y", 1)));
    CHECK(observational == doctest::Approx(j.P(-1, x, -1, 1) / j.P(-1, x, -1, -1)).epsilon(kExact));
    CHECK(p_y_do_x(md, x) == doctest::Approx(j.backdoor(x)).epsilon(kExact));
    // Z confounds X and Y: the two differ.
    CHECK(std::abs(observational - p_y_do_x(md, x)) > 0.02);
  }
}

TEST_CASE("mediator DAG: do_ cuts X from its parent Z and leaves every other mechanism untouched") {
  Mediator md;
  Joint j(md);
  for (int x = 0; x < 2; ++x) {
    const ValueMap act = {{"X", scalar(x)}};
    // Z no longer learns from X...
    CHECK(probability(md, Query().intervention(act).event(site_is("Z", 1))) == doctest::Approx(md.p_z).epsilon(kExact));
    // ...as it does when X is observed.
    const double z_given_x = probability(md, Query().evidence(act).event(site_is("Z", 1)));
    CHECK(z_given_x == doctest::Approx(j.P(1, x, -1, -1) / j.P(-1, x, -1, -1)).epsilon(kExact));
    CHECK(std::abs(z_given_x - md.p_z) > 0.05);
    // M's and Y's mechanisms are the model's CPTs.
    CHECK(probability(md, Query().intervention(act).event(site_is("M", 1))) == doctest::Approx(md.p_m[x]).epsilon(kExact));
    for (int m = 0; m < 2; ++m)
      for (int z = 0; z < 2; ++z) {
        const double p = probability(
            md, Query().intervention(act).evidence({{"M", scalar(m)}, {"Z", scalar(z)}}).event(site_is("Y", 1)));
        CHECK(p == doctest::Approx(md.p_y[2 * m + z]).epsilon(kExact));
      }
  }
  // An intervention downstream leaves the upstream law alone: P(X | do(M)) = P(X).
  CHECK(probability(md, Query().intervention({{"M", scalar(1)}}).event(site_is("X", 1))) ==
        doctest::Approx(j.P(-1, 1, -1, -1)).epsilon(kExact));
}

TEST_CASE("mediator DAG: the counterfactual P(Y_x' = 1 | X = x, Y = y) equals the twin network's") {
  Mediator md;
  Joint j(md);
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 2; ++y) {
      const int x_cf = 1 - x;
      const double expected = twin_network(md, x, y, x_cf, 1) / j.P(-1, x, -1, y);
      const double cf = p_counterfactual_y(md, x, y, x_cf);
      CAPTURE(x);
      CAPTURE(y);
      CHECK(cf == doctest::Approx(expected).epsilon(kExact));
      // The factual outcome carries information about the unit's noise: the counterfactual is
      // not the interventional answer.
      CHECK(std::abs(cf - p_y_do_x(md, x_cf)) > 0.05);
    }
}

TEST_CASE("mediator DAG: with Uniform noise, importance sampling through the twin world agrees within Monte-Carlo error") {
  // The same SCM with continuous Uniform(0, 1) noises, sampled (not enumerated): the prior
  // proposes Z and the noises, the weights are 1[factual X = x, Y = y]. The event is recorded
  // as a latent site so that Importance returns it. Self-normalised estimate; standard error
  // sqrt(sum_i w_i^2 (f_i - p_hat)^2) (delta method); we allow 4 of them.
  Mediator md;
  md.noise = Noise::uniform;
  Joint j(md);
  const int64_t n = 4000;
  // (x, y) = (0, 1) and (1, 0) have counterfactual probabilities 1 and 0 (monotonicity).
  for (int x = 0; x < 2; ++x) {
    const int y = x;
    auto s = seed(100 + x);
    auto program = [&] {
      auto worlds = twin_world();
      auto act = do_({{"X", scalar(1 - x)}});
      auto obs = condition({{"X", scalar(x)}, {"Y", scalar(y)}});
      ValueMap v = md();
      sample("event", dist::Delta(worlds.gather(v.at("Y"), worlds.counterfactual()).reshape({})));
    };
    auto result = infer::Importance(program, n).run();
    auto w = result.normalized_weights();
    auto f = result.samples.at("event");
    const double p_hat = (w * f).sum().item<double>();
    const double se = std::sqrt((w * w * (f - p_hat) * (f - p_hat)).sum().item<double>());
    const double exact = twin_network(md, x, y, 1 - x, 1) / j.P(-1, x, -1, y);
    CAPTURE(x);
    CAPTURE(result.effective_sample_size());
    CHECK(se > 0);
    CHECK(std::abs(p_hat - exact) < 4 * se);
  }
}

TEST_CASE("mediator DAG: counterfactuals agree with interventions where no descendant of X is observed") {
  Mediator md;
  Joint j(md);
  for (int x_cf = 0; x_cf < 2; ++x_cf) {
    const ValueMap act = {{"X", scalar(x_cf)}};
    // No evidence: world 1 is the intervened model, world 0 the observational one.
    const double cf = probability(md, Query().worlds(Worlds::twin).intervention(act).event(twin_site_is("Y", 1)));
    CHECK(cf == doctest::Approx(p_y_do_x(md, x_cf)).epsilon(kExact));
    const double factual = probability(md, Query().worlds(Worlds::twin).intervention(act).event([](const ValueMap& v) {
      return gather(v.at("Y"), {{kTwinWorld, {0}}}) == 1;
    }));
    CHECK(factual == doctest::Approx(j.P(-1, -1, -1, 1)).epsilon(kExact));
    // Evidence on the root cause Z only: P(Y_x' | Z = z) = P(Y | do(x'), Z = z).
    for (int z = 0; z < 2; ++z) {
      const ValueMap ev = {{"Z", scalar(z)}};
      const double cf_z = probability(md, Query().worlds(Worlds::twin).intervention(act).evidence(ev).event(twin_site_is("Y", 1)));
      const double do_z = probability(md, Query().intervention(act).evidence(ev).event(site_is("Y", 1)));
      CHECK(cf_z == doctest::Approx(do_z).epsilon(kExact));
      CHECK(do_z == doctest::Approx(md.p_m[x_cf] * md.p_y[2 + z] + (1 - md.p_m[x_cf]) * md.p_y[z]).epsilon(kExact));
    }
    // Evidence on X itself (the effect of treatment on the treated): X informs about Z, so it
    // differs from the intervention, and equals sum_z P(z | x) P(Y = 1 | do(x'), z).
    const int x = 1 - x_cf;
    const double ett =
        probability(md, Query().worlds(Worlds::twin).intervention(act).evidence({{"X", scalar(x)}}).event(twin_site_is("Y", 1)));
    double expected = 0;
    for (int z = 0; z < 2; ++z)
      expected += j.P(z, x, -1, -1) / j.P(-1, x, -1, -1) * (md.p_m[x_cf] * md.p_y[2 + z] + (1 - md.p_m[x_cf]) * md.p_y[z]);
    CHECK(ett == doctest::Approx(expected).epsilon(kExact));
    CHECK(std::abs(ett - p_y_do_x(md, x_cf)) > 0.02);
  }
}

TEST_CASE("mediator DAG: PN, PS and PNS of a monotone SCM equal Tian and Pearl's closed forms") {
  Mediator md;
  Joint j(md);
  const Causation c = probabilities_of_causation(md);
  // Under monotonicity (Y_1 >= Y_0), with P(y_x) identified by the back-door formula
  // (Tian & Pearl 2000, Theorem 1):
  const double y1 = j.backdoor(1), y0 = j.backdoor(0), y = j.P(-1, -1, -1, 1);
  CHECK(c.pns == doctest::Approx(y1 - y0).epsilon(kExact));
  CHECK(c.pn == doctest::Approx((y - y0) / j.P(-1, 1, -1, 1)).epsilon(kExact));
  CHECK(c.ps == doctest::Approx((y1 - y) / j.P(-1, 0, -1, 0)).epsilon(kExact));
  // And the twin network agrees, term by term.
  CHECK(c.pn == doctest::Approx(twin_network(md, 1, 1, 0, 0) / j.P(-1, 1, -1, 1)).epsilon(kExact));
  CHECK(c.pns == doctest::Approx(twin_network(md, 1, 1, 0, 0) + twin_network(md, 0, 0, 1, 1)).epsilon(kExact));
  // PNS = P(x, y) PN + P(x', y') PS.
  CHECK(c.pns == doctest::Approx(j.P(-1, 1, -1, 1) * c.pn + j.P(-1, 0, -1, 0) * c.ps).epsilon(kExact));
}

TEST_CASE("mediator DAG: a site without explicit noise downstream of the intervention is refused by name") {
  // Y as a plain Bernoulli of (M, Z): its counterfactual is not determined by its factual value.
  auto model = [] {
    auto z = sample("Z", dist::Bernoulli(scalar(0.3)));
    auto x = sample("X", dist::Bernoulli(0.2 + 0.5 * z));
    auto y = sample("Y", dist::Bernoulli(0.1 + 0.3 * x + 0.4 * z));
    return ValueMap{{"Z", z}, {"X", x}, {"Y", y}};
  };
  try {
    probability(model, Query()
                           .worlds(Worlds::twin)
                           .intervention({{"X", scalar(0)}})
                           .evidence({{"X", scalar(1)}, {"Y", scalar(1)}})
                           .event(twin_site_is("Y", 1)));
    FAIL("expected an error");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    CHECK(msg.find("'Y'") != std::string::npos);
    CHECK(msg.find("exogenous noise") != std::string::npos);
  }
}

// ================================================================== linear-Gaussian SCM

namespace {

// Exact law of (Z, M) given X = x, Y = y by Gaussian conditioning of the joint covariance of
// (Z, X, M, Y) = L e, e ~ N(0, I).
Gaussian posterior_by_conditioning(const LinearGaussian& g, double x, double y) {
  auto L = torch::tensor({{g.s_z, 0.0, 0.0, 0.0},
                          {g.a * g.s_z, g.s_x, 0.0, 0.0},
                          {g.b * g.a * g.s_z, g.b * g.s_x, g.s_m, 0.0},
                          {(g.c * g.b * g.a + g.d) * g.s_z, g.c * g.b * g.s_x, g.c * g.s_m, g.s_y}},
                         torch::kFloat64);
  auto S = L.matmul(L.t());
  auto lat = torch::tensor({0, 2}, torch::kLong), obs = torch::tensor({1, 3}, torch::kLong);
  auto S_ll = S.index({lat}).index({torch::indexing::Slice(), lat});
  auto S_lo = S.index({lat}).index({torch::indexing::Slice(), obs});
  auto S_oo = S.index({obs}).index({torch::indexing::Slice(), obs});
  auto K = S_lo.matmul(torch::linalg_inv(S_oo));
  return {K.matmul(torch::tensor({x, y}, torch::kFloat64)), S_ll - K.matmul(S_lo.t())};
}

}  // namespace

TEST_CASE("linear-Gaussian SCM: the posterior of the latents from Ember's log density is exact") {
  LinearGaussian g;
  const double x = 1.2, y = 0.5;
  const Gaussian post = gaussian_posterior(g, {{"X", scalar(x)}, {"Y", scalar(y)}}, {"Z", "M"});
  const Gaussian ref = posterior_by_conditioning(g, x, y);
  CHECK(torch::allclose(post.mean, ref.mean, 0, 1e-12));
  CHECK(torch::allclose(post.cov, ref.cov, 0, 1e-12));
}

TEST_CASE("linear-Gaussian SCM: counterfactual mean and variance in closed form, with no sampling error") {
  LinearGaussian g;
  const double x = 1.2, y = 0.5, x_cf = -0.5;
  const Gaussian cf = gaussian_counterfactual(g, {{"X", scalar(x)}, {"Y", scalar(y)}}, {{"X", scalar(x_cf)}}, {"Z", "M"}, {"M", "Y"});
  const Gaussian post = posterior_by_conditioning(g, x, y);
  // M's noise is shared: M_x' = M + b (x' - x), so its law is the posterior of M shifted.
  CHECK(cf.mean[0].item<double>() == doctest::Approx(post.mean[1].item<double>() + g.b * (x_cf - x)).epsilon(1e-12));
  CHECK(cf.cov[0][0].item<double>() == doctest::Approx(post.cov[1][1].item<double>()).epsilon(1e-12));
  // Y is observed and its noise shared: Y_x' = y + c b (x' - x) exactly, with no variance.
  CHECK(cf.mean[1].item<double>() == doctest::Approx(y + g.c * g.b * (x_cf - x)).epsilon(1e-12));
  CHECK(std::abs(cf.cov[1][1].item<double>()) < 1e-12);
  // The interventional law of Y under do(X = x') is wider and centred elsewhere.
  const double do_mean = g.c * g.b * x_cf;
  const double do_var = g.c * g.c * g.s_m * g.s_m + g.d * g.d * g.s_z * g.s_z + g.s_y * g.s_y;
  CHECK(std::abs(cf.mean[1].item<double>() - do_mean) > 0.1);
  CHECK(do_var > 0.1);
}

TEST_CASE("linear-Gaussian SCM: importance sampling through the twin world agrees within Monte-Carlo error") {
  // Abduction by importance weights instead of the exact posterior: the prior proposes Z and
  // the factual M, the weights are p(x, y | Z, M). Self-normalised estimates of E[f] have
  // standard error sqrt(sum_i w_i^2 (f_i - E_hat)^2) (delta method); we allow 4 of them.
  LinearGaussian g;
  const double x = 1.2, y = 0.5, x_cf = -0.5;
  const Gaussian post = posterior_by_conditioning(g, x, y);
  const double mean = post.mean[1].item<double>() + g.b * (x_cf - x), var = post.cov[1][1].item<double>();
  auto s = seed(20261127);
  auto program = twin_world(do_(condition([&] { return g(); }, {{"X", scalar(x)}, {"Y", scalar(y)}}), {{"X", scalar(x_cf)}}));
  auto result = infer::Importance(program, 4000).run();
  auto w = result.normalized_weights();
  const auto& m = result.samples.at("M");
  REQUIRE(m.sizes() == torch::IntArrayRef({4000, 2}));
  auto m_cf = m.select(1, 1);
  auto estimate = [&](const torch::Tensor& f) {
    const double e = (w * f).sum().item<double>();
    const double se = std::sqrt((w * w * (f - e) * (f - e)).sum().item<double>());
    return std::make_pair(e, se);
  };
  const auto [m_hat, m_se] = estimate(m_cf);
  const auto [v_hat, v_se] = estimate((m_cf - mean).pow(2));
  CAPTURE(result.effective_sample_size());
  CHECK(std::abs(m_hat - mean) < 4 * m_se);
  CHECK(std::abs(v_hat - var) < 4 * v_se);
  // Every draw's counterfactual M differs from its factual one by exactly b (x' - x).
  CHECK(torch::allclose(m_cf - m.select(1, 0), torch::full({4000}, g.b * (x_cf - x), torch::kFloat64), 0, 1e-12));
}

// ================================================================== smoking, tar and cancer (real data)

namespace {

const std::string kSmokingCsv = std::string(EMBER_CAUSAL_BASICS_DATA) + "/cigs_and_cancer.csv";

// The MAP tables under Dirichlet(2, 2, 2) / Beta(2, 2) priors, from counts: (k + 1) / (n + 2)
// for each Bernoulli cell, (n_s + 1) / (N + 3) for P(S).
SmokingCPTs map_by_counting(const SmokingData& d) {
  const auto S = d.S.accessor<int64_t, 1>();
  const auto T = d.T.accessor<double, 1>(), L = d.L.accessor<double, 1>();
  double n_s[3] = {}, t_s[3] = {}, n_ts[2][3] = {}, l_ts[2][3] = {};
  for (int64_t i = 0; i < d.size(); ++i) {
    const int s = static_cast<int>(S[i]), t = static_cast<int>(T[i]);
    n_s[s] += 1;
    t_s[s] += T[i];
    n_ts[t][s] += 1;
    l_ts[t][s] += L[i];
  }
  SmokingCPTs c{torch::zeros({3}, torch::kFloat64), torch::zeros({3}, torch::kFloat64), torch::zeros({2, 3}, torch::kFloat64)};
  for (int s = 0; s < 3; ++s) {
    c.p_s[s] = (n_s[s] + 1) / (static_cast<double>(d.size()) + 3);
    c.p_t[s] = (t_s[s] + 1) / (n_s[s] + 2);
    for (int t = 0; t < 2; ++t) c.p_l[t][s] = (l_ts[t][s] + 1) / (n_ts[t][s] + 2);
  }
  return c;
}

double cell(const torch::Tensor& t, int64_t i) { return t[i].item<double>(); }
double cell(const torch::Tensor& t, int64_t i, int64_t j) { return t[i][j].item<double>(); }

}  // namespace

TEST_CASE("smoking data: the book's CSV loads with its levels coded, and bad input names the file and line") {
  const SmokingData d = load_smoking_data(kSmokingCsv);
  REQUIRE(d.size() == 100);
  // Counts from the file: 56 High, 31 Med, 13 Low smokers; 75 high tar; 64 cancers.
  CHECK((d.S == 2).sum().item<int64_t>() == 56);
  CHECK((d.S == 1).sum().item<int64_t>() == 31);
  CHECK(d.T.sum().item<double>() == 75);
  CHECK(d.L.sum().item<double>() == 64);
  const auto path = std::filesystem::temp_directory_path() / "ember_bad_cigs.csv";
  std::ofstream(path) << "C,S,T,L\n9.5,Med,Low,TRUE\n8.8,Heavy,High,FALSE\n";
  try {
    load_smoking_data(path.string());
    FAIL("expected an error");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    CHECK(msg.find("ember_bad_cigs.csv:3") != std::string::npos);
    CHECK(msg.find("'Heavy'") != std::string::npos);
  }
  std::filesystem::remove(path);
}

TEST_CASE("smoking data: SVI's fitted tables equal the closed-form MAP estimates") {
  // No Monte-Carlo error here: the model has no latent site and the guide is a Delta, so each
  // step's loss and gradient are exact; the only error is the optimiser's, and a learning
  // rate decayed geometrically to 0.05 * 0.996^2000 = 1.7e-5 leaves it far below 1e-4.
  const SmokingData d = load_smoking_data(kSmokingCsv);
  ParamStore store;
  ParamStoreScope scope(store);
  std::vector<double> losses;
  const SmokingCPTs fit = fit_smoking(d, FitOptions(), &losses);
  const SmokingCPTs ref = map_by_counting(d);
  CHECK(torch::allclose(fit.p_s, ref.p_s, 0, 1e-4));
  CHECK(torch::allclose(fit.p_t, ref.p_t, 0, 1e-4));
  CHECK(torch::allclose(fit.p_l, ref.p_l, 0, 1e-4));
  CHECK(losses.back() < losses.front());
  // The final loss is -log p(data, theta) at the MAP.
  infer::Trace_ELBO elbo;
  CHECK(losses.back() == doctest::Approx(elbo.loss(smoking_model, smoking_guide, d)).epsilon(1e-6));
}

TEST_CASE("smoking data: observational, front-door interventional and counterfactual answers of the fitted SCM") {
  const SmokingData d = load_smoking_data(kSmokingCsv);
  const SmokingCPTs c = map_by_counting(d);
  const Smoking scm{c};
  for (int s = 0; s < 3; ++s) {
    // Observational: the fitted P(L | S = s) = sum_t P(t | s) P(L | t, s).
    double obs = 0, front_door = 0;
    for (int t = 0; t < 2; ++t) {
      const double p_t = t ? cell(c.p_t, s) : 1 - cell(c.p_t, s);
      obs += p_t * cell(c.p_l, t, s);
      double inner = 0;
      for (int dd = 0; dd < 3; ++dd) inner += cell(c.p_s, dd) * cell(c.p_l, t, dd);
      front_door += p_t * inner;
    }
    CHECK(probability(scm, Query().evidence({{"S", scalar(s)}}).event(site_is("L", 1))) == doctest::Approx(obs).epsilon(kExact));
    // Interventional: the front-door formula sum_t P(t | s) sum_s' P(s') P(L | t, s').
    const double act = probability(scm, Query().intervention({{"S", scalar(s)}}).event(site_is("L", 1)));
    CHECK(act == doctest::Approx(front_door).epsilon(kExact));
  }
  // Counterfactual: a heavy smoker with high tar who got cancer, had they smoked little. The
  // genotype is pinned (D = S = High); tar and cancer share their threshold noises.
  const double cf = probability(scm, Query()
                                         .worlds(Worlds::twin)
                                         .intervention({{"S", scalar(0)}})
                                         .evidence({{"S", scalar(2)}, {"T", scalar(1)}, {"L", scalar(1)}})
                                         .event(twin_site_is("L", 1)));
  double expected = 0;
  for (int t_cf = 0; t_cf < 2; ++t_cf)
    expected += interval({{cell(c.p_t, 2), true}, {cell(c.p_t, 0), t_cf == 1}}) / cell(c.p_t, 2) *
                interval({{cell(c.p_l, 1, 2), true}, {cell(c.p_l, t_cf, 2), true}}) / cell(c.p_l, 1, 2);
  CHECK(cf == doctest::Approx(expected).epsilon(kExact));
  // It differs from the interventional answer: the unit's genotype and noises are known.
  CHECK(std::abs(cf - probability(scm, Query().intervention({{"S", scalar(0)}}).event(site_is("L", 1)))) > 0.05);
}
