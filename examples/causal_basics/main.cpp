// causal-basics: small causal models whose observational, interventional and counterfactual
// answers are known exactly; prints Ember's answer beside the exact one for each.
// See examples/causal_basics/README.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "examples/causal_basics/causal_basics.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::causal_basics;

namespace {

double bern(double p, int v) { return v ? p : 1 - p; }

void row(const char* what, double ember, double exact) {
  std::printf("  %-44s ember %.6f   exact %.6f   |diff| %.1e\n", what, ember, exact, std::abs(ember - exact));
}

Event site_is(const std::string& name, double value) {
  return [name, value](const ValueMap& v) { return v.at(name) == value; };
}

void sunscreen() {
  std::printf("sunscreen (C) -> sunburn (O), with a sunny-day confounder U -> {C, O}\n");
  Sunscreen s;
  s.confounded = true;
  for (int c = 0; c < 2; ++c) {
    double num = 0, den = 0, act = 0;
    for (int u = 0; u < 2; ++u) {
      const double p_uc = bern(s.p_sun, u) * bern(s.p_c_given_u[u], c);
      num += p_uc * s.p_o_given_cu[2 * u + c];
      den += p_uc;
      act += bern(s.p_sun, u) * s.p_o_given_cu[2 * u + c];
    }
    const std::string cs = std::to_string(c);
    row(("P(O=1 | C=" + cs + ")").c_str(), probability(s, Query().evidence({{"C", scalar(c)}}).event(site_is("O", 1))), num / den);
    row(("P(O=1 | do(C=" + cs + "))").c_str(), probability(s, Query().intervention({{"C", scalar(c)}}).event(site_is("O", 1))), act);
  }
}

void mediator() {
  std::printf("\nconfounder and mediator: Z -> X -> M -> Y, Z -> Y (threshold noise on X, M, Y)\n");
  Mediator md;
  // The joint table, and from it the back-door adjustment and Tian-Pearl's closed forms.
  double p[2][2][2] = {};  // P(z, x, y)
  for (int z = 0; z < 2; ++z)
    for (int x = 0; x < 2; ++x)
      for (int m = 0; m < 2; ++m)
        for (int y = 0; y < 2; ++y)
          p[z][x][y] += bern(md.p_z, z) * bern(md.p_x[z], x) * bern(md.p_m[x], m) * bern(md.p_y[2 * m + z], y);
  auto backdoor = [&](int x) {
    double r = 0;
    for (int z = 0; z < 2; ++z) r += bern(md.p_z, z) * p[z][x][1] / (p[z][x][0] + p[z][x][1]);
    return r;
  };
  for (int x = 0; x < 2; ++x) {
    const double obs = probability(md, Query().evidence({{"X", scalar(x)}}).event(site_is("Y", 1)));
    row(("P(Y=1 | X=" + std::to_string(x) + ")").c_str(), obs, (p[0][x][1] + p[1][x][1]) / (p[0][x][0] + p[0][x][1] + p[1][x][0] + p[1][x][1]));
    row(("P(Y=1 | do(X=" + std::to_string(x) + "))  [back-door]").c_str(), p_y_do_x(md, x), backdoor(x));
  }
  std::printf("  P(Y_{x'}=1 | X=x, Y=y) (twin world):\n");
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 2; ++y)
      std::printf("    x=%d y=%d x'=%d: %.6f   (P(Y=1 | do(X=%d)) = %.6f)\n", x, y, 1 - x, p_counterfactual_y(md, x, y, 1 - x), 1 - x,
                  p_y_do_x(md, 1 - x));
  const double y1 = backdoor(1), y0 = backdoor(0);
  const double py = p[0][0][1] + p[0][1][1] + p[1][0][1] + p[1][1][1];
  const Causation c = probabilities_of_causation(md);
  row("PN  [(P(y) - P(y_0)) / P(x, y)]", c.pn, (py - y0) / (p[0][1][1] + p[1][1][1]));
  row("PS  [(P(y_1) - P(y)) / P(x', y')]", c.ps, (y1 - py) / (p[0][0][0] + p[1][0][0]));
  row("PNS [P(y_1) - P(y_0)]", c.pns, y1 - y0);
}

void gaussian() {
  std::printf("\nlinear-Gaussian: Z -> X -> M -> Y, Z -> Y; Z, M latent; X = 1.2, Y = 0.5 observed, do(X = -0.5)\n");
  LinearGaussian g;
  const double x = 1.2, y = 0.5, x_cf = -0.5;
  const Gaussian post = gaussian_posterior(g, {{"X", scalar(x)}, {"Y", scalar(y)}}, {"Z", "M"});
  const Gaussian cf = gaussian_counterfactual(g, {{"X", scalar(x)}, {"Y", scalar(y)}}, {{"X", scalar(x_cf)}}, {"Z", "M"}, {"M", "Y"});
  std::printf("  posterior E[Z, M | x, y] = (%.6f, %.6f), Var = (%.6f, %.6f)\n", post.mean[0].item<double>(), post.mean[1].item<double>(),
              post.cov[0][0].item<double>(), post.cov[1][1].item<double>());
  row("E[M_{x'} | x, y]  [E[M | x, y] + b (x' - x)]", cf.mean[0].item<double>(), post.mean[1].item<double>() + g.b * (x_cf - x));
  row("Var[M_{x'} | x, y]  [Var[M | x, y]]", cf.cov[0][0].item<double>(), post.cov[1][1].item<double>());
  row("E[Y_{x'} | x, y]  [y + c b (x' - x)]", cf.mean[1].item<double>(), y + g.c * g.b * (x_cf - x));
  row("Var[Y_{x'} | x, y]", cf.cov[1][1].item<double>(), 0.0);
  std::printf("  interventional E[Y | do(X=x')] = %.6f, Var = %.6f\n", g.c * g.b * x_cf,
              g.c * g.c * g.s_m * g.s_m + g.d * g.d * g.s_z * g.s_z + g.s_y * g.s_y);
}

// Length of {u in (0, 1): (u < t) == below for each (t, below)}.
double interval(const std::vector<std::pair<double, bool>>& conditions) {
  double lo = 0, hi = 1;
  for (auto [t, below] : conditions) (below ? hi : lo) = below ? std::min(hi, t) : std::max(lo, t);
  return std::max(0.0, hi - lo);
}

void smoking(const std::string& csv) {
  std::printf("\nsmoking (S) -> tar (T) -> cancer (L), genotype D -> {S, L} latent: %s\n",
              std::filesystem::path(csv).filename().c_str());
  const SmokingData data = load_smoking_data(csv);
  ParamStore store;
  ParamStoreScope scope(store);
  std::vector<double> losses;
  const SmokingCPTs c = fit_smoking(data, FitOptions(), &losses);
  std::printf("  SVI (MAP, Dirichlet(2)/Beta(2, 2) priors), %zu steps: loss %.4f -> %.4f\n", losses.size(), losses.front(), losses.back());
  // Closed-form MAP: (k + 1) / (n + 2) per Bernoulli cell, (n_s + 1) / (N + 3) for P(S).
  const auto S = data.S, T = data.T, L = data.L;
  const char* level[] = {"Low", "Med", "High"};
  for (int s = 0; s < 3; ++s) {
    auto in_s = S == s;
    const double n_s = in_s.sum().item<double>();
    row(("P(S=" + std::string(level[s]) + ")").c_str(), c.p_s[s].item<double>(), (n_s + 1) / (data.size() + 3.0));
    row(("P(T=High | S=" + std::string(level[s]) + ")").c_str(), c.p_t[s].item<double>(),
        ((T * in_s).sum().item<double>() + 1) / (n_s + 2));
    for (int t = 0; t < 2; ++t) {
      auto in_ts = in_s & (T == t);
      row(("P(L=1 | T=" + std::string(t ? "High" : "Low") + ", S=" + level[s] + ")").c_str(), c.p_l[t][s].item<double>(),
          ((L * in_ts).sum().item<double>() + 1) / (in_ts.sum().item<double>() + 2));
    }
  }
  auto p = [](const torch::Tensor& t, int64_t i) { return t[i].item<double>(); };
  const Smoking scm{c};
  for (int s = 0; s < 3; s += 2) {
    double obs = 0, front_door = 0;
    for (int t = 0; t < 2; ++t) {
      const double p_t = t ? p(c.p_t, s) : 1 - p(c.p_t, s);
      obs += p_t * c.p_l[t][s].item<double>();
      for (int d = 0; d < 3; ++d) front_door += p_t * p(c.p_s, d) * c.p_l[t][d].item<double>();
    }
    row(("P(L=1 | S=" + std::string(level[s]) + ")").c_str(), probability(scm, Query().evidence({{"S", scalar(s)}}).event(site_is("L", 1))), obs);
    row(("P(L=1 | do(S=" + std::string(level[s]) + "))  [front-door]").c_str(),
        probability(scm, Query().intervention({{"S", scalar(s)}}).event(site_is("L", 1))), front_door);
  }
  const double cf = probability(scm, Query()
                                         .worlds(Worlds::twin)
                                         .intervention({{"S", scalar(0)}})
                                         .evidence({{"S", scalar(2)}, {"T", scalar(1)}, {"L", scalar(1)}})
                                         .event([](const ValueMap& v) { return gather(v.at("L"), {{kTwinWorld, {1}}}) == 1; }));
  double expected = 0;
  for (int t_cf = 0; t_cf < 2; ++t_cf)
    expected += interval({{p(c.p_t, 2), true}, {p(c.p_t, 0), t_cf == 1}}) / p(c.p_t, 2) *
                interval({{c.p_l[1][2].item<double>(), true}, {c.p_l[t_cf][2].item<double>(), true}}) / c.p_l[1][2].item<double>();
  row("P(L_{S=Low}=1 | S=High, T=High, L=1)", cf, expected);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Small causal models: Ember's observational, interventional and counterfactual answers vs exact ones"};
  std::string example = "all";
  std::string csv = std::string(EMBER_CAUSAL_BASICS_DATA) + "/cigs_and_cancer.csv";
  app.add_option("example", example, "sunscreen | mediator | gaussian | smoking | all")
      ->check(CLI::IsMember({"sunscreen", "mediator", "gaussian", "smoking", "all"}))
      ->capture_default_str();
  app.add_option("--csv", csv, "the book's cigs_and_cancer.csv")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  torch::manual_seed(0);
  if (example == "sunscreen" || example == "all") sunscreen();
  if (example == "mediator" || example == "all") mediator();
  if (example == "gaussian" || example == "all") gaussian();
  if (example == "smoking" || example == "all") smoking(csv);
  return 0;
}
