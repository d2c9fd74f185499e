// The distributions, transforms and KL pairs of issue #15 against torch 1.13 / Pyro 1.8.4
// (fixtures from scripts/pyro_fixtures/distributions_more.py, float64 at 1e-6), their samplers
// (chi-square / Kolmogorov-Smirnov at alpha = 0.001 and moments within 5 standard errors, fixed
// seeds) and their pathwise gradients.
#include <doctest/doctest.h>

#include <cmath>

#include "distribution_checks.h"
#include "distributions/distributions.h"
#include "pyro_fixture.h"

using namespace ember;
using namespace ember::dist;
using ember::testing::check_chi2_batch;
using ember::testing::check_close;
using ember::testing::check_ks_batch;
using ember::testing::check_moments;
using ember::testing::check_pathwise;
using ember::testing::fixture_tensor;
using nlohmann::json;

namespace {

const json& fixtures() { return ember::testing::pyro_cases("distributions_more"); }

torch::Tensor T(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

DistPtr build(const json& spec) {
  const auto name = spec.at("dist").get<std::string>();
  const json& ps = spec.at("params");
  auto P = [&](const char* k) { return fixture_tensor(ps.at(k)); };
  auto has = [&](const char* k) { return ps.contains(k); };
  if (name == "NegativeBinomial")
    return has("probs") ? std::make_shared<NegativeBinomial>(P("total_count"), P("probs"))
                        : std::make_shared<NegativeBinomial>(P("total_count"), Logits{P("logits")});
  if (name == "GammaPoisson") return std::make_shared<GammaPoisson>(P("concentration"), P("rate"));
  if (name == "BetaBinomial") return std::make_shared<BetaBinomial>(P("concentration1"), P("concentration0"), P("total_count"));
  if (name == "ZeroInflatedPoisson")
    return has("gate") ? std::make_shared<ZeroInflatedPoisson>(P("rate"), P("gate"))
                       : std::make_shared<ZeroInflatedPoisson>(P("rate"), GateLogits{P("gate_logits")});
  if (name == "ZeroInflatedNegativeBinomial") {
    if (has("probs"))
      return has("gate") ? std::make_shared<ZeroInflatedNegativeBinomial>(P("total_count"), P("probs"), P("gate"))
                         : std::make_shared<ZeroInflatedNegativeBinomial>(P("total_count"), P("probs"), GateLogits{P("gate_logits")});
    return has("gate") ? std::make_shared<ZeroInflatedNegativeBinomial>(P("total_count"), Logits{P("logits")}, P("gate"))
                       : std::make_shared<ZeroInflatedNegativeBinomial>(P("total_count"), Logits{P("logits")},
                                                                        GateLogits{P("gate_logits")});
  }
  if (name == "Gumbel") return std::make_shared<Gumbel>(P("loc"), P("scale"));
  if (name == "Weibull") return std::make_shared<Weibull>(P("scale"), P("concentration"));
  if (name == "Chi2") return std::make_shared<Chi2>(P("df"));
  if (name == "Gamma") return std::make_shared<Gamma>(P("concentration"), P("rate"));
  if (name == "Pareto") return std::make_shared<Pareto>(P("scale"), P("alpha"));
  if (name == "Logistic") return std::make_shared<Logistic>(P("loc"), P("scale"));
  if (name == "VonMises") return std::make_shared<VonMises>(P("loc"), P("concentration"));
  if (name == "Kumaraswamy") return std::make_shared<Kumaraswamy>(P("concentration1"), P("concentration0"));
  if (name == "FoldedNormal") return std::make_shared<FoldedDistribution>(std::make_shared<Normal>(P("loc"), P("scale")));
  if (name == "LogisticNormal") return std::make_shared<LogisticNormal>(P("loc"), P("scale"));
  if (name == "MultivariateStudentT") return std::make_shared<MultivariateStudentT>(P("df"), P("loc"), P("scale_tril"));
  if (name == "LKJCholesky") return std::make_shared<LKJCholesky>(ps.at("dim").get<int64_t>(), P("concentration"));
  if (name == "Wishart") {
    if (has("covariance_matrix")) return std::make_shared<Wishart>(P("df"), CovarianceMatrix{P("covariance_matrix")});
    if (has("scale_tril")) return std::make_shared<Wishart>(P("df"), ScaleTril{P("scale_tril")});
    return std::make_shared<Wishart>(P("df"), PrecisionMatrix{P("precision_matrix")});
  }
  if (name == "LowRankMultivariateNormal") return std::make_shared<LowRankMultivariateNormal>(P("loc"), P("cov_factor"), P("cov_diag"));
  if (name == "MultivariateNormal") return std::make_shared<MultivariateNormal>(P("loc"), ScaleTril{P("scale_tril")});
  if (name == "LogNormal") return std::make_shared<LogNormal>(P("loc"), P("scale"));
  if (name == "HalfNormal") return std::make_shared<HalfNormal>(P("scale"));
  if (name == "Binomial") return std::make_shared<Binomial>(P("total_count"), P("probs"));
  if (name == "Geometric") return std::make_shared<Geometric>(P("probs"));
  FAIL("fixture names an unknown distribution " << name);
  return nullptr;
}

// Every recorded quantity of every case in fixture group `group`, and the generic interface.
void check_golden_group(const std::string& group, double rtol = 1e-6, double atol = 1e-10) {
  const auto& cases = fixtures().at(group);
  REQUIRE(cases.size() >= 1);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto label = cat(group, " case ", i, " ", c.at("dist").get<std::string>());
    INFO(label);
    auto d = build(c);
    CHECK(d->batch_shape() == c.at("batch_shape").get<Shape>());
    CHECK(d->event_shape() == c.at("event_shape").get<Shape>());
    auto value = fixture_tensor(c.at("value"));
    // VonMises: torch's polynomial log I0 differs from the exact one by up to 2e-7 (absolute).
    const double lp_atol = c.at("dist") == "VonMises" ? 5e-7 : atol;
    check_close(d->log_prob(value), fixture_tensor(c.at("log_prob")), label + " log_prob", rtol, lp_atol);
    for (const char* key : {"mean", "variance", "mode", "entropy"}) {
      if (!c.contains(key)) continue;
      torch::Tensor got = std::string(key) == "mean"       ? d->mean()
                          : std::string(key) == "variance" ? d->variance()
                          : std::string(key) == "mode"     ? d->mode()
                                                           : d->entropy();
      check_close(got, fixture_tensor(c.at(key)), label + " " + key, rtol, c.at("dist") == "VonMises" ? 5e-7 : atol);
    }
    if (c.contains("cdf")) check_close(d->cdf(value), fixture_tensor(c.at("cdf")), label + " cdf");
    if (c.contains("icdf")) check_close(d->icdf(fixture_tensor(c.at("icdf_p"))), fixture_tensor(c.at("icdf")), label + " icdf");
    if (c.contains("enumerate_support"))
      check_close(d->enumerate_support(true), fixture_tensor(c.at("enumerate_support")), label + " enumerate_support");
    // The generic interface: draw shapes, expand, clone and a dtype round trip keep log_prob.
    CHECK(to_shape(d->sample({3}).sizes()) == d->extended_shape({3}));
    if (d->has_rsample()) CHECK(to_shape(d->rsample({3}).sizes()) == d->extended_shape({3}));
    auto expanded = d->expand(concat({2}, d->batch_shape()));
    CHECK(expanded->name() == d->name());
    CHECK(expanded->batch_shape() == concat({2}, d->batch_shape()));
    auto lp_expected = fixture_tensor(c.at("log_prob")).unsqueeze(1).expand(concat({value.size(0), 2}, d->batch_shape()));
    check_close(expanded->log_prob(value.unsqueeze(1)), lp_expected, label + " log_prob after expand", 1e-6, 5e-7);
    CHECK(d->clone()->name() == d->name());
    auto moved = d->to(torch::TensorOptions().dtype(torch::kFloat));
    CHECK(moved->name() == d->name());
    CHECK(moved->options().dtype() == torch::TensorOptions().dtype(torch::kFloat).dtype());
    check_close(moved->to(torch::TensorOptions().dtype(torch::kDouble))->log_prob(value), fixture_tensor(c.at("log_prob")),
                label + " log_prob after a float32 round trip", 1e-5, 1e-5);
  }
}

}  // namespace

TEST_CASE("more distributions: count families match torch and Pyro 1.8.4") { check_golden_group("counts"); }

TEST_CASE("more distributions: count samplers pass chi-square tests and moments") {
  torch::manual_seed(20261127);
  const int64_t n = 20000;
  SUBCASE("NegativeBinomial (probs and logits)") {
    NegativeBinomial d(T({2.5, 0.7}), T({0.3, 0.8}));
    auto x = d.sample({n});
    check_moments(x, d.mean(), d.variance(), "NegativeBinomial");
    check_chi2_batch(x, d, "NegativeBinomial");
    NegativeBinomial dl(3.0, Logits{T({-1.0, 0.5})});
    check_chi2_batch(dl.sample({n}), dl, "NegativeBinomial (logits)");
  }
  SUBCASE("GammaPoisson") {
    GammaPoisson d(T({0.6, 4.0}), T({0.5, 2.0}));
    auto x = d.sample({n});
    check_moments(x, d.mean(), d.variance(), "GammaPoisson");
    check_chi2_batch(x, d, "GammaPoisson");
  }
  SUBCASE("BetaBinomial") {
    BetaBinomial d(T({0.5, 3.0}), T({0.8, 2.0}), T({6.0, 11.0}));
    auto x = d.sample({n});
    check_moments(x, d.mean(), d.variance(), "BetaBinomial");
    check_chi2_batch(x, d, "BetaBinomial");
  }
  SUBCASE("ZeroInflatedPoisson and ZeroInflatedNegativeBinomial") {
    ZeroInflatedPoisson zip(T({3.0, 0.5}), T({0.3, 0.6}));
    auto x = zip.sample({n});
    check_moments(x, zip.mean(), zip.variance(), "ZeroInflatedPoisson");
    check_chi2_batch(x, zip, "ZeroInflatedPoisson");
    ZeroInflatedNegativeBinomial zinb(2.0, Logits{T({0.5, 1.5})}, GateLogits{T({-1.0, 0.0})});
    auto y = zinb.sample({n});
    check_moments(y, zinb.mean(), zinb.variance(), "ZeroInflatedNegativeBinomial");
    check_chi2_batch(y, zinb, "ZeroInflatedNegativeBinomial");
  }
}

TEST_CASE("more distributions: count families sum to one and reject bad parameters") {
  // Exact normalisation over a long enough support (independent of torch and Pyro).
  auto k = torch::arange(0, 400, torch::kDouble).unsqueeze(-1);
  std::vector<std::pair<std::string, DistPtr>> ds = {
      {"NegativeBinomial", std::make_shared<NegativeBinomial>(T({2.5, 0.0}), T({0.3, 0.5}))},
      {"GammaPoisson", std::make_shared<GammaPoisson>(T({0.6, 4.0}), T({0.5, 2.0}))},
      {"ZeroInflatedPoisson", std::make_shared<ZeroInflatedPoisson>(T({3.0, 0.5}), GateLogits{T({2.0, -3.0})})},
      {"ZeroInflatedNegativeBinomial", std::make_shared<ZeroInflatedNegativeBinomial>(2.0, T({0.4, 0.6}), T({0.2, 0.9}))},
  };
  for (const auto& [name, d] : ds) {
    INFO(name);
    auto total = d->log_prob(k).exp().sum(0);
    check_close(total, torch::ones({2}, torch::kDouble), name + " total mass", 1e-9);
  }
  BetaBinomial bb(T({0.5, 3.0}), T({0.8, 2.0}), T({6.0, 6.0}));
  check_close(bb.log_prob(bb.enumerate_support()).exp().sum(0), torch::ones({2}, torch::kDouble), "BetaBinomial total mass", 1e-9);

  CHECK_THROWS_WITH_AS(NegativeBinomial(2.0, T({0.5, 1.0})), doctest::Contains("'probs'"), ValueError);
  CHECK_THROWS_WITH_AS(NegativeBinomial(-1.0, 0.5), doctest::Contains("'total_count'"), ValueError);
  CHECK_THROWS_WITH_AS(ZeroInflatedPoisson(2.0, T({0.5, 1.5})), doctest::Contains("ZeroInflatedPoisson: parameter 'gate'"), ValueError);
  CHECK_THROWS_WITH_AS(BetaBinomial(1.0, 1.0, 2.5), doctest::Contains("'total_count'"), ValueError);
  CHECK_THROWS_WITH_AS(GammaPoisson(1.0, 2.0).log_prob(T({1.5})), doctest::Contains("outside the support"), ValueError);
  CHECK_THROWS_AS(ZeroInflatedDistribution(std::make_shared<MultivariateNormal>(torch::zeros({2}, torch::kDouble),
                                                                               ScaleTril{torch::eye(2, torch::kDouble)}),
                                           0.5),
                  ShapeError);
  CHECK_THROWS_WITH_AS(BetaBinomial(1.0, 1.0, T({2.0, 3.0})).enumerate_support(), doctest::Contains("total_count"),
                       NotImplementedError);
  // A generic zero-inflated distribution over any univariate base.
  ZeroInflatedDistribution zb(std::make_shared<Binomial>(5.0, 0.4), 0.25);
  auto x = T({0.0, 3.0});
  check_close(zb.log_prob(x), torch::stack({(0.25 + 0.75 * std::pow(0.6, 5)) * torch::ones({}, torch::kDouble),
                                            0.75 * 10 * std::pow(0.4, 3) * std::pow(0.6, 2) * torch::ones({}, torch::kDouble)})
                                  .log(),
              "ZeroInflated Binomial log_prob");
  ZeroInflatedPoisson zip(T({3.0, 0.5}), 0.3);
  CHECK(zip.rate().sizes() == torch::IntArrayRef{2});
  CHECK(zip.to_string().find("ZeroInflatedPoisson(Poisson") == 0);
}

namespace {

DistPtr build_existing(const json& c) {
  const auto name = c.at("dist").get<std::string>();
  const json& ps = c.at("params");
  auto P = [&](const char* k) { return fixture_tensor(ps.at(k)); };
  if (name == "Normal") return std::make_shared<Normal>(P("loc"), P("scale"));
  if (name == "Uniform") return std::make_shared<Uniform>(P("low"), P("high"));
  if (name == "Exponential") return std::make_shared<Exponential>(P("rate"));
  if (name == "LogNormal") return std::make_shared<LogNormal>(P("loc"), P("scale"));
  if (name == "Laplace") return std::make_shared<Laplace>(P("loc"), P("scale"));
  if (name == "Cauchy") return std::make_shared<Cauchy>(P("loc"), P("scale"));
  if (name == "HalfCauchy") return std::make_shared<HalfCauchy>(P("scale"));
  if (name == "HalfNormal") return std::make_shared<HalfNormal>(P("scale"));
  if (name == "StudentT") return std::make_shared<StudentT>(P("df"), P("loc"), P("scale"));
  if (name == "Gamma") return std::make_shared<Gamma>(P("concentration"), P("rate"));
  if (name == "Beta") return std::make_shared<Beta>(P("concentration1"), P("concentration0"));
  if (name == "Dirichlet") return std::make_shared<Dirichlet>(P("concentration"));
  if (name == "Bernoulli") return std::make_shared<Bernoulli>(P("probs"));
  if (name == "Categorical") return std::make_shared<Categorical>(P("probs"));
  if (name == "OneHotCategorical") return std::make_shared<OneHotCategorical>(P("probs"));
  if (name == "Poisson") return std::make_shared<Poisson>(P("rate"));
  if (name == "Binomial") return std::make_shared<Binomial>(P("total_count"), P("probs"));
  if (name == "Geometric") return std::make_shared<Geometric>(P("probs"));
  if (name == "MultivariateNormal") return std::make_shared<MultivariateNormal>(P("loc"), ScaleTril{P("scale_tril")});
  if (name == "LowRankMultivariateNormal")
    return std::make_shared<LowRankMultivariateNormal>(P("loc"), P("cov_factor"), P("cov_diag"));
  FAIL("unknown distribution " << name);
  return nullptr;
}

// A cdf computed by integrating exp(log_prob) of a scalar univariate distribution on [lo, hi].
std::function<torch::Tensor(const torch::Tensor&)> numeric_cdf(const Distribution& d, double lo, double hi) {
  const int64_t g = 200001;
  auto grid = torch::linspace(lo, hi, g, torch::kDouble);
  auto pdf = d.with_validation(false)->log_prob(grid).exp();
  auto area = (pdf.slice(0, 1) + pdf.slice(0, 0, g - 1)) * 0.5 * (hi - lo) / (g - 1);
  auto F = torch::cat({torch::zeros({1}, torch::kDouble), area.cumsum(0)});
  return [F, lo, hi, g](const torch::Tensor& x) {
    auto idx = ((x - lo) / (hi - lo) * (g - 1)).round().clamp(0, g - 1).to(torch::kLong);
    return F.index_select(0, idx.flatten()).reshape(x.sizes());
  };
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

}  // namespace

TEST_CASE("more distributions: univariate families match torch and Pyro 1.8.4") { check_golden_group("univariate"); }

TEST_CASE("more distributions: multivariate and matrix families match torch and Pyro 1.8.4") {
  check_golden_group("multivariate");
}

TEST_CASE("more distributions: mode of the earlier families matches torch") {
  for (const auto& c : fixtures().at("modes")) {
    auto d = build_existing(c);
    check_close(d->mode(), fixture_tensor(c.at("mode")), c.at("dist").get<std::string>() + " mode");
  }
  // Independent forwards to its base; families without a torch mode say so.
  auto n = Normal(T({1.0, 2.0}), 1.0).to_event(1);
  check_close(n->mode(), T({1.0, 2.0}), "Independent mode");
  CHECK_THROWS_WITH_AS(ContinuousBernoulli(0.3).mode(), doctest::Contains("ContinuousBernoulli does not implement mode"),
                       NotImplementedError);
}

TEST_CASE("more distributions: Kumaraswamy mode maximises the density and VonMises uses the exact log I0") {
  // torch 1.13's Kumaraswamy.mode is NaN for every concentration0 > 1; the true mode is the density's argmax.
  Kumaraswamy d(T({2.0, 3.5, 1.5, 0.5}), T({3.0, 1.5, 1.0, 2.0}));
  auto grid = torch::linspace(1e-6, 1 - 1e-6, 200001, torch::kDouble).unsqueeze(-1);
  auto argmax = grid.squeeze(-1).index_select(0, d.log_prob(grid).argmax(0));
  auto mode = d.mode();
  check_close(mode.narrow(0, 0, 3), argmax.narrow(0, 0, 3), "Kumaraswamy mode", 0, 1e-5);
  CHECK(std::isnan(mode[3].item<double>()));  // a < 1: the density is unbounded at 0
  const auto& v = fixtures().at("vonmises_exact");
  auto k = fixture_tensor(v.at("concentration"));
  VonMises vm(torch::zeros_like(k), k);
  const double log_2pi = std::log(2 * M_PI);
  check_close(vm.log_prob(torch::zeros_like(k)), k - log_2pi - fixture_tensor(v.at("log_i0")), "VonMises exact log I0", 1e-12);
  check_close(vm.log_prob(torch::zeros_like(k)), fixture_tensor(v.at("torch_log_prob_at_loc")), "VonMises vs torch", 1e-6, 5e-7);
}

TEST_CASE("more distributions: continuous samplers pass Kolmogorov-Smirnov tests and moments") {
  torch::manual_seed(7);
  const int64_t n = 20000;
  SUBCASE("Gumbel, Weibull, Pareto, Logistic, Kumaraswamy (closed-form cdf)") {
    std::vector<DistPtr> ds = {
        std::make_shared<Gumbel>(T({0.5, -2.0}), T({1.5, 0.3})),
        std::make_shared<Weibull>(T({1.0, 2.5}), T({0.7, 3.0})),
        std::make_shared<Pareto>(T({1.0, 0.5}), T({5.0, 9.0})),
        std::make_shared<Logistic>(T({0.5, -2.0}), T({1.5, 0.3})),
        std::make_shared<Kumaraswamy>(T({0.6, 3.0}), T({2.0, 0.8})),
    };
    for (const auto& d : ds) {
      for (bool r : {false, true}) {
        auto x = r ? d->rsample({n}) : d->sample({n});
        check_moments(x, d->mean(), d->variance(), d->name());
        check_ks_batch(x, *d, d->name());
      }
    }
  }
  SUBCASE("Chi2 through Gamma's sampler") {
    Chi2 d(T({0.8, 7.0}));
    auto x = d.rsample({n});
    check_moments(x, d.mean(), d.variance(), "Chi2");
    check_ks_batch(x, d, "Chi2");
    check_close(d.mean(), T({0.8, 7.0}), "Chi2 mean = df");
  }
  SUBCASE("FoldedDistribution of a Normal") {
    FoldedDistribution d(std::make_shared<Normal>(T({0.7}), T({1.3})));
    auto x = d.rsample({n});
    CHECK((x >= 0).all().item<bool>());
    auto cdf = [](const torch::Tensor& v) {
      auto out = torch::empty_like(v);
      auto a = v.accessor<double, 1>();
      auto o = out.accessor<double, 1>();
      for (int64_t i = 0; i < v.size(0); ++i) o[i] = normal_cdf((a[i] - 0.7) / 1.3) - normal_cdf((-a[i] - 0.7) / 1.3);
      return out;
    };
    ember::testing::check_ks(x.flatten(), cdf, "FoldedNormal");
    // Its density integrates to one.
    check_close(numeric_cdf(d, 0, 20)(torch::full({1}, 20.0, torch::kDouble)), torch::ones({1}, torch::kDouble),
                "FoldedNormal total mass", 1e-7);
  }
  SUBCASE("VonMises (rejection sampler) against the integrated density") {
    for (double k : {0.3, 4.0, 40.0}) {
      VonMises d(1.0, k);
      auto x = d.sample({n});
      CHECK((x >= -M_PI).all().item<bool>());
      CHECK((x < M_PI).all().item<bool>());
      ember::testing::check_ks(x, numeric_cdf(d, -M_PI, M_PI), cat("VonMises k=", k));
      // The circular variance: 1 - E[cos(x - loc)].
      auto c = torch::cos(x - 1.0);
      auto z = std::abs((1 - c.mean().item<double>()) - d.variance().item<double>()) / (c.std().item<double>() / std::sqrt(double(n)));
      CHECK_MESSAGE(z <= ember::testing::kMomentZ, "VonMises circular variance off by " << z << " standard errors");
    }
  }
  SUBCASE("LogisticNormal: the first coordinate is sigmoid(x1 - log(K - 1))") {
    LogisticNormal d(T({0.3, -0.5, 1.0}), T({0.8, 1.2, 0.5}));
    auto x = d.rsample({n});
    CHECK(to_shape(x.sizes()) == Shape{n, 4});
    CHECK(((x.sum(-1) - 1).abs() < 1e-9).all().item<bool>());
    auto cdf = [](const torch::Tensor& y) {
      auto z = (torch::logit(y) + std::log(3.0) - 0.3) / 0.8;
      return 0.5 * torch::erfc(-z / std::sqrt(2.0));
    };
    ember::testing::check_ks(x.select(1, 0), cdf, "LogisticNormal first coordinate");
  }
  SUBCASE("MultivariateStudentT: moments and a Student-t marginal") {
    auto L = T({1.0, 0.0, 0.6, 0.8}).reshape({2, 2});
    MultivariateStudentT d(9.0, T({0.5, -1.0}), L);
    auto x = d.rsample({n});
    check_moments(x, d.mean(), d.variance(), "MultivariateStudentT");
    StudentT marginal(9.0, -1.0, 1.0);  // coordinate 1: scale sqrt(0.36 + 0.64) = 1
    ember::testing::check_ks(x.select(1, 1), numeric_cdf(marginal, -60, 60), "MultivariateStudentT marginal");
  }
  SUBCASE("Wishart: moments of every entry") {
    auto S = T({2.0, 0.5, 0.0, 0.5, 1.0, 0.3, 0.0, 0.3, 1.5}).reshape({3, 3});
    Wishart d(T({4.5}), CovarianceMatrix{S});
    auto x = d.rsample({n});
    CHECK(to_shape(x.sizes()) == Shape{n, 1, 3, 3});
    CHECK(constraints::positive_definite()->check(x).all().item<bool>());
    check_moments(x, d.mean(), d.variance(), "Wishart");
  }
  SUBCASE("LKJCholesky: draws are correlation Cholesky factors with Beta-distributed correlations") {
    for (int64_t dim : {3, 4}) {
      for (double eta : {0.5, 1.0, 3.0}) {
        LKJCholesky d(dim, eta);
        auto L = d.sample({n});
        CHECK(constraints::corr_cholesky()->check(L).all().item<bool>());
        // Every off-diagonal correlation of an LKJ(eta) d x d matrix: (r + 1) / 2 ~ Beta(b, b), b = eta - 1 + d / 2.
        auto corr = L.matmul(L.transpose(-1, -2));
        const double b = eta - 1 + static_cast<double>(dim) / 2;
        Beta beta(b, b);
        auto cdf = numeric_cdf(beta, 0, 1);
        for (int64_t i = 1; i < dim; ++i)
          for (int64_t j = 0; j < i; ++j)
            ember::testing::check_ks((corr.select(-2, i).select(-1, j) + 1) / 2, cdf,
                                     cat("LKJCholesky dim=", dim, " eta=", eta, " correlation (", i, ", ", j, ")"));
      }
    }
  }
  SUBCASE("Empirical: draws follow the normalised weights") {
    Empirical d(T({0.0, 1.0, 1.0, 3.0}), T({0.1, -0.3, 0.5, 0.0}));
    auto x = d.sample({n});
    auto w = torch::softmax(T({0.1, -0.3, 0.5, 0.0}), 0);
    std::vector<double> pmf = {w[0].item<double>(), 0, 0, w[3].item<double>()};
    pmf[1] = (w[1] + w[2]).item<double>();
    ember::testing::check_chi2(x, [&](int64_t k) { return k < 4 ? pmf[k] : 0.0; }, "Empirical");
  }
}

TEST_CASE("more distributions: pathwise gradients of E[f(rsample)] match closed forms") {
  torch::manual_seed(99);
  const int64_t n = 50000;
  auto rep = [&](double v) { return torch::full({n}, v, torch::kDouble).requires_grad_(); };
  auto one = [](double v) { return torch::full({1}, v, torch::kDouble).requires_grad_(); };
  struct Case {
    std::string name;
    std::function<DistPtr(const std::vector<torch::Tensor>&)> make;
    std::vector<double> params;
  };
  // d E[x] / d theta from the draws against autograd of the closed-form mean.
  std::vector<Case> cases = {
      {"Gumbel", [](auto& p) { return std::make_shared<Gumbel>(p[0], p[1]); }, {0.3, 1.4}},
      {"Weibull", [](auto& p) { return std::make_shared<Weibull>(p[0], p[1]); }, {1.3, 1.7}},
      {"Chi2", [](auto& p) { return std::make_shared<Chi2>(p[0]); }, {2.5}},
      {"Pareto", [](auto& p) { return std::make_shared<Pareto>(p[0], p[1]); }, {1.2, 6.0}},
      {"Logistic", [](auto& p) { return std::make_shared<Logistic>(p[0], p[1]); }, {0.3, 1.4}},
      {"Kumaraswamy", [](auto& p) { return std::make_shared<Kumaraswamy>(p[0], p[1]); }, {1.5, 2.5}},
  };
  for (const auto& c : cases) {
    std::vector<torch::Tensor> ps, ps1;
    for (double v : c.params) {
      ps.push_back(rep(v));
      ps1.push_back(one(v));
    }
    c.make(ps)->rsample().sum().backward();
    c.make(ps1)->mean().sum().backward();
    for (size_t i = 0; i < ps.size(); ++i) {
      // A parameter the mean does not depend on (Logistic's scale) has zero gradient.
      auto truth = ps1[i].grad().defined() ? ps1[i].grad() : torch::zeros({1}, torch::kDouble);
      check_pathwise(ps[i].grad(), truth, cat(c.name, " parameter ", i));
    }
  }
  SUBCASE("FoldedDistribution: E|x| for x ~ Normal(mu, sigma)") {
    auto mu = rep(0.4), sigma = rep(1.1);
    FoldedDistribution(std::make_shared<Normal>(mu, sigma)).rsample().sum().backward();
    // d/dmu E|x| = 1 - 2 Phi(-mu / sigma); d/dsigma E|x| = 2 phi(mu / sigma).
    const double z = 0.4 / 1.1;
    check_pathwise(mu.grad(), T({1 - 2 * normal_cdf(-z)}), "Folded d/dmu");
    check_pathwise(sigma.grad(), T({2 * std::exp(-z * z / 2) / std::sqrt(2 * M_PI)}), "Folded d/dsigma");
  }
  SUBCASE("MultivariateStudentT: E|x - loc|^2 = df / (df - 2) tr(L L^T)") {
    const double df0 = 6.0;
    auto L0 = T({1.0, 0.0, 0.5, 0.8}).reshape({2, 2});
    auto df = rep(df0);
    auto L = L0.expand({n, 2, 2}).clone().requires_grad_();
    auto loc = T({0.3, -0.2});
    (MultivariateStudentT(df, loc, L).rsample() - loc).pow(2).sum().backward();
    const double tr = L0.pow(2).sum().item<double>();
    check_pathwise(L.grad().tril(), 2 * df0 / (df0 - 2) * L0, "MultivariateStudentT d/dL");
    check_pathwise(df.grad(), T({-2 / ((df0 - 2) * (df0 - 2)) * tr}), "MultivariateStudentT d/ddf");
  }
  SUBCASE("Wishart: E[sum(W * X)] = df sum(W * L L^T)") {
    const double df0 = 5.0;
    auto L0 = T({1.0, 0.0, 0.4, 0.9}).reshape({2, 2});
    auto W = T({1.0, 0.5, 0.5, 2.0}).reshape({2, 2});
    auto df = rep(df0);
    auto L = L0.expand({n, 2, 2}).clone().requires_grad_();
    (Wishart(df, ScaleTril{L}).rsample() * W).sum().backward();
    check_pathwise(L.grad().tril(), (df0 * 2 * W.matmul(L0)).tril(), "Wishart d/dL");
    check_pathwise(df.grad(), (W * L0.matmul(L0.t())).sum().reshape({1}), "Wishart d/ddf");
  }
}

TEST_CASE("more transforms: tanh, power, abs and corr-Cholesky match torch") {
  const auto& t = fixtures().at("transforms");
  {
    const auto& c = t.at("tanh");
    auto x = fixture_tensor(c.at("x")), y = transforms::tanh()->forward(x);
    check_close(y, fixture_tensor(c.at("y")), "tanh forward");
    check_close(transforms::tanh()->inverse(y), fixture_tensor(c.at("inverse")), "tanh inverse");
    check_close(transforms::tanh()->log_abs_det_jacobian(x, y), fixture_tensor(c.at("log_abs_det_jacobian")), "tanh ladj");
    auto big = fixture_tensor(c.at("large_x"));
    check_close(transforms::tanh()->log_abs_det_jacobian(big, transforms::tanh()->forward(big)), fixture_tensor(c.at("large_ladj")),
                "tanh ladj at |x| = 20, 30 (finite, no cancellation)");
    CHECK(transforms::tanh()->sign() == 1);
    CHECK(transforms::tanh()->codomain()->check(y).all().item<bool>());
  }
  {
    const auto& c = t.at("power");
    auto x = fixture_tensor(c.at("x"));
    auto p = transforms::power(fixture_tensor(c.at("exponent")));
    auto y = p->forward(x);
    check_close(y, fixture_tensor(c.at("y")), "power forward");
    check_close(p->inverse(y), fixture_tensor(c.at("inverse")), "power inverse");
    check_close(p->log_abs_det_jacobian(x, y), fixture_tensor(c.at("log_abs_det_jacobian")), "power ladj");
    CHECK(p->sign() == 0);  // mixed-sign exponents
    CHECK(transforms::power(-2.0)->sign() == -1);
  }
  {
    const auto& c = t.at("abs");
    auto x = fixture_tensor(c.at("x"));
    check_close(transforms::abs()->forward(x), fixture_tensor(c.at("y")), "abs forward");
    check_close(transforms::abs()->inverse(transforms::abs()->forward(x)), fixture_tensor(c.at("inverse")), "abs inverse");
    CHECK_THROWS_AS(transforms::abs()->log_abs_det_jacobian(x, x.abs()), NotImplementedError);
  }
  {
    const auto& c = t.at("corr_cholesky");
    auto x = fixture_tensor(c.at("x"));
    auto cc = transforms::biject_to(constraints::corr_cholesky());
    CHECK(cc->name() == "corr_cholesky");
    CHECK(transforms::transform_to(constraints::corr_cholesky())->name() == "corr_cholesky");
    auto y = cc->forward(x);
    check_close(y, fixture_tensor(c.at("y")), "corr_cholesky forward");
    check_close(cc->inverse(y), fixture_tensor(c.at("inverse")), "corr_cholesky inverse");
    check_close(cc->log_abs_det_jacobian(x, y), fixture_tensor(c.at("log_abs_det_jacobian")), "corr_cholesky ladj");
    CHECK(cc->forward_shape({2, 6}) == Shape{2, 4, 4});
    CHECK(cc->inverse_shape({2, 4, 4}) == Shape{2, 6});
    CHECK_THROWS_AS(cc->forward_shape({5}), ShapeError);
    auto check = constraints::corr_cholesky()->check(torch::stack({y[0], y[1] * 1.01}));
    CHECK(torch::equal(check, fixture_tensor(c.at("check"), torch::kBool)));
    // The Jacobian determinant against autograd: y's below-diagonal entries as a function of x.
    auto x0 = x[0].clone();
    auto idx = torch::tril_indices(4, 4, -1);
    auto f = [&](const torch::Tensor& v) {
      auto m = cc->forward(v);
      return m.index({idx[0], idx[1]});
    };
    auto jac = torch::zeros({6, 6}, torch::kDouble);
    for (int64_t i = 0; i < 6; ++i) {
      auto xi = x0.clone().requires_grad_();
      auto out = f(xi)[i];
      jac[i] = torch::autograd::grad({out}, {xi})[0];
    }
    check_close(std::get<1>(torch::linalg_slogdet(jac)), cc->log_abs_det_jacobian(x0, cc->forward(x0)),
                "corr_cholesky ladj vs autograd", 1e-9);
  }
  // Pareto's support (a tensor bound) has a bijection from the reals.
  auto lower = T({1.0, 2.5});
  auto b = transforms::biject_to(constraints::greater_than_eq(lower));
  auto y = b->forward(T({-3.0, 4.0}));
  CHECK(constraints::greater_than_eq(lower)->check(y).all().item<bool>());
  check_close(b->inverse(y), T({-3.0, 4.0}), "greater_than_eq(tensor) round trip", 1e-12);
}

TEST_CASE("more KL pairs match torch, and lookup finds pairs registered for parent types") {
  const auto& pairs = fixtures().at("kl");
  REQUIRE(pairs.size() >= 11);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& c = pairs[i];
    const auto label = cat("KL pair ", i, " (", c.at("p").at("dist").get<std::string>(), ", ",
                           c.at("q").at("dist").get<std::string>(), ")");
    INFO(label);
    auto p = build(c.at("p")), q = build(c.at("q"));
    CHECK(has_kl(*p, *q));
    check_close(kl_divergence(p, q), fixture_tensor(c.at("kl")), label, 1e-6, 1e-9);
  }
  CHECK_THROWS_AS(kl_divergence(Binomial(T({3.0, 5.0}), 0.3), Binomial(4.0, 0.5)), NotImplementedError);

  // A user hierarchy: the most specific registered pair wins, the p side first.
  struct Shifted : Normal {
    using Normal::Normal;
    std::string name() const override { return "Shifted"; }
  };
  struct DoubleShifted : Shifted {
    using Shifted::Shifted;
    std::string name() const override { return "DoubleShifted"; }
  };
  register_kl<Shifted, Normal>([](const Shifted& p, const Normal&) { return torch::full_like(p.loc, 1.0); });
  register_kl<Normal, Shifted>([](const Normal& p, const Shifted&) { return torch::full_like(p.loc, 2.0); });
  Normal plain(0.0, 1.0), other(1.0, 2.0);
  Shifted s(0.0, 1.0);
  DoubleShifted ds(0.0, 1.0);
  CHECK(kl_divergence(s, plain).item<double>() == 1.0);
  CHECK(kl_divergence(plain, s).item<double>() == 2.0);
  CHECK(kl_divergence(ds, plain).item<double>() == 1.0);   // via (Shifted, Normal)
  CHECK(kl_divergence(s, ds).item<double>() == 1.0);       // (Shifted, Normal) beats (Normal, Shifted): p first
  check_close(kl_divergence(plain, other), 0.5 * (torch::full({}, 0.25, torch::kDouble) + 0.25 - 1 - std::log(0.25)),
              "exact (Normal, Normal) unaffected");
  // Pairs registered by type_index alone stay exact-match only.
  struct Tagged : Normal {
    using Normal::Normal;
  };
  register_kl(std::type_index(typeid(Tagged)), std::type_index(typeid(Tagged)),
              [](const Distribution&, const Distribution&) { return torch::zeros({}); });
  CHECK(kl_divergence(Tagged(0.0, 1.0), Tagged(0.0, 1.0)).item<double>() == 0.0);
}

TEST_CASE("more distributions: Empirical and ImproperUniform match Pyro 1.8.4") {
  const auto& e = fixtures().at("empirical");
  {
    const auto& c = e.at("scalar");
    Empirical d(fixture_tensor(c.at("samples")), fixture_tensor(c.at("log_weights")));
    CHECK(d.batch_shape() == c.at("batch_shape").get<Shape>());
    CHECK(d.event_shape() == c.at("event_shape").get<Shape>());
    check_close(d.log_prob(fixture_tensor(c.at("value"))), fixture_tensor(c.at("log_prob")), "Empirical log_prob");
    check_close(d.log_prob(T({7.0, 2.0})), fixture_tensor(c.at("missing_log_prob")), "Empirical log_prob of a missing value");
    check_close(d.mean(), fixture_tensor(c.at("mean")), "Empirical mean");
    check_close(d.variance(), fixture_tensor(c.at("variance")), "Empirical variance");
    CHECK(to_shape(d.sample({5}).sizes()) == Shape{5, 2});
    CHECK_THROWS_AS(d.log_prob(T({1.0})), ShapeError);
    CHECK(d.expand({3, 2})->batch_shape() == Shape{3, 2});
  }
  {
    const auto& c = e.at("vector");
    Empirical d(fixture_tensor(c.at("samples")), fixture_tensor(c.at("log_weights")));
    CHECK(d.event_shape() == c.at("event_shape").get<Shape>());
    check_close(d.log_prob(fixture_tensor(c.at("value"))), fixture_tensor(c.at("log_prob")), "Empirical (vector) log_prob");
    check_close(d.mean(), fixture_tensor(c.at("mean")), "Empirical (vector) mean");
    check_close(d.variance(), fixture_tensor(c.at("variance")), "Empirical (vector) variance");
    CHECK(to_shape(d.sample({4}).sizes()) == Shape{4, 2});
    check_close(d.enumerate_support(), fixture_tensor(c.at("samples")), "Empirical enumerate_support");
  }
  CHECK_THROWS_AS(Empirical(torch::zeros({3, 2}), torch::zeros({2})), ShapeError);
  CHECK_THROWS_AS(Empirical(torch::zeros({3}, torch::kLong), torch::zeros({3})).mean(), ValueError);

  const auto& u = fixtures().at("improper_uniform");
  ImproperUniform d(constraints::positive(), {2, 3}, {4});
  auto lp = d.log_prob(torch::rand({5, 1, 3, 4}, torch::kDouble));
  CHECK(to_shape(lp.sizes()) == u.at("log_prob_shape").get<Shape>());
  check_close(lp, fixture_tensor(u.at("log_prob")), "ImproperUniform log_prob");
  CHECK_THROWS_AS(d.sample(), NotImplementedError);
  CHECK(transforms::biject_to(d.support())->name() == "exp");
  CHECK(d.expand({7, 2, 3})->batch_shape() == Shape{7, 2, 3});
}

TEST_CASE("more distributions: validation errors name the distribution and the parameter") {
  CHECK_THROWS_WITH_AS(Gumbel(0.0, -1.0), doctest::Contains("Gumbel: parameter 'scale'"), ValueError);
  CHECK_THROWS_WITH_AS(Chi2(T({1.0, -2.0})), doctest::Contains("Chi2: parameter 'df'"), ValueError);
  CHECK_THROWS_WITH_AS(Pareto(1.0, 2.0).log_prob(T({0.5})), doctest::Contains("outside the support"), ValueError);
  CHECK_THROWS_WITH_AS(Wishart(1.5, CovarianceMatrix{torch::eye(3, torch::kDouble)}), doctest::Contains("'df'"), ValueError);
  CHECK_THROWS_WITH_AS(LKJCholesky(1, 1.0), doctest::Contains("dim"), ValueError);
  CHECK_THROWS_AS(MultivariateStudentT(3.0, torch::zeros({3}, torch::kDouble), torch::eye(2, torch::kDouble)), ShapeError);
  CHECK_THROWS_AS(FoldedDistribution(std::make_shared<Dirichlet>(torch::ones({3}, torch::kDouble))), ShapeError);
  CHECK_THROWS_WITH_AS(LKJCholesky(3, 1.0).log_prob(torch::eye(3, torch::kDouble) * 2), doctest::Contains("corr_cholesky"),
                       ValueError);
  Chi2 c(T({2.0, 3.0}));
  CHECK(c.to_string() == "Chi2(df: [2])");
  auto e = c.expand({4, 2});
  CHECK(e->name() == "Chi2");
  CHECK(dynamic_cast<const Chi2*>(e.get())->df.sizes() == torch::IntArrayRef{4, 2});
  CHECK(dynamic_cast<const Gamma*>(&c) != nullptr);
}

TEST_CASE("more distributions: LogisticNormal and Gumbel pathwise gradients match finite differences") {
  // With the random stream fixed, (1/M) sum f(rsample(theta)) is a smooth function of theta, so
  // autograd through rsample must equal its central finite difference.
  const int64_t m = 2000;
  auto f = [](const torch::Tensor& x) { return (torch::sin(3 * x) + x.pow(2)).sum() / m; };
  std::vector<std::pair<std::string, std::function<DistPtr(const torch::Tensor&, const torch::Tensor&)>>> cases = {
      {"LogisticNormal", [](const torch::Tensor& a, const torch::Tensor& b) { return std::make_shared<LogisticNormal>(a, b); }},
      {"Gumbel", [](const torch::Tensor& a, const torch::Tensor& b) { return std::make_shared<Gumbel>(a, b); }},
  };
  for (const auto& [name, make] : cases) {
    INFO(name);
    const std::vector<torch::Tensor> params = {T({0.2, -0.5, 0.1}), T({0.7, 1.1, 0.4})};
    auto estimate = [&, make = make](const torch::Tensor& a, const torch::Tensor& b) {
      torch::manual_seed(2024);
      return f(make(a, b)->rsample({m}));
    };
    auto a = params[0].clone().requires_grad_(), b = params[1].clone().requires_grad_();
    estimate(a, b).backward();
    const std::vector<torch::Tensor> grads = {a.grad(), b.grad()};
    const double h = 1e-5;
    for (size_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 3; ++j) {
        auto shifted = [&](double delta) {
          auto qa = params[0].clone(), qb = params[1].clone();
          (i == 0 ? qa : qb)[j] += delta;
          torch::NoGradGuard no_grad;
          return estimate(qa, qb).item<double>();
        };
        const double fd = (shifted(h) - shifted(-h)) / (2 * h);
        CHECK_MESSAGE(grads[i][j].item<double>() == doctest::Approx(fd).epsilon(1e-5).scale(1.0),
                      name << " parameter " << i << "[" << j << "]: autograd " << grads[i][j].item<double>()
                           << " vs finite difference " << fd);
      }
    }
  }
}
