// Inference against Pyro 1.8.4 itself: the programs of scripts/pyro_fixtures/inference.py run
// in Ember, compared with what Pyro computed (tests/fixtures/pyro/inference.json) at 1e-6.
//
// Every program is deterministic: `FixDraws` fixes guide draws (a Normal site's value is
// loc + scale * eps, so pathwise gradients flow; other sites get a fixed value), optimisers
// get fixed gradients, Predictive uses Delta guides.
#include <doctest/doctest.h>

#include <map>

#include "inference/inference.h"
#include "ppl/ppl.h"
#include "pyro_fixture.h"

using namespace ember;
using namespace ember::infer;
using dist::Bernoulli;
using dist::Normal;
using ember::testing::fixture_tensor;
using ember::testing::pyro_cases;

namespace {

torch::Tensor T(std::initializer_list<double> v) { return torch::tensor(std::vector<double>(v), torch::kDouble); }
torch::Tensor S(double v) { return torch::tensor(v, torch::kDouble); }

const nlohmann::json& inference_case(const std::string& name) { return pyro_cases("inference").at(name); }

// Fixes the draws of the named sites: the i-th draw of a site uses the (i mod n)-th entry.
struct FixedDraws {
  std::map<std::string, std::vector<torch::Tensor>> fixed;
  std::map<std::string, size_t> count;
};

class FixDrawsMessenger : public Messenger {
 public:
  explicit FixDrawsMessenger(FixedDraws& draws) : draws_(draws) { enter(); }
  void process(Message& msg) override {
    if (msg.type != SiteType::sample || msg.is_observed || msg.value.defined()) return;
    auto it = draws_.fixed.find(msg.name);
    if (it == draws_.fixed.end()) return;
    const torch::Tensor& v = it->second[draws_.count[msg.name]++ % it->second.size()];
    const dist::Distribution* base = msg.fn.get();
    if (auto* ind = dynamic_cast<const dist::Independent*>(base)) base = ind->base().get();
    if (auto* n = dynamic_cast<const dist::Normal*>(base)) msg.value = n->loc + n->scale * v;
    else msg.value = v;
  }

 private:
  FixedDraws& draws_;
};

template <class Guide>
auto fix_draws(Guide guide, FixedDraws& draws) {
  return [guide, &draws](auto&&... args) {
    FixDrawsMessenger fix(draws);
    guide(args...);
  };
}

// The unconstrained gradient of every param in the store (zeros where none).
std::map<std::string, torch::Tensor> store_grads(ParamStore& store) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : store.names()) {
    auto u = store.unconstrained(n);
    out[n] = u.grad().defined() ? u.grad().clone() : torch::zeros_like(u);
  }
  return out;
}

void check_close(const torch::Tensor& ours, const nlohmann::json& ref, const std::string& what) {
  auto r = fixture_tensor(ref);
  INFO(what << ": ours " << ours.sizes() << " " << ours << "\nPyro " << r.sizes() << " " << r);
  REQUIRE(ours.sizes().vec() == r.sizes().vec());
  CHECK(torch::allclose(ours.to(torch::kDouble), r, 1e-6, 1e-6));
}

void check_grads(ParamStore& store, const nlohmann::json& ref, const std::string& what) {
  auto g = store_grads(store);
  CHECK(g.size() == ref.size());
  for (const auto& [name, value] : ref.items()) {
    REQUIRE_MESSAGE(g.count(name), what << ": no gradient for param '" << name << "'");
    check_close(g.at(name), value, what + " d/d" + name);
  }
}

// The first (model, guide) trace pair `elbo` computes with against Pyro's: the same sample
// sites, each with the same value and scaled, masked log_prob (shapes included).
void check_traces(ELBO& elbo, const Program& model, const Program& guide,
                  const std::map<std::string, std::vector<torch::Tensor>>& fixed, const nlohmann::json& ref,
                  const std::string& what) {
  ParamStore store;
  ParamStoreScope scope(store);
  FixedDraws draws{fixed, {}};
  Program g = fix_draws(guide, draws);
  auto [model_trace, guide_trace] = elbo.get_traces(model, g);
  for (const auto* role : {"model", "guide"}) {
    const Trace& tr = std::string(role) == "model" ? model_trace : guide_trace;
    std::vector<std::string> ours, theirs;
    for (const auto& site : tr)
      if (site.type == SiteType::sample && !is_subsample_site(site)) ours.push_back(site.name);
    for (const auto& [name, v] : ref.at(role).items()) theirs.push_back(name);
    std::sort(ours.begin(), ours.end());
    std::sort(theirs.begin(), theirs.end());
    CHECK_MESSAGE(ours == theirs, what << " " << role << " sites");
    for (const auto& [name, v] : ref.at(role).items()) {
      const Site* site = tr.find(name);
      if (!site) continue;
      check_close(site->value, v.at("value"), what + " " + role + " " + name + " value");
      check_close(site->log_prob, v.at("log_prob"), what + " " + role + " " + name + " log_prob");
    }
  }
}

// loss(), loss_and_grads() and its gradients, differentiable_loss() value and gradients, as
// run_elbo in inference.py.
template <class Model, class Guide>
void check_elbo(ELBO& elbo, Model model, Guide guide, const std::map<std::string, std::vector<torch::Tensor>>& fixed,
                const std::string& case_name) {
  const auto& ref = inference_case(case_name);
  INFO(case_name);
  {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{fixed, {}};
    auto g = fix_draws(guide, draws);
    CHECK(elbo.loss(model, g) == doctest::Approx(ref.at("loss").get<double>()).epsilon(1e-9));
  }
  {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{fixed, {}};
    auto g = fix_draws(guide, draws);
    CHECK(elbo.loss_and_grads(model, g) == doctest::Approx(ref.at("loss_and_grads").get<double>()).epsilon(1e-9));
    check_grads(store, ref.at("grads"), case_name + " loss_and_grads");
  }
  if (ref.contains("differentiable_loss")) {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{fixed, {}};
    auto g = fix_draws(guide, draws);
    torch::Tensor dl = elbo.differentiable_loss(model, g);
    CHECK(dl.item<double>() == doctest::Approx(ref.at("differentiable_loss").get<double>()).epsilon(1e-9));
    dl.backward();
    check_grads(store, ref.at("differentiable_grads"), case_name + " differentiable_loss");
  }
}

// ------------------------------------------------------------- the programs of inference.py

const torch::Tensor& DATA() {
  static const auto t = T({0.3, -1.1, 2.0, 0.7, -0.2, 1.5});
  return t;
}
torch::Tensor SUB() { return torch::tensor({1, 4, 5}, torch::kLong); }

auto everyday_model = [] {
  auto z = sample("z", Normal(S(0.5), S(2.0)));
  {
    auto data = plate("data", 6, PlateOptions().subsample(SUB()));
    auto w = sample("w", Normal(z, S(1.0)));
    auto sc = scale(0.5);
    auto mk = mask(torch::tensor({true, false, true}));
    sample("x", Normal(w, S(0.8)), DATA().index_select(0, data.indices()));
  }
  auto rows = plate("rows", 2, PlateOptions().dim(-2));
  auto cols = plate("cols", 3, PlateOptions().dim(-1));
  sample("y", Normal(z, S(1.5)), torch::tensor({0.5, -0.3, 1.2, 2.2, 0.1, -0.8}, torch::kDouble).reshape({2, 3}));
};

auto everyday_guide = [] {
  auto zl = param("z_loc", S(0.1));
  auto zs = param("z_scale", S(0.7), constraints::positive());
  sample("z", Normal(zl, zs));
  auto wl = param("w_loc", T({0.2, -0.1, 0.4, 0.0, 0.3, -0.5}));
  auto ws = param("w_scale", T({0.5, 0.6, 0.7, 0.8, 0.9, 1.1}), constraints::positive());
  auto data = plate("data", 6, PlateOptions().subsample(SUB()));
  sample("w", Normal(wl.index_select(0, data.indices()), ws.index_select(0, data.indices())));
};

std::map<std::string, std::vector<torch::Tensor>> everyday_fixed() {
  return {{"z", {S(0.4)}}, {"w", {T({-0.3, 1.2, 0.5})}}};
}

torch::Tensor WEIGHTS() { return T({0.5, 2.0, 1.5}); }

auto weighted_model = [] {
  auto z = sample("z", Normal(S(0.5), S(2.0)));
  auto data = plate("data", 3);
  auto sc = scale(WEIGHTS());
  auto w = sample("w", Normal(z, S(1.0)));
  sample("x", Normal(w, S(0.8)), DATA().slice(0, 0, 3));
};

auto weighted_guide = [] {
  auto zl = param("z_loc", S(0.1));
  auto zs = param("z_scale", S(0.7), constraints::positive());
  sample("z", Normal(zl, zs));
  auto wl = param("w_loc", T({0.2, -0.1, 0.4}));
  auto ws = param("w_scale", T({0.5, 0.6, 0.7}), constraints::positive());
  auto data = plate("data", 3);
  auto sc = scale(WEIGHTS());
  auto mk = mask(torch::tensor({true, true, false}));
  sample("w", Normal(wl, ws));
};

auto sf_model = [] {
  auto c = sample("c", Bernoulli(S(0.4)));
  auto data = plate("data", 3);
  auto z = sample("z", Bernoulli(S(0.3)));
  sample("x", Normal(2 * z - 1 + 0.5 * c, S(1.0)), T({0.5, -1.2, 1.4}));
};

auto sf_guide = [] {
  auto phi = param("phi", S(0.3));
  sample("c", Bernoulli(dist::Logits{phi}));
  auto theta = param("theta", T({0.2, -0.4, 1.0}));
  auto data = plate("data", 3);
  sample("z", Bernoulli(dist::Logits{theta}));
};

torch::Tensor RX() { return T({0.9, -0.4, 1.7}); }
std::vector<torch::Tensor> REPS() { return {T({0.3, -1.0, 0.8}), T({-1.4, 0.2, 0.6}), T({1.1, 0.9, -0.7})}; }

auto renyi_model = [] {
  auto data = plate("data", 3);
  auto z = sample("z", Normal(S(0.0), S(1.0)));
  sample("x", Normal(z, S(0.5)), RX());
};
auto renyi_guide = [] {
  auto loc = param("loc", T({0.2, -0.3, 0.5}));
  auto sc = param("scale", T({0.8, 1.2, 0.6}), constraints::positive());
  auto data = plate("data", 3);
  sample("z", Normal(loc, sc));
};
auto renyi_nested_model = [] {
  auto data = plate("data", 3, PlateOptions().dim(-2));
  auto z = sample("z", Normal(S(0.0), S(1.0)));
  auto feat = plate("feat", 2, PlateOptions().dim(-1));
  sample("x", Normal(z, S(0.5)), T({0.9, 1.1, -0.4, 0.2, 1.7, 1.3}).reshape({3, 2}));
};
auto renyi_nested_guide = [] {
  auto loc = param("loc", T({0.2, -0.3, 0.5}).reshape({3, 1}));
  auto sc = param("scale", T({0.8, 1.2, 0.6}).reshape({3, 1}), constraints::positive());
  auto data = plate("data", 3, PlateOptions().dim(-2));
  sample("z", Normal(loc, sc));
};
auto renyi_global_model = [] {
  auto m = sample("m", Normal(S(0.0), S(2.0)));
  auto data = plate("data", 3);
  auto z = sample("z", Normal(m, S(1.0)));
  sample("x", Normal(z, S(0.5)), RX());
};
auto renyi_global_guide = [] {
  auto ml = param("m_loc", S(0.4));
  sample("m", Normal(ml, S(0.9)));
  renyi_guide();
};

}  // namespace

TEST_CASE("Pyro parity: Trace_ELBO with plates, subsampling, scale and mask") {
  Trace_ELBO elbo;
  check_elbo(elbo, everyday_model, everyday_guide, everyday_fixed(), "everyday_Trace_ELBO");
  check_traces(elbo, everyday_model, everyday_guide, everyday_fixed(), inference_case("everyday_Trace_ELBO").at("traces"),
               "everyday_Trace_ELBO traces");
  Trace_ELBO two(ELBOOptions().num_particles(2));
  check_elbo(two, everyday_model, everyday_guide,
             {{"z", {S(0.4), S(-1.0)}}, {"w", {T({-0.3, 1.2, 0.5}), T({0.1, 0.2, 0.3})}}},
             "everyday_Trace_ELBO_2particles");
  Trace_ELBO vec(ELBOOptions().num_particles(2).vectorize_particles(true).max_plate_nesting(2));
  check_elbo(vec, everyday_model, everyday_guide,
             {{"z", {T({0.4, -1.0}).reshape({2, 1, 1})}}, {"w", {T({-0.3, 1.2, 0.5, 0.1, 0.2, 0.3}).reshape({2, 1, 3})}}},
             "everyday_Trace_ELBO_2particles_vectorized");
}

TEST_CASE("Pyro parity: TraceMeanField_ELBO with plates, subsampling, scale and mask") {
  TraceMeanField_ELBO elbo;
  check_elbo(elbo, everyday_model, everyday_guide, everyday_fixed(), "everyday_TraceMeanField_ELBO");
}

TEST_CASE("Pyro parity: tensor scale weights and a guide mask, Trace_ELBO and TraceMeanField_ELBO's KL") {
  const std::map<std::string, std::vector<torch::Tensor>> fixed{{"z", {S(0.4)}}, {"w", {T({-0.3, 1.2, 0.5})}}};
  Trace_ELBO tr;
  check_elbo(tr, weighted_model, weighted_guide, fixed, "weighted_Trace_ELBO");
  TraceMeanField_ELBO mf;
  check_elbo(mf, weighted_model, weighted_guide, fixed, "weighted_TraceMeanField_ELBO");
}

TEST_CASE("Pyro parity: score-function surrogate, differentiable_loss's value is the loss") {
  Trace_ELBO elbo;
  check_elbo(elbo, sf_model, sf_guide, {{"c", {S(1.0)}}, {"z", {T({1.0, 0.0, 1.0})}}}, "score_function_Trace_ELBO");
}

TEST_CASE("Pyro parity: RenyiELBO / IWAE keep the plate shared by every model site apart") {
  for (double alpha : {0.0, 0.5}) {
    const std::string a = alpha == 0.0 ? "0.0" : "0.5";
    RenyiELBO elbo(alpha, ELBOOptions().num_particles(3));
    std::vector<torch::Tensor> nested;
    for (const auto& e : REPS()) nested.push_back(e.reshape({3, 1}));
    check_elbo(elbo, renyi_model, renyi_guide, {{"z", REPS()}}, "renyi_vae_alpha" + a);
    check_elbo(elbo, renyi_nested_model, renyi_nested_guide, {{"z", nested}}, "renyi_nested_alpha" + a);
    check_elbo(elbo, renyi_global_model, renyi_global_guide, {{"z", REPS()}, {"m", {S(0.5), S(-0.2), S(1.3)}}},
               "renyi_global_alpha" + a);
    // All particles at once in the particle plate (left of the model's plates): one guide run
    // whose fixed draws carry the particle dim.
    RenyiELBO vec1(alpha, ELBOOptions().num_particles(3).vectorize_particles(true).max_plate_nesting(1));
    RenyiELBO vec2(alpha, ELBOOptions().num_particles(3).vectorize_particles(true).max_plate_nesting(2));
    check_elbo(vec1, renyi_model, renyi_guide, {{"z", {torch::stack(REPS())}}}, "renyi_vae_alpha" + a + "_vectorized");
    check_elbo(vec2, renyi_nested_model, renyi_nested_guide, {{"z", {torch::stack(REPS()).reshape({3, 3, 1})}}},
               "renyi_nested_alpha" + a + "_vectorized");
    check_elbo(vec1, renyi_global_model, renyi_global_guide,
               {{"z", {torch::stack(REPS())}}, {"m", {T({0.5, -0.2, 1.3}).reshape({3, 1})}}},
               "renyi_global_alpha" + a + "_vectorized");
  }
}

TEST_CASE("Pyro parity: SVI steps end to end (param collection, optimiser, zeroed gradients)") {
  auto run = [](auto model, auto guide, const std::map<std::string, std::vector<torch::Tensor>>& fixed, auto optim,
                auto elbo, const std::string& name) {
    INFO(name);
    const auto& ref = inference_case(name);
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{fixed, {}};
    SVI svi(model, fix_draws(guide, draws), optim, elbo);
    for (const auto& loss : ref.at("losses")) CHECK(svi.step() == doctest::Approx(loss.get<double>()).epsilon(1e-9));
    CHECK(store.size() == ref.at("params").size());
    for (const auto& [param_name, value] : ref.at("params").items())
      check_close(store.get(param_name).detach(), value, name + " " + param_name);
  };
  run(everyday_model, everyday_guide, everyday_fixed(), Adam(AdamOptions().lr(0.1)), Trace_ELBO(), "svi_Trace_ELBO_Adam");
  run(weighted_model, weighted_guide, {{"z", {S(0.4)}}, {"w", {T({-0.3, 1.2, 0.5})}}},
      ClippedAdam(ClippedAdamOptions().lr(0.1).lrd(0.8).clip_norm(1.0)), TraceMeanField_ELBO(),
      "svi_TraceMeanField_ELBO_ClippedAdam");
}

// ------------------------------------------------------------- optimisers

namespace {

OptimizerPtr make_optimizer(const std::string& name, const nlohmann::json& kw) {
  auto get = [&](const char* key, double def) { return kw.contains(key) ? kw.at(key).get<double>() : def; };
  auto flag = [&](const char* key) { return kw.contains(key) && kw.at(key).get<bool>(); };
  auto beta = [&](int i, double def) { return kw.contains("betas") ? kw.at("betas")[i].get<double>() : def; };
  if (name.rfind("ClippedAdam", 0) == 0)
    return std::make_shared<ClippedAdam>(ClippedAdamOptions()
                                             .lr(get("lr", 1e-3))
                                             .beta1(beta(0, 0.9))
                                             .beta2(beta(1, 0.999))
                                             .eps(get("eps", 1e-8))
                                             .weight_decay(get("weight_decay", 0))
                                             .clip_norm(get("clip_norm", 10.0))
                                             .lrd(get("lrd", 1.0)));
  if (name.rfind("Adam", 0) == 0)
    return std::make_shared<Adam>(AdamOptions()
                                      .lr(get("lr", 1e-3))
                                      .beta1(beta(0, 0.9))
                                      .beta2(beta(1, 0.999))
                                      .eps(get("eps", 1e-8))
                                      .weight_decay(get("weight_decay", 0))
                                      .amsgrad(flag("amsgrad")));
  if (name.rfind("SGD", 0) == 0)
    return std::make_shared<SGD>(SGDOptions()
                                     .lr(get("lr", 1e-2))
                                     .momentum(get("momentum", 0))
                                     .dampening(get("dampening", 0))
                                     .weight_decay(get("weight_decay", 0))
                                     .nesterov(flag("nesterov")));
  if (name.rfind("RMSprop", 0) == 0)
    return std::make_shared<RMSprop>(RMSpropOptions()
                                         .lr(get("lr", 1e-2))
                                         .alpha(get("alpha", 0.99))
                                         .eps(get("eps", 1e-8))
                                         .weight_decay(get("weight_decay", 0))
                                         .momentum(get("momentum", 0))
                                         .centered(flag("centered")));
  if (name.rfind("Adagrad", 0) == 0)
    return std::make_shared<Adagrad>(AdagradOptions()
                                         .lr(get("lr", 1e-2))
                                         .lr_decay(get("lr_decay", 0))
                                         .weight_decay(get("weight_decay", 0))
                                         .initial_accumulator_value(get("initial_accumulator_value", 0))
                                         .eps(get("eps", 1e-10)));
  throw std::runtime_error("no optimiser for fixture " + name);
}

}  // namespace

TEST_CASE("Pyro parity: every optimiser's steps, a cleared store and a replaced param start fresh") {
  // As optim_case in inference.py: fixed gradients; 'q' has none at some steps; after 4 steps
  // the store is cleared and the params re-created, after 2 more 'p' is replaced.
  const std::vector<torch::Tensor> grads{T({0.5, -1.5, 2.0}), T({-0.2, 30.0, 0.7}), T({1.0, 0.1, -25.0}),
                                         T({0.3, -0.6, 0.05})};
  for (const auto& [name, ref] : inference_case("optim").items()) {
    SUBCASE(name.c_str()) {
      ParamStore store;
      ParamStoreScope scope(store);
      auto optim = make_optimizer(name, ref.at("kwargs"));
      std::vector<torch::Tensor> ps, qs;
      auto step = [&](size_t i, bool q_grad) {
        auto u = store.unconstrained("p"), v = store.unconstrained("q");
        u.mutable_grad() = grads[i % grads.size()].clone();
        v.mutable_grad() = q_grad ? (-grads[(i + 1) % grads.size()]).clone() : torch::Tensor();
        optim->step({"p", "q"});
        ps.push_back(store.unconstrained("p").detach().clone());
        qs.push_back(store.unconstrained("q").detach().clone());
        store.unconstrained("p").mutable_grad() = torch::Tensor();
        store.unconstrained("q").mutable_grad() = torch::Tensor();
      };
      auto create = [&] {
        param("p", T({0.1, 0.2, -0.3}));
        param("q", T({1.0, -1.0, 0.5}));
      };
      create();
      for (size_t i = 0; i < 4; ++i) step(i, i != 1);
      store.clear();
      create();
      for (size_t i = 0; i < 2; ++i) step(i, true);
      store.set("p", T({0.4, 0.4, 0.4}));
      for (size_t i = 0; i < 2; ++i) step(i, i != 0);
      check_close(torch::stack(ps), ref.at("p"), name + " p");
      check_close(torch::stack(qs), ref.at("q"), name + " q");
    }
  }
}

// ------------------------------------------------------------- Predictive

namespace {

auto pred_model = [](const torch::Tensor& data) {
  auto z = sample("z", Normal(S(0.0), S(1.0)));
  sample("s", Normal(S(0.0), S(1.0)).expand({2})->to_event(1));
  sample("y", dist::Delta(3 * z));
  auto p = plate("data", 3);
  auto w = sample("w", Normal(z, S(1.0)));
  deterministic("d", 2 * w);
  sample("x", Normal(w, S(1.0)), data);
};

auto pred_guide = [](const torch::Tensor&) {
  sample("z", dist::Delta(S(0.3)));
  sample("s", dist::Delta(T({0.1, -0.2}), /*event_dim=*/1));
  auto p = plate("data", 3);
  sample("w", dist::Delta(T({0.4, -0.6, 1.2})));
};

void check_sites(const ValueMap& ours, const nlohmann::json& ref, const std::string& what) {
  std::vector<std::string> names, ref_names;
  for (const auto& [n, v] : ours) names.push_back(n);
  for (const auto& [n, v] : ref.items()) ref_names.push_back(n);
  std::sort(names.begin(), names.end());
  std::sort(ref_names.begin(), ref_names.end());
  CHECK_MESSAGE(names == ref_names, what);
  for (const auto& [n, v] : ref.items())
    if (ours.count(n)) check_close(ours.at(n), v, what + " site " + n);
}

}  // namespace

TEST_CASE("Pyro parity: Predictive returns every site with a guide, in Pyro's shapes") {
  ParamStore store;
  ParamStoreScope scope(store);
  const auto& ref = inference_case("predictive");
  const auto data = T({0.5, -0.5, 1.0});
  for (bool parallel : {false, true}) {
    const std::string tag = parallel ? "parallel" : "sequential";
    Predictive all(pred_model, pred_guide, PredictiveOptions().num_samples(2).parallel(parallel));
    check_sites(all(data), ref.at("guide_" + tag), "guide_" + tag);
    Predictive some(pred_model, pred_guide,
                    PredictiveOptions().num_samples(2).parallel(parallel).return_sites({"z", "s", "d"}));
    check_sites(some(data), ref.at("guide_return_sites_" + tag), "guide_return_sites_" + tag);
    ValueMap samples{{"z", T({0.3, -0.1})},
                     {"s", T({0.1, -0.2, 0.5, 0.0}).reshape({2, 2})},
                     {"w", T({0.4, -0.6, 1.2, 0.0, 0.1, 0.2}).reshape({2, 3})}};
    Predictive from_samples(pred_model, samples, PredictiveOptions().parallel(parallel));
    check_sites(from_samples(data), ref.at("samples_" + tag), "samples_" + tag);
  }
}

// ------------------------------------------------------------- TraceEnum_ELBO (scripts/pyro_fixtures/enum.py)

namespace {

InferConfig enumerate(const char* how) {
  InferConfig c;
  c.enumerate = how;
  return c;
}
SampleOptions par() { return SampleOptions().infer(enumerate("parallel")); }

torch::Tensor X6() { return T({0.3, -1.1, 2.0, 0.7, -0.2, 1.5}); }
torch::Tensor X4() { return T({0.3, -1.1, 2.0, 0.7}); }

auto mixture_model = [] {
  auto locs = param("locs", T({-1.0, 0.5, 2.0}));
  auto weights = param("weights", T({0.2, 0.5, 0.3}), constraints::positive());
  auto k = sample("k", Bernoulli(S(0.4)));
  auto mu = sample("mu", Normal(S(0.0), S(1.0)));
  auto data = plate("data", 6, PlateOptions().subsample(torch::tensor({0, 2, 3, 5}, torch::kLong)));
  auto z = sample("z", dist::Categorical(weights), par());
  sample("x", Normal(locs.index({z}) + 0.5 * k + mu, S(0.8)), X6().index_select(0, data.indices()));
};
auto mixture_guide = [] {
  auto p = param("k_logit", S(0.2));
  sample("k", Bernoulli(dist::Logits{p}), par());
  auto m = param("mu_loc", S(0.1));
  sample("mu", Normal(m, S(0.5)));
  auto data = plate("data", 6, PlateOptions().subsample(torch::tensor({0, 2, 3, 5}, torch::kLong)));
};

auto masked_model = [] {
  auto locs = param("locs", T({-1.0, 0.5, 2.0}));
  auto data = plate("data", 4);
  auto mk = mask(torch::tensor({true, false, true, true}));
  auto z = sample("z", dist::Categorical(T({0.2, 0.5, 0.3})), par());
  sample("x", Normal(locs.index({z}), S(1.0)), X4());
};
auto empty_guide = [] {};

auto zero_model = [] {
  auto locs = param("locs", T({-1.0, 0.5, 2.0}));
  auto c = sample("c", dist::Categorical(T({0.3, 0.3, 0.4})));
  auto d = sample("d", dist::Categorical(dist::Logits{T({0.0, -INFINITY, 0.5})}), par());
  auto data = plate("data", 4);
  sample("x", Normal(locs.index({c}) + locs.index({d}), S(1.0)), X4());
};
auto zero_guide = [] {
  auto q = param("q", T({0.3, -0.2}));
  auto logits = torch::stack({q[0], S(-INFINITY), q[1]});
  sample("c", dist::Categorical(dist::Logits{logits}), par());
};

auto seqplate_model = [] {
  auto locs = param("locs", T({-1.0, 1.5}));
  auto x = T({0.3, -1.1, 2.0, 0.7, -0.2, 1.5, 0.9, 0.1, 1.2, -0.4}).reshape({5, 2});
  for (int64_t i : plate_range("data", 5, PlateOptions().subsample(torch::tensor({0, 2, 4}, torch::kLong)))) {
    auto z = sample("z_" + std::to_string(i), Bernoulli(S(0.3)), par());
    auto feat = plate("feat_" + std::to_string(i), 2);
    sample("x_" + std::to_string(i), Normal(locs.index({z.to(torch::kLong)}), S(1.0)), x[i]);
  }
};

auto crossed_model = [] {
  auto mu_a = param("mu_a", T({-1.0, 0.5, 2.0}));
  auto mu_b = param("mu_b", T({0.2, 1.1}));
  torch::Tensor a, b;
  {
    auto pa = plate("A", 2, PlateOptions().dim(-1));
    a = sample("a", dist::Categorical(T({0.2, 0.5, 0.3})), par());
  }
  {
    auto pb = plate("B", 3, PlateOptions().dim(-2));
    b = sample("b", Bernoulli(S(0.35)), par());
  }
  auto pa = plate("A", 2, PlateOptions().dim(-1));
  auto pb = plate("B", 3, PlateOptions().dim(-2));
  sample("x", Normal(mu_a.index({a}), S(1.0)), T({0.3, -1.1, 2.0, 0.7, -0.2, 1.5}).reshape({3, 2}));
  sample("y", Normal(mu_b.index({b.to(torch::kLong)}), S(0.7)), T({1.3, 0.1, 0.0, -0.7, 0.8, 2.5}).reshape({3, 2}));
};

auto seqguide_model = [] {
  auto locs = param("locs", T({-1.0, 0.5, 2.0}));
  auto c = sample("c", dist::Categorical(T({0.3, 0.3, 0.4})));
  auto data = plate("data", 5);
  auto z = sample("z", Bernoulli(S(0.3)), par());
  sample("x", Normal(locs.index({c}) + z, S(1.0)), T({0.3, -1.1, 2.0, 0.7, -0.2}));
};
auto seqguide_guide = [] {
  auto q = param("q", T({0.3, -0.2, 0.1}));
  sample("c", dist::Categorical(dist::Logits{q}), SampleOptions().infer(enumerate("sequential")));
};

void check_enum(ELBO& elbo, const std::function<void()>& model, const std::function<void()>& guide,
                const std::map<std::string, std::vector<torch::Tensor>>& fixed, const std::string& name) {
  const auto& ref = pyro_cases("enum").at(name);
  INFO(name);
  auto run = [&](auto&& body) {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{fixed, {}};
    auto g = fix_draws(guide, draws);
    auto m = model;
    body(m, g, store);
  };
  run([&](auto& m, auto& g, ParamStore&) {
    CHECK(elbo.loss(m, g) == doctest::Approx(ref.at("loss").get<double>()).epsilon(1e-9));
  });
  run([&](auto& m, auto& g, ParamStore& store) {
    CHECK(elbo.loss_and_grads(m, g) == doctest::Approx(ref.at("loss_and_grads").get<double>()).epsilon(1e-9));
    check_grads(store, ref.at("grads"), name + " loss_and_grads");
  });
  run([&](auto& m, auto& g, ParamStore& store) {
    torch::Tensor dl = elbo.differentiable_loss(m, g);
    CHECK(dl.item<double>() == doctest::Approx(ref.at("differentiable_loss").get<double>()).epsilon(1e-9));
    dl.backward();
    check_grads(store, ref.at("differentiable_grads"), name + " differentiable_loss");
  });
}

}  // namespace

TEST_CASE("Pyro parity: TraceEnum_ELBO, a mixture in a subsampled plate with guide enumeration and a Normal site") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, mixture_model, mixture_guide, {{"mu", {S(0.7)}}}, "mixture");
  check_traces(elbo, mixture_model, mixture_guide, {{"mu", {S(0.7)}}}, pyro_cases("enum").at("mixture").at("traces"),
               "mixture traces");
  TraceEnum_ELBO two(ELBOOptions().max_plate_nesting(1).num_particles(2));
  check_enum(two, mixture_model, mixture_guide, {{"mu", {S(0.7), S(-0.4)}}}, "mixture_2particles");
  TraceEnum_ELBO vec(ELBOOptions().max_plate_nesting(1).num_particles(2).vectorize_particles(true));
  check_enum(vec, mixture_model, mixture_guide, {{"mu", {T({0.7, -0.4}).reshape({2, 1})}}}, "mixture_2particles_vectorized");
}

TEST_CASE("Pyro parity: TraceEnum_ELBO does not mask the prior of a model-enumerated site") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, masked_model, empty_guide, {}, "masked_prior");
}

TEST_CASE("Pyro parity: TraceEnum_ELBO drops enumerated values of probability 0") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, zero_model, zero_guide, {}, "zero_probability");
}

TEST_CASE("Pyro parity: TraceEnum_ELBO in a sequential plate") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, seqplate_model, empty_guide, {}, "sequential_plate");
}

TEST_CASE("Pyro parity: TraceEnum_ELBO contracts independent components in crossed plates separately") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(2));
  check_enum(elbo, crossed_model, empty_guide, {}, "crossed_plates");
  check_traces(elbo, crossed_model, empty_guide, {}, pyro_cases("enum").at("crossed_plates").at("traces"),
               "crossed_plates traces");
}

TEST_CASE("Pyro parity: TraceEnum_ELBO with sequential enumeration in the guide") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, seqguide_model, seqguide_guide, {}, "sequential_guide");
}

namespace {
auto seqlocal_model = [] {
  auto m = sample("m", Normal(S(0.0), S(1.0)));
  auto data = plate("data", 3);
  auto z = sample("z", Bernoulli(S(0.3)));
  sample("x", Normal(m + 2 * z - 1, S(1.0)), T({0.3, -1.1, 2.0}));
};
auto seqlocal_guide = [] {
  auto loc = param("m_loc", S(0.2));
  sample("m", Normal(loc, S(0.5)));
  auto theta = param("theta", T({0.2, -0.4, 1.0}));
  auto data = plate("data", 3);
  sample("z", Bernoulli(dist::Logits{theta}), SampleOptions().infer(enumerate("sequential")));
};
}  // namespace

TEST_CASE("Pyro parity: TraceEnum_ELBO with a sequentially enumerated site in a plate (global costs counted once)") {
  TraceEnum_ELBO elbo(ELBOOptions().max_plate_nesting(1));
  check_enum(elbo, seqlocal_model, seqlocal_guide, {{"m", {S(0.6)}}}, "sequential_guide_local");
}

// ------------------------------------------------------------- schedulers and clipping (tracegraph.py)

namespace {

// As optimiser_run in tracegraph.py: per epoch, fixed gradients for "p" (and "q" from
// `late_param_epoch`), one optimiser step, one scheduler step; then each param's learning rate
// and value are compared with Pyro's.
void check_optimiser_run(const OptimizerPtr& optim, LRScheduler* scheduler, const std::string& case_name,
                         int64_t epochs, const std::vector<double>& metrics = {}, int64_t late_param_epoch = -1) {
  const auto& ref = pyro_cases("tracegraph").at(case_name);
  INFO(case_name);
  ParamStore store;
  ParamStoreScope scope(store);
  const auto grad_p = T({0.5, -1.5}), grad_q = S(2.0);
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    std::vector<std::string> names{"p"};
    param("p", T({1.0, -2.0}));
    store.unconstrained("p").mutable_grad() = grad_p * (1.0 + 0.1 * static_cast<double>(epoch));
    if (late_param_epoch >= 0 && epoch >= late_param_epoch) {
      param("q", S(0.5));
      store.unconstrained("q").mutable_grad() = grad_q.clone();
      names.push_back("q");
    }
    optim->step(names, store);
    if (scheduler) {
      if (metrics.empty()) scheduler->step();
      else scheduler->step(metrics[static_cast<size_t>(epoch)]);
    }
    for (const std::string n : {"p", "q"}) {
      const double want = ref.at("lr_" + n)[static_cast<size_t>(epoch)].get<double>();
      if (!store.contains(n)) {
        CHECK(want == -1.0);
        continue;
      }
      INFO("epoch " << epoch << " param " << n);
      CHECK(optim->learning_rate(n) == doctest::Approx(want).epsilon(1e-12));
      check_close(store.get(n), ref.at(n)[static_cast<size_t>(epoch - (n == "q" ? late_param_epoch : 0))],
                  case_name + " " + n);
    }
  }
}

const std::vector<double> kPlateauMetrics{1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.9, 0.91, 0.92};

}  // namespace

TEST_CASE("Pyro parity: StepLR and ExponentialLR schedule each param from its first step") {
  {
    auto sgd = std::make_shared<SGD>(SGDOptions().lr(0.1));
    StepLR scheduler(sgd, StepLROptions(2).gamma(0.5));
    check_optimiser_run(scheduler.optimizer(), &scheduler, "step_lr", 6, {}, 3);
    CHECK(scheduler.epoch("p") == 6);
    CHECK(scheduler.epoch("q") == 3);
  }
  auto adam = std::make_shared<Adam>(AdamOptions().lr(0.05));
  ExponentialLR scheduler(adam, ExponentialLROptions(0.7));
  check_optimiser_run(scheduler.optimizer(), &scheduler, "exponential_lr", 5, {}, 2);
  CHECK_THROWS_WITH_AS(scheduler.step(1.0), doctest::Contains("driven by epochs"), ValueError);
}

TEST_CASE("Pyro parity: ReduceLROnPlateau with patience, cooldown, min_lr, max mode and absolute threshold") {
  {
    auto sgd = std::make_shared<SGD>(SGDOptions().lr(0.2));
    ReduceLROnPlateau scheduler(sgd, ReduceLROnPlateauOptions().factor(0.5).patience(1).cooldown(1).min_lr(0.03));
    check_optimiser_run(sgd, &scheduler, "reduce_lr_on_plateau", 10, kPlateauMetrics);
    CHECK_THROWS_WITH_AS(scheduler.step(), doctest::Contains("needs the epoch's metric"), ValueError);
  }
  std::vector<double> negated;
  for (double m : kPlateauMetrics) negated.push_back(-m);
  auto sgd = std::make_shared<SGD>(SGDOptions().lr(0.2));
  ReduceLROnPlateau scheduler(sgd, ReduceLROnPlateauOptions()
                                       .mode(PlateauMode::max)
                                       .threshold_mode(ThresholdMode::abs)
                                       .threshold(0.02)
                                       .factor(0.3)
                                       .patience(0));
  check_optimiser_run(sgd, &scheduler, "plateau_max_abs", 10, negated);
}

TEST_CASE("Pyro parity: clip_norm and clip_value of every optimiser clip each param's gradient") {
  check_optimiser_run(std::make_shared<Adam>(AdamOptions().lr(0.1), ClipOptions().clip_norm(0.5)), nullptr,
                      "adam_clip_norm", 3, {}, 1);
  check_optimiser_run(std::make_shared<SGD>(SGDOptions().lr(0.1), ClipOptions().clip_value(0.6)), nullptr,
                      "sgd_clip_value", 3, {}, 1);
  check_optimiser_run(std::make_shared<SGD>(SGDOptions().lr(0.1), ClipOptions().clip_norm(1.0).clip_value(0.3)), nullptr,
                      "sgd_clip_both", 2);
  CHECK_THROWS_WITH_AS(SGD(SGDOptions(), ClipOptions().clip_norm(0.0)), doctest::Contains("clip_norm must be positive"),
                       ValueError);
}

// ------------------------------------------------------------- TraceGraph_ELBO (tracegraph.py)

namespace {

const torch::Tensor& TG_X() {
  static const auto t = T({0.5, -1.2, 1.4});
  return t;
}

auto tg_model = [] {
  auto a = sample("a", Bernoulli(S(0.4)));
  auto data = plate("data", 3);
  auto z = sample("z", Normal(0.8 * a, S(1.0)));
  auto c = sample("c", dist::Categorical(dist::Logits{torch::stack({z, -z, 0.5 * z}, -1)}));
  sample("x", Normal(z + c.to(torch::kDouble) - 1.0, S(0.7)), TG_X());
};

// The guide of tracegraph.py; `baseline_of(site)` gives a site's infer config.
auto make_tg_guide(std::function<InferConfig(const std::string&)> baseline_of = nullptr) {
  return [baseline_of] {
    auto infer = [&](const std::string& n) { return baseline_of ? baseline_of(n) : InferConfig{}; };
    auto phi = param("phi", S(0.3));
    auto a = sample("a", Bernoulli(dist::Logits{phi}), SampleOptions().infer(infer("a")));
    auto loc = param("z_loc", T({0.2, -0.1, 0.4}));
    auto scale_ = param("z_scale", T({0.9, 1.1, 0.8}), constraints::positive());
    auto lg = param("c_logits", torch::tensor({0.1, -0.2, 0.3, 0.0, 0.5, -0.4, 0.2, 0.2, -0.1}, torch::kDouble).reshape({3, 3}));
    auto c_infer = infer("c");
    auto data = plate("data", 3);
    auto z = sample("z", Normal(loc + 0.5 * a, scale_));
    sample("c", dist::Categorical(dist::Logits{lg + z.unsqueeze(-1) * T({0.3, -0.2, 0.1})}), SampleOptions().infer(c_infer));
  };
}

std::map<std::string, std::vector<torch::Tensor>> tg_fixed() {
  return {{"a", {S(1.0), S(0.0)}},
          {"z", {T({0.3, -0.8, 1.1}), T({-0.2, 0.5, 0.7})}},
          {"c", {torch::tensor({2, 0, 1}), torch::tensor({1, 1, 0})}}};
}

// As tracegraph_run: loss(), then `steps` loss_and_grads calls on one param store and one
// FixDraws (gradients zeroed in between): each call's loss, gradients and param values.
template <class Guide>
void check_tracegraph_run(ELBO& elbo, Guide guide, const std::string& case_name) {
  const auto& ref = pyro_cases("tracegraph").at(case_name);
  INFO(case_name);
  {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{tg_fixed(), {}};
    auto g = fix_draws(guide, draws);
    CHECK(elbo.loss(tg_model, g) == doctest::Approx(ref.at("loss").get<double>()).epsilon(1e-9));
  }
  ParamStore store;
  ParamStoreScope scope(store);
  FixedDraws draws{tg_fixed(), {}};
  auto g = fix_draws(guide, draws);
  for (size_t i = 0; i < ref.at("steps").size(); ++i) {
    const auto& step = ref.at("steps")[i];
    for (const auto& n : store.names())
      if (store.unconstrained(n).grad().defined()) store.unconstrained(n).mutable_grad().zero_();
    CHECK(elbo.loss_and_grads(tg_model, g) == doctest::Approx(step.at("loss").get<double>()).epsilon(1e-9));
    check_grads(store, step.at("grads"), cat(case_name, " step ", i));
    for (const auto& [name, value] : step.at("params").items()) {
      REQUIRE_MESSAGE(store.contains(name), "no param '" << name << "'");
      check_close(store.get(name), value, cat(case_name, " step ", i, " param ", name));
    }
  }
}

}  // namespace

TEST_CASE("Pyro parity: TraceGraph_ELBO uses downstream costs only (loss, surrogate, gradients)") {
  TraceGraph_ELBO elbo;
  check_tracegraph_run(elbo, make_tg_guide(), "tracegraph_plain");
  {
    ParamStore store;
    ParamStoreScope scope(store);
    FixedDraws draws{tg_fixed(), {}};
    auto g = fix_draws(make_tg_guide(), draws);
    auto [loss, surrogate] = elbo.compute_loss_and_surrogate(bind_program(tg_model), bind_program(g));
    CHECK(surrogate.item<double>() ==
          doctest::Approx(pyro_cases("tracegraph").at("tracegraph_plain").at("surrogate").get<double>()).epsilon(1e-9));
  }
  TraceGraph_ELBO two(ELBOOptions().num_particles(2));
  check_tracegraph_run(two, make_tg_guide(), "tracegraph_2particles");
  // Trace_ELBO on the same draws: the score terms differ (the fixture pins both).
  Trace_ELBO trace_elbo;
  check_tracegraph_run(trace_elbo, make_tg_guide(), "trace_elbo_same_model");
  const auto& plain = pyro_cases("tracegraph").at("tracegraph_plain").at("steps")[0].at("grads").at("z_loc");
  const auto& full = pyro_cases("tracegraph").at("trace_elbo_same_model").at("steps")[0].at("grads").at("z_loc");
  CHECK_FALSE(torch::allclose(fixture_tensor(plain), fixture_tensor(full), 1e-3, 1e-3));
}

TEST_CASE("Pyro parity: TraceGraph_ELBO baselines (decaying average, learned value, nn)") {
  TraceGraph_ELBO elbo;
  check_tracegraph_run(elbo,
                       make_tg_guide([](const std::string& n) {
                         InferConfig c;
                         if (n == "a") c.baseline = BaselineOptions().use_decaying_avg_baseline(true).baseline_beta(0.8);
                         if (n == "c") c.baseline = BaselineOptions().baseline_value(param("c_baseline", T({0.3, -0.5, 1.0})));
                         return c;
                       }),
                       "tracegraph_baselines");
  torch::nn::Linear net(torch::nn::LinearOptions(3, 3));
  net->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    net->weight.copy_(torch::tensor({0.2, -0.1, 0.3, 0.05, 0.4, -0.2, -0.3, 0.1, 0.25}, torch::kDouble).reshape({3, 3}));
    net->bias.copy_(T({0.1, -0.2, 0.05}));
  }
  auto tg_guide = make_tg_guide([net](const std::string& n) mutable {
    InferConfig c;
    if (n == "c")
      c.baseline = BaselineOptions()
                       .nn_baseline([net](const torch::Tensor& x) mutable { return net->forward(x); })
                       .nn_baseline_input(T({0.3, -0.6, 0.9}));
    return c;
  });
  auto guide = [&net, tg_guide] {
    module("bl", net);
    tg_guide();
  };
  check_tracegraph_run(elbo, guide, "tracegraph_nn_baseline");
}

TEST_CASE("TraceGraph_ELBO rejects a baseline of the wrong shape and enumerated guide sites") {
  ParamStore store;
  ParamStoreScope scope(store);
  TraceGraph_ELBO elbo;
  auto bad = make_tg_guide([](const std::string& n) {
    InferConfig c;
    if (n == "c") c.baseline = BaselineOptions().baseline_value(T({0.3, -0.5}));
    return c;
  });
  CHECK_THROWS_WITH_AS(elbo.loss_and_grads(tg_model, bad), doctest::Contains("shape of its downstream cost, [3]"), ValueError);
  auto enumerated = make_tg_guide([](const std::string& n) {
    InferConfig c;
    if (n == "a") c.enumerate = "parallel";
    return c;
  });
  CHECK_THROWS_WITH_AS(elbo.loss(tg_model, enumerated), doctest::Contains("use TraceEnum_ELBO"), ValueError);
}
