// Counterfactual worlds: world dims, shared exogenous noise, factual conditioning, gather.
#include <doctest/doctest.h>

#include "ppl/ppl.h"
#include "test_util.h"

using namespace ember;
using ember::testing::error_of;
using dist::Bernoulli;
using dist::Normal;

namespace {

torch::Tensor t(double v) { return torch::tensor(v, torch::kFloat64); }

// X -> M -> Y and X -> Y, linear-Gaussian with unit-free noise scales.
//   X ~ N(0, 1), M ~ N(X, 0.5), Y ~ N(M + X, 0.25).
// With X = x and Y = y observed, Y had X been x' is y + 2 (x' - x) whatever M is: M's noise
// and Y's noise are both shared with the factual world.
torch::Tensor mediator_model() {
  auto x = sample("X", Normal(t(0.), t(1.)));
  auto m = sample("M", Normal(x, t(0.5)));
  return sample("Y", Normal(m + x, t(0.25)));
}

}  // namespace

TEST_CASE("twin world: the counterfactual of a linear-Gaussian SCM is exact, with no sampling error") {
  const double x = 0.3, y = 1.7, x_cf = -1.2;
  for (uint64_t run = 0; run < 5; ++run) {
    auto s = seed(run);
    auto cf = twin_world();
    auto act = do_({{"X", t(x_cf)}});
    auto obs = condition({{"X", t(x)}, {"Y", t(y)}});
    auto tr = trace();
    auto y_worlds = mediator_model();
    REQUIRE(y_worlds.sizes() == torch::IntArrayRef{2});
    CHECK(cf.gather(y_worlds, {{"world", {0}}}).item<double>() == doctest::Approx(y).epsilon(1e-12));
    CHECK(cf.gather(y_worlds, {{"world", {1}}}).item<double>() == doctest::Approx(y + 2 * (x_cf - x)).epsilon(1e-12));
    // M differs between worlds by exactly the change in X (its noise is shared).
    const auto& m = tr.trace().at("M").value;
    CHECK((m[1] - m[0]).item<double>() == doctest::Approx(x_cf - x).epsilon(1e-12));
  }
}

TEST_CASE("twin world: the world dim, frames and log-density of each site") {
  auto tr = trace();
  auto cf = twin_world();
  auto act = do_({{"X", t(2.0)}});
  auto obs = condition({{"Y", t(1.0)}});
  mediator_model();
  Trace tt = tr.get_trace();
  // X is sampled once (the factual draw); the program saw [x, 2].
  CHECK(tt.at("X").value.dim() == 0);
  CHECK(world_frames(tt.at("X")).empty());
  REQUIRE(cf.worlds().size() == 1);
  CHECK(cf.worlds()[0].name == "world");
  CHECK(cf.worlds()[0].dim == -1);
  // M and Y vary across worlds: they carry the world frame.
  for (const char* name : {"M", "Y"}) {
    const auto frames = world_frames(tt.at(name));
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].dim == -1);
    CHECK(tt.at(name).value.sizes() == torch::IntArrayRef{2});
  }
  CHECK(tt.at("Y").is_observed);
  CHECK_FALSE(tt.at("M").is_observed);
  // Only the factual world is evidence: the log-density is the factual model's.
  tt.compute_log_prob();
  const double xv = tt.at("X").value.item<double>(), mv = tt.at("M").value[0].item<double>();
  const double expected = ember::testing::normal_log_prob(xv, 0, 1) + ember::testing::normal_log_prob(mv, xv, 0.5) +
                          ember::testing::normal_log_prob(1.0, mv + xv, 0.25);
  CHECK(tt.log_prob_sum().item<double>() == doctest::Approx(expected).epsilon(1e-12));
  CHECK(tt.at("Y").log_prob[1].item<double>() == 0.0);
  // format_shapes names the world dim.
  CHECK(tt.format_shapes().find("world") != std::string::npos);
}

TEST_CASE("twin world: a root cause upstream of the intervention is shared by both worlds, and so is the noise") {
  // U -> Y, intervene on nothing upstream of U: the counterfactual equals the factual.
  auto model = [] {
    auto u = sample("U", Normal(t(0.), t(1.)));
    auto x = sample("X", Normal(u, t(1.)));
    return sample("Y", Normal(x + u, t(1.)));
  };
  auto cf = twin_world();
  auto act = do_({{"X", t(0.5)}});
  auto tr = trace();
  model();
  Trace tt = tr.get_trace();
  CHECK(world_frames(tt.at("U")).empty());
  CHECK(tt.at("U").value.dim() == 0);
  // Y's worlds differ by exactly the change in X (same U, same noise).
  const auto& yv = tt.at("Y").value;
  const double x0 = tt.at("X").value.item<double>();
  CHECK((yv[1] - yv[0]).item<double>() == doctest::Approx(0.5 - x0).epsilon(1e-12));
}

TEST_CASE("twin world inside a plate: world dims and plate dims never collide") {
  const int64_t n = 5;
  auto data_x = torch::linspace(-1, 1, n, torch::kFloat64);
  auto data_y = torch::linspace(0, 2, n, torch::kFloat64);
  auto model = [&] {
    auto p = plate("data", n);
    auto q = plate("pixels", 3, PlateOptions().dim(-2));
    auto x = sample("X", Normal(t(0.), t(1.)));
    return sample("Y", Normal(2 * x, t(1.)));
  };
  {
    // The intervention happens inside both plates: the world takes the first free dim left of them.
    auto cf = twin_world();
    auto act = do_({{"X", torch::zeros({n}, torch::kFloat64)}});
    auto obs = condition({{"X", data_x.expand({3, n})}, {"Y", data_y}});
    auto tr = trace();
    auto y = model();
    CHECK(cf.worlds()[0].dim == -3);
    CHECK(y.sizes() == torch::IntArrayRef({2, 3, n}));
    auto y_cf = cf.gather(y, cf.counterfactual());
    CHECK(torch::allclose(y_cf.squeeze(0), (data_y - 2 * data_x).expand({3, n})));
  }
  // A global intervention before a plate the program enters later.
  auto global = [&] {
    auto mu = sample("mu", Normal(t(0.), t(1.)));
    auto p = plate("data", n);
    return sample("Y", Normal(mu, t(1.)));
  };
  {
    auto cf = twin_world();
    auto act = do_({{"mu", t(3.)}});
    std::string err = error_of([&] { global(); });
    CHECK(err.find("plate 'data'") != std::string::npos);
    CHECK(err.find("first_available_dim(-2)") != std::string::npos);
  }
  {
    auto cf = twin_world(CounterfactualOptions().first_available_dim(-2));
    auto act = do_({{"mu", t(3.)}});
    auto y = global();
    CHECK(y.sizes() == torch::IntArrayRef({2, n}));
  }
}

TEST_CASE("twin world with a subsampled plate keeps the rows paired with their worlds") {
  const int64_t n = 10, b = 4;
  auto data_y = torch::arange(n, torch::kFloat64);
  auto model = [&] {
    auto p = plate("data", n, PlateOptions().subsample_size(b));
    auto x = sample("X", Normal(t(0.), t(1.)));
    return sample("Y", Normal(x, t(1.)), p.subsample(data_y));
  };
  auto s = seed(1);
  auto cf = twin_world();
  auto act = do_({{"X", torch::zeros({b}, torch::kFloat64)}});
  auto tr = trace();
  auto y = model();
  Trace tt = tr.get_trace();
  auto idx = tt.at("data").value;
  auto x = tt.at("X").value;
  CHECK(torch::allclose(y[0], data_y.index_select(0, idx)));
  CHECK(torch::allclose(y[1], data_y.index_select(0, idx) - x));
  // Plate scaling applies once.
  tt.compute_log_prob();
  CHECK(tt.at("Y").scale == doctest::Approx(double(n) / b));
}

TEST_CASE("multi world: one world dim per intervention, every combination") {
  // X -> M -> Y, X -> Y: intervene on X and on M.
  auto cf = multi_world();
  auto act = do_({{"X", t(1.0)}, {"M", t(5.0)}});
  auto obs = condition({{"X", t(0.0)}, {"M", t(0.5)}, {"Y", t(0.75)}});
  auto y = mediator_model();
  REQUIRE(cf.worlds().size() == 2);
  CHECK(cf.worlds()[0].name == "M");
  CHECK(cf.worlds()[1].name == "X");
  CHECK(y.sizes() == torch::IntArrayRef({2, 2}));
  // Y = M + X + e, e = 0.75 - 0.5 - 0 = 0.25; M(X=1, natural) = 0.5 + 1.
  auto at = [&](int64_t m, int64_t x) { return cf.gather(y, {{"M", {m}}, {"X", {x}}}).item<double>(); };
  CHECK(at(0, 0) == doctest::Approx(0.75));
  CHECK(at(0, 1) == doctest::Approx(1.5 + 1 + 0.25));
  CHECK(at(1, 0) == doctest::Approx(5 + 0 + 0.25));
  CHECK(at(1, 1) == doctest::Approx(5 + 1 + 0.25));
}

TEST_CASE("single world: do_ replaces the value, as outside any world handler") {
  auto cf = single_world();
  auto act = do_({{"X", t(2.0)}});
  auto obs = condition({{"M", t(0.0)}});
  auto tr = trace();
  auto y = mediator_model();
  CHECK(y.dim() == 0);
  CHECK(cf.worlds().empty());
}

TEST_CASE("the guide's factual latent is abducted: replayed values get their counterfactual worlds") {
  // The guide proposes M (factual); the model's counterfactual M follows from M's noise.
  Trace guide_trace;
  {
    auto tr = trace();
    sample("M", Normal(t(0.9), t(0.1)));
    guide_trace = tr.get_trace();
  }
  const double m = guide_trace.at("M").value.item<double>();
  auto program = trace(replay(twin_world(do_(condition(mediator_model, {{"X", t(0.2)}, {"Y", t(1.0)}}), {{"X", t(-0.8)}})),
                              guide_trace));
  Trace tt = program.get_trace();
  const auto& mv = tt.at("M").value;
  CHECK(mv[0].item<double>() == doctest::Approx(m).epsilon(1e-12));
  CHECK(mv[1].item<double>() == doctest::Approx(m - 1.0).epsilon(1e-12));
  CHECK(gather(tt, "Y", {{"world", {1}}}).item<double>() == doctest::Approx(1.0 - 2.0).epsilon(1e-12));
}

TEST_CASE("counterfactual worlds: discrete sites need explicit noise, and the error says so") {
  auto model = [] {
    auto x = sample("X", Bernoulli(t(0.5)));
    return sample("Y", Bernoulli(0.2 + 0.6 * x));
  };
  auto cf = twin_world();
  auto act = do_({{"X", t(1.0)}});
  auto obs = condition({{"X", t(0.0)}, {"Y", t(0.0)}});
  auto err = error_of(model);
  CHECK(err.find("'Y'") != std::string::npos);
  CHECK(err.find("Bernoulli") != std::string::npos);
  CHECK(err.find("exogenous noise") != std::string::npos);

  // With the noise written out (Y = 1 iff U < p(X)), the counterfactual is determined.
  auto explicit_noise = [] {
    auto x = sample("X", Bernoulli(t(0.5)));
    auto u = sample("U_Y", dist::Uniform(t(0.), t(1.)));
    return sample("Y", dist::Delta((u < 0.2 + 0.6 * x).to(torch::kFloat64)));
  };
  auto tr = trace();
  auto y = explicit_noise();
  auto u = tr.trace().at("U_Y").value.item<double>();
  CHECK(y[0].item<double>() == 0.0);  // observed
  CHECK(y[1].item<double>() == (u < 0.8 ? 1.0 : 0.0));
  tr.trace().compute_log_prob();
  // The factual observation Y = 0 is impossible when U < 0.2.
  const double lp = tr.trace().at("Y").log_prob.sum().item<double>();
  CHECK(lp == (u < 0.2 ? -INFINITY : 0.0));
}

TEST_CASE("twin world: an observed site whose observation varies across worlds keeps it (deterministic sites)") {
  // A mechanism written as a Delta observed at its own value (what `deterministic` does),
  // downstream of an intervention: its value already has the world dim.
  auto model = [] {
    auto x = sample("X", Normal(t(0.), t(1.)));
    auto u = sample("U_Y", dist::Uniform(t(0.), t(1.)));
    auto y = (u < 0.2 + 0.3 * x).to(torch::kFloat64);
    auto y_site = sample("Y", dist::Delta(y), SampleOptions().obs(y));
    auto w = deterministic("W", 2 * x, /*event_dim=*/0);
    return std::make_pair(y_site, w);
  };
  {
    auto cf = twin_world();
    auto act = do_({{"X", t(1.0)}});
    auto tr = trace();
    auto [y, w] = model();
    const double x0 = tr.trace().at("X").value.item<double>(), u = tr.trace().at("U_Y").value.item<double>();
    REQUIRE(y.sizes() == torch::IntArrayRef{2});
    CHECK(y[0].item<double>() == (u < 0.2 + 0.3 * x0 ? 1.0 : 0.0));
    CHECK(y[1].item<double>() == (u < 0.5 ? 1.0 : 0.0));
    CHECK(w[0].item<double>() == doctest::Approx(2 * x0));
    CHECK(w[1].item<double>() == doctest::Approx(2.0));
    CHECK(world_frames(tr.trace().at("W")).size() == 1);
    tr.trace().compute_log_prob();
    CHECK(tr.trace().at("Y").log_prob.sum().item<double>() == 0.0);
  }
  {
    // Evidence further out replaces the factual observation; the other world follows the noise.
    auto obs = condition({{"X", t(0.0)}, {"Y", t(1.0)}});
    auto cf = twin_world();
    auto act = do_({{"X", t(-1.0)}});
    auto tr = trace();
    auto [y, w] = model();
    const double u = tr.trace().at("U_Y").value.item<double>();
    CHECK(y[0].item<double>() == 1.0);
    CHECK(y[1].item<double>() == (u < -0.1 ? 1.0 : 0.0));
    tr.trace().compute_log_prob();
    CHECK(tr.trace().at("Y").log_prob.sum().item<double>() == (u < 0.2 ? 0.0 : -INFINITY));
  }
}

TEST_CASE("counterfactual worlds: a site may opt into independent worlds") {
  auto model = [] {
    auto x = sample("X", Normal(t(0.), t(1.)));
    InferConfig ic;
    ic.extra = {{"counterfactual", "independent"}};
    return sample("Y", Bernoulli(torch::sigmoid(x)), SampleOptions().infer(ic));
  };
  auto cf = twin_world();
  auto act = do_({{"X", t(1.0)}});
  auto obs = condition({{"Y", t(1.0)}});
  auto y = model();
  CHECK(y.sizes() == torch::IntArrayRef{2});
  CHECK(y[0].item<double>() == 1.0);
}

TEST_CASE("bad input: unknown intervened or observed site, unknown world") {
  auto err = error_of([] { do_(mediator_model, {{"Z", t(1.0)}})(); });
  CHECK(err.find("'Z'") != std::string::npos);
  CHECK(err.find("'X', 'M', 'Y'") != std::string::npos);
  err = error_of([] {
    auto d = do_({{"Q", t(1.0)}});
    mediator_model();
  });
  CHECK(err.find("'Q'") != std::string::npos);

  // condition: the same for observations, in both forms.
  err = error_of([] { condition(mediator_model, {{"y", t(1.0)}})(); });
  CHECK(err.find("never samples 'y'") != std::string::npos);
  CHECK(err.find("'X', 'M', 'Y'") != std::string::npos);
  err = error_of([] {
    auto c = condition({{"Y", t(1.0)}, {"W", t(0.0)}});
    mediator_model();
  });
  CHECK(err.find("never samples 'W'") != std::string::npos);
  // An error inside the scope is reported as it is, not replaced by the check.
  err = error_of([] {
    auto c = condition({{"W", t(0.0)}});
    sample("X", Normal(t(0.), t(-1.)));
  });
  CHECK(err.find("never samples") == std::string::npos);

  auto cf = twin_world();
  auto act = do_({{"X", t(1.0)}});
  auto y = mediator_model();
  err = error_of([&] { cf.gather(y, {{"wrld", {1}}}); });
  CHECK(err.find("'wrld'") != std::string::npos);
  CHECK(err.find("'world'") != std::string::npos);
  err = error_of([&] { cf.gather(y, {{"world", {2}}}); });
  CHECK(err.find("out of range") != std::string::npos);
}

TEST_CASE("do_ accepts an intervention with extra batch dims, and records the site's plates once") {
  auto model = [] {
    auto p = plate("data", 3, PlateOptions().subsample_size(2));
    auto x = sample("X", Normal(t(0.), t(1.)));
    return sample("Y", Normal(x, t(1.)));
  };
  auto tr = trace();
  auto act = do_({{"X", torch::tensor({{0.0}, {10.0}}, torch::kFloat64)}});  // two arms at once
  auto y = model();
  CHECK(y.sizes() == torch::IntArrayRef({2, 2}));
  Trace tt = tr.get_trace();
  CHECK(tt.at("X").cond_indep_stack.size() == 1);
  tt.compute_log_prob();
  CHECK(tt.at("X").scale == doctest::Approx(1.5));
}

TEST_CASE("deterministic sites inside twin worlds keep the world dim as a batch dim") {
  auto tr = trace();
  auto cf = twin_world();
  auto act = do_({{"X", t(1.5)}});
  auto obs = condition({{"X", t(0.5)}});
  auto x = mediator_model();
  auto w = deterministic("W", 2 * x);
  Trace tt = tr.get_trace();
  REQUIRE(world_frames(tt.at("W")).size() == 1);
  CHECK(tt.at("W").fn->event_dim() == 0);
  CHECK(gather(tt, "W", {{"world", {1}}}).item<double>() == doctest::Approx(2 * x[1].item<double>()));
}
