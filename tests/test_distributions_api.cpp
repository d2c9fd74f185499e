// Shapes, the interface (expand / to_event / mask / enumerate_support / to / printing),
// validation errors, constraints and transforms, the KL registry, and a user-defined
// distribution plugged into sample, trace and KL.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "inference/inference.h"
#include "ppl/ppl.h"
#include "pyro_fixture.h"

using namespace ember;
using namespace ember::dist;

namespace {

torch::Tensor T(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }
auto f64() { return torch::TensorOptions().dtype(torch::kDouble); }

// Runs `f`, requires it to throw E, and requires each of `parts` in the message.
template <class E>
void check_throws(const std::function<void()>& f, const std::vector<std::string>& parts, const std::string& what) {
  INFO(what);
  bool thrown = false;
  try {
    f();
  } catch (const E& e) {
    thrown = true;
    std::string msg = e.what();
    for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "message '" << msg << "' lacks '" << p << "'");
  } catch (const std::exception& e) {
    FAIL_CHECK(what << ": threw the wrong exception type: " << e.what());
    return;
  }
  CHECK_MESSAGE(thrown, what << ": nothing was thrown");
}

// Restores global validation at scope exit.
struct ValidationGuard {
  bool saved = is_validation_enabled();
  ~ValidationGuard() { enable_validation(saved); }
};

}  // namespace

TEST_CASE("shapes: batch/event shapes, broadcasting and sample shapes") {
  torch::manual_seed(0);
  Normal n(torch::zeros({3, 1}, f64()), torch::ones({4}, f64()));
  CHECK(n.batch_shape() == Shape{3, 4});
  CHECK(n.event_shape().empty());
  CHECK(to_shape(n.sample({5, 2}).sizes()) == Shape{5, 2, 3, 4});
  CHECK(to_shape(n.log_prob(torch::zeros({7, 1, 1}, f64())).sizes()) == Shape{7, 3, 4});
  Normal scalar(0.0, 1.0);
  CHECK(scalar.batch_shape().empty());
  CHECK(to_shape(scalar.sample({3}).sizes()) == Shape{3});

  Dirichlet d(torch::ones({2, 5}, f64()));
  CHECK(d.batch_shape() == Shape{2});
  CHECK(d.event_shape() == Shape{5});
  CHECK(to_shape(d.sample({3}).sizes()) == Shape{3, 2, 5});

  MultivariateNormal mvn(torch::zeros({4, 1, 3}, f64()), CovarianceMatrix{torch::eye(3, f64()).expand({2, 3, 3})});
  CHECK(mvn.batch_shape() == Shape{4, 2});
  CHECK(mvn.event_shape() == Shape{3});
  CHECK(to_shape(mvn.rsample({6}).sizes()) == Shape{6, 4, 2, 3});
  CHECK(to_shape(mvn.log_prob(torch::zeros({3}, f64())).sizes()) == Shape{4, 2});

  Categorical c(torch::ones({2, 3, 4}, f64()));
  CHECK(c.batch_shape() == Shape{2, 3});
  CHECK(to_shape(c.sample({5}).sizes()) == Shape{5, 2, 3});
  CHECK(static_cast<int>(c.sample().scalar_type()) == static_cast<int>(torch::kLong));
  Multinomial m(5, torch::ones({2, 3}, f64()));
  CHECK(to_shape(m.sample({4}).sizes()) == Shape{4, 2, 3});
  LowRankMultivariateNormal lr(torch::zeros({3}, f64()), torch::ones({2, 3, 1}, f64()), torch::ones({3}, f64()));
  CHECK(lr.batch_shape() == Shape{2});
  CHECK(to_shape(lr.rsample({5}).sizes()) == Shape{5, 2, 3});
  RelaxedOneHotCategorical r(torch::full({2}, 0.5, f64()), torch::ones({3}, f64()));
  CHECK(r.batch_shape() == Shape{2});
  CHECK(to_shape(r.rsample({4}).sizes()) == Shape{4, 2, 3});
  // Transforms that need an event dim reinterpret base batch dims.
  TransformedDistribution sb(std::make_shared<Normal>(torch::zeros({2, 3}, f64()), 1.0), {transforms::stick_breaking()});
  CHECK(sb.batch_shape() == Shape{2});
  CHECK(sb.event_shape() == Shape{4});
  auto y = sb.sample({5});
  CHECK(to_shape(y.sizes()) == Shape{5, 2, 4});
  CHECK(torch::allclose(y.sum(-1), torch::ones({5, 2}, f64())));
  CHECK(to_shape(sb.log_prob(y).sizes()) == Shape{5, 2});
}

TEST_CASE("interface: expand, to_event, mask, enumerate_support, to, printing") {
  torch::manual_seed(1);
  auto g = std::make_shared<Gamma>(T({1.0, 2.0}), 3.0);
  auto ge = g->expand({4, 2});
  CHECK(ge->batch_shape() == Shape{4, 2});
  CHECK(to_shape(ge->sample().sizes()) == Shape{4, 2});
  CHECK(torch::allclose(ge->log_prob(T({0.5, 0.7})), g->log_prob(T({0.5, 0.7})).expand({4, 2})));
  check_throws<ShapeError>([&] { g->expand({3}); }, {"Gamma", "[2]", "[3]"}, "bad expand");

  auto mvn = std::make_shared<MultivariateNormal>(torch::zeros({3}, f64()), ScaleTril{torch::eye(3, f64())});
  auto mvne = mvn->expand({5});
  CHECK(mvne->batch_shape() == Shape{5});
  CHECK(to_shape(mvne->sample().sizes()) == Shape{5, 3});

  auto mix = std::make_shared<MixtureSameFamily>(std::make_shared<Categorical>(T({0.3, 0.7})),
                                                 std::make_shared<Normal>(T({-1.0, 1.0}), 1.0));
  CHECK(mix->expand({3})->batch_shape() == Shape{3});
  CHECK(to_shape(mix->expand({3})->sample({2}).sizes()) == Shape{2, 3});

  auto ind = Normal(torch::zeros({2, 3}, f64()), 1.0).to_event(1);
  CHECK(ind->batch_shape() == Shape{2});
  CHECK(ind->event_shape() == Shape{3});
  CHECK(to_shape(ind->log_prob(torch::zeros({2, 3}, f64())).sizes()) == Shape{2});
  CHECK(ind->has_rsample());

  auto masked = Normal(torch::zeros({3}, f64()), 1.0).mask(torch::tensor({true, false, true}));
  auto lp = masked->log_prob(torch::zeros({3}, f64()));
  CHECK(lp[1].item<double>() == 0.0);
  CHECK(lp[0].item<double>() == doctest::Approx(-0.5 * std::log(2 * M_PI)));

  Bernoulli b(T({0.1, 0.9}));
  auto es = b.enumerate_support();
  CHECK(to_shape(es.sizes()) == Shape{2, 2});
  CHECK(to_shape(b.enumerate_support(false).sizes()) == Shape{2, 1});
  Categorical c(torch::ones({2, 4}, f64()));
  CHECK(to_shape(c.enumerate_support(false).sizes()) == Shape{4, 1});
  CHECK(to_shape(c.enumerate_support().sizes()) == Shape{4, 2});
  OneHotCategorical oh(torch::ones({2, 4}, f64()));
  CHECK(to_shape(oh.enumerate_support().sizes()) == Shape{4, 2, 4});
  CHECK(to_shape(oh.log_prob(oh.enumerate_support()).sizes()) == Shape{4, 2});
  Binomial bin(3.0, T({0.2, 0.5}));
  CHECK(to_shape(bin.enumerate_support().sizes()) == Shape{4, 2});
  CHECK(torch::allclose(bin.log_prob(bin.enumerate_support()).exp().sum(0), torch::ones({2}, f64())));
  check_throws<NotImplementedError>([] { Binomial(T({2.0, 3.0}), 0.5).enumerate_support(); },
                                    {"Binomial", "total_count"}, "inhomogeneous Binomial support");
  CHECK_FALSE(Normal(0.0, 1.0).has_enumerate_support());
  check_throws<NotImplementedError>([] { Normal(0.0, 1.0).enumerate_support(); }, {"Normal"}, "Normal enumerate");
  check_throws<NotImplementedError>([] { Bernoulli(0.5).rsample(); }, {"Bernoulli", "rsample"}, "Bernoulli rsample");
  check_throws<NotImplementedError>([] { StudentT(3.0).cdf(torch::zeros({1})); }, {"StudentT", "cdf"}, "StudentT cdf");

  // Device/dtype moves keep every parameter together.
  auto n32 = Normal(T({1.0, 2.0}), 1.0).to(torch::TensorOptions().dtype(torch::kFloat));
  CHECK(n32->options().dtype() == torch::TensorOptions().dtype(torch::kFloat).dtype());
  CHECK(static_cast<int>(n32->sample().scalar_type()) == static_cast<int>(torch::kFloat));
  auto b32 = Beta(T({1.0, 2.0}), 1.0).to(torch::TensorOptions().dtype(torch::kFloat));
  CHECK(static_cast<int>(b32->rsample().scalar_type()) == static_cast<int>(torch::kFloat));

  CHECK(Normal(0.5, 2.0).to_string() == "Normal(loc: 0.5, scale: 2)");
  CHECK(Categorical(torch::ones({2, 3})).to_string() == "Categorical(probs: [2, 3], logits: [2, 3])");
  std::ostringstream os;
  os << *ind;
  CHECK(os.str().find("Independent(Normal(") == 0);
}

TEST_CASE("Bernoulli on grey values in [0, 1] with validation off: stable x log p + (1 - x) log(1 - p)") {
  ValidationGuard guard;
  auto x = T({0.0, 0.3, 0.5, 1.0});
  check_throws<ValueError>([&] { Bernoulli(0.5).log_prob(x); }, {"Bernoulli", "support", "0.3"}, "grey value validated");
  CHECK_NOTHROW(Bernoulli(0.5, false).log_prob(x));
  enable_validation(false);
  auto p = T({0.2, 0.7, 0.5, 0.9});
  auto lp = Bernoulli(p).log_prob(x);
  auto expected = x * p.log() + (1 - x) * (1 - p).log();
  CHECK(torch::allclose(lp, expected, 1e-12, 1e-12));
  // Extreme logits: finite, and equal to the exact formula written with log-sigmoids.
  auto logits = T({-200.0, 200.0, -40.0, 60.0});
  auto lp2 = Bernoulli(Logits{logits}).log_prob(x);
  CHECK(torch::isfinite(lp2).all().item<bool>());
  auto exact = x * torch::log_sigmoid(logits) + (1 - x) * torch::log_sigmoid(-logits);
  CHECK(torch::allclose(lp2, exact, 1e-12, 1e-12));
  // probs exactly 0 and 1 stay finite too.
  CHECK(torch::isfinite(Bernoulli(T({0.0, 1.0})).log_prob(T({0.4, 0.6}))).all().item<bool>());
  // ContinuousBernoulli is the normalised alternative: it integrates to one on [0, 1].
  enable_validation(true);
  auto grid = torch::linspace(0, 1, 20001, f64());
  auto dens = ContinuousBernoulli(T({0.1, 0.5, 0.97}).unsqueeze(-1)).log_prob(grid).exp();
  auto integral = ((dens.slice(1, 1) + dens.slice(1, 0, -1)) / 2).sum(-1) / 20000;
  CHECK(torch::allclose(integral, torch::ones({3}, f64()), 1e-6, 1e-6));
}

TEST_CASE("validation: every bad parameter raises ValueError naming the distribution and parameter") {
  ValidationGuard guard;
  enable_validation(true);
  auto neg = T({1.0, -1.0});
  struct Case {
    std::string dist, arg;
    std::function<void()> make;
  };
  std::vector<Case> cases = {
      {"Normal", "scale", [&] { (void)Normal(0.0, neg); }},
      {"Uniform", "low", [&] { (void)Uniform(T({0.0, 2.0}), T({1.0, 1.0})); }},
      {"Exponential", "rate", [&] { (void)Exponential(neg); }},
      {"LogNormal", "scale", [&] { (void)LogNormal(0.0, neg); }},
      {"Laplace", "scale", [&] { (void)Laplace(0.0, neg); }},
      {"Cauchy", "scale", [&] { (void)Cauchy(0.0, neg); }},
      {"HalfCauchy", "scale", [&] { (void)HalfCauchy(neg); }},
      {"HalfNormal", "scale", [&] { (void)HalfNormal(neg); }},
      {"StudentT", "df", [&] { (void)StudentT(neg); }},
      {"StudentT", "scale", [&] { (void)StudentT(1.0, 0.0, neg); }},
      {"Gamma", "concentration", [&] { (void)Gamma(neg, 1.0); }},
      {"Gamma", "rate", [&] { (void)Gamma(1.0, neg); }},
      {"InverseGamma", "rate", [&] { (void)InverseGamma(1.0, neg); }},
      {"Beta", "concentration1", [&] { (void)Beta(neg, 1.0); }},
      {"Beta", "concentration0", [&] { (void)Beta(1.0, neg); }},
      {"Dirichlet", "concentration", [&] { (void)Dirichlet(T({1.0, 0.0, 2.0})); }},
      {"ContinuousBernoulli", "probs", [&] { (void)ContinuousBernoulli(T({0.5, 1.5})); }},
      {"Bernoulli", "probs", [&] { (void)Bernoulli(T({0.5, 1.5})); }},
      {"Categorical", "probs", [&] { (void)Categorical(T({0.5, -0.5, 1.0})); }},
      {"OneHotCategorical", "probs", [&] { (void)OneHotCategorical(T({0.5, -0.5, 1.0})); }},
      {"Poisson", "rate", [&] { (void)Poisson(neg); }},
      {"Binomial", "total_count", [&] { (void)Binomial(2.5, 0.5); }},
      {"Binomial", "probs", [&] { (void)Binomial(3.0, 1.2); }},
      {"Geometric", "probs", [&] { (void)Geometric(0.0); }},
      {"Geometric", "probs", [&] { (void)Geometric(1.5); }},
      {"Multinomial", "probs", [&] { (void)Multinomial(3, T({0.5, -0.5, 1.0})); }},
      {"Multinomial", "total_count", [&] { (void)Multinomial(-1, T({0.5, 0.5})); }},
      {"MultivariateNormal", "covariance_matrix",
       [&] { (void)MultivariateNormal(torch::zeros({2}, f64()), CovarianceMatrix{T({1.0, 2.0, 2.0, 1.0}).reshape({2, 2})}); }},
      {"MultivariateNormal", "precision_matrix",
       [&] { (void)MultivariateNormal(torch::zeros({2}, f64()), PrecisionMatrix{T({1.0, 0.0, 0.0, -1.0}).reshape({2, 2})}); }},
      {"MultivariateNormal", "scale_tril",
       [&] { (void)MultivariateNormal(torch::zeros({2}, f64()), ScaleTril{T({1.0, 0.0, 0.5, -1.0}).reshape({2, 2})}); }},
      {"LowRankMultivariateNormal", "cov_diag",
       [&] { (void)LowRankMultivariateNormal(torch::zeros({2}, f64()), torch::ones({2, 1}, f64()), T({1.0, -1.0})); }},
      {"RelaxedBernoulli", "temperature", [&] { (void)RelaxedBernoulli(-1.0, 0.5); }},
      {"RelaxedOneHotCategorical", "temperature", [&] { (void)RelaxedOneHotCategorical(0.0, T({0.5, 0.5})); }},
  };
  for (const auto& c : cases) {
    check_throws<ValueError>(c.make, {c.dist, "'" + c.arg + "'"}, c.dist + " " + c.arg);
  }
  // The per-distribution flag and the global switch both turn the checks off.
  CHECK_NOTHROW(Normal(0.0, neg, false));
  CHECK_NOTHROW(Gamma(neg, 1.0, false));
  enable_validation(false);
  CHECK_NOTHROW(Normal(0.0, neg));
  CHECK_NOTHROW(Categorical(T({0.5, -0.5, 1.0})));
}

TEST_CASE("validation: parameters derived from the given ones are not validated (as torch)") {
  ValidationGuard guard;
  enable_validation(true);
  // Confident float32 logits: exp(logits - logsumexp) sums to 1 - 7.6e-6, outside the
  // float32 simplex tolerance (10 x eps); the logits themselves are valid.
  auto logits = torch::tensor({131.3685302734375, 156.03561401367188, 28.749568939208984, -60.590423583984375,
                               -7.311622142791748, 147.38763427734375, 104.5864486694336, 15.845682144165039,
                               -50.655517578125, 67.07955932617188}, torch::kFloat);
  REQUIRE(!constraints::all_satisfied(*constraints::simplex(), (logits - logits.logsumexp(-1, true)).exp()));
  CHECK_NOTHROW(OneHotCategorical(Logits{logits}));
  CHECK_NOTHROW(Categorical(Logits{logits}));
  CHECK_NOTHROW(RelaxedOneHotCategorical(0.5, Logits{logits}));
  // Given parameters are still checked.
  check_throws<ValueError>([&] { OneHotCategorical(T({-0.1, 1.1})); }, {"OneHotCategorical", "probs", "simplex"}, "given probs");
  check_throws<ValueError>([&] { Bernoulli(T({1.5})); }, {"Bernoulli", "probs"}, "given probs");
  auto nan = std::numeric_limits<double>::quiet_NaN();
  check_throws<ValueError>([&] { Bernoulli(Logits{T({nan})}); }, {"Bernoulli", "logits"}, "given logits");
}

TEST_CASE("validation: the per-distribution flag overrides the global switch") {
  ValidationGuard guard;
  enable_validation(false);
  check_throws<ValueError>([] { Normal(0.0, -1.0, true); }, {"Normal", "'scale'", "-1"}, "forced on");
  enable_validation(true);
  CHECK_NOTHROW(Normal(0.0, -1.0, false));
  auto d = Normal(0.0, 1.0).with_validation(false);
  CHECK_NOTHROW(d->log_prob(torch::tensor(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("validation: values outside the support raise ValueError, wrong event shapes raise ShapeError") {
  ValidationGuard guard;
  enable_validation(true);
  struct Case {
    std::string dist;
    DistPtr d;
    torch::Tensor bad;
  };
  std::vector<Case> cases = {
      {"Uniform", std::make_shared<Uniform>(0.0, 1.0), T({1.5})},
      {"Exponential", std::make_shared<Exponential>(1.0), T({-0.5})},
      {"LogNormal", std::make_shared<LogNormal>(0.0, 1.0), T({0.0})},
      {"HalfCauchy", std::make_shared<HalfCauchy>(1.0), T({-1.0})},
      {"HalfNormal", std::make_shared<HalfNormal>(1.0), T({-1.0})},
      {"Gamma", std::make_shared<Gamma>(1.0, 1.0), T({-1.0})},
      {"InverseGamma", std::make_shared<InverseGamma>(1.0, 1.0), T({0.0})},
      {"Beta", std::make_shared<Beta>(1.0, 1.0), T({1.5})},
      {"Dirichlet", std::make_shared<Dirichlet>(torch::ones({3}, f64())), T({0.5, 0.4, 0.4})},
      {"ContinuousBernoulli", std::make_shared<ContinuousBernoulli>(0.3), T({1.2})},
      {"Bernoulli", std::make_shared<Bernoulli>(0.3), T({0.5})},
      {"Categorical", std::make_shared<Categorical>(torch::ones({3}, f64())), T({3.0})},
      {"OneHotCategorical", std::make_shared<OneHotCategorical>(torch::ones({3}, f64())), T({1.0, 1.0, 0.0})},
      {"Poisson", std::make_shared<Poisson>(1.0), T({1.5})},
      {"Binomial", std::make_shared<Binomial>(3.0, 0.5), T({4.0})},
      {"Geometric", std::make_shared<Geometric>(0.5), T({-1.0})},
      {"Multinomial", std::make_shared<Multinomial>(3, torch::ones({2}, f64())), T({3.0, 1.0})},
      {"RelaxedBernoulli", std::make_shared<RelaxedBernoulli>(0.5, 0.5), T({1.5})},
      {"RelaxedOneHotCategorical", std::make_shared<RelaxedOneHotCategorical>(0.5, torch::ones({2}, f64())), T({0.7, 0.7})},
  };
  for (const auto& c : cases) {
    check_throws<ValueError>([&] { c.d->log_prob(c.bad); }, {c.dist, "outside the support"}, c.dist + " support");
    // Unchecked, the density is evaluated (Categorical cannot index a category it lacks).
    if (c.dist != "Categorical") CHECK_NOTHROW(c.d->with_validation(false)->log_prob(c.bad));
  }
  check_throws<ShapeError>([] { Dirichlet(torch::ones({3}, f64())).log_prob(torch::ones({4}, f64()) / 4); },
                           {"Dirichlet", "event shape", "[3]"}, "Dirichlet event shape");
  check_throws<ShapeError>([] { Normal(torch::zeros({3}), 1.0).log_prob(torch::zeros({4})); },
                           {"Normal", "[4]", "[3]"}, "Normal broadcast");
  check_throws<ShapeError>(
      [] { MultivariateNormal(torch::zeros({3}), CovarianceMatrix{torch::eye(2)}); },
      {"MultivariateNormal", "covariance_matrix"}, "MVN shapes");
  check_throws<ShapeError>(
      [] { MixtureSameFamily(std::make_shared<Categorical>(torch::ones({3})), std::make_shared<Normal>(torch::zeros({2}), 1.0)); },
      {"MixtureSameFamily", "3", "2"}, "mixture sizes");
  check_throws<ValueError>(
      [] { MixtureSameFamily(std::make_shared<Normal>(0.0, 1.0), std::make_shared<Normal>(torch::zeros({2}), 1.0)); },
      {"MixtureSameFamily", "'mixture'", "Categorical"}, "mixture type");
}

TEST_CASE("constraints and transforms: transform_to maps onto the constraint, Jacobians match autograd") {
  torch::manual_seed(3);
  using namespace constraints;
  struct Case {
    ConstraintPtr c;
    Shape x_shape;
  };
  std::vector<Case> cases = {
      {real(), {5}},
      {positive(), {5}},
      {greater_than(2.0), {5}},
      {less_than(-1.0), {5}},
      {unit_interval(), {5}},
      {interval(-2.0, 3.0), {5}},
      {interval(torch::full({5}, -1.0, f64()), torch::full({5}, 4.0, f64())), {5}},
      {simplex(), {4}},
      {lower_cholesky(), {3, 3}},
      {positive_definite(), {3, 3}},
      {independent(positive(), 1), {2, 3}},
  };
  for (const auto& c : cases) {
    INFO(c.c->name());
    // transform_to and biject_to agree except on the simplex (softmax vs stick-breaking).
    auto to = transforms::transform_to(c.c);
    auto x_to = torch::randn(c.x_shape, f64());
    CHECK(c.c->check(to->forward(x_to)).all().item<bool>());
    CHECK(torch::allclose(to->forward(to->inverse(to->forward(x_to))), to->forward(x_to), 1e-8, 1e-8));
    auto t = transforms::biject_to(c.c);
    if (c.c != simplex()) CHECK(t->name() == to->name());
    auto x = torch::randn(c.x_shape, f64());
    auto y = t->forward(x);
    CHECK(c.c->check(y).all().item<bool>());
    CHECK(torch::allclose(t->forward(t->inverse(y)), y, 1e-8, 1e-8));
    // log|det J| against autograd for the elementwise / vector transforms.
    if (c.c->event_dim() <= 1 && c.x_shape.size() == 1) {
      auto xv = x.clone().requires_grad_();
      auto jac = torch::zeros({y.numel(), x.numel()}, f64());
      auto yv = t->forward(xv);
      for (int64_t i = 0; i < yv.numel(); ++i) {
        auto gi = torch::autograd::grad({yv[i]}, {xv}, {}, true)[0];
        jac[i] = gi;
      }
      double expected;
      if (y.numel() == x.numel()) {
        expected = std::log(std::abs(torch::det(jac).item<double>()));
      } else {  // stick-breaking: drop the last (dependent) output coordinate
        expected = std::log(std::abs(torch::det(jac.slice(0, 0, x.numel())).item<double>()));
      }
      auto ladj = t->log_abs_det_jacobian(x, y).sum().item<double>();
      CHECK(ladj == doctest::Approx(expected).epsilon(1e-8));
    }
  }
  // Discrete constraints and names.
  CHECK(boolean()->is_discrete());
  CHECK(integer()->check(T({1.0, 1.5, -2.0})).equal(torch::tensor({true, false, true})));
  CHECK(nonnegative_integer()->check(T({0.0, -1.0})).equal(torch::tensor({true, false})));
  CHECK(positive_definite()->check(T({2.0, 0.0, 0.0, 1.0}).reshape({2, 2})).item<bool>());
  CHECK_FALSE(lower_cholesky()->check(T({1.0, 1.0, 0.0, 1.0}).reshape({2, 2})).item<bool>());
  CHECK(multinomial(3)->check(T({1.0, 2.0})).item<bool>());
  CHECK_FALSE(simplex()->check(T({0.5, 0.5 + 1e-5})).item<bool>());
  CHECK_FALSE(simplex()->check(T({1.5, -0.5})).item<bool>());
  {  // many float32 categories: normalised probabilities validate
    torch::manual_seed(8);
    auto probs = torch::rand({4, 5000});
    CHECK_NOTHROW(Categorical(probs).log_prob(torch::zeros({4}, torch::kLong)));
    CHECK(simplex()->check(probs / probs.sum(-1, true)).all().item<bool>());
  }
  CHECK_FALSE(multinomial(3)->check(T({2.0, 2.0})).item<bool>());
  check_throws<NotImplementedError>([] { transforms::transform_to(integer()); }, {"integer"}, "no transform");
  check_throws<NotImplementedError>([] { transforms::biject_to(integer()); }, {"integer", "register_biject_to"}, "no bijection");
  check_throws<NotImplementedError>([] { transforms::softmax()->log_abs_det_jacobian(T({0.0, 1.0}), T({0.5, 0.5})); },
                                    {"not bijective"}, "softmax has no Jacobian");
  // Transform codomains are what TransformedDistribution reports as its support.
  CHECK(transforms::exp()->codomain()->name() == "greater_than(0)");
  CHECK(transforms::stick_breaking()->codomain()->name() == "simplex");
}

TEST_CASE("KL registry: Independent reduction, unregistered pairs, and agreement with Monte Carlo") {
  torch::manual_seed(5);
  auto p = std::make_shared<Normal>(torch::zeros({2, 3}, f64()), torch::ones({2, 3}, f64()) * 2);
  auto q = std::make_shared<Normal>(torch::ones({2, 3}, f64()), torch::ones({2, 3}, f64()));
  auto kl_ind = kl_divergence(p->to_event(1), q->to_event(1));
  CHECK(to_shape(kl_ind.sizes()) == Shape{2});
  CHECK(torch::allclose(kl_ind, kl_divergence(p, q).sum(-1)));
  check_throws<NotImplementedError>([&] { kl_divergence(p->to_event(1), q->to_event(2)); }, {"Independent"}, "ndims differ");
  check_throws<NotImplementedError>([&] { kl_divergence(*p, Laplace(0.0, 1.0)); }, {"Normal", "Laplace", "register_kl"},
                                    "unregistered pair");
  CHECK(has_kl(*p, *q));
  // Masked pairs with the same mask: masked entries contribute 0.
  auto m = torch::tensor({true, false, true});
  auto kl_masked = kl_divergence(p->mask(m), q->mask(m));
  CHECK(torch::allclose(kl_masked, kl_divergence(p, q) * m.to(torch::kDouble)));
  // Different masks are and-ed (as Pyro): nothing is left of m & ~m.
  CHECK(kl_divergence(p->mask(m), q->mask(~m)).abs().max().item<double>() == 0.0);
  // TransformedDistribution.to moves the transforms' tensors with the base.
  TransformedDistribution td(std::make_shared<Normal>(T({0.0, 1.0}), 1.0),
                             {transforms::exp(), transforms::affine(T({1.0, 2.0}), T({2.0, 3.0}))});
  auto td32 = td.to(torch::TensorOptions().dtype(torch::kFloat));
  auto v32 = torch::tensor({3.0f, 6.0f});
  CHECK(static_cast<int>(td32->log_prob(v32).scalar_type()) == static_cast<int>(torch::kFloat));
  CHECK(torch::allclose(td32->log_prob(v32).to(torch::kDouble), td.log_prob(v32.to(torch::kDouble)), 1e-5, 1e-5));
  CHECK_FALSE(has_kl(*p, Cauchy(0.0, 1.0)));
  // Every analytic pair agrees with a Monte Carlo estimate E_p[log p - log q] within 5 standard errors.
  struct Pair {
    std::string name;
    DistPtr p, q;
  };
  std::vector<Pair> pairs = {
      {"Gamma", std::make_shared<Gamma>(2.0, 1.5), std::make_shared<Gamma>(3.0, 1.0)},
      {"Beta", std::make_shared<Beta>(2.0, 1.5), std::make_shared<Beta>(0.7, 2.0)},
      {"Dirichlet", std::make_shared<Dirichlet>(T({1.0, 2.0, 3.0})), std::make_shared<Dirichlet>(T({2.0, 2.0, 0.5}))},
      {"Laplace", std::make_shared<Laplace>(0.5, 1.0), std::make_shared<Laplace>(-0.5, 2.0)},
      {"MVN", std::make_shared<MultivariateNormal>(T({0.0, 1.0}), CovarianceMatrix{T({2.0, 0.3, 0.3, 1.0}).reshape({2, 2})}),
       std::make_shared<MultivariateNormal>(T({1.0, 0.0}), PrecisionMatrix{T({1.0, 0.2, 0.2, 0.5}).reshape({2, 2})})},
  };
  for (const auto& pr : pairs) {
    INFO(pr.name);
    auto x = pr.p->sample({40000});
    auto diff = pr.p->log_prob(x) - pr.q->log_prob(x);
    auto est = diff.mean().item<double>(), se = diff.std().item<double>() / std::sqrt(40000.0);
    CHECK(std::abs(est - kl_divergence(pr.p, pr.q).item<double>()) <= 5 * se);
  }
}

// ------------------------------------------------------------------ a user-defined distribution

namespace user {
// Written as user code would be: no Ember file is edited.
class Rayleigh : public ember::dist::DistributionMixin<Rayleigh> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Rayleigh, (torch::Tensor, scale));
  explicit Rayleigh(ember::dist::TensorArg scale_, std::optional<bool> validate = std::nullopt) {
    scale = ember::dist::broadcast_all({scale_})[0];
    init(ember::to_shape(scale.sizes()), {}, validate);
  }
  static ember::constraints::ConstraintPtr arg_constraint(std::string_view) { return ember::constraints::positive(); }
  std::string name() const override { return "Rayleigh"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const ember::Shape& sample_shape = {}) const override {
    auto u = torch::rand(extended_shape(sample_shape), scale.options());
    return scale * torch::sqrt(-2 * torch::log1p(-u));
  }
  torch::Tensor log_prob(const torch::Tensor& x) const override {
    validate_sample(x);
    return x.log() - 2 * scale.log() - x.pow(2) / (2 * scale.pow(2));
  }
  torch::Tensor mean() const override { return scale * std::sqrt(M_PI / 2); }
  torch::Tensor variance() const override { return (2 - M_PI / 2) * scale.pow(2); }
  ember::constraints::ConstraintPtr support() const override { return ember::constraints::positive(); }
};
}  // namespace user

TEST_CASE("pluggable: a user-defined distribution works in sample, trace, to_event, expand and KL") {
  ValidationGuard guard;
  enable_validation(true);
  torch::manual_seed(11);
  using user::Rayleigh;
  check_throws<ValueError>([] { Rayleigh(-1.0); }, {"Rayleigh", "'scale'"}, "user validation");
  Rayleigh r(T({1.0, 2.5}));
  CHECK(r.to_string() == "Rayleigh(scale: [2])");
  CHECK(r.expand({3, 2})->batch_shape() == Shape{3, 2});
  auto x = r.sample({20000});
  auto m = x.mean(0), se = (r.variance() / 20000).sqrt();
  CHECK(((m - r.mean()).abs() <= 5 * se).all().item<bool>());

  auto model = [](torch::Tensor data) {
    auto s = sample("s", Rayleigh(1.5));
    auto p = plate("data", data.size(0));
    sample("x", Normal(s, 1.0), data);
    return s;
  };
  auto data = T({0.5, 1.0, 2.0});
  auto tr = trace(model).get_trace(data);
  const auto& site = tr.at("s");
  CHECK(site.fn->name() == "Rayleigh");
  auto s = site.value;
  auto expected = Rayleigh(1.5).log_prob(s) + Normal(s, 1.0).log_prob(data).sum();
  CHECK(tr.log_prob_sum().item<double>() == doctest::Approx(expected.item<double>()).epsilon(1e-12));
  CHECK(tr.reparameterized_nodes() == std::vector<std::string>{"s"});

  // Registered KL, also used through the (Independent, Independent) reduction.
  register_kl<Rayleigh, Rayleigh>([](const Rayleigh& p, const Rayleigh& q) {
    return 2 * (q.scale / p.scale).log() + (p.scale / q.scale).pow(2) - 1;
  });
  Rayleigh q(T({2.0, 1.0}));
  auto kl = kl_divergence(r, q);
  for (int64_t b = 0; b < 2; ++b) {
    auto diff = (r.log_prob(x) - q.log_prob(x)).select(1, b);
    auto est = diff.mean().item<double>(), sem = diff.std().item<double>() / std::sqrt(20000.0);
    CHECK(std::abs(est - kl[b].item<double>()) <= 5 * sem);
  }
  CHECK(kl_divergence(r.to_event(1), q.to_event(1)).item<double>() == doctest::Approx(kl.sum().item<double>()));
}

TEST_CASE("ContinuousBernoulli: finite log_prob, gradients and samples across the unstable region near 0.5") {
  torch::manual_seed(17);
  auto logits = T({-30.0, -2.0, -4e-3, -1e-4, 0.0, 1e-4, 4e-3, 2.0, 30.0}).requires_grad_();
  ContinuousBernoulli d(Logits{logits});
  auto x = T({0.0, 0.25, 0.5, 0.75, 1.0, 0.1, 0.9, 0.3, 0.6});
  auto lp = d.log_prob(x);
  CHECK(torch::isfinite(lp).all().item<bool>());
  lp.sum().backward();
  CHECK(torch::isfinite(logits.grad()).all().item<bool>());
  // The density is continuous across the Taylor/exact boundary at probs = 0.499 / 0.501.
  auto eps = 1e-7;
  for (double edge : {0.499, 0.501}) {
    auto below = ContinuousBernoulli(T({edge - eps})).log_prob(T({0.2, 0.8}));
    auto above = ContinuousBernoulli(T({edge + eps})).log_prob(T({0.2, 0.8}));
    CHECK(torch::allclose(below, above, 1e-5, 1e-5));
  }
  auto logits2 = torch::zeros({4}, f64()).requires_grad_();
  auto y = ContinuousBernoulli(Logits{logits2}).rsample({100});
  CHECK(((y >= 0) & (y <= 1)).all().item<bool>());
  y.sum().backward();
  CHECK(torch::isfinite(logits2.grad()).all().item<bool>());
}

TEST_CASE("Delta and Unit: point masses and factors") {
  auto v = T({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}).reshape({2, 3});
  Delta d(v, 1);
  CHECK(d.batch_shape() == Shape{2});
  CHECK(d.event_shape() == Shape{3});
  CHECK(torch::equal(d.sample({4}), v.expand({4, 2, 3})));
  auto lp = d.log_prob(T({1.0, 2.0, 3.0, 4.0, 5.0, 7.0}).reshape({2, 3}));
  CHECK(lp[0].item<double>() == 0.0);
  CHECK(std::isinf(lp[1].item<double>()));
  CHECK(lp[1].item<double>() < 0);
  Delta dd(v, T({0.5, -0.5}), 1);
  CHECK(torch::allclose(dd.log_prob(v), T({0.5, -0.5})));
  Unit u(T({1.5, 2.5}));
  CHECK(u.batch_shape() == Shape{2});
  CHECK(torch::allclose(u.log_prob(u.sample()), T({1.5, 2.5})));
}

TEST_CASE("pluggable: the user-defined distribution trains under SVI, with its registered KL in TraceMeanField_ELBO") {
  using user::Rayleigh;
  register_kl<Rayleigh, Rayleigh>([](const Rayleigh& p, const Rayleigh& q) {
    return 2 * (q.scale / p.scale).log() + (p.scale / q.scale).pow(2) - 1;
  });
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(12);
  auto model = [] { sample("s", Rayleigh(torch::tensor(2.0, torch::kDouble))); };
  auto guide = [] {
    auto q = param("q_scale", torch::tensor(0.7, torch::kDouble), constraints::positive());
    sample("s", Rayleigh(q));
  };
  // With no data, -ELBO = KL(q || p): TraceMeanField_ELBO takes it from the registry exactly.
  infer::TraceMeanField_ELBO mf;
  const double kl0 = kl_divergence(Rayleigh(T({0.7})), Rayleigh(T({2.0}))).item<double>();
  const double mf_loss = mf.loss(model, guide);
  CHECK(mf_loss == doctest::Approx(kl0).epsilon(1e-9));  // q passes through exp(log(0.7))
  // Trace_ELBO estimates the same quantity by Monte Carlo through Rayleigh.rsample/log_prob.
  infer::Trace_ELBO tr;
  std::vector<double> losses;
  for (int i = 0; i < 4000; ++i) losses.push_back(tr.loss(model, guide));
  double m = 0, v = 0;
  for (double l : losses) m += l;
  m /= losses.size();
  for (double l : losses) v += (l - m) * (l - m);
  const double se = std::sqrt(v / (losses.size() - 1) / losses.size());
  CHECK(std::abs(m - kl0) <= 5 * se);
  // Both ELBOs drive the guide's scale to the prior's (2.0).
  for (int which = 0; which < 2; ++which) {
    store.clear();
    std::shared_ptr<infer::ELBO> elbo;
    if (which == 0) elbo = std::make_shared<infer::TraceMeanField_ELBO>();
    else elbo = std::make_shared<infer::Trace_ELBO>(infer::ELBOOptions().num_particles(8));
    infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(0.05)), elbo);
    for (int i = 0; i < 600; ++i) svi.step();
    auto q = param("q_scale").item<double>();
    INFO("ELBO " << elbo->name());
    CHECK(q == doctest::Approx(2.0).epsilon(which == 0 ? 1e-3 : 0.05));
  }
}

// ------------------------------------------------------------------ against Pyro 1.8.4
// tests/fixtures/pyro/distributions.json, written by scripts/pyro_fixtures/distributions.py.

namespace {

using ember::testing::fixture_tensor;

const nlohmann::json& pyro_case(const std::string& name) { return ember::testing::pyro_cases("distributions").at(name); }
torch::Tensor fx(const nlohmann::json& j) { return fixture_tensor(j); }
bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a.to(torch::kFloat64), b.to(torch::kFloat64), 1e-6, 1e-6);
}
void check_shapes(const Distribution& d, const nlohmann::json& c) {
  CHECK(d.batch_shape() == c.at("batch_shape").get<Shape>());
  CHECK(d.event_shape() == c.at("event_shape").get<Shape>());
}

}  // namespace

TEST_CASE("Pyro parity: mask broadcasts the mask and expands the base") {
  const auto& c = pyro_case("mask");
  {
    const auto& v = c.at("vector");
    auto d = Normal(0.0, 1.0).mask(fixture_tensor(v.at("mask"), torch::kBool));
    check_shapes(*d, v);
    CHECK(close(d->log_prob(fx(v.at("x"))), fx(v.at("log_prob"))));
  }
  {
    const auto& v = c.at("broadcast");
    auto d = Normal(T({0.0, 1.0}), 2.0).mask(fixture_tensor(v.at("mask"), torch::kBool));
    check_shapes(*d, v);
    CHECK(close(d->log_prob(fx(v.at("x"))), fx(v.at("log_prob"))));
    CHECK(close(d->expand({4, 3, 2})->log_prob(fx(v.at("x")))[1], fx(v.at("log_prob"))));
  }
  {
    const auto& v = c.at("false");
    auto d = Normal(torch::zeros({3}, f64()), 1.0).mask(false);
    check_shapes(*d, v);
    CHECK(close(d->log_prob(torch::tensor(7.0, f64())), fx(v.at("log_prob"))));
  }
  check_throws<ShapeError>([] { Normal(torch::zeros({3}, f64()), 1.0).mask(torch::tensor({true, false})); },
                           {"mask", "[2]", "[3]"}, "mask that does not broadcast");
}

TEST_CASE("Pyro parity: an affine transform with tensor coefficients enlarges the batch shape") {
  const auto& c = pyro_case("affine");
  TransformedDistribution d(std::make_shared<Normal>(torch::zeros({}, f64()), 1.0),
                            {transforms::affine(fx(c.at("loc")), torch::tensor(c.at("scale").get<double>(), f64()))});
  check_shapes(d, c);
  CHECK(close(d.log_prob(fx(c.at("x"))), fx(c.at("log_prob"))));
  CHECK(d.sample({5}).sizes() == torch::IntArrayRef({5, 3}));
}

TEST_CASE("Pyro parity: to_event merges nested Independents, a negative n removes event dims") {
  const auto& c = pyro_case("to_event");
  auto base = std::make_shared<Normal>(torch::zeros({2, 3, 4}, f64()), 1.0);
  const auto x = fx(c.at("x"));
  auto nested = base->to_event(1)->to_event(1);
  const auto* ind = dynamic_cast<const Independent*>(nested.get());
  REQUIRE(ind != nullptr);
  CHECK(ind->reinterpreted_batch_ndims() == c.at("nested").at("reinterpreted").get<int64_t>());
  CHECK(dynamic_cast<const Independent*>(ind->base().get()) == nullptr);
  check_shapes(*nested, c.at("nested"));
  CHECK(close(nested->log_prob(x), fx(c.at("nested").at("log_prob"))));
  auto back = base->to_event(3)->to_event(-2);
  CHECK(dynamic_cast<const Independent&>(*back).reinterpreted_batch_ndims() == c.at("negative").at("reinterpreted").get<int64_t>());
  check_shapes(*back, c.at("negative"));
  CHECK(close(back->log_prob(x), fx(c.at("negative").at("log_prob"))));
  check_shapes(*base->to_event(), c.at("all"));
  CHECK(dynamic_cast<const Normal*>(base->to_event(2)->to_event(-2).get()) != nullptr);
  check_throws<ValueError>([&] { base->to_event(1)->to_event(-2); }, {"to_event(-2)"}, "removing too many event dims");
}

TEST_CASE("Pyro parity: the Independent KL peels shared dims, the masked KL ands the masks") {
  const auto& c = pyro_case("kl");
  {
    const auto& k = c.at("independent");
    auto p = std::make_shared<Independent>(
        std::make_shared<Independent>(std::make_shared<Normal>(fx(k.at("loc_p")), k.at("scale_p").get<double>()), 1), 1);
    auto q = std::make_shared<Normal>(fx(k.at("loc_q")), k.at("scale_q").get<double>())->to_event(2);
    CHECK(close(kl_divergence(*p, *q), fx(k.at("kl"))));
  }
  {
    const auto& k = c.at("masked");
    auto p = Normal(T({0.0, 1.0, 2.0}), 1.0).mask(fixture_tensor(k.at("mask_p"), torch::kBool));
    auto q = Normal(T({1.0, 0.0, -1.0}), 2.0).mask(fixture_tensor(k.at("mask_q"), torch::kBool));
    CHECK(close(kl_divergence(p, q), fx(k.at("kl"))));
    auto off = Normal(0.0, 1.0).expand({3})->mask(false);
    // Pyro returns the number 0.0; Ember returns zeros of the batch shape.
    CHECK(kl_divergence(p, off).equal(torch::zeros({3}, f64())));
  }
}

TEST_CASE("Pyro parity: sigmoid and stick-breaking clamp to [tiny, 1 - eps], the simplex transforms") {
  const auto& c = pyro_case("transforms");
  auto check_sigmoid = [](const nlohmann::json& s, torch::Dtype dtype) {
    auto x = fixture_tensor(s.at("x"), dtype).requires_grad_();
    auto y = transforms::transform_to(constraints::unit_interval())->forward(x);
    // Compare log y: y itself is as small as 1e-308.
    CHECK(close(y.log(), fx(s.at("y")).to(dtype).log()));
    auto grad = torch::autograd::grad({y.log().sum()}, {x})[0];
    CHECK(close(grad, fx(s.at("grad_log_y"))));
  };
  check_sigmoid(c.at("sigmoid"), torch::kFloat64);
  check_sigmoid(c.at("sigmoid32"), torch::kFloat32);
  const auto inv = transforms::sigmoid()->inverse(T({0.0, 1e-300, 0.5, 1.0}));
  CHECK(close(inv, fx(c.at("sigmoid").at("inverse"))));

  const auto& sb = c.at("stick_breaking");
  auto t = transforms::biject_to(constraints::simplex());
  CHECK(t->name() == "stick_breaking");
  const auto x = fx(sb.at("x"));
  const auto y = t->forward(x);
  CHECK(close(y.clamp_min(1e-300).log(), fx(sb.at("y")).clamp_min(1e-300).log()));
  CHECK(close(t->inverse(y), fx(sb.at("inverse"))));
  CHECK(close(t->log_abs_det_jacobian(x, y), fx(sb.at("log_abs_det_jacobian"))));

  const auto& sm = c.at("softmax");
  auto soft = transforms::transform_to(constraints::simplex());
  CHECK(soft->name() == "softmax");
  CHECK(close(soft->forward(fx(sm.at("x"))), fx(sm.at("y"))));
  CHECK(close(soft->inverse(fx(sm.at("probs"))), fx(sm.at("inverse"))));
}

TEST_CASE("Pyro parity: integer constraints reject +-inf and NaN") {
  const auto& c = pyro_case("constraints");
  const auto v = fx(c.at("values"));
  using namespace constraints;
  CHECK(integer()->check(v).equal(fixture_tensor(c.at("integer"), torch::kBool)));
  CHECK(nonnegative_integer()->check(v).equal(fixture_tensor(c.at("nonnegative_integer"), torch::kBool)));
  CHECK(positive_integer()->check(v).equal(fixture_tensor(c.at("positive_integer"), torch::kBool)));
  CHECK(integer_interval(-5, 5)->check(v).equal(fixture_tensor(c.at("integer_interval"), torch::kBool)));
  CHECK(integer_interval(torch::full({7}, -5.0, f64()), torch::full({7}, 5.0, f64()))
            ->check(v)
            .equal(fixture_tensor(c.at("integer_interval"), torch::kBool)));
  CHECK_FALSE(nonnegative_integer_vector()->check(T({1.0, INFINITY})).item<bool>());
}

TEST_CASE("Pyro parity: ContinuousBernoulli log-densities, the normaliser stays exact for large logits") {
  const auto& c = pyro_case("continuous_bernoulli");
  const auto x = fx(c.at("x"));
  CHECK(close(ContinuousBernoulli(Logits{fx(c.at("logits"))}).log_prob(x), fx(c.at("log_prob"))));
  CHECK(close(ContinuousBernoulli(fx(c.at("probs"))).log_prob(x), fx(c.at("log_prob_probs"))));
  // torch (and so Pyro) clamps probs to 1 - eps inside the normaliser; the closed form
  // log p(x) = x l - softplus(l) + log|l| - log|tanh(l / 2)| holds for any l.
  const auto l = fx(c.at("large_logits"));
  const auto exact = x * l - torch::nn::functional::softplus(l) + l.abs().log() - torch::tanh(l / 2).abs().log();
  const auto lp = ContinuousBernoulli(Logits{l}).log_prob(x);
  CHECK(close(lp, exact));
  CHECK_FALSE(close(lp, fx(c.at("torch_large_log_prob"))));  // the documented deviation
  // Gradients stay finite and match the closed form's.
  auto lg = l.clone().requires_grad_();
  auto g = torch::autograd::grad({ContinuousBernoulli(Logits{lg}).log_prob(x).sum()}, {lg})[0];
  auto lg2 = l.clone().requires_grad_();
  auto g2 = torch::autograd::grad(
      {(x * lg2 - torch::nn::functional::softplus(lg2) + lg2.abs().log() - torch::tanh(lg2 / 2).abs().log()).sum()}, {lg2})[0];
  CHECK(close(g, g2));
}

// ---------------------------------------------------------------- fused kernels (performance path)

namespace {
// The unfused formula, op by op (autograd differentiates it).
torch::Tensor unfused_normal_log_prob(const torch::Tensor& v, const torch::Tensor& loc, const torch::Tensor& scale) {
  auto z = (v - loc) / scale;
  return -0.5 * z * z - scale.log() - 0.91893853320467274178;
}

// Gradients of sum(f(v, loc, scale) * w) with respect to the three inputs (a weight w
// makes the upstream gradient non-trivial); `create_graph` keeps them differentiable.
std::vector<torch::Tensor> grads_of(const std::function<torch::Tensor(torch::Tensor, torch::Tensor, torch::Tensor)>& f,
                                    const std::vector<torch::Tensor>& inputs, bool create_graph = false) {
  auto out = f(inputs[0], inputs[1], inputs[2]);
  auto w = torch::linspace(0.5, 1.5, out.numel(), out.options()).reshape(out.sizes());
  return torch::autograd::grad({(out * w).sum()}, inputs, {}, /*retain_graph=*/true, create_graph);
}
}  // namespace

TEST_CASE("fused Normal log_prob equals the op-by-op formula in value, gradient and Hessian") {
  torch::manual_seed(3);
  // Shapes that broadcast (value with a sample dim, loc a batch, scale a scalar), equal
  // shapes, and single elements (the plain C++ path) in float64 and float32.
  const std::vector<std::vector<std::vector<int64_t>>> shapes = {
      {{4, 3}, {3}, {}}, {{3}, {3}, {3}}, {{}, {}, {}}, {{1}, {}, {1}}, {{2, 1}, {1, 5}, {5}}};
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (const auto& s : shapes) {
      CAPTURE(shape_str(s[0]));
      CAPTURE(shape_str(s[1]));
      CAPTURE(torch::toString(dtype));
      auto o = torch::TensorOptions().dtype(dtype);
      auto v = torch::randn(s[0], o).requires_grad_();
      auto loc = torch::randn(s[1], o).requires_grad_();
      auto scale = (torch::rand(s[2], o) + 0.5).requires_grad_();
      const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
      auto fused = normal_log_prob(v, loc, scale), reference = unfused_normal_log_prob(v, loc, scale);
      CHECK(fused.sizes() == reference.sizes());
      CHECK((fused.scalar_type() == dtype));
      CHECK(torch::allclose(fused, reference, tol, tol));
      auto g = grads_of(normal_log_prob, {v, loc, scale});
      auto r = grads_of(unfused_normal_log_prob, {v, loc, scale});
      for (size_t i = 0; i < 3; ++i) {
        CHECK(g[i].sizes() == r[i].sizes());
        CHECK(torch::allclose(g[i], r[i], tol, tol));
      }
      if (dtype == torch::kDouble) {
        // Second derivatives (Laplace guides and Hessians differentiate gradients again).
        auto hg = grads_of(normal_log_prob, {v, loc, scale}, true);
        auto hr = grads_of(unfused_normal_log_prob, {v, loc, scale}, true);
        for (size_t i = 0; i < 3; ++i) {
          auto a = torch::autograd::grad({hg[i].sum()}, {v, loc, scale}, {}, true, false, true);
          auto b = torch::autograd::grad({hr[i].sum()}, {v, loc, scale}, {}, true, false, true);
          for (size_t j = 0; j < 3; ++j) CHECK(torch::allclose(a[j], b[j], 1e-10, 1e-10));
        }
      }
    }
  }
  // Central finite differences of the fused function itself, float64, a single element.
  auto v = torch::tensor(0.3, torch::kDouble), loc = torch::tensor(-0.2, torch::kDouble), scale = torch::tensor(0.7, torch::kDouble);
  auto inputs = std::vector<torch::Tensor>{v.clone().requires_grad_(), loc.clone().requires_grad_(), scale.clone().requires_grad_()};
  auto g = grads_of(normal_log_prob, inputs);
  for (size_t i = 0; i < 3; ++i) {
    const double h = 1e-6;
    auto up = std::vector<torch::Tensor>{v, loc, scale}, down = up;
    up[i] = up[i] + h;
    down[i] = down[i] - h;
    const double fd = (normal_log_prob(up[0], up[1], up[2]) - normal_log_prob(down[0], down[1], down[2])).item<double>() / (2 * h);
    CHECK(g[i].item<double>() == doctest::Approx(0.5 * fd).epsilon(1e-7));  // grads_of weighs one element by 0.5
  }
}

TEST_CASE("fused Normal rsample has the pathwise gradients of loc + eps * scale") {
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (const auto& s : std::vector<std::vector<std::vector<int64_t>>>{{{}, {}}, {{3}, {}}, {{2, 3}, {3}}}) {
      auto o = torch::TensorOptions().dtype(dtype);
      auto loc = torch::randn(s[0], o).requires_grad_();
      auto scale = (torch::rand(s[1], o) + 0.5).requires_grad_();
      torch::manual_seed(11);
      auto x = Normal(loc, scale).rsample({2});
      torch::manual_seed(11);
      auto eps = torch::randn(concat(Shape{2}, broadcast_shapes(to_shape(loc.sizes()), to_shape(scale.sizes()), "test")), o);
      auto ref = loc + eps * scale;
      CHECK(torch::allclose(x, ref));
      auto w = torch::linspace(0.5, 1.5, x.numel(), o).reshape(x.sizes());
      auto g = torch::autograd::grad({(x * w).sum()}, {loc, scale});
      auto r = torch::autograd::grad({(ref * w).sum()}, {loc, scale});
      CHECK(torch::allclose(g[0], r[0]));
      CHECK(torch::allclose(g[1], r[1]));
    }
  }
}

TEST_CASE("fused Bernoulli(logits) log_prob equals binary_cross_entropy_with_logits in value and gradients") {
  torch::manual_seed(5);
  ValidationGuard guard;
  enable_validation(false);  // grey values (a differentiable value) are outside {0, 1}
  // Equal shapes, logits broadcast over a sample dim, value broadcast over a batch, a single
  // element; logits from -60 to 60 (the stable tails) and grey values.
  const std::vector<std::vector<std::vector<int64_t>>> shapes = {{{6, 5}, {6, 5}}, {{5}, {4, 5}}, {{3, 1}, {4}}, {{}, {}}};
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (const auto& s : shapes) {
      CAPTURE(shape_str(s[0]));
      CAPTURE(torch::toString(dtype));
      auto o = torch::TensorOptions().dtype(dtype);
      auto x = (torch::randn(s[0], o) * 20).requires_grad_();
      auto v = torch::rand(s[1], o).requires_grad_();
      auto reference = [](const torch::Tensor& logits, const torch::Tensor& value) {
        auto ts = torch::broadcast_tensors({logits, value});
        return -torch::binary_cross_entropy_with_logits(ts[0], ts[1], {}, {}, at::Reduction::None);
      };
      auto fused = Bernoulli(Logits{x}).log_prob(v);
      auto ref = reference(x, v);
      const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
      CHECK(fused.sizes() == ref.sizes());
      CHECK(torch::allclose(fused, ref, tol, tol));
      auto w = torch::linspace(0.5, 1.5, ref.numel(), o).reshape(ref.sizes());
      auto g = torch::autograd::grad({(fused * w).sum()}, {x, v});
      auto r = torch::autograd::grad({(ref * w).sum()}, {x, v});
      for (size_t i = 0; i < 2; ++i) {
        CHECK(g[i].sizes() == r[i].sizes());
        CHECK(torch::allclose(g[i], r[i], tol, tol));
      }
      // Without gradients (evaluation), the same values.
      torch::NoGradGuard no_grad;
      CHECK(torch::allclose(Bernoulli(Logits{x}).log_prob(v), ref, tol, tol));
    }
  }
  // Integer and boolean values are read as the logits' dtype.
  auto x = torch::tensor({-3.0, 0.5, 4.0}, torch::kDouble);
  CHECK(torch::allclose(Bernoulli(Logits{x}).log_prob(torch::tensor({0, 1, 1})),
                        Bernoulli(Logits{x}).log_prob(torch::tensor({0.0, 1.0, 1.0}, torch::kDouble)), 0, 0));
}

TEST_CASE("all_satisfied agrees with check().all() on small and large tensors, at the bounds and on NaN and inf") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<constraints::ConstraintPtr> cs = {constraints::real(), constraints::positive(), constraints::nonnegative(),
                                                constraints::unit_interval(), constraints::interval(0.0, 0.1),
                                                constraints::boolean(), constraints::less_than(0.1)};
  std::vector<double> values = {0.0, 0.1, 1.0, -0.0, 1e-45, 0.5, 2.0, -1.0, inf, -inf, nan, 0.1000000001};
  for (const auto& c : cs)
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (double x : values) {
        CAPTURE(c->name());
        CAPTURE(x);
        auto t = torch::tensor(x, torch::TensorOptions().dtype(dtype));
        CHECK(constraints::all_satisfied(*c, t) == c->check(t).all().item<bool>());
        auto row = torch::tensor({0.5, x}, torch::TensorOptions().dtype(dtype));
        CHECK(constraints::all_satisfied(*c, row) == c->check(row).all().item<bool>());
      }
  // Large tensors (the bulk loops): 1001 elements that satisfy the constraint but one, also
  // with open bounds and integer intervals.
  cs.push_back(std::make_shared<constraints::Interval>(0.0, 0.1, true, false));
  cs.push_back(std::make_shared<constraints::Interval>(0.0, 0.1, false, true));
  cs.push_back(std::make_shared<constraints::IntegerInterval>(0.0, 5.0));
  cs.push_back(std::make_shared<constraints::IntegerInterval>(0.0, inf));
  cs.push_back(std::make_shared<constraints::GreaterThan>(-1.0, false));
  for (const auto& c : cs)
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      const auto o = torch::TensorOptions().dtype(dtype);
      double base = nan;
      for (double b : {0.05, 0.0, 1.0, 3.0, -2.0})
        if (c->check(torch::tensor(b, o)).item<bool>()) {
          base = b;
          break;
        }
      REQUIRE(!std::isnan(base));
      auto all_good = torch::full({1001}, base, o);
      CHECK(constraints::all_satisfied(*c, all_good));
      for (double x : values) {
        CAPTURE(c->name());
        CAPTURE(x);
        auto t = all_good.clone();
        t[537] = x;
        CHECK(constraints::all_satisfied(*c, t) == c->check(t).all().item<bool>());
      }
    }
}
