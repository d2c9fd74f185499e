// Predictive and Importance: shapes, conditioning, and evidence estimates against the
// closed-form Normal-Normal evidence.
#include <doctest/doctest.h>

#include <cmath>

#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer;
using dist::Normal;

namespace {

torch::Tensor dbl(double x) { return torch::tensor(x, torch::kDouble); }

// z ~ N(0, 2); mean = deterministic(2 z); x_i ~ N(z, 1) in a plate of n (observed when x is defined).
auto model = [](int64_t n, const torch::Tensor& x) {
  auto z = sample("z", Normal(dbl(0.0), dbl(2.0)));
  deterministic("twice", 2 * z);
  auto p = plate("data", n);
  sample("x", Normal(z, dbl(1.0)), x);
};
auto guide = [](int64_t, const torch::Tensor&) {
  auto loc = param("loc", dbl(0.3));
  sample("z", Normal(loc, dbl(0.5)));
};

}  // namespace

TEST_CASE("Predictive from a guide returns stacked sites of the right shapes") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(21);
  Predictive pred(model, guide, PredictiveOptions().num_samples(7));
  ValueMap out = pred(int64_t{3}, torch::Tensor());
  // With a guide every model site comes back, latents included (Pyro); global sites padded to
  // the model's plates: [7, 1].
  REQUIRE(out.count("z") == 1);
  REQUIRE(out.count("x") == 1);
  CHECK(out.at("z").sizes().vec() == std::vector<int64_t>{7, 1});
  CHECK(out.at("x").sizes().vec() == std::vector<int64_t>{7, 3});
  CHECK(out.at("twice").sizes().vec() == std::vector<int64_t>{7, 1});
  CHECK(torch::allclose(out.at("twice"), 2 * out.at("z")));
  Predictive pred2(model, guide, PredictiveOptions().num_samples(4).return_sites({"z", "twice"}));
  ValueMap out2 = pred2(int64_t{3}, torch::Tensor());
  CHECK(out2.size() == 2);
  CHECK(out2.at("z").sizes().vec() == std::vector<int64_t>{4, 1});
  CHECK(torch::allclose(out2.at("twice"), 2 * out2.at("z")));
  Predictive bad(model, guide, PredictiveOptions().return_sites({"nope"}));
  CHECK_THROWS_WITH_AS(bad(int64_t{3}, torch::Tensor()), doctest::Contains("'nope'"), ValueError);
}

TEST_CASE("Predictive from posterior samples conditions the model on each draw") {
  auto s = seed(22);
  auto z = torch::tensor({-1.0, 0.0, 2.5, 10.0, 4.0}, torch::kDouble);
  Predictive pred(model, ValueMap{{"z", z}});
  ValueMap out = pred(int64_t{1000}, torch::Tensor());
  CHECK(out.count("z") == 0);  // the posterior samples themselves are not returned
  CHECK(out.at("x").sizes().vec() == std::vector<int64_t>{5, 1000});
  CHECK(torch::equal(out.at("twice"), 2 * z.unsqueeze(1)));
  // Each row is N(z_i, 1): its mean is within 4 standard errors (1/sqrt(1000)) of z_i.
  auto row_means = out.at("x").mean(1);
  CHECK(((row_means - z).abs() < 4.0 / std::sqrt(1000.0)).all().item<bool>());
  Predictive fewer(model, ValueMap{{"z", z}}, PredictiveOptions().num_samples(2));
  CHECK(fewer(int64_t{2}, torch::Tensor()).at("x").size(0) == 2);
}

TEST_CASE("Importance estimates the log-evidence and with the exact posterior every weight is the evidence") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(23);
  auto x = torch::tensor({1.2, 0.3, 2.1}, torch::kDouble);
  const int64_t n = 3;
  // Closed form: x ~ N(0, I + 4 11^T).
  auto cov = torch::eye(n, torch::kDouble) + 4.0 * torch::ones({n, n}, torch::kDouble);
  auto L = torch::linalg_cholesky(cov);
  auto sol = torch::linalg_solve_triangular(L, x.unsqueeze(1), false);
  const double log_z = (-0.5 * sol.pow(2).sum() - L.diagonal().log().sum() - 0.5 * n * std::log(2 * M_PI)).item<double>();
  const double post_var = 1.0 / (0.25 + 3.0), post_mean = post_var * x.sum().item<double>();

  auto exact = [&](int64_t, const torch::Tensor&) { sample("z", Normal(dbl(post_mean), dbl(std::sqrt(post_var)))); };
  Importance is_exact(model, exact, 50);
  auto r = is_exact.run(n, x);
  CHECK(r.log_evidence() == doctest::Approx(log_z).epsilon(1e-10));
  CHECK(r.effective_sample_size() == doctest::Approx(50.0).epsilon(1e-8));

  // The prior as proposal: unbiased for the evidence; delta-method standard error of log Z.
  Importance is_prior(model, 20000);
  auto rp = is_prior.run(n, x);
  auto w = (rp.log_weights - rp.log_weights.max()).exp();
  const double rel_se = (w.std() / w.mean()).item<double>() / std::sqrt(20000.0);
  CHECK(std::abs(rp.log_evidence() - log_z) < 4 * rel_se);
  // ESS / N tends to (E w)^2 / E w^2. With the prior as proposal w = prod_i N(x_i; z, 1), and
  // N(x; z, 1)^2 = N(x; z, 1/sqrt 2) / (2 sqrt pi), so E w^2 = Z(1/sqrt 2) / (2 sqrt pi)^n with
  // Z(s) the evidence of the same model with noise s. Delta-method standard error of
  // log(ESS/N) = 2 log mean w - log mean w^2 from the same draws.
  {
    auto cov2 = 0.5 * torch::eye(n, torch::kDouble) + 4.0 * torch::ones({n, n}, torch::kDouble);
    auto L2 = torch::linalg_cholesky(cov2);
    auto sol2 = torch::linalg_solve_triangular(L2, x.unsqueeze(1), false);
    const double log_z2 =
        (-0.5 * sol2.pow(2).sum() - L2.diagonal().log().sum() - 0.5 * n * std::log(2 * M_PI)).item<double>();
    const double expected = 20000.0 * std::exp(2 * log_z - log_z2 + n * std::log(2 * std::sqrt(M_PI)));
    auto w1 = w / w.mean(), w2 = w1 * w1;
    auto m2 = w2.mean();
    auto infl = 2 * (w1 - 1) - (w2 - m2) / m2;  // influence function of 2 log m1 - log m2
    const double se_log = (infl.std() / std::sqrt(20000.0)).item<double>();
    INFO("ESS " << rp.effective_sample_size() << ", expected " << expected << ", se(log) " << se_log);
    CHECK(std::abs(std::log(rp.effective_sample_size() / expected)) < 4 * se_log);
    CHECK(se_log < 0.05);
  }
  CHECK(rp.samples.at("z").sizes().vec() == std::vector<int64_t>{20000});
  // Self-normalised posterior mean: within a few effective-sample standard errors.
  const double se_mean = std::sqrt(post_var / rp.effective_sample_size());
  CHECK(std::abs(rp.mean("z").item<double>() - post_mean) < 4 * se_mean);
}

TEST_CASE("Predictive in parallel gives the shapes of sequential draws") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(24);
  Predictive seq(model, guide, PredictiveOptions().num_samples(6).return_sites({"z", "twice", "x"}));
  Predictive par(model, guide, PredictiveOptions().num_samples(6).return_sites({"z", "twice", "x"}).parallel(true));
  auto a = seq(int64_t{3}, torch::Tensor());
  auto b = par(int64_t{3}, torch::Tensor());
  for (const char* site : {"z", "twice", "x"}) {
    INFO(site);
    CHECK(a.at(site).sizes().vec() == b.at(site).sizes().vec());
  }
  CHECK(b.at("x").sizes().vec() == std::vector<int64_t>{6, 3});
  CHECK(torch::allclose(b.at("twice"), 2 * b.at("z")));
  // From posterior samples: the draws are conditioned one per sample.
  auto z = torch::tensor({-1.0, 0.0, 2.5, 10.0}, torch::kDouble);
  Predictive from_samples(model, ValueMap{{"z", z}}, PredictiveOptions().parallel(true));
  auto c = from_samples(int64_t{500}, torch::Tensor());
  CHECK(c.at("x").sizes().vec() == std::vector<int64_t>{4, 500});
  CHECK(torch::equal(c.at("twice"), 2 * z.unsqueeze(1)));
  CHECK(((c.at("x").mean(1) - z).abs() < 4.0 / std::sqrt(500.0)).all().item<bool>());
  // Observed sites come back expanded over the draws.
  auto obs = torch::tensor({1.0, 2.0, 3.0}, torch::kDouble);
  auto d = Predictive(model, ValueMap{{"z", z}}, PredictiveOptions().parallel(true).return_sites({"x"}))(int64_t{3}, obs);
  CHECK(torch::equal(d.at("x"), obs.expand({4, 3})));
}
