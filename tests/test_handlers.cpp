// Each handler's semantics, and handlers composed.
#include <doctest/doctest.h>

#include <cmath>

#include "ppl/ppl.h"
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
  Trace t = trace(lift(model, PriorMap{{"w", std::make_shared<Normal>(0.0, 1.0)}})).get_trace();
  REQUIRE(t.at("w").type == SiteType::sample);
  CHECK_FALSE(t.at("w").is_observed);
  CHECK(t.at("w").value.sizes() == torch::IntArrayRef{3});
  CHECK(t.at("w").fn->event_shape() == Shape{3});  // a scalar prior covers the whole param
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
  // Module parameters cannot be lifted: the network would ignore the draw.
  torch::nn::Linear lin(2, 2);
  auto net = [&] { module("net", lin); };
  CHECK(error_of([&] { lift(net, dist::DistPtr(std::make_shared<Normal>(0.0, 1.0)))(); }).find("net$$$weight") !=
        std::string::npos);
}
