// Section 5.3's studies: M2's enumerated ELBO against an explicit sum over the classes, the
// auxiliary term's weight, the causal task's teacher labels, and the mechanisms study's fits.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "examples/mechanisms/mechanisms.h"
#include "examples/semi_supervised/semi_supervised.h"
#include "inference/enum.h"
#include "inference/svi.h"

using namespace ember;
namespace ss = ember::semi_supervised;
namespace mech = ember::mechanisms;

namespace {

torch::Tensor test_images(int64_t n, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  return at::rand({n, ss::kPixels}, g, torch::kDouble);
}

// Copies every parameter of `from`'s networks into `to`'s (same options).
void copy_weights(ss::M2& from, ss::M2& to) {
  torch::NoGradGuard no_grad;
  auto copy = [](torch::nn::Module& a, torch::nn::Module& b) {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    for (const auto& p : pa) pb[p.key()].copy_(p.value());
  };
  copy(*from.classifier(), *to.classifier());
  copy(*from.encoder_z(), *to.encoder_z());
  copy(*from.decoder(), *to.decoder());
}

// n unlabelled test images as a minibatch of the whole (n-image) unlabelled set.
ss::Minibatch unlabelled_minibatch(int64_t n, uint64_t seed) {
  ss::Minibatch b;
  b.unlabelled = test_images(n, seed);
  b.unlabelled_index = torch::arange(n);
  b.unlabelled_total = n;
  return b;
}

// The negative ELBO of unlabelled images x with y summed out by hand, written independently of
// TraceEnum_ELBO: -sum_b sum_c q(c | x_b) [log p(x_b | c, z) + log p(c) + log p(z) - log q(z | x_b, c)
// - log q(c | x_b)], with z = loc + sd * eps[c] (eps: [classes, n, z_dim]); differentiable.
torch::Tensor explicit_enumerated_loss(ss::M2& m2, const torch::Tensor& x, const torch::Tensor& eps) {
  const int64_t n = x.size(0);
  auto log_q = torch::log_softmax(m2.classifier()->forward(x), -1);
  auto loss = torch::zeros({}, torch::kDouble);
  for (int64_t c = 0; c < ss::kClasses; ++c) {
    auto y = torch::zeros({n, ss::kClasses}, torch::kDouble);
    y.select(1, c).fill_(1.0);
    auto [loc, sd] = m2.encoder_z()->forward(x, y);
    auto z = loc + sd * eps[c];
    auto p = m2.decoder()->forward(z, y);
    auto log_px = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1);
    auto log_pz = (-0.5 * z.pow(2) - 0.5 * std::log(2 * M_PI)).sum(-1);
    auto log_qz = (-0.5 * ((z - loc) / sd).pow(2) - sd.log() - 0.5 * std::log(2 * M_PI)).sum(-1);
    auto lq = log_q.select(1, c);
    loss = loss - (lq.exp() * (log_px + std::log(0.1) + log_pz - log_qz - lq)).sum();
  }
  return loss;
}

}  // namespace

TEST_CASE("M2: enumerating y inside the data plate equals the explicit sum over the 10 classes") {
  clear_param_store();
  torch::manual_seed(3);
  ss::M2 m2(ss::M2Options().z_dim(3).hidden_dim(8), torch::kCPU, torch::kDouble);
  const int64_t n = 4;
  auto b = unlabelled_minibatch(n, 11);
  auto model = [&m2](const ss::Minibatch& mb) { m2.model(mb); };
  auto guide = [&m2](const ss::Minibatch& mb) { m2.training_guide(mb); };
  infer::TraceEnum_ELBO elbo(infer::ELBOOptions().max_plate_nesting(1));
  // The guide's only random draw is z's noise for every (class, image): fix it by the seed.
  torch::manual_seed(123);
  const double loss = elbo.loss(model, guide, b);
  torch::manual_seed(123);
  auto eps = torch::randn({ss::kClasses, n, 3}, torch::kDouble);
  torch::NoGradGuard no_grad;
  CHECK(loss == doctest::Approx(explicit_enumerated_loss(m2, b.unlabelled, eps).item<double>()).epsilon(1e-10));
}

TEST_CASE("M2: the enumerated loss's gradient on q(y | x) equals the explicit sum's") {
  // The loss value alone does not show that q(y | x)'s probabilities are differentiated as
  // weights of the exact expectation; compare gradients on the classifier's parameters.
  clear_param_store();
  torch::manual_seed(5);
  ss::M2 m2(ss::M2Options().z_dim(3).hidden_dim(8), torch::kCPU, torch::kDouble);
  const int64_t n = 4;
  auto b = unlabelled_minibatch(n, 13);
  auto model = [&m2](const ss::Minibatch& mb) { m2.model(mb); };
  auto guide = [&m2](const ss::Minibatch& mb) { m2.training_guide(mb); };
  infer::TraceEnum_ELBO elbo(infer::ELBOOptions().max_plate_nesting(1));
  auto params = m2.classifier()->parameters();
  torch::manual_seed(321);
  auto surrogate = elbo.differentiable_loss(model, guide, b);
  auto enumerated = torch::autograd::grad({surrogate}, params);
  torch::manual_seed(321);
  auto eps = torch::randn({ss::kClasses, n, 3}, torch::kDouble);

  auto explicit_loss = explicit_enumerated_loss(m2, b.unlabelled, eps);
  auto expected = torch::autograd::grad({explicit_loss}, params);
  REQUIRE(enumerated.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(expected[i].abs().max().item<double>() > 1e-6);  // the check compares something
    CHECK(torch::allclose(enumerated[i], expected[i], 1e-9, 1e-10));
  }
}

TEST_CASE("M2: the auxiliary classifier term enters the loss with weight alpha") {
  clear_param_store();
  torch::manual_seed(5);
  const double alpha = 2.5;
  ss::M2 weighted(ss::M2Options().z_dim(2).hidden_dim(6).aux_weight(alpha), torch::kCPU, torch::kDouble);
  ss::M2 plain(ss::M2Options().z_dim(2).hidden_dim(6).aux_weight(0), torch::kCPU, torch::kDouble);
  copy_weights(weighted, plain);
  // 3 labelled images drawn from a set of 6: plate "labelled" scales their terms by 2.
  ss::Minibatch b;
  b.labelled = test_images(3, 17);
  b.labels = torch::one_hot(torch::tensor({4, 0, 9}), ss::kClasses).to(torch::kDouble);
  b.labelled_index = torch::tensor({1, 3, 5});
  b.labelled_total = 6;
  auto loss_of = [&](ss::M2& m2) {
    clear_param_store();
    auto model = [&m2](const ss::Minibatch& mb) { m2.model(mb); };
    auto guide = [&m2](const ss::Minibatch& mb) { m2.training_guide(mb); };
    torch::manual_seed(99);  // the same z draws in both runs
    return infer::TraceEnum_ELBO(infer::ELBOOptions().max_plate_nesting(1)).loss(model, guide, b);
  };
  const double with_aux = loss_of(weighted), without = loss_of(plain);
  torch::NoGradGuard no_grad;
  const double log_q = (torch::log_softmax(weighted.classifier()->forward(b.labelled), -1) * b.labels).sum().item<double>();
  CHECK(with_aux - without == doctest::Approx(-alpha * 2.0 * log_q).epsilon(1e-10));
  CHECK(with_aux - without > 0);
}

TEST_CASE("M2: the labels-only classifier model is alpha-free cross-entropy on the labelled plate") {
  clear_param_store();
  torch::manual_seed(6);
  ss::M2 m2(ss::M2Options().z_dim(2).hidden_dim(6).aux_weight(7), torch::kCPU, torch::kDouble);
  ss::Minibatch b;
  b.labelled = test_images(2, 19);
  b.labels = torch::one_hot(torch::tensor({1, 2}), ss::kClasses).to(torch::kDouble);
  b.labelled_index = torch::tensor({0, 1});
  b.labelled_total = 8;
  auto model = [&m2](const ss::Minibatch& mb) { m2.classifier_model(mb); };
  auto guide = [](const ss::Minibatch&) {};
  const double loss = infer::Trace_ELBO().loss(model, guide, b);
  torch::NoGradGuard no_grad;
  const double log_q = (torch::log_softmax(m2.classifier()->forward(b.labelled), -1) * b.labels).sum().item<double>();
  CHECK(loss == doctest::Approx(-4.0 * log_q).epsilon(1e-10));
}

TEST_CASE("teacher: causal-task labels are a deterministic function of the image and the seed") {
  auto calibration = test_images(400, 23).to(torch::kFloat).pow(3);  // sparse-ish "ink"
  ss::Teacher teacher(7, 0.2, calibration);
  auto images = test_images(300, 29).to(torch::kFloat).pow(3);
  auto labels = teacher.labels(images);
  // The same image gets the same label whatever else is labelled with it and in which order.
  auto order = torch::randperm(300);
  CHECK(torch::equal(teacher.labels(images.index_select(0, order)), labels.index_select(0, order)));
  CHECK(torch::equal(teacher.labels(images.narrow(0, 100, 7)), labels.narrow(0, 100, 7)));
  // A teacher rebuilt from the same seed agrees; another seed is another mechanism.
  CHECK(torch::equal(ss::Teacher(7, 0.2, calibration).labels(images), labels));
  CHECK(ss::Teacher(8, 0.2, calibration).labels(images).ne(labels).to(torch::kDouble).mean().item<double>() > 0.5);
  // Noise: a share 0.2 * 9/10 of labels differ from the noise-free argmax (binomial, 4 SE).
  auto big = test_images(4000, 31).to(torch::kFloat).pow(3);
  const double flipped = teacher.labels(big).ne(teacher.logits(big).argmax(1)).to(torch::kDouble).mean().item<double>();
  CHECK(std::abs(flipped - 0.18) < 4 * std::sqrt(0.18 * 0.82 / 4000));
  // The offsets balance the calibration images' classes.
  auto counts = torch::bincount(ss::Teacher(7, 0.0, calibration).labels(calibration), {}, ss::kClasses);
  CHECK(counts.min().item<int64_t>() >= 30);
  CHECK(counts.max().item<int64_t>() <= 50);
}

TEST_CASE("semi-supervised: balanced labelled subsets and 95% intervals") {
  auto labels = torch::arange(200).remainder(10);
  auto data = ss::draw_labelled_subset(test_images(200, 1), labels, 50, 4);
  CHECK(data.labelled.size(0) == 50);
  CHECK(data.unlabelled.size(0) == 150);
  CHECK(torch::equal(torch::bincount(labels.index_select(0, data.labelled), {}, 10), torch::full({10}, 5, torch::kLong)));
  CHECK(std::get<0>(torch::cat({data.labelled, data.unlabelled}).sort()).equal(torch::arange(200)));
  CHECK_THROWS_AS(ss::draw_labelled_subset(test_images(200, 1), labels, 55, 4), ValueError);
  CHECK_THROWS_AS(ss::draw_labelled_subset(test_images(200, 1), labels, 300, 4), ValueError);
  auto ci = ss::interval95({0.5, 0.6, 0.7});
  CHECK(ci.mean == doctest::Approx(0.6));
  CHECK(ci.high - ci.mean == doctest::Approx(4.303 * 0.1 / std::sqrt(3.0)));
}

TEST_CASE("mechanisms: with infinite data both factorisations reach the joint's likelihood") {
  std::mt19937_64 rng(42);
  auto truth = mech::random_pair(10, rng);
  // The intervention on the cause, then "infinite data": every cell weighted by its probability.
  truth.p_a = mech::flat_dirichlet(10, rng);
  auto joint = truth.joint();
  auto cells = torch::arange(100);
  mech::Observations exact{cells.div(10, "floor"), cells.remainder(10), joint.flatten()};
  const double optimum = (joint * joint.log()).sum().item<double>();
  double reached[2] = {0, 0};
  for (auto f : {mech::Factorisation::causal, mech::Factorisation::anti_causal}) {
    ParamStore store;
    ParamStoreScope scope(store);
    // Start from the pre-shift joint (as adaptation does), not from uniform.
    mech::CausalPair before = truth;
    std::mt19937_64 other(7);
    before.p_a = mech::flat_dirichlet(10, other);
    mech::set_from_joint(f, before.joint());
    // Full-batch Adam, then smaller steps to settle on the optimum (a convex problem).
    for (double lr : {0.05, 0.005, 0.0005}) mech::fit(f, 10, exact, mech::FitOptions().steps(1500).lr(lr));
    reached[f == mech::Factorisation::causal ? 0 : 1] = mech::expected_log_likelihood(f, truth);
    // The fitted parameters are the true marginal and conditional of the factorisation.
    auto log_joint = mech::model_log_joint(f, 10);
    CHECK(torch::allclose(log_joint.exp(), joint, 0, 1e-5));
    auto marginal = torch::softmax(store.get(f == mech::Factorisation::causal ? "A.logits" : "B.logits"), 0);
    CHECK(torch::allclose(marginal, f == mech::Factorisation::causal ? joint.sum(1) : joint.sum(0), 0, 1e-5));
  }
  CHECK(reached[0] == doctest::Approx(optimum).epsilon(1e-9));
  CHECK(reached[1] == doctest::Approx(optimum).epsilon(1e-9));
  CHECK(reached[0] == doctest::Approx(reached[1]).epsilon(1e-9));
}

TEST_CASE("mechanisms: fitted P(A) and P(B | A) match the empirical frequencies within their standard error") {
  std::mt19937_64 rng(9);
  auto truth = mech::random_pair(10, rng);
  const int64_t n = 20000;
  auto [a, b] = truth.sample(n, rng);
  ParamStore store;
  ParamStoreScope scope(store);
  mech::fit(mech::Factorisation::causal, 10, {a, b, {}}, mech::FitOptions().steps(1500).lr(0.1));
  auto fitted_a = torch::softmax(store.get("A.logits"), 0);
  auto fitted_b_given_a = torch::softmax(store.get("B|A.logits"), 1);
  auto count_a = torch::bincount(a, {}, 10).to(torch::kDouble);
  auto freq_a = count_a / double(n);
  auto se_a = (freq_a * (1 - freq_a) / double(n)).sqrt();
  // The MLE is the empirical frequency; the fit must be far inside one standard error of it.
  CHECK(((fitted_a - freq_a).abs() <= 0.05 * se_a + 1e-9).all().item<bool>());
  auto counts = torch::bincount(a * 10 + b, {}, 100).to(torch::kDouble).reshape({10, 10});
  for (int64_t k = 0; k < 10; ++k) {
    const double na = count_a[k].item<double>();
    REQUIRE(na > 50);
    auto freq = counts[k] / na;
    auto se = (freq * (1 - freq) / na).sqrt().clamp_min(1.0 / na);
    CHECK(((fitted_b_given_a[k] - freq).abs() <= 0.1 * se).all().item<bool>());
  }
  // And the frequencies estimate the truth: within 4 standard errors.
  CHECK(((freq_a - truth.p_a).abs() <= 4 * (truth.p_a * (1 - truth.p_a) / double(n)).sqrt()).all().item<bool>());
  // Fitting the counts of the distinct cells is the same likelihood as fitting the rows.
  ParamStore by_cells;
  ParamStoreScope cells_scope(by_cells);
  mech::fit(mech::Factorisation::causal, 10, mech::count_cells(a, b, 10), mech::FitOptions().steps(1500).lr(0.1));
  CHECK(torch::allclose(torch::softmax(by_cells.get("A.logits"), 0), fitted_a, 0, 1e-9));
}

TEST_CASE("mechanisms: the causal model adapts faster after an intervention on the cause") {
  // A small end-to-end shift: averaged over a few shifts the causal curve ends above.
  mech::StudyOptions o;
  o.shifts(1).pretrain_samples(5000).pretrain_steps(400).max_samples(100).lr(0.1);
  double gap = 0;
  for (uint64_t s = 0; s < 4; ++s) {
    auto r = mech::run_shift(mech::Shift::cause, o, 100 + s);
    REQUIRE(r.causal.size() == mech::checkpoints(100).size());
    CHECK(r.causal.back() <= r.optimum + 1e-12);
    gap += r.causal.back() - r.anti_causal.back();
  }
  CHECK(gap > 0);
}
