// Samplers: moments against their standard errors, Kolmogorov-Smirnov (continuous) and
// chi-square (discrete) goodness of fit at fixed seeds, with thresholds from the tests'
// critical values at alpha = 0.001. Also pathwise (rsample) gradients against closed forms.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "distribution_checks.h"
#include "distributions/distributions.h"

using namespace ember;
using namespace ember::dist;

namespace {

constexpr int64_t kN = 20000;     // draws per goodness-of-fit test
constexpr double kZ = ember::testing::kMomentZ;  // moment checks: |estimate - truth| <= 5 standard errors
using ember::testing::check_chi2;
using ember::testing::check_ks;
using ember::testing::check_moments;
using ember::testing::chi2_crit;
using ember::testing::kKsCrit;

auto f64() { return torch::TensorOptions().dtype(torch::kDouble); }
torch::Tensor T(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

// KS for every batch column of samples [N, B]: cdf(x, b) gives column b's cdf.
void check_ks_columns(const torch::Tensor& samples, const std::function<torch::Tensor(const torch::Tensor&, int64_t)>& cdf,
                      const std::string& what) {
  auto flat = samples.reshape({samples.size(0), -1});
  for (int64_t b = 0; b < flat.size(1); ++b)
    check_ks(flat.select(1, b), [&](const torch::Tensor& x) { return cdf(x, b); }, cat(what, " [column ", b, "]"));
}

// A cdf computed by integrating exp(log_prob) of a univariate scalar distribution on [lo, hi].
std::function<torch::Tensor(const torch::Tensor&)> numeric_cdf(const Distribution& d, double lo, double hi) {
  const int64_t g = 400001;
  auto grid = torch::linspace(lo, hi, g, f64());
  auto pdf = d.log_prob(grid).exp();
  auto area = (pdf.slice(0, 1) + pdf.slice(0, 0, g - 1)) * 0.5 * (hi - lo) / (g - 1);
  auto F = torch::cat({torch::zeros({1}, f64()), area.cumsum(0)});
  return [grid, F, lo, hi, g](const torch::Tensor& x) {
    auto idx = ((x - lo) / (hi - lo) * (g - 1)).round().clamp(0, g - 1).to(torch::kLong);
    return F.index_select(0, idx);
  };
}

// pmf of batch element b of a discrete univariate distribution.
std::function<double(int64_t)> pmf_of(const Distribution& d, int64_t b) {
  auto unchecked = d.with_validation(false);  // k may lie outside some batch element's support
  return [unchecked, b](int64_t k) {
    const auto& d = *unchecked;
    auto lp = d.log_prob(torch::full(d.batch_shape(), static_cast<double>(k), d.options()));
    return lp.flatten()[b].exp().item<double>();
  };
}

}  // namespace

TEST_CASE("sampling: test helpers reject wrong distributions") {
  // Guards against tests that cannot fail: a mismatched cdf / pmf / moment is detected.
  torch::manual_seed(1);
  auto x = Normal(0.0, 1.0).sample({kN});
  auto wrong = Normal(0.1, 1.0);
  auto d = torch::max((torch::arange(1, kN + 1, f64()) / kN - wrong.cdf(std::get<0>(x.sort()))).abs()).item<double>();
  CHECK(d > kKsCrit / std::sqrt(double(kN)));
  auto m = x.mean().item<double>();
  CHECK(std::abs(m - 0.1) / std::sqrt(1.0 / kN) > kZ);
  CHECK(chi2_crit(1) == doctest::Approx(10.83).epsilon(0.05));
  CHECK(chi2_crit(10) == doctest::Approx(29.59).epsilon(0.01));
}

TEST_CASE("sampling: continuous univariate distributions (moments and KS)") {
  torch::manual_seed(20240601);
  SUBCASE("Normal: sample and rsample, float64 and float32") {
    for (auto dt : {torch::kDouble, torch::kFloat}) {
      Normal d(T({0.5, -2.0}).to(dt), T({1.5, 0.3}).to(dt));
      for (bool r : {false, true}) {
        auto x = r ? d.rsample({kN}) : d.sample({kN});
        CHECK(static_cast<int>(x.scalar_type()) == static_cast<int>(dt));
        CHECK(to_shape(x.sizes()) == Shape{kN, 2});
        check_moments(x, d.mean(), d.variance(), "Normal");
        check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return Normal(d.loc[b].item<double>(), d.scale[b].item<double>()).cdf(v); }, "Normal");
      }
    }
  }
  SUBCASE("Uniform") {
    Uniform d(T({0.0, -3.0}), T({1.0, 5.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Uniform");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return Uniform(d.low[b], d.high[b]).cdf(v); }, "Uniform");
  }
  SUBCASE("Exponential") {
    Exponential d(T({0.5, 4.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Exponential");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return Exponential(d.rate[b]).cdf(v); }, "Exponential");
  }
  SUBCASE("LogNormal") {
    LogNormal d(T({0.0, 1.0}), T({0.25, 0.5}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "LogNormal");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return LogNormal(d.loc[b], d.scale[b]).cdf(v); }, "LogNormal");
  }
  SUBCASE("Laplace") {
    Laplace d(T({1.0, -1.0}), T({0.5, 2.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Laplace");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return Laplace(d.loc[b], d.scale[b]).cdf(v); }, "Laplace");
  }
  SUBCASE("Cauchy and HalfCauchy (KS only: no finite moments)") {
    Cauchy c(T({1.0, -1.0}), T({0.5, 2.0}));
    check_ks_columns(c.sample({kN}), [&](const torch::Tensor& v, int64_t b) { return Cauchy(c.loc[b], c.scale[b]).cdf(v); }, "Cauchy");
    HalfCauchy h(T({0.5, 2.0}));
    auto x = h.sample({kN});
    CHECK((x >= 0).all().item<bool>());
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return HalfCauchy(h.scale[b]).cdf(v); }, "HalfCauchy");
  }
  SUBCASE("HalfNormal") {
    HalfNormal d(T({0.5, 2.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "HalfNormal");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return HalfNormal(d.scale[b]).cdf(v); }, "HalfNormal");
  }
  SUBCASE("StudentT (KS against the integrated density)") {
    StudentT d(T({5.0, 9.0}), T({1.0, -2.0}), T({2.0, 0.5}));
    auto x = d.sample({kN});
    check_moments(x.select(1, 1), d.mean()[1], d.variance()[1], "StudentT df=9");  // df=9: finite 4th moment
    for (int64_t b = 0; b < 2; ++b) {
      StudentT db(d.df[b], d.loc[b], d.scale[b]);
      check_ks(x.select(1, b), numeric_cdf(db, -400, 400), cat("StudentT column ", b));
    }
  }
  SUBCASE("Gamma (small and large concentration)") {
    Gamma d(T({0.4, 3.5}), T({2.0, 0.5}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Gamma");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return Gamma(d.concentration[b], d.rate[b]).cdf(v); }, "Gamma");
  }
  SUBCASE("InverseGamma") {
    InverseGamma d(T({6.0, 2.5}), T({2.0, 1.0}));
    auto x = d.sample({kN});
    check_moments(x.select(1, 0), d.mean()[0], d.variance()[0], "InverseGamma a=6");  // a > 4: finite 4th moment
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return InverseGamma(d.concentration[b], d.rate[b]).cdf(v); }, "InverseGamma");
  }
  SUBCASE("Beta") {
    Beta d(T({0.5, 2.5, 1.0}), T({0.5, 1.5, 3.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Beta");
    for (int64_t b = 1; b < 3; ++b) {  // bounded densities: the numeric cdf is accurate
      Beta db(d.concentration1[b], d.concentration0[b]);
      check_ks(x.select(1, b), numeric_cdf(db, 0, 1), cat("Beta column ", b));
    }
  }
  SUBCASE("ContinuousBernoulli (including the Taylor region near 0.5)") {
    ContinuousBernoulli d(T({0.1, 0.5, 0.8}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "ContinuousBernoulli");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return ContinuousBernoulli(d.probs[b]).cdf(v); }, "ContinuousBernoulli");
  }
  SUBCASE("RelaxedBernoulli: logit(Y) is logistic") {
    RelaxedBernoulli d(T({0.5, 2.0}), T({0.3, 0.6}));
    auto x = d.rsample({kN});
    CHECK(((x > 0) & (x < 1)).all().item<bool>());
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) {
      auto t = d.temperature[b], l = d.logits[b];
      return torch::sigmoid(t * (v.log() - (-v).log1p()) - l);
    }, "RelaxedBernoulli");
  }
  SUBCASE("TransformedDistribution: exp then affine") {
    auto base = std::make_shared<Normal>(T({0.0, 0.5}), T({0.5, 0.25}));
    TransformedDistribution d(base, {transforms::exp(), transforms::affine(1.0, 2.0)});
    auto x = d.sample({kN});
    auto ln = LogNormal(base->loc, base->scale);
    check_moments(x, 1 + 2 * ln.mean(), 4 * ln.variance(), "TransformedDistribution");
    check_ks_columns(x, [&](const torch::Tensor& v, int64_t b) { return LogNormal(base->loc[b], base->scale[b]).cdf((v - 1) / 2); }, "TransformedDistribution");
  }
  SUBCASE("MixtureSameFamily of normals") {
    auto mix = std::make_shared<Categorical>(T({0.2, 0.5, 0.3}));
    auto comp = std::make_shared<Normal>(T({-3.0, 0.0, 4.0}), T({1.0, 0.5, 2.0}));
    MixtureSameFamily d(mix, comp);
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "MixtureSameFamily");
    check_ks(x, [&](const torch::Tensor& v) { return d.cdf(v); }, "MixtureSameFamily");
  }
}

TEST_CASE("sampling: multivariate continuous distributions") {
  torch::manual_seed(7);
  SUBCASE("Dirichlet: marginals are Beta") {
    Dirichlet d(T({2.0, 3.0, 1.5}));
    auto x = d.sample({kN});
    CHECK(((x.sum(-1) - 1).abs() < 1e-9).all().item<bool>());
    check_moments(x, d.mean(), d.variance(), "Dirichlet");
    for (int64_t i = 0; i < 3; ++i) {
      Beta marginal(d.concentration[i], d.concentration.sum() - d.concentration[i]);
      check_ks(x.select(1, i), numeric_cdf(marginal, 0, 1), cat("Dirichlet marginal ", i));
    }
  }
  SUBCASE("MultivariateNormal: mean, covariance, projections") {
    auto cov = T({2.0, 0.6, -0.3, 0.6, 1.0, 0.2, -0.3, 0.2, 0.5}).reshape({3, 3});
    auto loc = T({1.0, -1.0, 0.5});
    for (int which = 0; which < 3; ++which) {
      auto d = which == 0   ? MultivariateNormal(loc, CovarianceMatrix{cov})
               : which == 1 ? MultivariateNormal(loc, ScaleTril{torch::linalg_cholesky(cov)})
                            : MultivariateNormal(loc, PrecisionMatrix{torch::inverse(cov)});
      CHECK(torch::allclose(d.covariance_matrix(), cov, 1e-10, 1e-12));
      auto x = d.rsample({kN});
      check_moments(x, d.mean(), d.variance(), "MultivariateNormal");
      auto a = T({0.3, -1.0, 2.0});
      auto proj = x.matmul(a);
      double pm = a.dot(loc).item<double>(), ps = std::sqrt(a.dot(cov.matmul(a)).item<double>());
      check_ks(proj, [&](const torch::Tensor& v) { return Normal(pm, ps).cdf(v); }, "MultivariateNormal projection");
      // The empirical covariance is within 5 standard errors of the truth: se(c_ij) <= sqrt((s_ii s_jj + s_ij^2) / n).
      auto xc = x - x.mean(0);
      auto emp = xc.t().matmul(xc) / (kN - 1);
      auto se = ((cov.diagonal().unsqueeze(1) * cov.diagonal().unsqueeze(0) + cov.pow(2)) / kN).sqrt();
      CHECK(((emp - cov).abs() <= kZ * se).all().item<bool>());
    }
  }
  SUBCASE("LowRankMultivariateNormal: covariance W W^T + D") {
    auto W = T({1.0, 0.5, -0.5, 0.2, 0.3, 1.0}).reshape({3, 2});
    auto D = T({0.5, 1.0, 0.2});
    LowRankMultivariateNormal d(T({0.0, 1.0, 2.0}), W, D);
    auto cov = d.covariance_matrix();
    auto x = d.rsample({kN});
    check_moments(x, d.mean(), d.variance(), "LowRankMultivariateNormal");
    auto a = T({1.0, 1.0, -1.0});
    double pm = a.dot(d.loc).item<double>(), ps = std::sqrt(a.dot(cov.matmul(a)).item<double>());
    check_ks(x.matmul(a), [&](const torch::Tensor& v) { return Normal(pm, ps).cdf(v); }, "LowRankMVN projection");
    // Its density agrees with the full-covariance MultivariateNormal.
    MultivariateNormal full(d.loc, CovarianceMatrix{cov});
    auto v = x.slice(0, 0, 10);
    CHECK(torch::allclose(d.log_prob(v), full.log_prob(v), 1e-10, 1e-10));
    CHECK(torch::allclose(d.entropy(), full.entropy(), 1e-10, 1e-10));
  }
}

TEST_CASE("sampling: discrete distributions (moments and chi-square)") {
  torch::manual_seed(99);
  SUBCASE("Bernoulli") {
    Bernoulli d(T({0.2, 0.7}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Bernoulli");
    for (int64_t b = 0; b < 2; ++b) check_chi2(x.select(1, b), pmf_of(d, b), cat("Bernoulli ", b));
  }
  SUBCASE("Categorical") {
    Categorical d(T({0.1, 0.2, 0.3, 0.4, 1.0, 2.0}).reshape({2, 3}));  // unnormalised rows
    auto x = d.sample({kN});
    CHECK(to_shape(x.sizes()) == Shape{kN, 2});
    for (int64_t b = 0; b < 2; ++b) check_chi2(x.select(1, b), pmf_of(d, b), cat("Categorical ", b));
  }
  SUBCASE("OneHotCategorical") {
    OneHotCategorical d(T({0.1, 0.6, 0.3}));
    auto x = d.sample({kN});
    CHECK((x.sum(-1) == 1).all().item<bool>());
    check_moments(x, d.mean(), d.variance(), "OneHotCategorical");
    Categorical c(d.probs);
    check_chi2(x.argmax(-1), pmf_of(c, 0), "OneHotCategorical");
  }
  SUBCASE("Poisson") {
    Poisson d(T({0.7, 12.0}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Poisson");
    for (int64_t b = 0; b < 2; ++b) check_chi2(x.select(1, b), pmf_of(d, b), cat("Poisson ", b));
  }
  SUBCASE("Binomial") {
    Binomial d(T({10.0, 40.0}), T({0.3, 0.85}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Binomial");
    for (int64_t b = 0; b < 2; ++b) check_chi2(x.select(1, b), pmf_of(d, b), cat("Binomial ", b));
  }
  SUBCASE("Geometric") {
    Geometric d(T({0.15, 0.6}));
    auto x = d.sample({kN});
    check_moments(x, d.mean(), d.variance(), "Geometric");
    for (int64_t b = 0; b < 2; ++b) check_chi2(x.select(1, b), pmf_of(d, b), cat("Geometric ", b));
  }
  SUBCASE("Multinomial: counts sum to n, marginals are Binomial") {
    Multinomial d(12, T({0.2, 0.5, 0.3}));
    auto x = d.sample({kN});
    CHECK((x.sum(-1) == 12).all().item<bool>());
    check_moments(x, d.mean(), d.variance(), "Multinomial");
    for (int64_t i = 0; i < 3; ++i) {
      Binomial marginal(12.0, d.probs[i]);
      check_chi2(x.select(1, i), pmf_of(marginal, 0), cat("Multinomial marginal ", i));
    }
  }
  SUBCASE("RelaxedOneHotCategorical: argmax is Categorical (Gumbel-max)") {
    RelaxedOneHotCategorical d(0.5, T({0.1, 0.6, 0.3}));
    auto x = d.rsample({kN});
    CHECK(((x.sum(-1) - 1).abs() < 1e-9).all().item<bool>());
    Categorical c(d.probs);
    check_chi2(x.argmax(-1), pmf_of(c, 0), "RelaxedOneHotCategorical argmax");
  }
}

namespace {
// Pathwise gradient check: params replicated n times (one copy per draw) so that each draw's
// gradient is separate; their mean estimates d E[f(x)] / d theta, compared with `truth`
// within kZ standard errors (computed from the per-draw gradients).
void check_pathwise(const std::vector<torch::Tensor>& grads_per_draw, const std::vector<torch::Tensor>& truth,
                    const std::string& what) {
  for (size_t i = 0; i < grads_per_draw.size(); ++i) {
    INFO(what << " parameter " << i);
    auto g = grads_per_draw[i].to(torch::kDouble);
    const double n = static_cast<double>(g.size(0));
    auto est = g.mean(0);
    auto se = g.std(0) / std::sqrt(n);
    auto z = ((est - truth[i].to(torch::kDouble)).abs() / (se + 1e-12)).max().item<double>();
    CHECK_MESSAGE(z <= kZ, what << " parameter " << i << ": pathwise gradient " << est << " vs " << truth[i] << " (" << z
                                << " standard errors)");
  }
}

torch::Tensor rep(double v, int64_t n) { return torch::full({n}, v, f64()).requires_grad_(); }
}  // namespace

TEST_CASE("pathwise gradients of E[f(rsample)] match closed forms") {
  torch::manual_seed(4242);
  const int64_t n = 50000;
  SUBCASE("Normal: E[x^2] = mu^2 + sigma^2") {
    auto mu = rep(0.7, n), sigma = rep(1.3, n);
    Normal(mu, sigma).rsample().pow(2).sum().backward();
    check_pathwise({mu.grad(), sigma.grad()}, {T({2 * 0.7}), T({2 * 1.3})}, "Normal");
  }
  SUBCASE("Gamma: E[x^2] = a (a + 1) / r^2 (small and large a)") {
    for (double a0 : {0.3, 2.5}) {
      const double r0 = 1.7;
      auto a = rep(a0, n), r = rep(r0, n);
      Gamma(a, r).rsample().pow(2).sum().backward();
      check_pathwise({a.grad(), r.grad()}, {T({(2 * a0 + 1) / (r0 * r0)}), T({-2 * a0 * (a0 + 1) / (r0 * r0 * r0)})},
                     cat("Gamma a=", a0));
    }
  }
  SUBCASE("Beta: E[x] = a / (a + b)") {
    const double a0 = 0.8, b0 = 2.2, s = a0 + b0;
    auto a = rep(a0, n), b = rep(b0, n);
    Beta(a, b).rsample().sum().backward();
    check_pathwise({a.grad(), b.grad()}, {T({b0 / (s * s)}), T({-a0 / (s * s)})}, "Beta");
  }
  SUBCASE("Dirichlet: E[w . x] = w . alpha / A") {
    auto alpha0 = T({0.5, 1.5, 3.0});
    auto w = T({1.0, 2.0, 4.0});
    auto alpha = alpha0.expand({n, 3}).clone().requires_grad_();
    (Dirichlet(alpha).rsample() * w).sum().backward();
    const double A = alpha0.sum().item<double>();
    auto e = (w * alpha0).sum() / A;
    check_pathwise({alpha.grad()}, {(w - e) / A}, "Dirichlet");
  }
  SUBCASE("InverseGamma: E[x] = r / (a - 1)") {
    const double a0 = 4.5, r0 = 2.0;
    auto a = rep(a0, n), r = rep(r0, n);
    InverseGamma(a, r).rsample().sum().backward();
    check_pathwise({a.grad(), r.grad()}, {T({-r0 / ((a0 - 1) * (a0 - 1))}), T({1 / (a0 - 1)})}, "InverseGamma");
  }
  SUBCASE("MultivariateNormal: E[|x|^2] = |mu|^2 + tr(L L^T)") {
    auto L0 = T({1.0, 0.0, 0.5, 0.8}).reshape({2, 2});
    auto mu0 = T({0.3, -0.4});
    auto L = L0.expand({n, 2, 2}).clone().requires_grad_();
    auto mu = mu0.expand({n, 2}).clone().requires_grad_();
    MultivariateNormal(mu, ScaleTril{L}).rsample().pow(2).sum().backward();
    check_pathwise({mu.grad(), L.grad().tril()}, {2 * mu0, 2 * L0}, "MultivariateNormal");
  }
  SUBCASE("every other reparameterised family: d E[x] matches autograd of the closed-form mean") {
    struct Case {
      std::string name;
      std::function<DistPtr(const std::vector<torch::Tensor>&)> make;
      std::vector<double> params;
    };
    std::vector<Case> cases = {
        {"Uniform", [](auto& p) { return std::make_shared<Uniform>(p[0], p[1]); }, {-1.0, 2.0}},
        {"Exponential", [](auto& p) { return std::make_shared<Exponential>(p[0]); }, {1.5}},
        {"LogNormal", [](auto& p) { return std::make_shared<LogNormal>(p[0], p[1]); }, {0.2, 0.4}},
        {"Laplace", [](auto& p) { return std::make_shared<Laplace>(p[0], p[1]); }, {0.2, 0.4}},
        {"HalfNormal", [](auto& p) { return std::make_shared<HalfNormal>(p[0]); }, {1.4}},
        {"StudentT", [](auto& p) { return std::make_shared<StudentT>(p[0], p[1], p[2]); }, {6.0, 0.5, 2.0}},
        {"ContinuousBernoulli", [](auto& p) { return std::make_shared<ContinuousBernoulli>(p[0]); }, {0.3}},
        {"Gamma", [](auto& p) { return std::make_shared<Gamma>(p[0], p[1]); }, {0.6, 0.9}},
    };
    for (const auto& c : cases) {
      std::vector<torch::Tensor> ps, ps1;
      for (double v : c.params) {
        ps.push_back(rep(v, n));
        ps1.push_back(torch::full({1}, v, f64()).requires_grad_());
      }
      c.make(ps)->rsample().sum().backward();
      c.make(ps1)->mean().sum().backward();
      std::vector<torch::Tensor> g, truth;
      for (size_t i = 0; i < ps.size(); ++i) {
        g.push_back(ps[i].grad());
        // A parameter the mean does not depend on (Laplace's scale) has zero gradient.
        truth.push_back(ps1[i].grad().defined() ? ps1[i].grad() : torch::zeros({1}, f64()));
      }
      check_pathwise(g, truth, c.name);
    }
  }
}

TEST_CASE("entropy agrees with the Monte Carlo estimate -E[log p(x)]") {
  // Independent of torch: covers closed forms that the fixtures take from our own formulas
  // (InverseGamma) or that torch lacks (Binomial with unequal total_count).
  torch::manual_seed(31);
  std::vector<std::pair<std::string, DistPtr>> cases = {
      {"InverseGamma", std::make_shared<InverseGamma>(T({3.0, 0.8}), T({2.0, 1.5}))},
      {"Binomial (unequal total_count)", std::make_shared<Binomial>(T({4.0, 9.0}), T({0.3, 0.6}))},
      {"StudentT", std::make_shared<StudentT>(T({3.0, 12.0}), 0.5, 2.0)},
      {"Beta", std::make_shared<Beta>(T({0.7, 3.0}), T({1.5, 2.0}))},
      {"ContinuousBernoulli", std::make_shared<ContinuousBernoulli>(T({0.2, 0.5, 0.9}))},
      {"Multinomial", std::make_shared<Multinomial>(5, T({0.2, 0.3, 0.5}))},
      {"LowRankMultivariateNormal",
       std::make_shared<LowRankMultivariateNormal>(torch::zeros({3}, f64()), torch::ones({3, 1}, f64()), T({0.5, 1.0, 2.0}))},
  };
  const int64_t n = 40000;
  for (const auto& [name, d] : cases) {
    INFO(name);
    auto lp = d->log_prob(d->sample({n}));
    auto est = -lp.mean(0);
    auto se = lp.std(0) / std::sqrt(static_cast<double>(n));
    auto z = ((est - d->entropy()).abs() / (se + 1e-12)).max().item<double>();  // p = 0.5: log p is constant
    CHECK_MESSAGE(z <= kZ, name << ": entropy " << d->entropy() << " vs Monte Carlo " << est << " (" << z << " standard errors)");
  }
}

TEST_CASE("pathwise gradients match finite differences under common random numbers") {
  // With the random stream fixed, the Monte Carlo estimate (1/M) sum f(rsample(theta)) is a
  // smooth function of theta, so autograd through rsample must equal its central finite
  // difference (to O(h^2)). Covers the reparameterised families without a rejection step.
  struct Case {
    std::string name;
    std::function<DistPtr(const std::vector<torch::Tensor>&)> make;
    std::vector<torch::Tensor> params;
  };
  std::vector<Case> cases = {
      {"RelaxedBernoulli", [](auto& p) { return std::make_shared<RelaxedBernoulli>(p[0], Logits{p[1]}); },
       {T({0.7}), T({0.3, -1.2})}},
      {"RelaxedOneHotCategorical", [](auto& p) { return std::make_shared<RelaxedOneHotCategorical>(p[0], Logits{p[1]}); },
       {T({0.8}), T({0.2, -0.4, 1.0})}},
      {"LowRankMultivariateNormal",
       [](auto& p) { return std::make_shared<LowRankMultivariateNormal>(p[0], p[1], p[2]); },
       {T({0.1, -0.2, 0.3}), T({0.5, -0.3, 0.2, 0.1, 0.4, 0.6}).reshape({3, 2}), T({0.4, 0.9, 0.3})}},
      {"MultivariateNormal (covariance)",
       [](auto& p) { return std::make_shared<MultivariateNormal>(p[0], CovarianceMatrix{p[1].matmul(p[1].t()) + torch::eye(2, f64())}); },
       {T({0.1, -0.2}), T({0.5, -0.3, 0.2, 0.1}).reshape({2, 2})}},
      {"Cauchy", [](auto& p) { return std::make_shared<Cauchy>(p[0], p[1]); }, {T({0.3}), T({0.8})}},
      {"HalfCauchy", [](auto& p) { return std::make_shared<HalfCauchy>(p[0]); }, {T({0.8})}},
      {"ContinuousBernoulli", [](auto& p) { return std::make_shared<ContinuousBernoulli>(Logits{p[0]}); }, {T({-1.5, 0.001, 2.0})}},
      {"TransformedDistribution (stick-breaking)",
       [](auto& p) {
         return std::make_shared<TransformedDistribution>(std::make_shared<Normal>(p[0], p[1]),
                                                          std::vector<transforms::TransformPtr>{transforms::stick_breaking()});
       },
       {T({0.2, -0.5, 0.1}), T({0.7, 1.1, 0.4})}},
  };
  const int64_t m = 2000;
  auto f = [](const torch::Tensor& x) { return (torch::sin(3 * x) + x.pow(2)).sum() / m; };
  auto estimate = [&](const Case& c, const std::vector<torch::Tensor>& ps) {
    torch::manual_seed(2024);
    return f(c.make(ps)->rsample({m}));
  };
  for (const auto& c : cases) {
    INFO(c.name);
    std::vector<torch::Tensor> ps;
    for (const auto& p : c.params) ps.push_back(p.clone().requires_grad_());
    estimate(c, ps).backward();
    for (size_t i = 0; i < ps.size(); ++i) {
      auto grad = ps[i].grad().flatten();
      const double h = 1e-5;
      for (int64_t j = 0; j < ps[i].numel(); ++j) {
        auto shifted = [&](double delta) {
          std::vector<torch::Tensor> qs;
          for (const auto& p : c.params) qs.push_back(p.clone());
          qs[i].view(-1)[j] += delta;
          torch::NoGradGuard no_grad;
          return estimate(c, qs).item<double>();
        };
        const double fd = (shifted(h) - shifted(-h)) / (2 * h);
        CHECK_MESSAGE(grad[j].item<double>() == doctest::Approx(fd).epsilon(1e-5).scale(1.0),
                      c.name << " parameter " << i << "[" << j << "]: autograd " << grad[j].item<double>() << " vs finite difference " << fd);
      }
    }
  }
}
