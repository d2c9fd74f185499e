// Inference: Trace_ELBO, TraceMeanField_ELBO, RenyiELBO, SVI, optimisers, checkpoints, checks.
//
// References are independent of the code under test: closed-form posteriors and evidences,
// exact sums over discrete latents, LibTorch's own optimisers. Monte-Carlo tolerances are a
// fixed number of standard errors estimated from the same draws; seeds are fixed.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer;
using dist::Bernoulli;
using dist::Normal;

namespace {

torch::Tensor dbl(double x) { return torch::tensor(x, torch::kDouble); }

// Normal-Normal: z ~ N(mu0, s0), x_i ~ N(z, s), i = 1..N.
struct NormalNormal {
  double mu0 = 0.5, s0 = 2.0, s = 1.0;
  torch::Tensor x = torch::tensor({1.2, 0.3, 2.1, 1.7, -0.4}, torch::kDouble);
  double post_var() const { return 1.0 / (1.0 / (s0 * s0) + x.size(0) / (s * s)); }
  double post_mean() const { return post_var() * (mu0 / (s0 * s0) + x.sum().item<double>() / (s * s)); }
  // log N(x | mu0 1, s^2 I + s0^2 1 1^T), computed as a multivariate normal.
  double log_evidence() const {
    const int64_t n = x.size(0);
    auto cov = s * s * torch::eye(n, torch::kDouble) + s0 * s0 * torch::ones({n, n}, torch::kDouble);
    auto L = torch::linalg_cholesky(cov);
    auto r = x - mu0;
    auto sol = torch::linalg_solve_triangular(L, r.unsqueeze(1), /*upper=*/false);
    return (-0.5 * sol.pow(2).sum() - L.diagonal().log().sum() - 0.5 * n * std::log(2 * M_PI)).item<double>();
  }
  auto model() const {
    return [mu0 = mu0, s0 = s0, s = s](const torch::Tensor& data) {
      auto z = sample("z", Normal(dbl(mu0), dbl(s0)));
      auto p = plate("data", data.size(0));
      sample("x", Normal(z, dbl(s)), data);
    };
  }
  auto exact_guide() const {
    return [m = post_mean(), sd = std::sqrt(post_var())](const torch::Tensor&) { sample("z", Normal(dbl(m), dbl(sd))); };
  }
};

auto param_guide = [](const torch::Tensor&) {
  auto loc = param("q_loc", dbl(0.0));
  auto scale = param("q_scale", dbl(1.0), constraints::positive());
  sample("z", Normal(loc, scale));
};

// Mean and standard error of a sample.
std::pair<double, double> mean_se(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / static_cast<double>(v.size() - 1) / static_cast<double>(v.size()))};
}

}  // namespace

TEST_CASE("Trace_ELBO with the exact posterior as guide equals the log-evidence at every draw") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(1);
  NormalNormal nn;
  auto model = nn.model();
  auto guide = nn.exact_guide();
  Trace_ELBO elbo;
  std::vector<double> losses;
  for (int i = 0; i < 50; ++i) losses.push_back(elbo.loss(model, guide, nn.x));
  auto [m, se] = mean_se(losses);
  CHECK(m == doctest::Approx(-nn.log_evidence()).epsilon(1e-10));
  CHECK(se < 1e-10);
  // Vectorised particles give the same number.
  Trace_ELBO vec(ELBOOptions().num_particles(20).vectorize_particles(true));
  CHECK(vec.loss(model, guide, nn.x) == doctest::Approx(-nn.log_evidence()).epsilon(1e-10));
}

TEST_CASE("TraceMeanField_ELBO with the exact posterior averages to the analytic log-evidence") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(2);
  NormalNormal nn;
  auto model = nn.model();
  auto guide = nn.exact_guide();
  TraceMeanField_ELBO elbo;
  std::vector<double> losses;
  for (int i = 0; i < 2000; ++i) losses.push_back(elbo.loss(model, guide, nn.x));
  auto [m, se] = mean_se(losses);
  // Only the likelihood term is Monte Carlo: sum_i (x_i - z)^2 / (2 s^2) = A z^2 + B z + c
  // with z ~ q = N(m, v), whose variance is A^2 (4 m^2 v + 2 v^2) + B^2 v + 4 A B m v. The
  // sample's standard error is within 10% of sd / sqrt(2000) (its own relative error is ~2%).
  {
    const double n = static_cast<double>(nn.x.size(0)), v = nn.post_var(), mu = nn.post_mean();
    const double A = n / (2 * nn.s * nn.s), B = -nn.x.sum().item<double>() / (nn.s * nn.s);
    const double sd = std::sqrt(A * A * (4 * mu * mu * v + 2 * v * v) + B * B * v + 4 * A * B * mu * v);
    CHECK(se == doctest::Approx(sd / std::sqrt(2000.0)).epsilon(0.1));
  }
  CHECK(std::abs(m + nn.log_evidence()) < 3 * se);
  // The analytic KL is Normal/Normal's closed form.
  auto kl = analytic_kl(Normal(dbl(1.0), dbl(0.5)), Normal(dbl(-0.5), dbl(2.0)));
  REQUIRE(kl.has_value());
  const double ref = std::log(2.0 / 0.5) + (0.25 + 2.25) / (2 * 4.0) - 0.5;
  CHECK(kl->item<double>() == doctest::Approx(ref).epsilon(1e-12));
}

TEST_CASE("SVI with Adam recovers the Normal-Normal posterior") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(3);
  NormalNormal nn;
  SVI svi(nn.model(), param_guide, ClippedAdam(ClippedAdamOptions().lr(0.05).lrd(0.999)),
          Trace_ELBO(ELBOOptions().num_particles(4)));
  for (int i = 0; i < 1500; ++i) svi.step(nn.x);
  const double loc = store.get("q_loc").item<double>(), scale = store.get("q_scale").item<double>();
  // Stationary noise of the final iterate: a few percent of the posterior sd.
  CHECK(loc == doctest::Approx(nn.post_mean()).epsilon(0.05));
  CHECK(scale == doctest::Approx(std::sqrt(nn.post_var())).epsilon(0.1));
  CHECK(svi.num_steps() == 1500);
  CHECK(svi.evaluate_loss(nn.x) == doctest::Approx(-nn.log_evidence()).epsilon(0.05));
}

namespace {
// Bernoulli latent in a plate, score-function gradients: z_i ~ Bern(0.3), x_i ~ N(2 z_i - 1, 1).
torch::Tensor sf_x() { return torch::tensor({0.5, -1.2, 1.4}, torch::kDouble); }
auto sf_model = [](const torch::Tensor& x) {
  auto p = plate("data", x.size(0));
  auto z = sample("z", Bernoulli(torch::full({x.size(0)}, 0.3, torch::kDouble)));
  sample("x", Normal(2 * z - 1, dbl(1.0)), x);
};
auto sf_guide = [](const torch::Tensor& x) {
  auto theta = param("theta", torch::tensor({0.2, -0.4, 1.0}, torch::kDouble));
  auto p = plate("data", x.size(0));
  sample("z", Bernoulli(dist::Logits{theta}));
};
}  // namespace

namespace {
// Exact ELBO gradient of the score-function example by enumeration: sum over i and z_i in
// {0, 1} of q_i(z) [log p(z) + log p(x_i | z) - log q_i(z)].
torch::Tensor sf_exact_grad(const torch::Tensor& x) {
  auto theta0 = torch::tensor({0.2, -0.4, 1.0}, torch::kDouble).requires_grad_(true);
  auto exact = torch::zeros({}, torch::kDouble);
  for (int zi = 0; zi <= 1; ++zi) {
    auto z = torch::full({3}, static_cast<double>(zi), torch::kDouble);
    auto logq = -torch::nn::functional::softplus(zi ? -theta0 : theta0);
    auto logp = std::log(zi ? 0.3 : 0.7) + (-0.5 * (x - (2 * z - 1)).pow(2) - 0.5 * std::log(2 * M_PI));
    exact = exact + (logq.exp() * (logp - logq)).sum();
  }
  return torch::autograd::grad({-exact}, {theta0})[0];
}

// Averages `n` Monte-Carlo gradients of `elbo` and checks each component against the exact
// gradient within 3 standard errors.
void check_sf_gradient(ELBO& elbo, ParamStore& store, int n) {
  auto x = sf_x();
  auto exact_grad = sf_exact_grad(x);
  std::vector<std::vector<double>> g(3);
  for (int i = 0; i < n; ++i) {
    elbo.loss_and_grads(sf_model, sf_guide, x);
    auto u = store.unconstrained("theta");
    for (int j = 0; j < 3; ++j) g[j].push_back(u.grad()[j].item<double>());
    u.mutable_grad().zero_();
  }
  for (int j = 0; j < 3; ++j) {
    auto [m, se] = mean_se(g[j]);
    INFO("component " << j << ": MC " << m << " +- " << se << ", exact " << exact_grad[j].item<double>());
    CHECK(std::abs(m - exact_grad[j].item<double>()) < 3 * se);
  }
}
}  // namespace

TEST_CASE("score-function gradient of Trace_ELBO matches the exact gradient by enumeration") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(4);
  Trace_ELBO elbo;
  check_sf_gradient(elbo, store, 4000);
}

TEST_CASE("vectorised particles keep each particle's own score-function weight") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(14);
  Trace_ELBO elbo(ELBOOptions().num_particles(8).vectorize_particles(true).max_plate_nesting(1));
  check_sf_gradient(elbo, store, 600);
}

TEST_CASE("optimisers follow torch.optim's update rules") {
  // Minimise sum((p - c)^2 * w) with our optimisers through the param store and with
  // LibTorch's own, from the same start; compare after 25 steps.
  auto c = torch::tensor({1.0, -2.0, 0.5}, torch::kDouble), w = torch::tensor({1.0, 3.0, 0.2}, torch::kDouble);
  auto start = torch::tensor({0.1, 0.2, -0.3}, torch::kDouble);
  auto run_ours = [&](Optimizer& opt) {
    ParamStore store;
    ParamStoreScope scope(store);
    store.set("p", start);
    for (int i = 0; i < 25; ++i) {
      auto p = store.unconstrained("p");
      ((p - c).pow(2) * w).sum().backward();
      opt.step({"p"});
    }
    return store.get("p").detach().clone();
  };
  auto run_torch = [&](auto make) {
    auto p = start.clone().requires_grad_(true);
    auto opt = make(std::vector<torch::Tensor>{p});
    for (int i = 0; i < 25; ++i) {
      opt.zero_grad();
      ((p - c).pow(2) * w).sum().backward();
      opt.step();
    }
    return p.detach().clone();
  };
  SUBCASE("Adam") {
    Adam ours(AdamOptions().lr(0.1).weight_decay(0.01));
    auto ref = run_torch([](auto ps) { return torch::optim::Adam(ps, torch::optim::AdamOptions(0.1).weight_decay(0.01)); });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("Adam amsgrad") {
    Adam ours(AdamOptions().lr(0.1).amsgrad(true));
    auto ref = run_torch([](auto ps) { return torch::optim::Adam(ps, torch::optim::AdamOptions(0.1).amsgrad(true)); });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("SGD with Nesterov momentum") {
    SGD ours(SGDOptions().lr(0.05).momentum(0.9).nesterov(true));
    auto ref = run_torch([](auto ps) { return torch::optim::SGD(ps, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true)); });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("RMSprop centered with momentum") {
    RMSprop ours(RMSpropOptions().lr(0.01).momentum(0.5).centered(true));
    auto ref = run_torch(
        [](auto ps) { return torch::optim::RMSprop(ps, torch::optim::RMSpropOptions(0.01).momentum(0.5).centered(true)); });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("Adagrad") {
    Adagrad ours(AdagradOptions().lr(0.3).lr_decay(0.01).initial_accumulator_value(0.1));
    auto ref = run_torch([](auto ps) {
      return torch::optim::Adagrad(ps, torch::optim::AdagradOptions(0.3).lr_decay(0.01).initial_accumulator_value(0.1));
    });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("ClippedAdam without clipping or decay is Adam") {
    // (Pyro adds eps before the bias correction, torch after: compare with eps = 0.)
    ClippedAdam ours(ClippedAdamOptions().lr(0.1).clip_norm(1e9).eps(0));
    auto ref = run_torch([](auto ps) { return torch::optim::Adam(ps, torch::optim::AdamOptions(0.1).eps(0)); });
    CHECK(torch::allclose(run_ours(ours), ref, 1e-12, 1e-12));
  }
  SUBCASE("ClippedAdam decays its learning rate per step") {
    ClippedAdam ours(ClippedAdamOptions().lr(0.1).lrd(0.9));
    run_ours(ours);
    CHECK(ours.learning_rate("p") == doctest::Approx(0.1 * std::pow(0.9, 25)).epsilon(1e-12));
    CHECK(ours.step_count("p") == 25);
  }
}

TEST_CASE("Adam's one-pass update of large params follows torch.optim.Adam") {
  // 100,003 elements: more than one intra-op task, and a tail. The objective's gradient
  // varies per element; compare with LibTorch's Adam after 30 steps.
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (int variant = 0; variant < 3; ++variant) {
      CAPTURE(dtype);
      CAPTURE(variant);
      auto gen = torch::make_generator<at::CPUGeneratorImpl>(11);
      auto c = torch::randn({100003}, gen, torch::TensorOptions().dtype(dtype));
      auto w = torch::rand({100003}, gen, torch::TensorOptions().dtype(dtype)) + 0.1;
      auto start = torch::randn({100003}, gen, torch::TensorOptions().dtype(dtype));
      auto opts = AdamOptions().lr(0.05).weight_decay(variant == 1 ? 0.02 : 0.0).amsgrad(variant == 2);
      auto torch_opts = torch::optim::AdamOptions(0.05).weight_decay(variant == 1 ? 0.02 : 0.0).amsgrad(variant == 2);
      ParamStore store;
      ParamStoreScope scope(store);
      store.set("p", start);
      Adam ours(opts);
      auto ref = start.clone().requires_grad_(true);
      torch::optim::Adam theirs(std::vector<torch::Tensor>{ref}, torch_opts);
      for (int i = 0; i < 30; ++i) {
        auto p = store.unconstrained("p");
        ((p - c).pow(2) * w).sum().backward();
        ours.step({"p"});
        theirs.zero_grad();
        ((ref - c).pow(2) * w).sum().backward();
        theirs.step();
      }
      auto mine = store.get("p").detach();
      // Float: the ops may use fused multiply-adds where the loop does not (last-bit
      // differences, a few ulp after 30 steps); double: to 1e-12.
      const double tol = dtype == torch::kFloat ? 1e-5 : 1e-12;
      CHECK(torch::allclose(mine, ref.detach(), tol, tol));
      CHECK(store.unconstrained("p").grad().abs().max().item<double>() == 0.0);  // zeroed after the step
    }
  }
}

TEST_CASE("a run resumed from a checkpoint continues bit for bit") {
  NormalNormal nn;
  const std::string path = (std::filesystem::temp_directory_path() / "ember_test_svi_resume.ember").string();
  auto make = [&] {
    return SVI(nn.model(), param_guide, ClippedAdam(ClippedAdamOptions().lr(0.05).lrd(0.99)), Trace_ELBO());
  };
  std::vector<double> losses_a;
  torch::Tensor loc_a, scale_a;
  {
    ParamStore store;
    ParamStoreScope scope(store);
    auto s = seed(5);
    auto svi = make();
    for (int i = 0; i < 10; ++i) svi.step(nn.x);
    svi.save(path);
    for (int i = 0; i < 10; ++i) losses_a.push_back(svi.step(nn.x));
    loc_a = store.get("q_loc").detach().clone();
    scale_a = store.get("q_scale").detach().clone();
  }
  {
    torch::manual_seed(12345);  // a different generator state: the checkpoint must restore it
    ParamStore store;
    ParamStoreScope scope(store);
    auto svi = make();
    svi.load(path);
    CHECK(svi.num_steps() == 10);
    CHECK(svi.optim().step_count("q_loc") == 10);
    std::vector<double> losses_b;
    for (int i = 0; i < 10; ++i) losses_b.push_back(svi.step(nn.x));
    CHECK(losses_a == losses_b);
    CHECK(torch::equal(store.get("q_loc"), loc_a));
    CHECK(torch::equal(store.get("q_scale"), scale_a));
  }
  {
    ParamStore store;
    ParamStoreScope scope(store);
    SVI other(nn.model(), param_guide, SGD(), Trace_ELBO());
    CHECK_THROWS_WITH_AS(other.load(path), doctest::Contains("ClippedAdam"), ValueError);
  }
  std::filesystem::remove(path);
}

TEST_CASE("a run with a learning-rate scheduler resumes with its schedule") {
  // Six epochs of three steps, the scheduler stepped after each; interrupted after epoch 3
  // and resumed in fresh objects. StepLR(2) decays after epochs 2, 4 and 6 either way (a
  // fresh schedule would decay after 5); ReduceLROnPlateau keeps its best value and count.
  NormalNormal nn;
  const std::string path = (std::filesystem::temp_directory_path() / "ember_test_svi_resume_sched.ember").string();
  const std::vector<double> metrics = {1.0, 0.9, 0.95, 0.96, 0.97, 0.8};
  for (const std::string kind : {"StepLR", "ReduceLROnPlateau"}) {
    CAPTURE(kind);
    auto make_scheduler = [&](OptimizerPtr adam) -> std::unique_ptr<LRScheduler> {
      if (kind == "StepLR") return std::make_unique<StepLR>(adam, StepLROptions(2).gamma(0.5));
      return std::make_unique<ReduceLROnPlateau>(adam, ReduceLROnPlateauOptions().factor(0.5).patience(1));
    };
    auto epoch = [&](auto& svi, LRScheduler& scheduler, int e) {
      for (int i = 0; i < 3; ++i) svi.step(nn.x);
      if (kind == "StepLR") scheduler.step();
      else scheduler.step(metrics[static_cast<size_t>(e)]);
    };
    torch::Tensor loc_a;
    double lr_a = 0;
    {
      ParamStore store;
      ParamStoreScope scope(store);
      auto s = seed(7);
      auto scheduler = make_scheduler(std::make_shared<Adam>(AdamOptions().lr(0.1)));
      SVI svi(nn.model(), param_guide, scheduler->optimizer(), Trace_ELBO());
      for (int e = 0; e < 3; ++e) epoch(svi, *scheduler, e);
      svi.save(path);
      for (int e = 3; e < 6; ++e) epoch(svi, *scheduler, e);
      loc_a = store.get("q_loc").detach().clone();
      lr_a = svi.optim().learning_rate("q_loc");
      CHECK(scheduler->epoch("q_loc") == 6);
    }
    {
      torch::manual_seed(999);
      ParamStore store;
      ParamStoreScope scope(store);
      auto scheduler = make_scheduler(std::make_shared<Adam>(AdamOptions().lr(0.1)));
      SVI svi(nn.model(), param_guide, scheduler->optimizer(), Trace_ELBO());
      svi.load(path);
      CHECK(scheduler->epoch("q_loc") == 3);
      for (int e = 3; e < 6; ++e) epoch(svi, *scheduler, e);
      CHECK(scheduler->epoch("q_loc") == 6);
      CHECK(svi.optim().learning_rate("q_loc") == lr_a);
      CHECK(torch::equal(store.get("q_loc"), loc_a));
    }
  }
  {
    // Another scheduler's checkpoint: an error naming both, and nothing loaded.
    ParamStore store;
    ParamStoreScope scope(store);
    ExponentialLR scheduler(std::make_shared<Adam>(AdamOptions().lr(0.1)), ExponentialLROptions(0.9));
    SVI svi(nn.model(), param_guide, scheduler.optimizer(), Trace_ELBO());
    CHECK_THROWS_WITH_AS(svi.load(path), doctest::Contains("saved by ReduceLROnPlateau but this optimiser is scheduled by ExponentialLR"),
                         ValueError);
    CHECK(store.size() == 0);
    CHECK(scheduler.epoch("q_loc") == 0);
    // One scheduler per optimiser.
    CHECK_THROWS_WITH_AS(StepLR(scheduler.optimizer(), StepLROptions(1)), doctest::Contains("one learning-rate scheduler per optimiser"),
                         ValueError);
  }
  std::filesystem::remove(path);
}

TEST_CASE("model-guide mismatches and bad shapes and non-finite losses are reported by site name") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(6);
  auto model = [](const torch::Tensor& x) {
    auto a = sample("a", Normal(dbl(0.0), dbl(1.0)));
    auto b = sample("b", Normal(a, dbl(1.0)));
    sample("x", Normal(b, dbl(1.0)), x);
  };
  auto x = dbl(0.3);
  Trace_ELBO elbo;
  auto guide_missing = [](const torch::Tensor&) { sample("a", Normal(dbl(0.0), dbl(1.0))); };
  CHECK_THROWS_WITH_AS(elbo.loss(model, guide_missing, x), doctest::Contains("'b'"), ValueError);
  auto guide_extra = [](const torch::Tensor&) {
    sample("a", Normal(dbl(0.0), dbl(1.0)));
    sample("b", Normal(dbl(0.0), dbl(1.0)));
    sample("c", Normal(dbl(0.0), dbl(1.0)));
  };
  CHECK_THROWS_WITH_AS(elbo.loss(model, guide_extra, x), doctest::Contains("'c'"), ValueError);
  // Warn mode continues (Pyro's behaviour).
  Trace_ELBO lenient(ELBOOptions().mismatch(Mismatch::warn));
  CHECK(std::isfinite(lenient.loss(model, guide_missing, x)));
  // An auxiliary guide site is fine.
  auto guide_aux = [](const torch::Tensor&) {
    InferConfig aux;
    aux.is_auxiliary = true;
    auto u = sample("u", Normal(dbl(0.0), dbl(1.0)), SampleOptions().infer(aux));
    sample("a", Normal(u, dbl(1.0)));
    sample("b", Normal(dbl(0.0), dbl(1.0)));
  };
  CHECK(std::isfinite(elbo.loss(model, guide_aux, x)));
  // Shapes that disagree.
  auto guide_shape = [](const torch::Tensor&) {
    sample("a", Normal(torch::zeros({2}, torch::kDouble), dbl(1.0)).to_event(1));
    sample("b", Normal(dbl(0.0), dbl(1.0)));
  };
  CHECK_THROWS_WITH_AS(elbo.loss(model, guide_shape, x), doctest::Contains("'a'"), ValueError);
  // A batch dim that no plate declares.
  auto model_batch = [](const torch::Tensor&) { sample("w", Normal(torch::zeros({3}, torch::kDouble), dbl(1.0))); };
  auto guide_batch = [](const torch::Tensor&) { sample("w", Normal(torch::zeros({3}, torch::kDouble), dbl(1.0))); };
  CHECK_THROWS_WITH_AS(elbo.loss(model_batch, guide_batch, x), doctest::Contains("no plate"), ValueError);
  // A non-finite loss names the site.
  auto guide_far = [](const torch::Tensor&) {
    sample("a", Normal(dbl(0.0), dbl(1.0)));
    sample("b", Normal(dbl(0.0), dbl(1.0)));
  };
  auto model_inf = [](const torch::Tensor& x) {
    auto a = sample("a", Normal(dbl(0.0), dbl(1.0)));
    auto b = sample("b", Normal(a, dbl(1.0)));
    sample("x", Normal(b, dbl(1.0)), x);
    factor("penalty", dbl(-INFINITY));
  };
  CHECK_THROWS_WITH_AS(elbo.loss(model_inf, guide_far, x), doctest::Contains("'penalty'"), ValueError);
}

namespace {
// Amortised (VAE-style) model: z_i ~ N(0, 1), x_i ~ N(z_i, 0.5); every site is in the data
// plate, so the IWAE bound is per datapoint. The guide is the prior (a poor guide).
torch::Tensor iwae_x() { return torch::tensor({1.2, -0.7, 0.3, 2.0, -1.5, 0.8, 0.0, 1.1, -0.2, 0.6}, torch::kDouble); }
auto iwae_model = [](const torch::Tensor& x) {
  auto p = plate("data", x.size(0));
  auto z = sample("z", Normal(dbl(0.0), dbl(1.0)));
  sample("x", Normal(z, dbl(0.5)), x);
};
auto iwae_prior_guide = [](const torch::Tensor& x) {
  auto p = plate("data", x.size(0));
  sample("z", Normal(dbl(0.0), dbl(1.0)));
};
}  // namespace

TEST_CASE("the importance-weighted bound is per datapoint: tight for an amortised model, looser with fewer particles") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(7);
  const auto x = iwae_x();
  const double sig = 0.5;
  // Closed forms: log p(x_i) = log N(x_i; 0, sqrt(1 + sig^2)); with the prior as proposal
  // w_i = N(x_i; z, sig) and Var(w_i / p(x_i)) = E[w_i^2] / p(x_i)^2 - 1, where
  // E[N(x; z, sig)^2] = N(x; 0, sqrt(1 + sig^2 / 2)) / (2 sqrt(pi) sig).
  auto log_normal = [](const torch::Tensor& v, double sd) { return -0.5 * (v / sd).pow(2) - std::log(sd) - 0.5 * std::log(2 * M_PI); };
  const auto log_px = log_normal(x, std::sqrt(1 + sig * sig));
  const auto rel_var = (log_normal(x, std::sqrt(1 + sig * sig / 2)) - std::log(2 * std::sqrt(M_PI) * sig) - 2 * log_px).exp() - 1;
  const double log_z = log_px.sum().item<double>();
  auto avg = [&](ELBO& e, int reps) {
    std::vector<double> v;
    for (int i = 0; i < reps; ++i) v.push_back(-e.loss(iwae_model, iwae_prior_guide, x));
    return mean_se(v);
  };
  const int64_t k = 50;
  auto iwae = IWAE_ELBO(k);
  auto k50 = avg(iwae, 200);
  // E[log mean_k w_ik] = log p(x_i) - Var_i / (2K) + O(1/K^2) per datapoint. (The bound of the
  // whole dataset, log mean_k prod_i w_ik, has relative variance prod_i (1 + Var_i) - 1 ~ 2e3
  // here and would sit several nats lower.)
  const double gap = (rel_var / (2.0 * k)).sum().item<double>();
  INFO("IWAE " << k50.first << " +- " << k50.second << ", log p(x) " << log_z << ", predicted gap " << gap);
  CHECK(k50.first < log_z + 3 * k50.second);
  CHECK(std::abs(k50.first - (log_z - gap)) < 3 * k50.second + 0.25 * gap);
  // Fewer particles: looser; Trace_ELBO (K = 1): looser still.
  auto iwae5 = IWAE_ELBO(5);
  auto k5 = avg(iwae5, 200);
  Trace_ELBO elbo;
  auto k1 = avg(elbo, 400);
  CHECK(k5.first < k50.first - 3 * std::hypot(k5.second, k50.second));
  CHECK(k1.first < k5.first - 3 * std::hypot(k1.second, k5.second));
  // Vectorised particles: the particle plate is shared by every site too; same bound.
  RenyiELBO vec(0.0, ELBOOptions().num_particles(k).vectorize_particles(true));
  auto k50v = avg(vec, 200);
  CHECK(std::abs(k50.first - k50v.first) < 4 * std::hypot(k50.second, k50v.second));
}

TEST_CASE("two models trained in two threads do not see each other's handlers or params") {
  // Both threads use the same site and param names; a shared handler stack would make the
  // traces collide ("Multiple sample sites"), a shared param store would mix the answers.
  // (LibTorch's default generator is shared, so the draws interleave nondeterministically:
  // the tolerance covers the optimiser's stationary noise, averaged over the last iterates.)
  auto train = [](double shift, double* loc_out) {
    ParamStore store;
    ParamStoreScope scope(store);
    NormalNormal nn;
    nn.x = nn.x + shift;
    SVI svi(nn.model(), param_guide, ClippedAdam(ClippedAdamOptions().lr(0.05).lrd(0.993)),
            Trace_ELBO(ELBOOptions().num_particles(2)));
    double avg = 0;
    for (int i = 0; i < 800; ++i) {
      svi.step(nn.x);
      if (i >= 600) avg += store.get("q_loc").item<double>() / 200.0;
    }
    *loc_out = avg - nn.post_mean();
  };
  double d1 = 1e9, d2 = 1e9;
  std::thread t1(train, 0.0, &d1), t2(train, 2.0, &d2);
  t1.join();
  t2.join();
  // 0.1 posterior standard deviations (the two answers are 4.4 sd apart).
  CHECK(std::abs(d1) < 0.044);
  CHECK(std::abs(d2) < 0.044);
}

namespace {
// Beta-Bernoulli: p ~ Beta(2, 3); 10 flips with 7 heads. Posterior Beta(9, 6).
torch::Tensor flips() { return torch::tensor({1., 1., 0., 1., 1., 0., 1., 1., 0., 1.}, torch::kDouble); }
auto beta_model = [](const torch::Tensor& x) {
  auto p = sample("p", dist::Beta(dbl(2.0), dbl(3.0)));
  auto d = plate("flips", x.size(0));
  sample("x", Bernoulli(p), x);
};
double log_beta_fn(double a, double b) { return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b); }
}  // namespace

TEST_CASE("Beta-Bernoulli: SVI with a Beta guide recovers the conjugate posterior") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(8);
  auto guide = [](const torch::Tensor&) {
    auto a = param("alpha_q", dbl(1.0), constraints::positive());
    auto b = param("beta_q", dbl(1.0), constraints::positive());
    sample("p", dist::Beta(a, b));
  };
  SVI svi(beta_model, guide, ClippedAdam(ClippedAdamOptions().lr(0.05).lrd(0.998)),
          Trace_ELBO(ELBOOptions().num_particles(4)));
  double mean = 0, sd = 0;
  const int steps = 2000, tail = 300;
  for (int i = 0; i < steps; ++i) {
    svi.step(flips());
    if (i >= steps - tail) {
      const double a = store.get("alpha_q").item<double>(), b = store.get("beta_q").item<double>();
      mean += a / (a + b) / tail;
      sd += std::sqrt(a * b / ((a + b) * (a + b) * (a + b + 1))) / tail;
    }
  }
  const double post_mean = 9.0 / 15.0, post_sd = std::sqrt(9.0 * 6.0 / (15.0 * 15.0 * 16.0));
  // Within 0.15 posterior sd for the mean and 10% for the sd (the optimiser's stationary noise).
  CHECK(std::abs(mean - post_mean) < 0.15 * post_sd);
  CHECK(sd == doctest::Approx(post_sd).epsilon(0.1));
}

TEST_CASE("Beta-Bernoulli: TraceMeanField_ELBO with the exact posterior uses the registry's KL and averages to log p(x)") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto s = seed(9);
  auto exact = [](const torch::Tensor&) { sample("p", dist::Beta(dbl(9.0), dbl(6.0))); };
  const double log_z = log_beta_fn(9.0, 6.0) - log_beta_fn(2.0, 3.0);
  REQUIRE(analytic_kl(dist::Beta(dbl(9.0), dbl(6.0)), dist::Beta(dbl(2.0), dbl(3.0))).has_value());
  TraceMeanField_ELBO mf;
  Trace_ELBO tr;
  std::vector<double> a, b;
  for (int i = 0; i < 1000; ++i) {
    a.push_back(mf.loss(beta_model, exact, flips()));
    b.push_back(tr.loss(beta_model, exact, flips()));
  }
  auto [ma, sea] = mean_se(a);
  auto [mb, seb] = mean_se(b);
  CHECK(std::abs(ma + log_z) < 3 * sea);
  CHECK(mb == doctest::Approx(-log_z).epsilon(1e-9));  // exact posterior: zero variance
}

TEST_CASE("RenyiELBO with one particle has Trace_ELBO's pathwise gradient") {
  ParamStore store;
  ParamStoreScope scope(store);
  NormalNormal nn;
  auto model = nn.model();
  auto grads = [&](ELBO& e) {
    auto s = seed(13);
    e.loss_and_grads(model, param_guide, nn.x);
    auto g = torch::stack({store.unconstrained("q_loc").grad().clone(), store.unconstrained("q_scale").grad().clone()});
    store.unconstrained("q_loc").mutable_grad().zero_();
    store.unconstrained("q_scale").mutable_grad().zero_();
    return g;
  };
  Trace_ELBO tr;
  RenyiELBO renyi(0.5, ELBOOptions().num_particles(1));
  auto a = grads(tr);
  auto b = grads(renyi);
  CHECK(torch::allclose(a, b, 1e-12, 1e-12));
}

// ------------------------------------------------------------- TraceGraph_ELBO: variance

namespace {

// 20 reparameterised latents with their own data, then a Bernoulli z that only x depends on.
torch::Tensor tg_y() { return torch::linspace(-1.5, 2.0, 20, torch::kDouble); }
auto tg_var_model = [] {
  {
    auto feat = plate("feat", 20);
    auto w = sample("w", Normal(dbl(0.0), dbl(1.0)));
    sample("y", Normal(w, dbl(0.5)), tg_y());
  }
  auto z = sample("z", Bernoulli(dbl(0.3)));
  sample("x", Normal(2 * z - 1, dbl(1.0)), dbl(0.8));
};
auto tg_var_guide = [] {
  auto loc = param("w_loc", torch::zeros({20}, torch::kDouble));
  auto scale_ = param("w_scale", torch::full({20}, 0.8, torch::kDouble), constraints::positive());
  {
    auto feat = plate("feat", 20);
    sample("w", Normal(loc, scale_));
  }
  auto phi = param("phi", dbl(0.2));
  sample("z", Bernoulli(dist::Logits{phi}));
};

struct GradStats {
  double mean = 0, var = 0, var_se = 0;
};

// Mean and variance of d loss / d phi over n draws, with the standard error of the variance
// estimate from the fourth central moment.
GradStats phi_grad_stats(ELBO& elbo, int64_t n) {
  ParamStore store;
  ParamStoreScope scope(store);
  std::vector<double> g;
  for (int64_t i = 0; i < n; ++i) {
    for (const auto& name : store.names())
      if (store.unconstrained(name).grad().defined()) store.unconstrained(name).mutable_grad().zero_();
    elbo.loss_and_grads(tg_var_model, tg_var_guide);
    g.push_back(store.unconstrained("phi").grad().item<double>());
  }
  GradStats s;
  for (double v : g) s.mean += v / static_cast<double>(n);
  double m4 = 0;
  for (double v : g) {
    s.var += (v - s.mean) * (v - s.mean) / static_cast<double>(n - 1);
    m4 += std::pow(v - s.mean, 4) / static_cast<double>(n);
  }
  s.var_se = std::sqrt(std::max(m4 - s.var * s.var, 0.0) / static_cast<double>(n));
  return s;
}

}  // namespace

TEST_CASE("TraceGraph_ELBO - same expected gradient as Trace_ELBO, lower variance (ratio measured)") {
  // Exact d loss / d phi: only z's terms depend on phi; sum over z in {0, 1}.
  auto phi = dbl(0.2).requires_grad_(true);
  torch::Tensor f = torch::zeros({}, torch::kDouble);
  for (int z = 0; z <= 1; ++z) {
    auto log_q = z ? torch::log_sigmoid(phi) : torch::log_sigmoid(-phi);
    const double log_p = std::log(z ? 0.3 : 0.7) + (-0.5 * std::pow(0.8 - (2 * z - 1), 2) - 0.5 * std::log(2 * M_PI));
    f = f + log_q.exp() * (log_p - log_q);
  }
  const double exact = -torch::autograd::grad({f}, {phi})[0].item<double>();
  const int64_t n = 4000;
  torch::manual_seed(11);
  Trace_ELBO trace_elbo;
  const GradStats full = phi_grad_stats(trace_elbo, n);
  torch::manual_seed(11);
  TraceGraph_ELBO graph_elbo;
  const GradStats graph = phi_grad_stats(graph_elbo, n);
  const double ratio = full.var / graph.var;
  MESSAGE("d loss/d phi: exact " << exact << ", Trace_ELBO mean " << full.mean << " var " << full.var
                                 << ", TraceGraph_ELBO mean " << graph.mean << " var " << graph.var
                                 << ", variance ratio Trace/TraceGraph " << ratio);
  CHECK(std::abs(full.mean - exact) < 4.5 * std::sqrt(full.var / n));
  CHECK(std::abs(graph.mean - exact) < 4.5 * std::sqrt(graph.var / n));
  // The ratio's lower bound, each variance moved 4.5 standard errors against the claim.
  CHECK((full.var - 4.5 * full.var_se) / (graph.var + 4.5 * graph.var_se) > 1.0);
}
