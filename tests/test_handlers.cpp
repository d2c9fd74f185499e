// Each handler's semantics, and handlers composed.
#include <doctest/doctest.h>

#include <cmath>

#include "ppl/ppl.h"
#include "pyro_fixture.h"
#include "test_util.h"

using namespace ember;
using ember::testing::error_of;
using ember::testing::normal_log_prob;
using dist::Bernoulli;
using dist::Normal;

namespace {

// z ~ N(0, 1); x ~ N(z, 2) observed or not; y ~ N(x + z, 1).
torch::Tensor chain() {
  auto z = sample("z", Normal(0.0, 1.0));
  auto x = sample("x", Normal(z, 2.0));
  return sample("y", Normal(x + z, 1.0));
}

}  // namespace

TEST_CASE("condition observes named sites at the given values") {
  auto conditioned = condition(chain, {{"x", torch::tensor(0.7)}});
  Trace t = trace(conditioned).get_trace();
  CHECK(t.at("x").is_observed);
  CHECK(t.at("x").value.item<double>() == doctest::Approx(0.7));
  CHECK_FALSE(t.at("z").is_observed);
  CHECK(t.stochastic_nodes() == std::vector<std::string>{"z", "y"});
}

TEST_CASE("condition on a trace observes its sample sites") {
  Trace t0 = trace(chain).get_trace();
  Trace t1;
  {
    ConditionMessenger c(t0);
    auto tr = trace();
    chain();
    t1 = tr.get_trace();
  }
  for (const char* n : {"z", "x", "y"}) {
    CHECK(t1.at(n).is_observed);
    CHECK(t1.at(n).value.equal(t0.at(n).value));
  }
}

TEST_CASE("uncondition turns observations into draws and keeps the observation in infer") {
  auto model = [] { return sample("x", Normal(0.0, 1.0), torch::tensor(5.0)); };
  torch::manual_seed(3);
  Trace t = trace(uncondition(model)).get_trace();
  CHECK_FALSE(t.at("x").is_observed);
  CHECK(t.at("x").infer.was_observed);
  CHECK(t.at("x").infer.obs.item<double>() == 5.0);
  CHECK(t.at("x").value.item<double>() != 5.0);
}

TEST_CASE("trace(replay(condition(model))) gives the joint log-density computed by hand") {
  torch::manual_seed(7);
  Trace guide_trace = trace(chain).get_trace();  // values for z (and x, y, ignored when observed)
  auto model = condition(chain, {{"y", torch::tensor(1.25)}});
  Trace t = trace(replay(model, guide_trace)).get_trace();
  const double z = guide_trace.at("z").value.item<double>();
  const double x = guide_trace.at("x").value.item<double>();
  CHECK(t.at("z").value.item<double>() == z);
  CHECK(t.at("x").value.item<double>() == x);
  CHECK(t.at("y").value.item<double>() == 1.25);
  const double expected = normal_log_prob(z, 0, 1) + normal_log_prob(x, z, 2) + normal_log_prob(1.25, x + z, 1);
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("replay refuses to replay a site observed in the replayed trace") {
  Trace observed = trace(condition(chain, {{"x", torch::tensor(0.0)}})).get_trace();
  auto msg = error_of([&] { trace(replay(chain, observed)).get_trace(); });
  CHECK(msg.find("site 'x' must be sampled in the replayed trace") != std::string::npos);
}

TEST_CASE("replay gives the model the guide's plate subsample") {
  torch::manual_seed(11);
  auto program = [] {
    auto p = plate("data", 1000, PlateOptions().subsample_size(5));
    return p.indices();
  };
  Trace guide = trace(program).get_trace();
  Trace model = trace(replay(program, guide)).get_trace();
  CHECK(model.at("data").value.equal(guide.at("data").value));
}

TEST_CASE("block hides sites from outer handlers only") {
  auto model = [] {
    sample("a", Normal(0.0, 1.0));
    sample("b", Normal(0.0, 1.0));
  };
  {
    auto outer = trace();
    {
      auto blocked = block(BlockOptions().hide({"a"}));
      auto inner = trace();
      model();
      CHECK(inner.trace().contains("a"));  // inside the block: visible
      CHECK(inner.trace().contains("b"));
    }
    CHECK_FALSE(outer.trace().contains("a"));  // outside: hidden
    CHECK(outer.trace().contains("b"));
  }
  // Default: hide everything; expose: hide all others; types.
  CHECK(trace(block(model)).get_trace().size() == 0);
  Trace exposed = trace(block(model, BlockOptions().expose({"b"}))).get_trace();
  CHECK(exposed.size() == 1);
  CHECK(exposed.contains("b"));
  auto mixed = [] {
    sample("lat", Normal(0.0, 1.0));
    sample("obs", Normal(0.0, 1.0), torch::tensor(0.0));
  };
  Trace no_obs = trace(block(mixed, BlockOptions().hide_types({"observe"}))).get_trace();
  CHECK(no_obs.contains("lat"));
  CHECK_FALSE(no_obs.contains("obs"));
  CHECK_THROWS_AS(block(BlockOptions().hide({"a"}).expose({"a"})), ValueError);
}

TEST_CASE("do_ intervenes: downstream sees the value, the site no longer depends on its parents") {
  torch::manual_seed(5);
  const int64_t n = 20000;
  // x depends strongly on z; y depends on x.
  auto model = [&] {
    auto p = plate("n", n);
    auto z = sample("z", Normal(0.0, 1.0));
    auto x = sample("x", Normal(3 * z, 0.1));
    return sample("y", Normal(x, 0.1));
  };
  auto intervened = do_(model, {{"x", torch::full({n}, 2.0)}});
  Trace t = trace(intervened).get_trace();
  // The original x is still sampled from its mechanism and traced under its own name...
  REQUIRE(t.contains("x"));
  CHECK_FALSE(t.at("x").is_observed);
  // ...the intervened copy is hidden from handlers outside do_...
  CHECK_FALSE(t.contains("x__CF"));
  // ...and downstream y follows the intervention (mean 2), independent of z.
  auto y = t.at("y").value, z = t.at("z").value;
  CHECK(y.mean().item<double>() == doctest::Approx(2.0).epsilon(0.01));
  auto corr = ((y - y.mean()) * (z - z.mean())).mean() / (y.std() * z.std());
  CHECK(std::abs(corr.item<double>()) < 4.0 / std::sqrt(static_cast<double>(n)));
  // Without the intervention y tracks z.
  Trace t0 = trace(model).get_trace();
  auto y0 = t0.at("y").value, z0 = t0.at("z").value;
  auto corr0 = ((y0 - y0.mean()) * (z0 - z0.mean())).mean() / (y0.std() * z0.std());
  CHECK(corr0.item<double>() > 0.9);
}

TEST_CASE("do_ inside a trace: handlers within do_ see the intervened site as observed") {
  auto model = [] {
    auto x = sample("x", Normal(0.0, 1.0));
    return sample("y", Normal(x, 1.0));
  };
  auto inner_traced = [&] {
    auto tr = trace();
    model();
    return tr.get_trace();
  };
  Trace inner;
  {
    auto d = do_({{"x", torch::tensor(1.0)}});
    inner = inner_traced();
  }
  CHECK(inner.contains("x"));
  REQUIRE(inner.contains("x__CF"));
  CHECK(inner.at("x__CF").is_observed);
  CHECK(inner.at("x__CF").value.item<double>() == 1.0);
}

TEST_CASE("scale multiplies log-probs and rejects non-positive factors") {
  auto model = [] { sample("x", Normal(0.0, 1.0), torch::tensor(0.0)); };
  Trace t = trace(scale(model, 3.0)).get_trace();
  CHECK(t.at("x").scale == 3.0);
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(3 * normal_log_prob(0, 0, 1)));
  CHECK_THROWS_AS(scale(0.0), ValueError);
  CHECK_THROWS_AS(scale(-1.0), ValueError);
}

TEST_CASE("mask zeroes masked log-probs, nested masks combine with and") {
  auto model = [] {
    auto p = plate("data", 3);
    sample("x", Normal(0.0, 1.0), torch::zeros({3}));
  };
  Trace t;
  {
    auto m1 = mask(torch::tensor({true, true, false}));
    auto m2 = mask(torch::tensor({false, true, true}));
    t = trace(model).get_trace();
  }
  t.compute_log_prob();
  auto lp = t.at("x").log_prob;
  CHECK(lp[0].item<double>() == 0.0);
  CHECK(lp[1].item<double>() == doctest::Approx(normal_log_prob(0, 0, 1)));
  CHECK(lp[2].item<double>() == 0.0);
  Trace off = trace(mask(model, torch::tensor(false))).get_trace();
  CHECK(off.log_prob_sum().item<double>() == 0.0);
  CHECK_THROWS_AS(mask(torch::ones({2})), ValueError);
}

TEST_CASE("seed makes runs bit-for-bit reproducible and restores the outer generator") {
  auto model = [] {
    auto p = plate("data", 100, PlateOptions().subsample_size(10));
    return sample("x", Normal(torch::zeros({10}), 1.0));
  };
  torch::manual_seed(123);
  auto before = torch::rand({1});
  torch::manual_seed(123);
  Trace a = trace(seed(model, 42)).get_trace();
  auto after = torch::rand({1});
  CHECK(before.equal(after));  // the seeded block did not disturb the outer stream
  Trace b = trace(seed(model, 42)).get_trace();
  CHECK(a.at("x").value.equal(b.at("x").value));
  CHECK(a.at("data").value.equal(b.at("data").value));
  Trace c = trace(seed(model, 43)).get_trace();
  CHECK_FALSE(a.at("x").value.equal(c.at("x").value));
}

TEST_CASE("substitute replaces param values by name") {
  clear_param_store();
  auto model = [] { return param("w", torch::ones({2})); };
  auto w = substitute(model, {{"w", torch::full({2}, 5.0)}})();
  CHECK(w.equal(torch::full({2}, 5.0)));
  CHECK(model().equal(torch::ones({2})));
  clear_param_store();
}

TEST_CASE("config_enumerate marks unobserved enumerable sites, infer_config edits infer") {
  auto model = [] {
    sample("c", Bernoulli(0.5));
    sample("n", Normal(0.0, 1.0));
    sample("o", Bernoulli(0.5), torch::tensor(1.0));
  };
  Trace t = trace(config_enumerate(model)).get_trace();
  CHECK(t.at("c").infer.enumerate == "parallel");
  CHECK(t.at("n").infer.enumerate.empty());
  CHECK(t.at("o").infer.enumerate.empty());
  Trace s = trace(config_enumerate(model, EnumerateOptions().strategy("sequential").num_samples(4))).get_trace();
  CHECK(s.at("n").infer.enumerate == "sequential");
  CHECK(s.at("n").infer.num_samples == 4);
  CHECK_THROWS_AS(config_enumerate(EnumerateOptions().strategy("bogus")), ValueError);
  auto marked = infer_config(model, [](const Message& m, InferConfig& infer) { infer.extra["seen"] = m.name; });
  Trace u = trace(marked).get_trace();
  CHECK(u.at("n").infer.extra["seen"] == "n");
}

TEST_CASE("handlers are thread-local: two threads do not see each other's handlers") {
  std::atomic<int> ready{0};
  size_t sites_a = 0, sites_b = 0;
  auto worker = [&](size_t* out, int n_sites) {
    auto tr = trace();
    ready++;
    while (ready.load() < 2) std::this_thread::yield();
    for (int i = 0; i < n_sites; ++i) sample("x" + std::to_string(i), Normal(0.0, 1.0));
    *out = tr.trace().size();
  };
  std::thread a(worker, &sites_a, 3), b(worker, &sites_b, 5);
  a.join();
  b.join();
  CHECK(sites_a == 3);
  CHECK(sites_b == 5);
}

TEST_CASE("scale with a tensor weights each datapoint, bad weights are errors naming the site") {
  auto x = torch::tensor({0.0, 1.0, -2.0});
  auto model = [&] {
    auto p = plate("data", 3);
    sample("x", Normal(0.0, 1.0), x);
  };
  Trace t = trace(scale(model, torch::tensor({1.0, 2.0, 0.5}))).get_trace();
  const double expected = normal_log_prob(0, 0, 1) + 2 * normal_log_prob(1, 0, 1) + 0.5 * normal_log_prob(-2, 0, 1);
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(expected).epsilon(1e-6));
  // Scalar and tensor scales compose.
  Trace u = trace(scale(scale(model, torch::tensor({1.0, 2.0, 0.5})), 3.0)).get_trace();
  CHECK(u.log_prob_sum().item<double>() == doctest::Approx(3 * expected).epsilon(1e-6));
  // Weights that would enlarge the batch shape.
  Trace bad = trace(scale(model, torch::ones({2, 3}))).get_trace();
  auto msg = error_of([&] { bad.compute_log_prob(); });
  CHECK(msg.find("site 'x'") != std::string::npos);
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK_THROWS_AS(scale(torch::tensor({1.0, 0.0})), ValueError);
}

TEST_CASE("lift turns params into sample sites drawn from their priors") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto model = [] {
    auto w = param("w", torch::zeros({3}));
    auto b = param("b", torch::tensor(0.5));
    return w.sum() + b;
  };
  torch::manual_seed(0);
  auto prior = std::make_shared<Normal>(torch::zeros({3}), 1.0)->to_event(1);
  Trace t = trace(lift(model, PriorMap{{"w", prior}})).get_trace();
  REQUIRE(t.at("w").type == SiteType::sample);
  CHECK_FALSE(t.at("w").is_observed);
  CHECK(t.at("w").value.sizes() == torch::IntArrayRef{3});
  CHECK_FALSE(t.at("w").value.equal(torch::zeros({3})));
  CHECK(t.at("b").type == SiteType::param);  // not lifted
  CHECK(t.return_value.item<double>() == doctest::Approx(t.at("w").value.sum().item<double>() + 0.5));
  CHECK(t.log_prob_sum().item<double>() ==
        doctest::Approx(normal_log_prob(t.at("w").value[0].item<double>(), 0, 1) +
                        normal_log_prob(t.at("w").value[1].item<double>(), 0, 1) +
                        normal_log_prob(t.at("w").value[2].item<double>(), 0, 1))
            .epsilon(1e-5));
  // One prior for all params.
  Trace all = trace(lift(model, dist::DistPtr(std::make_shared<Normal>(0.0, 1.0)))).get_trace();
  CHECK(all.at("b").type == SiteType::sample);
}

// ---------------------------------------------------------------- against Pyro 1.8.4
// tests/fixtures/pyro/handlers.json, written by scripts/pyro_fixtures/handlers.py.

namespace {

using ember::testing::fixture_tensor;
using ember::testing::pyro_cases;

const nlohmann::json& handler_case(const std::string& name) { return pyro_cases("handlers").at(name); }

torch::Tensor f64(const nlohmann::json& j) { return fixture_tensor(j); }

bool close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a.to(torch::kFloat64), b.to(torch::kFloat64), 1e-6, 1e-6);
}

// Compares every sample site of `t` with Pyro's record: names in order, observed flags,
// values, distribution shapes and per-site log-probs (scaled and masked).
void check_sites(Trace& t, const nlohmann::json& expected) {
  t.compute_log_prob();
  std::vector<std::string> names, expected_names;
  for (const auto& s : t)
    if (s.type == SiteType::sample) names.push_back(s.name);
  for (const auto& e : expected) expected_names.push_back(e.at("name").get<std::string>());
  REQUIRE(names == expected_names);
  for (const auto& e : expected) {
    const Site& s = t.at(e.at("name").get<std::string>());
    INFO("site " << s.name);
    CHECK(s.is_observed == e.at("is_observed").get<bool>());
    CHECK(close(s.value, f64(e.at("value"))));
    if (!is_subsample_site(s)) {
      CHECK(s.fn->batch_shape() == e.at("batch_shape").get<Shape>());
      CHECK(s.fn->event_shape() == e.at("event_shape").get<Shape>());
    }
    CHECK(close(s.log_prob, f64(e.at("log_prob"))));
  }
}

}  // namespace

TEST_CASE("Pyro parity: condition with an undefined value (Pyro's None) un-observes a site") {
  const auto& c = handler_case("condition_none");
  auto model = [] {
    auto z = sample("z", Normal(0.0, 1.0));
    return sample("x", Normal(z, 1.0), torch::tensor(0.5, torch::kFloat64));
  };
  const ValueMap data{{"x", torch::Tensor()}, {"z", torch::tensor(0.3, torch::kFloat64)}};
  Trace guide_trace = trace(condition(model, data)).get_trace();
  REQUIRE_FALSE(guide_trace.at("x").is_observed);
  guide_trace.at("x").value = torch::tensor(0.9, torch::kFloat64);
  Trace t;
  {
    ReplayMessenger replay_guide(guide_trace);
    t = trace(condition(model, data)).get_trace();
  }
  check_sites(t, c.at("sites"));
  CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
}

TEST_CASE("Pyro parity: condition on a trace reuses its plate subsample, keeping latents paired with data rows") {
  const auto& c = handler_case("condition_trace_subsample");
  const auto data = f64(c.at("data"));
  auto model = [&](torch::Tensor subsample) {
    auto options = subsample.defined() ? PlateOptions().subsample(subsample) : PlateOptions().subsample_size(2);
    auto n = plate("N", 5, options);
    auto z = sample("z", Normal(torch::zeros({}, torch::kFloat64), 1.0));
    sample("x", Normal(z, 1.0), n.subsample(data));
  };
  Trace source = trace(condition(model, {{"z", f64(c.at("z"))}})).get_trace(fixture_tensor(c.at("subsample"), torch::kLong));
  for (int run = 0; run < 5; ++run) {  // a fresh subsample would pair z with other rows
    Trace t;
    {
      ConditionMessenger given(source);
      t = trace(model).get_trace(torch::Tensor());
    }
    check_sites(t, c.at("sites"));
    CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
  }
}

TEST_CASE("Pyro parity: lift draws once per param per run and uses the prior as given") {
  ParamStore store;
  ParamStoreScope scope(store);
  const auto& c = handler_case("lift");
  auto model = [] {
    auto w = param("w", torch::zeros({3}, torch::kFloat64));
    auto w_again = param("w");
    return w + w_again;
  };
  {  // A scalar prior on a [3] param: one scalar draw.
    const auto& s = c.at("scalar_prior");
    auto lifted = lift(model, dist::DistPtr(std::make_shared<Normal>(torch::zeros({}, torch::kFloat64), 1.0)));
    Trace t = trace(condition(lifted, {{"w", torch::tensor(0.7, torch::kFloat64)}})).get_trace();
    check_sites(t, s.at("sites"));
    CHECK(close(t.return_value, f64(s.at("return"))));
    CHECK(close(t.log_prob_sum(), f64(s.at("log_prob_sum"))));
  }
  {  // A prior over the whole param.
    const auto& s = c.at("vector_prior");
    auto prior = std::make_shared<Normal>(torch::zeros({3}, torch::kFloat64), 2.0)->to_event(1);
    Trace t = trace(condition(lift(model, PriorMap{{"w", prior}}), {{"w", f64(s.at("w"))}})).get_trace();
    check_sites(t, s.at("sites"));
    CHECK(close(t.return_value, f64(s.at("return"))));
    CHECK(close(t.log_prob_sum(), f64(s.at("log_prob_sum"))));
  }
  // Unconditioned: the second read returns the first read's draw.
  torch::manual_seed(1);
  auto sum_of_reads = [] { return param("w", torch::zeros({3}, torch::kFloat64)) - param("w"); };
  Trace t = trace(lift(sum_of_reads, dist::DistPtr(std::make_shared<Normal>(torch::zeros({3}, torch::kFloat64), 1.0)))).get_trace();
  CHECK(t.return_value.abs().max().item<double>() == 0.0);
  CHECK(t.size() == 1);
}

TEST_CASE("Pyro parity: lifting module parameters (random_module)") {
  ParamStore store;
  ParamStoreScope scope(store);
  const auto& c = handler_case("lift").at("random_module");
  torch::nn::Linear net(2, 1);
  net->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    net->weight.copy_(f64(c.at("init_weight")));
    net->bias.copy_(f64(c.at("init_bias")));
  }
  const auto x = f64(c.at("x"));
  auto bayes_net = [&] {
    module("net", net);
    return net(x);
  };
  PriorMap priors{{"weight", std::make_shared<Normal>(torch::zeros({1, 2}, torch::kFloat64), 1.0)->to_event(2)},
                  {"bias", std::make_shared<Normal>(torch::zeros({1}, torch::kFloat64), 3.0)->to_event(1)}};
  Trace t = trace(condition(lift(bayes_net, priors), {{"net$$$weight", f64(c.at("weight"))},
                                                      {"net$$$bias", f64(c.at("bias"))}}))
                .get_trace();
  check_sites(t, c.at("sites"));
  CHECK(close(t.return_value, f64(c.at("return"))));
  CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
  // After the run the module has its own parameters back, and nothing entered the store.
  CHECK(net->weight.equal(f64(c.at("init_weight"))));
  CHECK(net->bias.equal(f64(c.at("init_bias"))));
  CHECK(store.size() == 0);
  // A draw of the wrong shape, or one carrying gradients, is refused by name.
  auto scalar = lift(bayes_net, dist::DistPtr(std::make_shared<Normal>(torch::zeros({}, torch::kFloat64), 1.0)));
  CHECK(error_of(scalar).find("net$$$weight") != std::string::npos);
  auto with_grad = condition(lift(bayes_net, priors),
                             {{"net$$$weight", f64(c.at("weight")).requires_grad_()}, {"net$$$bias", f64(c.at("bias"))}});
  CHECK(error_of(with_grad).find("gradients") != std::string::npos);
  CHECK(net->weight.equal(f64(c.at("init_weight"))));
}

TEST_CASE("Pyro parity: deterministic adds no log-density when a handler supplies another value") {
  const auto& c = handler_case("deterministic_other_value");
  auto model = [] {
    auto a = sample("a", Normal(0.0, 1.0));
    return deterministic("d", a * 2);
  };
  Trace t = trace(condition(model, {{"a", torch::tensor(0.5, torch::kFloat64)}, {"d", torch::tensor(3.0, torch::kFloat64)}}))
                .get_trace();
  check_sites(t, c.at("sites"));
  CHECK(close(t.return_value, f64(c.at("return"))));
  CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
}

TEST_CASE("Pyro parity: sample with obs_mask splits the site into observed and unobserved parts") {
  ParamStore store;
  ParamStoreScope scope(store);
  const auto& c = handler_case("obs_mask");
  const auto data = f64(c.at("data")), imputed = f64(c.at("imputed"));
  const auto mask = fixture_tensor(c.at("mask"), torch::kBool);
  auto model = [&] {
    auto loc = param("loc", torch::tensor(0.5, torch::kFloat64));
    auto n = plate("N", 4);
    return sample("x", Normal(loc, 2.0), SampleOptions().obs(data).obs_mask(mask));
  };
  Trace t = trace(condition(model, {{"x_unobserved", imputed}})).get_trace();
  check_sites(t, c.at("sites"));
  CHECK(close(t.return_value, f64(c.at("return"))));
  CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
  // As a guide's replay sees it: x_unobserved is latent.
  auto guide = [&] {
    auto n = plate("N", 4);
    sample("x_unobserved", dist::Delta(imputed));
  };
  Trace guide_trace = trace(guide).get_trace();
  Trace latent;
  {
    ReplayMessenger replay_guide(guide_trace);
    latent = trace(model).get_trace();
  }
  check_sites(latent, c.at("latent_sites"));
  CHECK(close(latent.log_prob_sum(), f64(c.at("latent_log_prob_sum"))));
  // Vector events: the mask covers batch dims only.
  const auto& v = c.at("vector");
  const auto vdata = f64(v.at("data"));
  const auto vmask = fixture_tensor(v.at("mask"), torch::kBool);
  auto vmodel = [&] {
    auto n = plate("N", 3);
    return sample("y", std::make_shared<Normal>(torch::zeros({2}, torch::kFloat64), 1.0)->to_event(1),
                  SampleOptions().obs(vdata).obs_mask(vmask));
  };
  Trace vt = trace(condition(vmodel, {{"y_unobserved", f64(v.at("imputed"))}})).get_trace();
  check_sites(vt, v.at("sites"));
  CHECK(close(vt.return_value, f64(v.at("return"))));
  CHECK(close(vt.log_prob_sum(), f64(v.at("log_prob_sum"))));
  // A mask that does not broadcast with the batch shape is an error naming the site.
  auto bad = [&] {
    auto n = plate("N", 3);
    sample("y", std::make_shared<Normal>(torch::zeros({2}, torch::kFloat64), 1.0)->to_event(1),
           SampleOptions().obs(vdata).obs_mask(torch::tensor({true, false})));
  };
  CHECK(error_of(bad).find("'y") != std::string::npos);
}

TEST_CASE("Pyro parity: nested plates, subsampling, scale, a broadcasting mask and block") {
  ParamStore store;
  ParamStoreScope scope(store);
  const auto& c = handler_case("everyday");
  const auto data = f64(c.at("data"));
  auto model = [&] {
    auto loc = param("loc", torch::tensor(0.25, torch::kFloat64));
    {
      auto outer = plate("outer", 3, PlateOptions().dim(-1));
      auto s = sample("s", dist::Gamma(2.0, 3.0));
      auto inner = plate("inner", 10, PlateOptions().subsample(torch::tensor({1, 4, 7, 9})).dim(-2));
      auto twice = scale(2.0);
      auto some = mask(torch::tensor({true, false, true, true}).reshape({4, 1}));
      sample("x", Normal(loc, s), data);
    }
    auto hide = block(BlockOptions().hide({"hidden"}));
    sample("hidden", Normal(0.0, 1.0));
  };
  Trace t = trace(condition(model, {{"s", f64(c.at("s"))}})).get_trace();
  check_sites(t, c.at("sites"));
  CHECK(close(t.log_prob_sum(), f64(c.at("log_prob_sum"))));
}
