// Per-site overhead of Ember's handlers: trace + replay + condition, as one Trace_ELBO particle
// runs them, for models with 1, 10 and 100 scalar latent sites, against a baseline in the same
// process that makes the same distribution objects, draws and log-densities by hand.
//
//   bench_inference [--out FILE.json] [--quick] [--svi-only]
//
// Also times a full SVI step (Trace_ELBO + Adam) on the same k-site models against the
// hand-written eager LibTorch loop (scalar leaf tensors, autograd, torch::optim::Adam).
//
// Reports microseconds per site as the least-squares slope over the three model sizes (the
// intercept is the fixed cost of a run), the baseline's slope, and their difference: the
// handlers' own cost per site. Results are printed and written as JSON.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <ATen/record_function.h>
#include <torch/torch.h>

#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;
using dist::Normal;

namespace {

struct Setup {
  int64_t k;
  std::vector<std::string> names;
  std::vector<torch::Tensor> locs, scales;
  torch::Tensor obs = torch::tensor(0.5);
  torch::Tensor zero = torch::tensor(0.0), one = torch::tensor(1.0);
  explicit Setup(int64_t k_) : k(k_) {
    for (int64_t i = 0; i < k; ++i) {
      names.push_back("z" + std::to_string(i));
      locs.push_back(torch::tensor(0.1 * static_cast<double>(i % 7)));
      scales.push_back(torch::tensor(1.0 + 0.01 * static_cast<double>(i % 5)));
    }
  }
};

// Model: k latent sites z_i ~ N(0, 1) and one observation x ~ N(z_{k-1}, 1) (conditioned).
void model(const Setup& s) {
  torch::Tensor last;
  for (int64_t i = 0; i < s.k; ++i) last = sample(s.names[i], Normal(s.zero, s.one));
  sample("x", Normal(last, s.one));
}
// Guide: z_i ~ N(loc_i, scale_i).
void guide(const Setup& s) {
  for (int64_t i = 0; i < s.k; ++i) sample(s.names[i], Normal(s.locs[i], s.scales[i]));
}

// One ELBO particle through the handlers: trace(guide); trace(replay(condition(model))); log-probs.
double handled(const Setup& s) {
  Trace g;
  {
    TraceMessenger tm;
    guide(s);
    g = std::move(tm.trace());
  }
  Trace m;
  {
    TraceMessenger tm;
    ReplayMessenger rm(g);
    ConditionMessenger cm(ValueMap{{"x", s.obs}});
    model(s);
    m = std::move(tm.trace());
  }
  return (m.log_prob_sum() - g.log_prob_sum()).item<double>();
}

// The same arithmetic by hand: the same Normal objects, k rsamples, 2k + 1 log_probs.
double raw(const Setup& s) {
  std::vector<torch::Tensor> z(static_cast<size_t>(s.k));
  torch::Tensor lq = torch::zeros({}), lp = torch::zeros({});
  for (int64_t i = 0; i < s.k; ++i) {
    auto q = std::make_shared<Normal>(s.locs[i], s.scales[i]);
    z[i] = q->rsample();
    lq = lq + q->log_prob(z[i]);
  }
  for (int64_t i = 0; i < s.k; ++i) {
    auto p = std::make_shared<Normal>(s.zero, s.one);
    lp = lp + p->log_prob(z[i]);
  }
  auto px = std::make_shared<Normal>(z.back(), s.one);
  lp = lp + px->log_prob(s.obs);
  return (lp - lq).item<double>();
}

// Full Trace_ELBO loss (validation checks included).
double elbo_loss(const Setup& s, infer::Trace_ELBO& elbo) {
  auto m = [&] {
    ConditionMessenger cm(ValueMap{{"x", s.obs}});
    model(s);
  };
  auto g = [&] { guide(s); };
  return elbo.compute_loss(m, g);
}

// CPU time of the calling thread (LibTorch runs single-threaded here): robust to other
// processes sharing the machine, unlike wall-clock time.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Mean thread-CPU seconds per call of one trial of `reps` calls.
template <class F>
double trial(F&& f, int reps) {
  volatile double sink = 0;
  const double t0 = thread_seconds();
  for (int i = 0; i < reps; ++i) sink = sink + f();
  return (thread_seconds() - t0) / reps;
}

// Least-squares slope and intercept of y against x.
std::pair<double, double> fit(const std::vector<double>& x, const std::vector<double>& y) {
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i] / x.size(), my += y[i] / y.size();
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx);
  const double slope = sxy / sxx;
  return {slope, my - slope * mx};
}

// ---------------------------------------------------------------- full SVI step

// The small-model SVI workload: k scalar latents z_i ~ N(0, 1), x ~ N(z_{k-1}, 1) observed,
// guide z_i ~ N(loc_i, softplus(s_i)), Trace_ELBO with one particle, Adam(lr 0.01).
struct StepSetup {
  int64_t k;
  std::vector<std::string> names, loc_names, s_names;
  torch::Tensor obs = torch::tensor(0.5), zero = torch::tensor(0.0), one = torch::tensor(1.0);
  explicit StepSetup(int64_t k_) : k(k_) {
    for (int64_t i = 0; i < k; ++i) {
      names.push_back("z" + std::to_string(i));
      loc_names.push_back("loc" + std::to_string(i));
      s_names.push_back("s" + std::to_string(i));
    }
  }
  double init_loc(int64_t i) const { return 0.1 * static_cast<double>(i % 7); }
  double init_s(int64_t i) const { return 0.5 + 0.01 * static_cast<double>(i % 5); }
};

void step_model(const StepSetup& s) {
  torch::Tensor last;
  for (int64_t i = 0; i < s.k; ++i) last = sample(s.names[i], Normal(s.zero, s.one));
  sample("x", Normal(last, s.one), s.obs);
}
void step_guide(const StepSetup& s) {
  for (int64_t i = 0; i < s.k; ++i) {
    auto loc = param(s.loc_names[i], torch::tensor(s.init_loc(i)));
    auto sc = param(s.s_names[i], torch::tensor(s.init_s(i)));
    sample(s.names[i], Normal(loc, torch::softplus(sc)));
  }
}

// The hand-written eager floor: scalar leaf tensors, the same arithmetic written with
// LibTorch ops and autograd, torch::optim::Adam.
struct HandWritten {
  const StepSetup& s;
  std::vector<torch::Tensor> locs, ss;
  std::unique_ptr<torch::optim::Adam> adam;
  explicit HandWritten(const StepSetup& s_) : s(s_) {
    std::vector<torch::Tensor> all;
    for (int64_t i = 0; i < s.k; ++i) {
      locs.push_back(torch::tensor(s.init_loc(i)).requires_grad_());
      ss.push_back(torch::tensor(s.init_s(i)).requires_grad_());
      all.push_back(locs.back());
      all.push_back(ss.back());
    }
    adam = std::make_unique<torch::optim::Adam>(all, torch::optim::AdamOptions(0.01));
  }
  double step() {
    constexpr double c = 0.91893853320467274178;  // log sqrt(2 pi)
    std::vector<torch::Tensor> terms;
    terms.reserve(static_cast<size_t>(2 * s.k + 1));
    torch::Tensor z;
    for (int64_t i = 0; i < s.k; ++i) {
      auto scale = torch::softplus(ss[i]);
      z = locs[i] + scale * torch::randn({});
      auto u = (z - locs[i]) / scale;
      terms.push_back(0.5 * u * u + scale.log() + c);  // -log q
      terms.push_back(-0.5 * z * z - c);              // log p
    }
    auto d = s.obs - z;
    terms.push_back(-0.5 * d * d - c);
    auto loss = -torch::stack(terms).sum();
    adam->zero_grad();
    loss.backward();
    adam->step();
    return loss.item<double>();
  }
};

// LibTorch operator calls (top-level and nested, forward and backward) during `f`, by name.
template <class F>
std::map<std::string, int64_t> count_ops(F&& f) {
  static std::map<std::string, int64_t>* counts = nullptr;
  std::map<std::string, int64_t> result;
  counts = &result;
  auto handle = at::addThreadLocalCallback(at::RecordFunctionCallback(
      [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        if (counts) ++(*counts)[fn.name()];
        return nullptr;
      }));
  f();
  at::removeCallback(handle);
  counts = nullptr;
  return result;
}

// Per-step microseconds of Ember's SVI and of the hand-written loop at k = 1, 10, 100 sites,
// and the slopes per site. Validation stays at the library default (on).
nlohmann::json run_svi_suite(bool quick, bool count = false) {
  dist::enable_validation(true);
  const std::vector<int64_t> sizes{1, 10, 100};
  const int trials = quick ? 3 : 7;
  std::vector<double> xs, t_ember, t_hand;
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "full SVI step (Trace_ELBO + Adam)\nsites  ember_us  handwritten_us\n";
  for (int64_t k : sizes) {
    StepSetup s(k);
    clear_param_store();
    auto model = [&] { step_model(s); };
    auto guide = [&] { step_guide(s); };
    infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(0.01)), infer::Trace_ELBO());
    HandWritten hw(s);
    if (count) {
      svi.step();
      hw.step();
      auto ce = count_ops([&] { svi.step(); });
      auto ch = count_ops([&] { hw.step(); });
      int64_t te = 0, th = 0;
      std::set<std::string> keys;
      for (auto& [n, c] : ce) keys.insert(n), te += c;
      for (auto& [n, c] : ch) keys.insert(n), th += c;
      std::cout << "k = " << k << ": operator calls per step, Ember " << te << ", hand-written " << th << "\n";
      for (const auto& n : keys) std::cout << "  " << n << "  " << ce[n] << "  " << ch[n] << "\n";
      continue;
    }
    const int reps = static_cast<int>((quick ? 1000 : 4000) / (k + 4)) + 5;
    trial([&] { return svi.step() + hw.step(); }, std::max(1, reps / 5));
    double e = 1e9, h = 1e9;
    for (int t = 0; t < trials; ++t) {
      e = std::min(e, trial([&] { return svi.step(); }, reps) * 1e6);
      h = std::min(h, trial([&] { return hw.step(); }, reps) * 1e6);
    }
    xs.push_back(static_cast<double>(k));
    t_ember.push_back(e);
    t_hand.push_back(h);
    rows.push_back({{"sites", k}, {"ember_us", e}, {"handwritten_us", h}, {"ratio", e / h}});
    std::cout << k << "  " << e << "  " << h << "\n";
  }
  auto [se, ie] = fit(xs, t_ember);
  auto [sh, ih] = fit(xs, t_hand);
  std::cout << "slope (us/site): Ember " << se << ", hand-written " << sh << ", ratio " << se / sh
            << " (target <= 55 us/site)\n\n";
  return {{"rows", rows},
          {"ember_us_per_site", se},
          {"handwritten_us_per_site", sh},
          {"ember_intercept_us", ie},
          {"handwritten_intercept_us", ih},
          {"ratio_per_site", se / sh},
          {"target_us_per_site", 55.0}};
}

// Runs the three model sizes and fits the slopes; `validate` switches distribution validation.
nlohmann::json run_suite(bool validate, bool quick) {
  dist::enable_validation(validate);
  const std::vector<int64_t> sizes{1, 10, 100};
  const int trials = quick ? 3 : 7;
  std::vector<double> xs, t_handled, t_raw, t_elbo;
  infer::Trace_ELBO elbo;
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "validation " << (validate ? "on" : "off") << "\nsites  handled_us  raw_us  trace_elbo_us\n";
  for (int64_t k : sizes) {
    Setup s(k);
    const int reps = static_cast<int>((quick ? 2000 : 10000) / (k + 4));
    // Warm up, then alternate the three measurements and keep each one's fastest trial.
    trial([&] { return handled(s) + raw(s) + elbo_loss(s, elbo); }, std::max(1, reps / 10));
    double h = 1e9, r = 1e9, e = 1e9;
    for (int t = 0; t < trials; ++t) {
      h = std::min(h, trial([&] { return handled(s); }, reps) * 1e6);
      r = std::min(r, trial([&] { return raw(s); }, reps) * 1e6);
      e = std::min(e, trial([&] { return elbo_loss(s, elbo); }, reps) * 1e6);
    }
    xs.push_back(static_cast<double>(k));
    t_handled.push_back(h);
    t_raw.push_back(r);
    t_elbo.push_back(e);
    rows.push_back({{"sites", k}, {"handled_us", h}, {"raw_us", r}, {"trace_elbo_us", e}});
    std::cout << k << "  " << h << "  " << r << "  " << e << "\n";
  }
  auto [sh, ih] = fit(xs, t_handled);
  auto [sr, ir] = fit(xs, t_raw);
  auto [se, ie] = fit(xs, t_elbo);
  std::cout << "slope (us/site): handled " << sh << ", raw baseline " << sr << ", Trace_ELBO.loss " << se << "\n"
            << "handler overhead per site (handled - raw): " << sh - sr << " us; handled/raw ratio " << sh / sr << "\n\n";
  return {{"validation", validate},
          {"rows", rows},
          {"handled_us_per_site", sh},
          {"raw_baseline_us_per_site", sr},
          {"trace_elbo_us_per_site", se},
          {"handler_overhead_us_per_site", sh - sr},
          {"handled_over_raw_ratio", sh / sr}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bench_inference.json";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) out = argv[++i];
    if (a == "--quick") quick = true;
  }
  torch::manual_seed(0);
  at::set_num_threads(1);
  bool svi_only = false;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--svi-only") svi_only = true;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--count-ops") {
      run_svi_suite(true, /*count=*/true);
      return 0;
    }
  auto svi_step = run_svi_suite(quick);
  if (svi_only) {
    std::ofstream f(out);
    f << nlohmann::json{{"svi_step", svi_step}}.dump(2) << "\n";
    return 0;
  }
  torch::NoGradGuard no_grad;
  nlohmann::json j = {{"svi_step", svi_step},{"benchmark", "per-site overhead of trace+replay+condition (one Trace_ELBO particle)"},
                      {"threads", 1},
                      {"clock", "thread CPU time, fastest of the trials"},
                      {"target_us_per_site", 5.0},
                      {"pyro_1_8_4_us_per_site", 270.0},
                      {"validation_on", run_suite(true, quick)},
                      {"validation_off", run_suite(false, quick)}};
  dist::enable_validation(true);
  std::ofstream f(out);
  f << j.dump(2) << "\n";
  std::cout << "wrote " << out << "\n";
  return 0;
}
