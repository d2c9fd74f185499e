// TraceEnum_ELBO and parallel enumeration, checked against brute-force sums over the
// discrete latents (loops over every value, written independently of the contraction code).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <set>

#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer;
using dist::Bernoulli;
using dist::Normal;

namespace {

torch::Tensor dbl(double x) { return torch::tensor(x, torch::kDouble); }
torch::Tensor data() { return torch::tensor({0.5, -1.2, 1.4, 2.2}, torch::kDouble); }
double log_normal(double x, double mu) { return -0.5 * (x - mu) * (x - mu) - 0.5 * std::log(2 * M_PI); }
torch::Tensor log_normal_t(double x, const torch::Tensor& mu) { return -0.5 * (x - mu).pow(2) - 0.5 * std::log(2 * M_PI); }

InferConfig parallel() {
  InferConfig c;
  c.enumerate = "parallel";
  return c;
}

// g ~ Bern(sigmoid(pg)); in plate: c_i ~ Bern(0.2 + 0.5 g); x_i ~ N(2 c_i - 1 + g, 1).
auto hier_model = [](const torch::Tensor& x) {
  auto pg = param("pg", dbl(0.3));
  auto g = sample("g", Bernoulli(dist::Logits{pg}));
  auto p = plate("data", x.size(0));
  auto c = sample("c", Bernoulli(0.2 + 0.5 * g));
  sample("x", Normal(2 * c - 1 + g, dbl(1.0)), x);
};

// Brute force: log sum_g p(g) prod_i sum_c p(c|g) N(x_i | 2c - 1 + g, 1), differentiable in pg.
torch::Tensor hier_log_evidence(const torch::Tensor& pg, const torch::Tensor& x) {
  std::vector<torch::Tensor> terms;
  for (int g = 0; g <= 1; ++g) {
    auto lpg = g ? torch::log_sigmoid(pg) : torch::log_sigmoid(-pg);
    auto total = lpg;
    const double pc = 0.2 + 0.5 * g;
    for (int64_t i = 0; i < x.size(0); ++i) {
      const double xi = x[i].item<double>();
      const double li = std::log(pc * std::exp(log_normal(xi, 1.0 + g)) + (1 - pc) * std::exp(log_normal(xi, -1.0 + g)));
      total = total + li;
    }
    terms.push_back(total);
  }
  return torch::logsumexp(torch::stack(terms), 0);
}

}  // namespace

TEST_CASE("EnumMessenger lays each enumerated support along a fresh dim left of the plates") {
  auto model = [] {
    auto a = sample("a", Bernoulli(0.3), SampleOptions().infer(parallel()));
    auto p = plate("data", 4);
    auto b = sample("b", Bernoulli(0.2 + 0.5 * a), SampleOptions().infer(parallel()));
    sample("x", Normal(b, 1.0), torch::zeros({4}));
  };
  auto t = [&] {
    auto tr = trace();
    EnumMessenger en(-2);
    model();
    return tr.get_trace();
  }();
  CHECK(t.at("a").value.sizes().vec() == std::vector<int64_t>{2, 1});
  CHECK(t.at("a").infer.enum_dim == -2);
  CHECK(t.at("b").value.sizes().vec() == std::vector<int64_t>{2, 1, 1});
  CHECK(t.at("b").infer.enum_dim == -3);
  t.compute_log_prob();
  CHECK(t.at("x").log_prob.sizes().vec() == std::vector<int64_t>{2, 1, 4});
  CHECK(t.at("b").log_prob.sizes().vec() == std::vector<int64_t>{2, 2, 4});
}

TEST_CASE("TraceEnum_ELBO sums model-enumerated sites exactly inside and outside a plate") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = data();
  auto model = config_enumerate(hier_model);
  auto guide = [](const torch::Tensor&) {};
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  const double loss = elbo.loss_and_grads(model, guide, x);
  auto pg = dbl(0.3).requires_grad_(true);
  auto ref = -hier_log_evidence(pg, x);
  CHECK(loss == doctest::Approx(ref.item<double>()).epsilon(1e-12));
  auto ref_grad = torch::autograd::grad({ref}, {pg})[0];
  CHECK(store.unconstrained("pg").grad().item<double>() == doctest::Approx(ref_grad.item<double>()).epsilon(1e-10));
  // max_plate_nesting guessed from a dry run, and vectorised particles (exact: no sampling left).
  TraceEnum_ELBO guessed;
  CHECK(guessed.loss(model, guide, x) == doctest::Approx(ref.item<double>()).epsilon(1e-12));
  TraceEnum_ELBO vec(ELBOOptions().num_particles(3).vectorize_particles(true).max_plate_nesting(1));
  CHECK(vec.loss(model, guide, x) == doctest::Approx(ref.item<double>()).epsilon(1e-12));
}

TEST_CASE("TraceEnum_ELBO with an exact enumerated guide inside a plate equals -log evidence") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = data();
  // c_i ~ Bern(0.3), x_i ~ N(2 c_i - 1, 1); the guide is the exact posterior of each c_i.
  auto model = [](const torch::Tensor& x) {
    auto p = plate("data", x.size(0));
    auto c = sample("c", Bernoulli(torch::full({x.size(0)}, 0.3, torch::kDouble)));
    sample("x", Normal(2 * c - 1, dbl(1.0)), x);
  };
  auto post = torch::empty({x.size(0)}, torch::kDouble);
  double log_evidence = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    const double xi = x[i].item<double>();
    const double a = 0.3 * std::exp(log_normal(xi, 1.0)), b = 0.7 * std::exp(log_normal(xi, -1.0));
    post[i] = a / (a + b);
    log_evidence += std::log(a + b);
  }
  auto guide = config_enumerate([post](const torch::Tensor& x) {
    auto p = plate("data", x.size(0));
    sample("c", Bernoulli(post));
  });
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  CHECK(elbo.loss(model, guide, x) == doctest::Approx(-log_evidence).epsilon(1e-12));

  // A learnable enumerated guide: loss and gradient equal the exact sum over values.
  auto guide_theta = config_enumerate([](const torch::Tensor& x) {
    auto theta = param("theta", torch::tensor({0.2, -0.4, 1.0, 0.0}, torch::kDouble));
    auto p = plate("data", x.size(0));
    sample("c", Bernoulli(dist::Logits{theta}));
  });
  const double loss = elbo.loss_and_grads(model, guide_theta, x);
  auto theta = torch::tensor({0.2, -0.4, 1.0, 0.0}, torch::kDouble).requires_grad_(true);
  auto exact = torch::zeros({}, torch::kDouble);
  for (int z = 0; z <= 1; ++z) {
    auto logq = z ? torch::log_sigmoid(theta) : torch::log_sigmoid(-theta);
    auto logp = std::log(z ? 0.3 : 0.7) + log_normal_t(0.0, x - (2.0 * z - 1));
    exact = exact + (logq.exp() * (logp - logq)).sum();
  }
  CHECK(loss == doctest::Approx(-exact.item<double>()).epsilon(1e-12));
  auto g = torch::autograd::grad({-exact}, {theta})[0];
  CHECK(torch::allclose(store.unconstrained("theta").grad(), g, 1e-10, 1e-12));
}

TEST_CASE("TraceEnum_ELBO mixes guide enumeration (global) with model enumeration (local)") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = data();
  auto model = config_enumerate([](const torch::Tensor& x) {
    auto g = sample("g", Bernoulli(dbl(0.6)));
    auto p = plate("data", x.size(0));
    auto c = sample("c", Bernoulli(0.2 + 0.5 * g));
    sample("x", Normal(2 * c - 1 + g, dbl(1.0)), x);
  });
  auto guide = config_enumerate([](const torch::Tensor&) {
    auto q = param("q", dbl(0.7), constraints::unit_interval());
    sample("g", Bernoulli(q));
  });
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  const double loss = elbo.loss_and_grads(model, guide, x);
  // Reference: sum_g q(g) [log p(g) + sum_i log sum_c p(c|g) N(x_i) - log q(g)].
  auto q = dbl(0.7).requires_grad_(true);
  auto ref = torch::zeros({}, torch::kDouble);
  for (int g = 0; g <= 1; ++g) {
    auto qg = g ? q : 1 - q;
    double lik = 0;
    const double pc = 0.2 + 0.5 * g;
    for (int64_t i = 0; i < x.size(0); ++i) {
      const double xi = x[i].item<double>();
      lik += std::log(pc * std::exp(log_normal(xi, 1.0 + g)) + (1 - pc) * std::exp(log_normal(xi, -1.0 + g)));
    }
    ref = ref + qg * (std::log(g ? 0.6 : 0.4) + lik - qg.log());
  }
  CHECK(loss == doctest::Approx(-ref.item<double>()).epsilon(1e-12));
  // The param is stored unconstrained (logit); chain rule dq/du = q (1 - q).
  auto dq = torch::autograd::grad({-ref}, {q})[0].item<double>();
  CHECK(store.unconstrained("q").grad().item<double>() == doctest::Approx(dq * 0.7 * 0.3).epsilon(1e-8));
}

TEST_CASE("TraceEnum_ELBO: Monte-Carlo guide sites alongside model enumeration") {
  // A continuous global latent drawn by the guide, a discrete local one summed out in the model.
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(11);
  auto x = data();
  auto model = config_enumerate([](const torch::Tensor& x) {
    auto mu = sample("mu", Normal(dbl(0.0), dbl(1.0)));
    auto p = plate("data", x.size(0));
    auto c = sample("c", Bernoulli(dbl(0.3)));
    sample("x", Normal(2 * c - 1 + mu, dbl(1.0)), x);
  });
  auto guide = [](const torch::Tensor&) { sample("mu", Normal(dbl(0.2), dbl(0.5))); };
  // Per draw of mu, TraceEnum_ELBO's loss is exactly -[log p(mu) + sum_i log sum_c ... - log q(mu)].
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  auto [model_trace, guide_trace] = elbo.get_traces(bind_program(model, x), bind_program(guide, x));
  const double mu = guide_trace.at("mu").value.item<double>();
  double ref = log_normal(mu, 0.0) - (log_normal((mu - 0.2) / 0.5, 0.0) - std::log(0.5));
  for (int64_t i = 0; i < x.size(0); ++i) {
    const double xi = x[i].item<double>();
    ref += std::log(0.3 * std::exp(log_normal(xi, 1.0 + mu)) + 0.7 * std::exp(log_normal(xi, -1.0 + mu)));
  }
  auto s2 = seed(11);  // the same draw of mu as above
  CHECK(elbo.loss(model, guide, x) == doctest::Approx(-ref).epsilon(1e-12));
}

TEST_CASE("enumeration's restrictions are errors that name the site or plate") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto none = [] {};
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(2));
  SUBCASE("sequential enumeration") {
    auto model = [] {
      InferConfig c;
      c.enumerate = "sequential";
      sample("z", Bernoulli(0.5), SampleOptions().infer(c));
    };
    CHECK_THROWS_WITH_AS(elbo.loss(model, none), doctest::Contains("'z'"), NotImplementedError);
  }
  SUBCASE("a continuous site marked for enumeration") {
    auto model = [] { sample("w", Normal(0.0, 1.0), SampleOptions().infer(parallel())); };
    CHECK_THROWS_WITH_AS(elbo.loss(model, none), doctest::Contains("'w'"), ValueError);
  }
  SUBCASE("dependencies across independent plates") {
    // za lives in plate a only, zb in plate b only, x in both: not tree-structured.
    auto model3 = [] {
      torch::Tensor za, zb;
      {
        auto a = plate("a", 2, PlateOptions().dim(-1));
        za = sample("za", Bernoulli(0.5), SampleOptions().infer(parallel()));
      }
      {
        auto b = plate("b", 3, PlateOptions().dim(-2));
        zb = sample("zb", Bernoulli(0.5), SampleOptions().infer(parallel()));
      }
      auto a = plate("a", 2, PlateOptions().dim(-1));
      auto b = plate("b", 3, PlateOptions().dim(-2));
      sample("x", Normal(za + zb, 1.0), torch::zeros({3, 2}));
    };
    CHECK_THROWS_WITH_AS(elbo.loss(model3, none), doctest::Contains("tree-structured"), ValueError);
  }
  SUBCASE("model enumeration more global than guide enumeration") {
    auto model = [] {
      auto g = sample("g", Bernoulli(0.5), SampleOptions().infer(parallel()));
      auto p = plate("data", 3);
      auto c = sample("c", Bernoulli(0.2 + 0.5 * g));
      sample("x", Normal(c + g, 1.0), torch::zeros({3}));
    };
    auto guide = [] {
      auto p = plate("data", 3);
      sample("c", Bernoulli(0.5), SampleOptions().infer(parallel()));
    };
    CHECK_THROWS_WITH_AS(elbo.loss(model, guide), doctest::Contains("'c'"), ValueError);
  }
  SUBCASE("a batch dim that is neither a plate nor an enumeration dim") {
    TraceEnum_ELBO tight(ELBOOptions().max_plate_nesting(1));
    auto model = [] {
      auto p = plate("data", 3);
      sample("x", Normal(torch::zeros({2, 3}), 1.0), torch::zeros({2, 3}));
    };
    CHECK_THROWS_WITH_AS(tight.loss(model, none), doctest::Contains("'x'"), ValueError);
  }
}

namespace {
torch::Tensor class_means() { return torch::tensor({-2.0, 0.0, 2.0}, torch::kDouble); }
torch::Tensor class_probs() { return torch::tensor({0.2, 0.5, 0.3}, torch::kDouble); }
}  // namespace

TEST_CASE("TraceEnum_ELBO enumerates Categorical in the model and OneHotCategorical in the guide") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = data();
  const int64_t n = x.size(0);
  SUBCASE("model enumeration of a Categorical label: the mixture likelihood") {
    auto model = config_enumerate([](const torch::Tensor& x) {
      auto p = plate("data", x.size(0));
      auto c = sample("c", dist::Categorical(class_probs()));
      sample("x", Normal(class_means().index({c}), dbl(1.0)), x);
    });
    auto guide = [](const torch::Tensor&) {};
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int k = 0; k < 3; ++k)
        s += class_probs()[k].item<double>() * std::exp(log_normal(x[i].item<double>(), class_means()[k].item<double>()));
      ref += std::log(s);
    }
    TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
    CHECK(elbo.loss(model, guide, x) == doctest::Approx(-ref).epsilon(1e-12));
  }
  SUBCASE("guide enumeration of a one-hot label (the semi-supervised VAE's unlabelled case)") {
    auto model = [](const torch::Tensor& x) {
      auto p = plate("data", x.size(0));
      auto y = sample("y", dist::OneHotCategorical(class_probs()));
      sample("x", Normal((y * class_means()).sum(-1), dbl(1.0)), x);
    };
    auto guide = config_enumerate([](const torch::Tensor& x) {
      auto w = param("w", torch::tensor({0.1, -0.2, 0.3}, torch::kDouble));
      auto v = param("v", torch::tensor({-1.0, 0.0, 1.0}, torch::kDouble));
      auto p = plate("data", x.size(0));
      sample("y", dist::OneHotCategorical(dist::Logits{w + x.unsqueeze(-1) * v}));
    });
    TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
    const double loss = elbo.loss_and_grads(model, guide, x);
    // Reference: sum_i sum_k q_ik [log pi_k + log N(x_i | mu_k, 1) - log q_ik].
    auto w = torch::tensor({0.1, -0.2, 0.3}, torch::kDouble).requires_grad_(true);
    auto v = torch::tensor({-1.0, 0.0, 1.0}, torch::kDouble);
    auto logq = torch::log_softmax(w + x.unsqueeze(-1) * v, -1);
    auto loglik = -0.5 * (x.unsqueeze(-1) - class_means()).pow(2) - 0.5 * std::log(2 * M_PI);
    auto ref = (logq.exp() * (class_probs().log() + loglik - logq)).sum();
    CHECK(loss == doctest::Approx(-ref.item<double>()).epsilon(1e-12));
    auto g = torch::autograd::grad({-ref}, {w})[0];
    CHECK(torch::allclose(store.unconstrained("w").grad(), g, 1e-10, 1e-12));
  }
}

TEST_CASE("TraceEnum_ELBO scales a subsampled plate after summing out its enumerated sites") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = data();
  auto idx = torch::tensor({3, 1}, torch::kLong);
  auto model = config_enumerate([idx](const torch::Tensor& x) {
    auto p = plate("data", x.size(0), PlateOptions().subsample(idx));
    auto c = sample("c", Bernoulli(dbl(0.3)));
    sample("x", Normal(2 * c - 1, dbl(1.0)), p.subsample(x));
  });
  auto guide = [](const torch::Tensor&) {};
  double ref = 0;
  for (int64_t i : {3, 1}) {
    const double xi = x[i].item<double>();
    ref += std::log(0.3 * std::exp(log_normal(xi, 1.0)) + 0.7 * std::exp(log_normal(xi, -1.0)));
  }
  ref *= 4.0 / 2.0;
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  CHECK(elbo.loss(model, guide, x) == doctest::Approx(-ref).epsilon(1e-12));
}

TEST_CASE("TraceEnum_ELBO's Dice factors give unbiased score-function gradients for sampled discrete guide sites") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(12);
  auto x = torch::tensor({0.5, -1.2, 1.4}, torch::kDouble);
  auto model = [](const torch::Tensor& x) {
    auto p = plate("data", x.size(0));
    auto z = sample("z", Bernoulli(torch::full({x.size(0)}, 0.3, torch::kDouble)));
    sample("x", Normal(2 * z - 1, dbl(1.0)), x);
  };
  auto guide = [](const torch::Tensor& x) {  // not enumerated: sampled
    auto theta = param("theta", torch::tensor({0.2, -0.4, 1.0}, torch::kDouble));
    auto p = plate("data", x.size(0));
    sample("z", Bernoulli(dist::Logits{theta}));
  };
  auto theta = torch::tensor({0.2, -0.4, 1.0}, torch::kDouble).requires_grad_(true);
  auto exact = torch::zeros({}, torch::kDouble);
  for (int z = 0; z <= 1; ++z) {
    auto logq = z ? torch::log_sigmoid(theta) : torch::log_sigmoid(-theta);
    auto logp = std::log(z ? 0.3 : 0.7) + log_normal_t(0.0, x - (2.0 * z - 1));
    exact = exact + (logq.exp() * (logp - logq)).sum();
  }
  auto exact_grad = torch::autograd::grad({-exact}, {theta})[0];
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  const int n = 3000;
  std::vector<std::vector<double>> g(3);
  for (int i = 0; i < n; ++i) {
    elbo.loss_and_grads(model, guide, x);
    auto u = store.unconstrained("theta");
    for (int j = 0; j < 3; ++j) g[j].push_back(u.grad()[j].item<double>());
    u.mutable_grad().zero_();
  }
  for (int j = 0; j < 3; ++j) {
    double m = 0, ss = 0;
    for (double v : g[j]) m += v / n;
    for (double v : g[j]) ss += (v - m) * (v - m);
    const double se = std::sqrt(ss / (n - 1) / n);
    INFO("component " << j << ": MC " << m << " +- " << se << ", exact " << exact_grad[j].item<double>());
    CHECK(std::abs(m - exact_grad[j].item<double>()) < 3 * se);
  }
}

TEST_CASE("TraceEnum_ELBO eliminates enumerated sites at three levels of nested plates") {
  // g ~ Bern(0.4); outer plate j: a_j ~ Bern(0.3 + 0.4 g); inner plate i: c_ij ~ Bern(0.2 + 0.6 a_j);
  // x_ij ~ N(c_ij + a_j + g, 1).
  ParamStore store;
  ParamStoreScope scope(store);
  auto x = torch::tensor({{0.3, 1.9, -0.5}, {2.4, 1.1, 0.0}}, torch::kDouble);  // [outer 2, inner 3]
  auto model = config_enumerate([](const torch::Tensor& x) {
    auto g = sample("g", Bernoulli(dbl(0.4)));
    auto outer = plate("outer", 2, PlateOptions().dim(-2));
    auto a = sample("a", Bernoulli(0.3 + 0.4 * g));
    auto inner = plate("inner", 3, PlateOptions().dim(-1));
    auto c = sample("c", Bernoulli(0.2 + 0.6 * a));
    sample("x", Normal(c + a + g, dbl(1.0)), x);
  });
  auto guide = [](const torch::Tensor&) {};
  double total = 0;
  for (int g = 0; g <= 1; ++g) {
    double pg = g ? 0.4 : 0.6, prod_j = 1;
    for (int j = 0; j < 2; ++j) {
      double sum_a = 0;
      for (int a = 0; a <= 1; ++a) {
        const double pa1 = 0.3 + 0.4 * g, pc1 = 0.2 + 0.6 * a;
        double prod_i = 1;
        for (int i = 0; i < 3; ++i) {
          const double xij = x[j][i].item<double>();
          prod_i *= pc1 * std::exp(log_normal(xij, 1.0 + a + g)) + (1 - pc1) * std::exp(log_normal(xij, 0.0 + a + g));
        }
        sum_a += (a ? pa1 : 1 - pa1) * prod_i;
      }
      prod_j *= sum_a;
    }
    total += pg * prod_j;
  }
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(2));
  CHECK(elbo.loss(model, guide, x) == doctest::Approx(-std::log(total)).epsilon(1e-12));
}

// ------------------------------------------------------------- markov: an enumerated HMM

namespace {

// A 3-state HMM with Gaussian emissions; the emission locs are a param (for gradients).
torch::Tensor hmm_init() { return torch::tensor({0.5, 0.3, 0.2}, torch::kDouble); }
torch::Tensor hmm_trans() {
  return torch::tensor({0.8, 0.15, 0.05, 0.1, 0.7, 0.2, 0.2, 0.2, 0.6}, torch::kDouble).reshape({3, 3});
}
torch::Tensor hmm_locs0() { return torch::tensor({-2.0, 0.0, 2.0}, torch::kDouble); }
constexpr double kHmmScale = 0.8;
torch::Tensor hmm_data(int64_t T = 16) {
  const std::vector<double> y{-1.8, -2.3, -0.4, 0.3, 0.1, 2.2, 1.7, 2.5, 0.9, 2.3, -1.9, -2.4, -2.0, 1.1, 2.1, 0.2};
  return torch::tensor(std::vector<double>(y.begin(), y.begin() + T), torch::kDouble);
}

auto hmm_model = [](const torch::Tensor& y) {
  auto locs = param("locs", hmm_locs0());
  torch::Tensor x;
  for (int64_t t : markov_range(y.size(0))) {
    auto probs = t == 0 ? hmm_init() : hmm_trans().index({x});
    x = sample(cat("x_", t), dist::Categorical(probs), SampleOptions().infer(parallel()));
    sample(cat("y_", t), Normal(locs.index({x}), dbl(kHmmScale)), y[t]);
  }
};
auto hmm_empty_guide = [](const torch::Tensor&) {};

// log N(y | locs, scale) for every state, [3].
torch::Tensor emission_log_probs(double y, const torch::Tensor& locs) {
  return -0.5 * ((y - locs) / kHmmScale).pow(2) - std::log(kHmmScale) - 0.5 * std::log(2 * M_PI);
}

// The forward algorithm written out (log space): alpha[t][k] = log p(y_0..t, x_t = k).
std::vector<torch::Tensor> hmm_forward(const torch::Tensor& y, const torch::Tensor& locs) {
  std::vector<torch::Tensor> alpha;
  const auto log_a = hmm_trans().log();
  for (int64_t t = 0; t < y.size(0); ++t) {
    const auto e = emission_log_probs(y[t].item<double>(), locs);
    if (t == 0) {
      alpha.push_back(hmm_init().log() + e);
      continue;
    }
    std::vector<torch::Tensor> next;
    for (int64_t k = 0; k < 3; ++k) next.push_back(torch::logsumexp(alpha.back() + log_a.select(1, k), 0));
    alpha.push_back(torch::stack(next) + e);
  }
  return alpha;
}

// The backward algorithm: beta[t][k] = log p(y_t+1..T-1 | x_t = k).
std::vector<torch::Tensor> hmm_backward(const torch::Tensor& y, const torch::Tensor& locs) {
  const int64_t T = y.size(0);
  std::vector<torch::Tensor> beta(static_cast<size_t>(T));
  const auto log_a = hmm_trans().log();
  beta[static_cast<size_t>(T - 1)] = torch::zeros({3}, torch::kDouble);
  for (int64_t t = T - 2; t >= 0; --t) {
    const auto next = emission_log_probs(y[t + 1].item<double>(), locs) + beta[static_cast<size_t>(t + 1)];
    std::vector<torch::Tensor> b;
    for (int64_t j = 0; j < 3; ++j) b.push_back(torch::logsumexp(log_a[j] + next, 0));
    beta[static_cast<size_t>(t)] = torch::stack(b);
  }
  return beta;
}

// Viterbi: the jointly most likely state path.
std::vector<int64_t> hmm_viterbi(const torch::Tensor& y, const torch::Tensor& locs) {
  const int64_t T = y.size(0);
  auto log_a = hmm_trans().log();
  std::vector<std::vector<double>> delta(static_cast<size_t>(T), std::vector<double>(3));
  std::vector<std::vector<int64_t>> back(static_cast<size_t>(T), std::vector<int64_t>(3));
  auto pi = hmm_init().log();
  for (int64_t t = 0; t < T; ++t) {
    auto e = emission_log_probs(y[t].item<double>(), locs);
    for (int64_t k = 0; k < 3; ++k) {
      if (t == 0) {
        delta[0][static_cast<size_t>(k)] = pi[k].item<double>() + e[k].item<double>();
        continue;
      }
      double best = -INFINITY;
      for (int64_t j = 0; j < 3; ++j) {
        const double v = delta[static_cast<size_t>(t - 1)][static_cast<size_t>(j)] + log_a[j][k].item<double>();
        if (v > best) {
          best = v;
          back[static_cast<size_t>(t)][static_cast<size_t>(k)] = j;
        }
      }
      delta[static_cast<size_t>(t)][static_cast<size_t>(k)] = best + e[k].item<double>();
    }
  }
  std::vector<int64_t> path(static_cast<size_t>(T));
  const auto& last = delta.back();
  path.back() = std::max_element(last.begin(), last.end()) - last.begin();
  for (int64_t t = T - 1; t > 0; --t)
    path[static_cast<size_t>(t - 1)] = back[static_cast<size_t>(t)][static_cast<size_t>(path[static_cast<size_t>(t)])];
  return path;
}

std::set<int64_t> enumeration_dims(int64_t T) {
  ParamStore store;
  ParamStoreScope scope(store);
  TraceMessenger tm;
  EnumMessenger en(-1);
  hmm_model(hmm_data(T));
  std::set<int64_t> dims;
  for (const auto& s : tm.trace())
    if (s.infer.enum_dim != 0) dims.insert(s.infer.enum_dim);
  return dims;
}

}  // namespace

TEST_CASE("markov recycles enumeration dims - an enumerated HMM uses two dims at any length") {
  CHECK(enumeration_dims(4) == std::set<int64_t>{-1, -2});
  CHECK(enumeration_dims(16) == std::set<int64_t>{-1, -2});
  // history 2: each step sees the two before it, so three dims.
  ParamStore store;
  ParamStoreScope scope(store);
  TraceMessenger tm;
  EnumMessenger en(-1);
  torch::Tensor x;
  for (int64_t t : markov_range(10, MarkovOptions().history(2))) {
    auto probs = t == 0 ? hmm_init() : hmm_trans().index({x});
    x = sample(cat("x_", t), dist::Categorical(probs), SampleOptions().infer(parallel()));
  }
  std::set<int64_t> dims;
  for (const auto& s : tm.trace()) dims.insert(s.infer.enum_dim);
  CHECK(dims == std::set<int64_t>{-1, -2, -3});
}

TEST_CASE("TraceEnum_ELBO with markov - HMM log-likelihood and gradient equal the forward algorithm") {
  const auto y = hmm_data();
  auto locs = hmm_locs0().requires_grad_(true);
  auto alpha = hmm_forward(y, locs);
  auto loglik = torch::logsumexp(alpha.back(), 0);
  auto grad = torch::autograd::grad({loglik}, {locs})[0];
  ParamStore store;
  ParamStoreScope scope(store);
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(0));
  const double loss = elbo.loss_and_grads(hmm_model, hmm_empty_guide, y);
  INFO("loss " << loss << " forward " << loglik.item<double>());
  CHECK(std::abs(loss + loglik.item<double>()) < 1e-10);
  CHECK(torch::allclose(store.unconstrained("locs").grad(), -grad, 1e-10, 1e-10));
}

TEST_CASE("TraceEnum_ELBO with markov inside a plate of sequences equals the forward algorithm per sequence") {
  // Three sequences in a plate (dim -1), each an HMM; enumeration starts at dim -2.
  const auto ys = torch::stack({hmm_data(), hmm_data().flip(0), hmm_data() * 0.5}, 1);  // [T, 3]
  auto model = [](const torch::Tensor& y) {
    auto locs = param("locs", hmm_locs0());
    auto seqs = plate("seqs", y.size(1), PlateOptions().dim(-1));
    torch::Tensor x;
    for (int64_t t : markov_range(y.size(0))) {
      auto probs = t == 0 ? hmm_init() : hmm_trans().index({x});
      x = sample(cat("x_", t), dist::Categorical(probs), SampleOptions().infer(parallel()));
      sample(cat("y_", t), Normal(locs.index({x}), dbl(kHmmScale)), y[t]);
    }
  };
  double total = 0;
  for (int64_t s = 0; s < ys.size(1); ++s) total += torch::logsumexp(hmm_forward(ys.select(1, s), hmm_locs0()).back(), 0).item<double>();
  ParamStore store;
  ParamStoreScope scope(store);
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  const double loss = elbo.loss(model, hmm_empty_guide, ys);
  CHECK(std::abs(loss + total) < 1e-10);
}

TEST_CASE("infer_discrete at temperature 0 gives the Viterbi path of an HMM") {
  const auto y = hmm_data();
  ParamStore store;
  ParamStoreScope scope(store);
  auto map = infer_discrete(hmm_model, InferDiscreteOptions().first_available_dim(-1).temperature(0));
  Trace tr = trace(map).get_trace(y);
  const auto path = hmm_viterbi(y, hmm_locs0());
  std::vector<int64_t> ours;
  for (int64_t t = 0; t < y.size(0); ++t) ours.push_back(tr.at(cat("x_", t)).value.item<int64_t>());
  CHECK(ours == path);
  // The path is not trivially the per-step argmax of the emissions (the transitions matter).
  std::vector<int64_t> greedy;
  for (int64_t t = 0; t < y.size(0); ++t) greedy.push_back(emission_log_probs(y[t].item<double>(), hmm_locs0()).argmax().item<int64_t>());
  CHECK(greedy != path);
  // Unset first_available_dim: found from a dry run (no plates: -1).
  auto map2 = infer_discrete(hmm_model, InferDiscreteOptions().temperature(0));
  Trace tr2 = trace(map2).get_trace(y);
  for (int64_t t = 0; t < y.size(0); ++t) CHECK(tr2.at(cat("x_", t)).value.item<int64_t>() == path[static_cast<size_t>(t)]);
}

TEST_CASE("infer_discrete at temperature 1 samples the HMM posterior (marginals within Monte-Carlo error)") {
  torch::manual_seed(7);
  const auto y = hmm_data();
  const int64_t T = y.size(0);
  auto alpha = hmm_forward(y, hmm_locs0());
  auto beta = hmm_backward(y, hmm_locs0());
  const auto loglik = torch::logsumexp(alpha.back(), 0);
  ParamStore store;
  ParamStoreScope scope(store);
  auto posterior = infer_discrete(hmm_model, InferDiscreteOptions().first_available_dim(-1).temperature(1));
  const int64_t n = 1500;
  auto counts = torch::zeros({T, 3}, torch::kDouble);
  int64_t switches_seen = 0;
  for (int64_t i = 0; i < n; ++i) {
    Trace tr = trace(posterior).get_trace(y);
    for (int64_t t = 0; t < T; ++t) counts[t][tr.at(cat("x_", t)).value.item<int64_t>()] += 1;
    switches_seen += tr.at("x_2").value.item<int64_t>() != tr.at("x_3").value.item<int64_t>();
  }
  auto freq = counts / static_cast<double>(n);
  for (int64_t t = 0; t < T; ++t) {
    auto exact = (alpha[static_cast<size_t>(t)] + beta[static_cast<size_t>(t)] - loglik).exp();
    for (int64_t k = 0; k < 3; ++k) {
      const double p = exact[k].item<double>();
      const double se = std::sqrt(std::max(p * (1 - p), 1e-4) / static_cast<double>(n));
      INFO("t " << t << " state " << k << " exact " << p << " sampled " << freq[t][k].item<double>());
      CHECK(std::abs(freq[t][k].item<double>() - p) < 4.5 * se);
    }
  }
  CHECK(switches_seen > 0);  // draws, not a single path
}

TEST_CASE("markov scope - a recursive HMM entering one shared markov messenger per step matches markov_range") {
  // Each recursion level enters one more level of the same messenger (Pyro's reentrant
  // markov): two enumeration dims at any depth, and the forward algorithm's likelihood.
  const auto y = hmm_data();
  auto recursive = [](const torch::Tensor& y) {
    auto locs = param("locs", hmm_locs0());
    auto messenger = std::make_shared<MarkovMessenger>();
    std::function<void(int64_t, const torch::Tensor&)> step = [&](int64_t t, const torch::Tensor& prev) {
      if (t == y.size(0)) return;
      Markov level(messenger);
      auto probs = t == 0 ? hmm_init() : hmm_trans().index({prev});
      auto x = sample(cat("x_", t), dist::Categorical(probs), SampleOptions().infer(parallel()));
      sample(cat("y_", t), Normal(locs.index({x}), dbl(kHmmScale)), y[t]);
      step(t + 1, x);
    };
    step(0, torch::Tensor());
  };
  ParamStore store;
  ParamStoreScope scope(store);
  {
    TraceMessenger tm;
    EnumMessenger en(-1);
    recursive(y);
    std::set<int64_t> dims;
    for (const auto& s : tm.trace())
      if (s.infer.enum_dim != 0) dims.insert(s.infer.enum_dim);
    CHECK(dims == std::set<int64_t>{-1, -2});
  }
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(0));
  const double loglik = torch::logsumexp(hmm_forward(y, hmm_locs0()).back(), 0).item<double>();
  CHECK(std::abs(elbo.loss(recursive, hmm_empty_guide, y) + loglik) < 1e-10);
}

TEST_CASE("markov with history 0 - a step that reads the previous state is an error naming the site") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto model = [](const torch::Tensor& y) {
    torch::Tensor x;
    for (int64_t t : markov_range(y.size(0), MarkovOptions().history(0))) {
      auto probs = t == 0 ? hmm_init() : hmm_trans().index({x});
      x = sample(cat("x_", t), dist::Categorical(probs), SampleOptions().infer(parallel()));
      sample(cat("y_", t), Normal(hmm_locs0().index({x}), dbl(kHmmScale)), y[t]);
    }
  };
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(0));
  CHECK_THROWS_WITH(elbo.loss(model, hmm_empty_guide, hmm_data(4)), doctest::Contains("site 'x_1'"));
}
