// The runtime: primitives, apply_stack order, plates, traces and the errors they raise.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "inference/elbo.h"
#include "ppl/ppl.h"
#include "test_util.h"

using namespace ember;
using ember::testing::error_of;
using ember::testing::normal_log_prob;
using dist::Bernoulli;
using dist::Normal;

namespace {

// Records the order in which hooks run.
struct Recorder : Messenger {
  std::string tag;
  std::vector<std::string>* log;
  bool stop_here = false;
  Recorder(std::string t, std::vector<std::string>* l, bool stop = false) : tag(std::move(t)), log(l), stop_here(stop) {
    enter();
  }
  void process(Message& msg) override {
    log->push_back("process " + tag);
    if (stop_here) msg.stop = true;
  }
  void postprocess(Message&) override { log->push_back("post " + tag); }
};

}  // namespace

TEST_CASE("sample outside any handler draws from the distribution, or returns obs") {
  torch::manual_seed(0);
  auto x = sample("x", Normal(torch::zeros({3}), 1.0));
  CHECK(x.sizes() == torch::IntArrayRef{3});
  auto obs = torch::tensor({1.5});
  CHECK(sample("y", Normal(0.0, 1.0), obs).equal(obs));
  CHECK_FALSE(am_i_wrapped());
}

TEST_CASE("unobserved sample sites draw with rsample so pathwise gradients flow") {
  auto loc = torch::zeros({}, torch::requires_grad());
  auto tr = trace();
  auto z = sample("z", Normal(loc, 1.0));
  z.backward();
  REQUIRE(loc.grad().defined());
  CHECK(loc.grad().item<double>() == doctest::Approx(1.0));
}

TEST_CASE("apply_stack runs process innermost-first and postprocess outermost-first") {
  std::vector<std::string> log;
  {
    Recorder outer("outer", &log);
    Recorder inner("inner", &log);
    sample("x", Normal(0.0, 1.0));
  }
  CHECK(log == std::vector<std::string>{"process inner", "process outer", "post outer", "post inner"});
}

TEST_CASE("msg.stop hides a message from outer handlers but visited ones postprocess") {
  std::vector<std::string> log;
  {
    Recorder outer("outer", &log);
    Recorder middle("middle", &log, /*stop=*/true);
    Recorder inner("inner", &log);
    sample("x", Normal(0.0, 1.0));
  }
  CHECK(log == std::vector<std::string>{"process inner", "process middle", "post middle", "post inner"});
}

TEST_CASE("handlers are removed when their scope ends, also on exceptions") {
  CHECK(handler_stack().empty());
  try {
    auto tr = trace();
    auto p = plate("data", 3);
    CHECK(handler_stack().size() == 2);
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  CHECK(handler_stack().empty());
  CHECK(plate_dim_allocator().depth() == 0);
}

TEST_CASE("trace records sites in order with values, distributions and observed flags") {
  auto model = [] {
    auto mu = sample("mu", Normal(0.0, 1.0));
    sample("x", Normal(mu, 1.0), torch::tensor(0.5));
    return mu;
  };
  Trace t = trace(model).get_trace();
  REQUIRE(t.size() == 2);
  CHECK(t.sites()[0].name == "mu");
  CHECK(t.sites()[1].name == "x");
  CHECK_FALSE(t.at("mu").is_observed);
  CHECK(t.at("x").is_observed);
  CHECK(t.stochastic_nodes() == std::vector<std::string>{"mu"});
  CHECK(t.observation_nodes() == std::vector<std::string>{"x"});
  CHECK(t.reparameterized_nodes() == std::vector<std::string>{"mu"});
  CHECK(t.return_value.equal(t.at("mu").value));
  const double mu = t.at("mu").value.item<double>();
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(normal_log_prob(mu, 0, 1) + normal_log_prob(0.5, mu, 1)).epsilon(1e-6));
}

TEST_CASE("duplicate sample site names are an error naming the site") {
  auto model = [] {
    sample("x", Normal(0.0, 1.0));
    sample("x", Normal(0.0, 1.0));
  };
  auto msg = error_of([&] { trace(model).get_trace(); });
  CHECK(msg.find("Multiple sample sites named 'x'") != std::string::npos);
  CHECK_THROWS_AS(trace(model).get_trace(), RuntimeError);
}

TEST_CASE("params may be read many times in one trace, a param and a sample cannot share a name") {
  clear_param_store();
  auto ok = [] {
    param("w", torch::ones({2}));
    param("w", torch::ones({2}));
  };
  CHECK_NOTHROW(trace(ok).get_trace());
  auto bad = [] {
    param("w", torch::ones({2}));
    sample("w", Normal(0.0, 1.0));
  };
  CHECK(error_of([&] { trace(bad).get_trace(); }).find("already in the trace as a param") != std::string::npos);
  clear_param_store();
}

TEST_CASE("plate broadcasts batch shapes and nested plates get distinct dims") {
  int64_t outer_dim = 0, inner_dim = 0;
  auto model = [&] {
    auto a = plate("a", 3);
    auto b = plate("b", 4);
    outer_dim = a.dim();
    inner_dim = b.dim();
    return sample("x", Normal(0.0, 1.0));
  };
  Trace t = trace(model).get_trace();
  CHECK(outer_dim == -1);
  CHECK(inner_dim == -2);
  CHECK(t.at("x").fn->batch_shape() == Shape{4, 3});
  CHECK(t.at("x").value.sizes() == torch::IntArrayRef{4, 3});
  const auto& stack = t.at("x").cond_indep_stack;
  REQUIRE(stack.size() == 2);
  CHECK(stack[0].name == "a");  // outermost first
  CHECK(stack[1].name == "b");
}

TEST_CASE("plates with an explicit dim, and dims freed on exit") {
  {
    auto a = plate("a", 2, PlateOptions().dim(-2));
    CHECK(a.dim() == -2);
    auto b = plate("b", 5);
    CHECK(b.dim() == -1);
    auto c = plate("c", 7);
    CHECK(c.dim() == -3);
  }
  auto d = plate("d", 2);
  CHECK(d.dim() == -1);
}

TEST_CASE("two plates on one dim, or the same plate nested twice, are errors") {
  auto a = plate("a", 2, PlateOptions().dim(-1));
  CHECK(error_of([] { auto b = plate("b", 3, PlateOptions().dim(-1)); }).find("both use dim=-1") != std::string::npos);
  CHECK(error_of([] { auto again = plate("a", 2); }).find("plate 'a' is already active") != std::string::npos);
}

TEST_CASE("a batch shape that does not broadcast with the plate names plate, site, dim and shapes") {
  auto model = [] {
    auto p = plate("data", 100);
    sample("x", Normal(torch::zeros({50}), 1.0));
  };
  auto msg = error_of([&] { trace(model).get_trace(); });
  CHECK(msg.find("plate('data')") != std::string::npos);
  CHECK(msg.find("site 'x'") != std::string::npos);
  CHECK(msg.find("dim -1") != std::string::npos);
  CHECK(msg.find("size 100") != std::string::npos);
  CHECK(msg.find("[50]") != std::string::npos);
  CHECK_THROWS_AS(trace(model).get_trace(), ShapeError);
}

TEST_CASE("an obs whose shape does not match the distribution is an error, not a silent broadcast") {
  auto column = [] {
    auto p = plate("data", 5);
    sample("x", Normal(0.0, 1.0), torch::zeros({5, 1}));  // would broadcast to [5, 5]
  };
  auto msg = error_of([&] { trace(column).get_trace(); });
  CHECK(msg.find("sample site 'x'") != std::string::npos);
  CHECK(msg.find("[5, 1]") != std::string::npos);
  CHECK(msg.find("plate('data', 5, dim=-1)") != std::string::npos);
  auto no_plate = [] { sample("x", Normal(0.0, 1.0), torch::zeros({5})); };
  CHECK_THROWS_AS(trace(no_plate).get_trace(), ShapeError);
  auto wrong_event = [] { sample("x", Normal(torch::zeros({3}), 1.0).to_event(1), torch::zeros({4})); };
  CHECK_THROWS_AS(trace(wrong_event).get_trace(), ShapeError);
  // Broadcasting *into* the distribution is fine.
  auto scalar_obs = [] {
    auto p = plate("data", 5);
    sample("x", Normal(0.0, 1.0), torch::tensor(0.0));
  };
  CHECK_NOTHROW(trace(scalar_obs).get_trace());
}

TEST_CASE("a plate reused with a different size in one trace is an error") {
  auto model = [] {
    {
      auto p = plate("data", 10);
      sample("x", Normal(0.0, 1.0));
    }
    {
      auto p = plate("data", 20);
      sample("y", Normal(0.0, 1.0));
    }
  };
  auto msg = error_of([&] { trace(model).get_trace(); });
  CHECK(msg.find("plate 'data'") != std::string::npos);
  CHECK(msg.find("20") != std::string::npos);
  CHECK(msg.find("10") != std::string::npos);
  // The same plate entered twice with the same size is fine.
  auto twice = [] {
    {
      auto p = plate("data", 10);
      sample("x", Normal(0.0, 1.0));
    }
    {
      auto p = plate("data", 10);
      sample("y", Normal(0.0, 1.0));
    }
  };
  CHECK_NOTHROW(trace(twice).get_trace());
}

TEST_CASE("subsampling plates scale log-probs by size / subsample_size and index data") {
  torch::manual_seed(1);
  auto data = torch::arange(100, torch::kFloat);
  torch::Tensor idx;
  auto model = [&] {
    auto p = plate("data", 100, PlateOptions().subsample_size(10));
    idx = p.indices();
    auto batch = p.subsample(data);
    CHECK(batch.equal(data.index_select(0, idx)));
    sample("x", Normal(0.0, 1.0), batch);
  };
  Trace t = trace(model).get_trace();
  CHECK(t.at("x").scale == doctest::Approx(10.0));
  CHECK(idx.size(0) == 10);
  CHECK(std::get<0>(torch::_unique(idx)).size(0) == 10);
  double expected = 0;
  auto b = data.index_select(0, idx);
  for (int i = 0; i < 10; ++i) expected += 10.0 * normal_log_prob(b[i].item<double>(), 0, 1);
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(expected).epsilon(1e-5));
  // The plate's subsample site is in the trace but not among the latent variables.
  CHECK(t.contains("data"));
  CHECK(t.stochastic_nodes() == std::vector<std::string>{});
}

TEST_CASE("format_shapes tabulates batch | event shapes per site") {
  auto model = [] {
    auto p = plate("data", 6);
    sample("z", Normal(torch::zeros({3}), 1.0).to_event(1));
  };
  Trace t = trace(model).get_trace();
  t.compute_log_prob();
  auto table = t.format_shapes();
  CHECK(table.find("z") != std::string::npos);
  CHECK(table.find("6 | 3") != std::string::npos);
  CHECK(table.find("log_prob") != std::string::npos);
}

TEST_CASE("errors inside a traced function carry the partial trace's shapes") {
  auto model = [] {
    auto p = plate("data", 4);
    sample("ok", Normal(0.0, 1.0));
    sample("bad", Normal(torch::zeros({3}), 1.0));
  };
  auto msg = error_of([&] { trace(model).get_trace(); });
  CHECK(msg.find("Trace Shapes:") != std::string::npos);
  CHECK(msg.find("ok") != std::string::npos);
}

TEST_CASE("factor adds its log weight to the joint density") {
  auto model = [] { factor("f", torch::tensor({1.5, -0.5})); };
  Trace t = trace(model).get_trace();
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(1.0));
  CHECK(t.at("f").is_observed);
}

TEST_CASE("deterministic records a value with zero log density") {
  auto model = [] {
    auto x = sample("x", Normal(0.0, 1.0));
    return deterministic("y", 2 * x);
  };
  Trace t = trace(model).get_trace();
  CHECK(t.at("y").value.equal(2 * t.at("x").value));
  CHECK(t.at("y").infer.is_deterministic);
  t.compute_log_prob();
  CHECK(t.at("y").log_prob.item<double>() == 0.0);
}

TEST_CASE("module registers every parameter so the store trains the module") {
  clear_param_store();
  torch::nn::Linear lin(3, 2);
  module("enc", lin);
  auto& store = get_param_store();
  CHECK(store.contains("enc$$$weight"));
  CHECK(store.contains("enc$$$bias"));
  CHECK(store.unconstrained("enc$$$weight").is_same(lin->weight));
  // A param trace sees the module's parameters.
  auto guide = [&] { module("enc", lin); };
  Trace t = trace(guide).get_trace();
  CHECK(t.param_nodes() == std::vector<std::string>{"enc$$$weight", "enc$$$bias"});
  clear_param_store();
}

TEST_CASE("sequential plates: iterations get the frame and the subsampling scale, without broadcasting") {
  torch::manual_seed(4);
  auto data = torch::tensor({0.5, -1.0, 2.0, 0.0});
  std::vector<int64_t> seen;
  auto model = [&] {
    for (int64_t i : plate_range("data", 4, PlateOptions().subsample_size(2))) {
      seen.push_back(i);
      sample("x_" + std::to_string(i), Normal(0.0, 1.0), data[i]);
    }
  };
  Trace t = trace(model).get_trace();
  REQUIRE(seen.size() == 2);
  CHECK(handler_stack().empty());
  double expected = 0;
  for (auto i : seen) {
    const auto& s = t.at("x_" + std::to_string(i));
    REQUIRE(s.cond_indep_stack.size() == 1);
    CHECK_FALSE(s.cond_indep_stack[0].vectorized);
    CHECK(s.scale == 2.0);
    CHECK(s.fn->batch_shape() == Shape{});  // no broadcasting
    CHECK(s.plates_str() == "plate('data', 4, subsample_size=2, sequential)");
    expected += 2.0 * normal_log_prob(data[i].item<double>(), 0, 1);
  }
  CHECK(t.log_prob_sum().item<double>() == doctest::Approx(expected).epsilon(1e-6));
  // Leaving the loop early leaves no handler behind.
  for (int64_t i : plate_range("early", 3)) {
    if (i == 1) break;
  }
  CHECK(handler_stack().empty());
}

TEST_CASE("sequential and vectorised plates give the same Trace_ELBO") {
  ParamStore store;
  ParamStoreScope scope(store);
  auto data = torch::tensor({0.3, -0.7, 1.1});
  auto guide = [](const torch::Tensor&) { sample("mu", Normal(param("loc", torch::tensor(0.2)), 1.0)); };
  auto vectorised = [](const torch::Tensor& x) {
    auto mu = sample("mu", Normal(0.0, 1.0));
    auto p = plate("data", x.size(0));
    sample("x", Normal(mu, 1.0), x);
  };
  auto sequential = [](const torch::Tensor& x) {
    auto mu = sample("mu", Normal(0.0, 1.0));
    for (int64_t i : plate_range("data", x.size(0))) sample("x_" + std::to_string(i), Normal(mu, 1.0), x[i]);
  };
  infer::Trace_ELBO elbo;
  torch::manual_seed(9);
  const double a = elbo.loss(vectorised, guide, data);
  torch::manual_seed(9);
  const double b = elbo.loss(sequential, guide, data);
  CHECK(a == doctest::Approx(b).epsilon(1e-6));
}

// ---------------------------------------------------------------- the model's DAG

namespace {

using Edges = std::set<std::pair<std::string, std::string>>;

Edges edge_set(const ModelGraph& g) {
  auto e = g.edges();
  return Edges(e.begin(), e.end());
}

}  // namespace

TEST_CASE("model graph: a chain has only the direct edges a -> b -> c") {
  auto chain = [] {
    auto a = sample("a", Normal(0., 1.));
    auto b = sample("b", Normal(a, 1.));
    sample("c", Normal(b * 2, 1.));
  };
  for (bool perturb : {true, false}) {
    auto g = trace_model_graph(chain, ModelGraphOptions().perturb(perturb));
    CHECK(edge_set(g) == Edges{{"a", "b"}, {"b", "c"}});
    REQUIRE(g.nodes.size() == 3);
    CHECK(g.nodes[0].name == "a");
    CHECK(g.nodes[2].distribution == "Normal");
    CHECK_FALSE(g.nodes[2].is_observed);
    CHECK(g.plates.empty());
  }
}

TEST_CASE("model graph: a collider, with distribution names as Pyro prints them") {
  auto collider = [] {
    auto a = sample("a", Normal(0., 1.));
    auto b = sample("b", dist::LogNormal(0., 1.));
    sample("c", Normal(a, b).to_event(0), torch::tensor(0.3));
  };
  auto g = get_model_graph(collider);
  CHECK(edge_set(g) == Edges{{"a", "c"}, {"b", "c"}});
  CHECK(g.node("b").distribution == "LogNormal");
  CHECK(g.node("c").distribution == "Normal");  // Independent unwrapped
  CHECK(g.node("c").is_observed);
  CHECK(g.node("c").parents == std::vector<std::string>{"a", "b"});
}

TEST_CASE("model graph: a confounded model with a plate records plates, sizes and observations") {
  auto confounded = [](const torch::Tensor& y) {
    auto u = sample("u", Normal(0., 1.));
    auto data = plate("data", y.size(0));
    auto x = sample("x", Normal(u, 1.));
    sample("y", Normal(u + 2 * x, 1.), y);
  };
  auto g = get_model_graph(confounded, torch::zeros({5}));
  CHECK(edge_set(g) == Edges{{"u", "x"}, {"u", "y"}, {"x", "y"}});
  CHECK(g.node("u").plates.empty());
  CHECK(g.node("x").plates == std::vector<std::string>{"data"});
  CHECK(g.node("y").plates == std::vector<std::string>{"data"});
  CHECK(g.node("y").is_observed);
  CHECK_FALSE(g.node("x").is_observed);
  REQUIRE(g.plates.size() == 1);
  CHECK(g.plate("data").size == 5);
  CHECK(error_of([&] { g.node("w"); }).find("no sample site named 'w'; the model has u, x, y") != std::string::npos);
}

TEST_CASE("model graph: discrete parents used as indices and masks are found by perturbation, not autograd") {
  auto table = torch::tensor({-2.0, 0.0, 3.0});
  auto model = [&] {
    auto k = sample("k", dist::Categorical(torch::tensor({0.2, 0.3, 0.5})));  // integer: no autograd
    auto z = sample("z", Bernoulli(torch::tensor(0.3)));                     // float 0/1, used as a bool
    auto x = sample("x", Normal(0., 1.));                                    // continuous, used as a threshold
    sample("w", Normal(table.index_select(0, k.reshape({1})).squeeze(0), 1.));
    sample("v", Normal(torch::where(z.to(torch::kBool), torch::tensor(1.0), torch::tensor(-1.0)), 1.));
    sample("t", Bernoulli(torch::where(x > 0, torch::tensor(0.9), torch::tensor(0.1))));
    sample("s", Normal(x * 0 + 1, 1.));  // the path exists in the graph: an edge, as in Pyro
  };
  auto g = trace_model_graph(model);
  CHECK(edge_set(g) == Edges{{"k", "w"}, {"z", "v"}, {"x", "t"}, {"x", "s"}});
  // Autograd alone sees only arithmetic on floats.
  auto autograd_only = trace_model_graph(model, ModelGraphOptions().perturb(false));
  CHECK(edge_set(autograd_only) == Edges{{"x", "s"}});
}

TEST_CASE("model graph: a site that depends on an observed site") {
  auto model = [] {
    auto o = sample("o", Normal(0., 1.), torch::tensor(0.5));
    auto p = sample("p", Normal(o * 2, 1.));
    sample("q", Normal(p, 1.), torch::tensor(1.0));
  };
  auto g = get_model_graph(model);
  CHECK(edge_set(g) == Edges{{"o", "p"}, {"p", "q"}});
  CHECK(g.node("o").is_observed);
  CHECK(g.node("q").is_observed);
}

TEST_CASE("model graph: a deterministic site sits between its inputs and its users") {
  auto model = [] {
    auto a = sample("a", Normal(0., 1.));
    auto b = sample("b", Normal(0., 1.));
    auto d = deterministic("d", a + b);
    sample("c", Normal(d, 1.));
  };
  for (bool perturb : {true, false}) {
    auto g = trace_model_graph(model, ModelGraphOptions().perturb(perturb));
    CHECK(edge_set(g) == Edges{{"a", "d"}, {"b", "d"}, {"d", "c"}});
    CHECK(g.node("d").is_deterministic);
    CHECK_FALSE(g.node("d").is_observed);
    CHECK(g.node("d").distribution == "Delta");
  }
}

TEST_CASE("model graph: nested and subsampled plates, subsample sites are not nodes") {
  auto model = [] {
    auto g = sample("g", Normal(0., 1.));
    auto outer = plate("outer", 6, PlateOptions().subsample_size(3));
    auto h = sample("h", Normal(g, 1.));
    auto inner = plate("inner", 2);
    sample("y", Normal(h, 1.), torch::zeros({2, 3}));
  };
  auto g = get_model_graph(model);
  CHECK(edge_set(g) == Edges{{"g", "h"}, {"h", "y"}});
  REQUIRE(g.nodes.size() == 3);
  CHECK(g.node("y").plates == std::vector<std::string>{"outer", "inner"});
  CHECK(g.plate("outer").size == 6);
  CHECK(g.plate("inner").size == 2);
}

TEST_CASE("model graph: do_ cuts the intervened site's outgoing edges, condition does not") {
  auto chain = [] {
    auto a = sample("a", Normal(0., 1.));
    auto b = sample("b", Normal(a, 1.));
    sample("c", Normal(b * 2, 1.));
  };
  auto intervened = get_model_graph(do_(chain, {{"b", torch::tensor(3.0)}}));
  CHECK(edge_set(intervened) == Edges{{"a", "b"}});
  auto conditioned = get_model_graph(condition(chain, {{"b", torch::tensor(3.0)}}));
  CHECK(edge_set(conditioned) == Edges{{"a", "b"}, {"b", "c"}});
  CHECK(conditioned.node("b").is_observed);
}

TEST_CASE("model graph: a program that rejects a perturbed value fails with an error naming the site") {
  auto model = [] {
    auto b = sample("b", Bernoulli(torch::tensor(0.0)));  // always 0; the check tries 1
    if (b.item<double>() == 1.0) throw ValueError("this program needs b = 0");
    sample("c", Normal(b, 1.));
  };
  auto message = error_of([&] { get_model_graph(model); });
  CHECK(message.find("sample site 'b' was set to another value") != std::string::npos);
  CHECK(message.find("this program needs b = 0") != std::string::npos);
  CHECK(edge_set(trace_model_graph(model, ModelGraphOptions().perturb(false))) == Edges{{"b", "c"}});
}

TEST_CASE("model graph: randomness drawn outside sample sites (dropout-like) makes no edges") {
  auto model = [] {
    sample("a", Normal(0., 1.));
    auto noise = torch::randn({});  // drawn after a: a held run draws a different number than the first run
    sample("b", Normal(noise, 1.));
  };
  CHECK(edge_set(get_model_graph(model)).empty());
}
