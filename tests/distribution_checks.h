#pragma once
// Statistical and numerical checks shared by the distribution tests: closeness to reference
// values, moments within their standard errors, Kolmogorov-Smirnov and chi-square goodness of
// fit at alpha = 0.001, and pathwise-gradient estimates within their standard errors.

#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "distributions/distributions.h"

namespace ember::testing {

inline constexpr double kMomentZ = 5.0;      // |estimate - truth| <= 5 standard errors
inline constexpr double kKsCrit = 1.94947;   // Kolmogorov distribution, alpha = 0.001: D_n <= 1.94947 / sqrt(n)
inline constexpr double kChi2Z = 3.0902;     // standard-normal 0.999 quantile (Wilson-Hilferty)

/// Same shape, same NaN and infinity pattern, and |a - e| <= rtol |e| + atol elsewhere.
inline void check_close(const torch::Tensor& actual_, const torch::Tensor& expected_, const std::string& what,
                        double rtol = 1e-6, double atol = 1e-10) {
  INFO(what);
  REQUIRE(actual_.defined());
  auto actual = actual_.detach().to(torch::kDouble);
  auto e = expected_.detach().to(torch::kDouble);
  REQUIRE_MESSAGE(actual.sizes() == e.sizes(), what << ": shape " << actual.sizes() << " vs expected " << e.sizes());
  auto nan_a = torch::isnan(actual), nan_e = torch::isnan(e);
  CHECK_MESSAGE(torch::equal(nan_a, nan_e), what << ": NaN pattern differs\nactual " << actual << "\nexpected " << e);
  auto fin = torch::isfinite(e);
  auto inf_e = ~fin & ~nan_e;
  CHECK_MESSAGE(torch::equal(actual.masked_select(inf_e), e.masked_select(inf_e)), what << ": infinities differ\nactual "
                                                                                      << actual << "\nexpected " << e);
  auto a = actual.masked_select(fin), b = e.masked_select(fin);
  auto err = (a - b).abs() - (rtol * b.abs() + atol);
  const double worst = err.numel() ? err.max().item<double>() : -1.0;
  CHECK_MESSAGE(worst <= 0, what << ": mismatch\nactual " << actual << "\nexpected " << e);
}

/// Sample mean and variance of draws `x` ([N, ...]) within kMomentZ standard errors of `mean`, `var`.
inline void check_moments(const torch::Tensor& x_, const torch::Tensor& mean, const torch::Tensor& var,
                          const std::string& what) {
  INFO(what);
  auto x = x_.to(torch::kDouble);
  auto mu = mean.to(torch::kDouble).detach(), v = var.to(torch::kDouble).detach();
  const double n = static_cast<double>(x.size(0));
  auto zm = ((x.mean(0) - mu).abs() / (v / n).sqrt()).max().item<double>();
  CHECK_MESSAGE(zm <= kMomentZ, what << ": sample mean " << x.mean(0) << " vs mean " << mu << " is " << zm << " standard errors off");
  auto mu4 = (x - mu).pow(4).mean(0);
  auto se_v = ((mu4 - v.pow(2)).clamp_min(0) / n).sqrt();
  auto zv = ((x.var(0) - v).abs() / se_v).max().item<double>();
  CHECK_MESSAGE(zv <= kMomentZ, what << ": sample variance " << x.var(0) << " vs variance " << v << " is " << zv << " standard errors off");
}

/// Kolmogorov-Smirnov statistic of 1-D draws against `cdf`, checked against the alpha = 0.001 critical value.
inline void check_ks(const torch::Tensor& samples, const std::function<torch::Tensor(const torch::Tensor&)>& cdf,
                     const std::string& what) {
  INFO(what);
  auto x = std::get<0>(samples.to(torch::kDouble).flatten().sort());
  const auto n = x.size(0);
  auto F = cdf(x).to(torch::kDouble);
  auto i = torch::arange(1, n + 1, torch::kDouble);
  const double d = torch::max((i / n - F).max(), (F - (i - 1) / n).max()).item<double>();
  const double crit = kKsCrit / std::sqrt(static_cast<double>(n));
  CHECK_MESSAGE(d <= crit, what << ": KS statistic " << d << " exceeds the critical value " << crit);
}

/// KS for each column b of draws [N, B] against the batch element b of `d` (d.cdf on a [N, B] grid).
inline void check_ks_batch(const torch::Tensor& samples, const dist::Distribution& d, const std::string& what) {
  auto flat = samples.reshape({samples.size(0), -1}).to(torch::kDouble);
  auto unchecked = d.with_validation(false);  // column b's draws may lie outside another element's support
  for (int64_t b = 0; b < flat.size(1); ++b) {
    auto cdf = [&](const torch::Tensor& x) {
      auto grid = x.unsqueeze(-1).expand({x.size(0), flat.size(1)}).reshape(concat({x.size(0)}, d.batch_shape()));
      return unchecked->cdf(grid.to(d.options().dtype())).reshape({x.size(0), -1}).select(1, b);
    };
    check_ks(flat.select(1, b), cdf, cat(what, " [batch element ", b, "]"));
  }
}

/// Chi-square quantile at 1 - 0.001 by Wilson-Hilferty.
inline double chi2_crit(int64_t df) {
  const double k = static_cast<double>(df);
  return k * std::pow(1 - 2 / (9 * k) + kChi2Z * std::sqrt(2 / (9 * k)), 3);
}

/// Chi-square goodness of fit of integer draws against pmf(k), k = 0, 1, ...; bins with an
/// expected count below 5 are merged and the tail mass joins the last bin.
inline void check_chi2(const torch::Tensor& samples, const std::function<double(int64_t)>& pmf, const std::string& what) {
  INFO(what);
  auto x = samples.to(torch::kLong).flatten();
  const double n = static_cast<double>(x.size(0));
  const int64_t kmax = x.max().item<int64_t>();
  auto counts = torch::bincount(x, {}, kmax + 1).to(torch::kDouble);
  std::vector<double> obs, expct;
  double o = 0, e = 0, total_p = 0;
  for (int64_t k = 0; k <= kmax; ++k) {
    const double p = pmf(k);
    total_p += p;
    o += counts[k].item<double>();
    e += n * p;
    if (e >= 5) {
      obs.push_back(o);
      expct.push_back(e);
      o = e = 0;
    }
  }
  e += n * std::max(0.0, 1 - total_p);
  if (obs.empty() || e >= 5) {
    obs.push_back(o);
    expct.push_back(e);
  } else {
    obs.back() += o;
    expct.back() += e;
  }
  REQUIRE_MESSAGE(obs.size() >= 2, what << ": too few bins for a chi-square test");
  double stat = 0;
  for (size_t i = 0; i < obs.size(); ++i) stat += (obs[i] - expct[i]) * (obs[i] - expct[i]) / expct[i];
  const double crit = chi2_crit(static_cast<int64_t>(obs.size()) - 1);
  CHECK_MESSAGE(stat <= crit, what << ": chi-square " << stat << " with " << obs.size() - 1 << " dof exceeds " << crit);
}

/// Chi-square goodness of fit for each batch element of integer draws [N, B] against d.log_prob.
inline void check_chi2_batch(const torch::Tensor& samples, const dist::Distribution& d, const std::string& what) {
  auto flat = samples.reshape({samples.size(0), -1});
  auto unchecked = d.with_validation(false);
  for (int64_t b = 0; b < flat.size(1); ++b) {
    auto pmf = [&](int64_t k) {
      auto lp = unchecked->log_prob(torch::full(d.batch_shape(), static_cast<double>(k), d.options()));
      return lp.flatten()[b].exp().item<double>();
    };
    check_chi2(flat.select(1, b), pmf, cat(what, " [batch element ", b, "]"));
  }
}

/// Per-draw gradients [N, ...] of f(rsample) with respect to a parameter: their mean estimates
/// d E[f] / d theta; it must lie within kMomentZ standard errors of `truth`.
inline void check_pathwise(const torch::Tensor& grads_per_draw, const torch::Tensor& truth, const std::string& what) {
  INFO(what);
  auto g = grads_per_draw.to(torch::kDouble);
  const double n = static_cast<double>(g.size(0));
  auto est = g.mean(0);
  auto se = g.std(0) / std::sqrt(n);
  auto z = ((est - truth.to(torch::kDouble)).abs() / (se + 1e-12)).max().item<double>();
  CHECK_MESSAGE(z <= kMomentZ, what << ": pathwise gradient " << est << " vs " << truth << " (" << z << " standard errors)");
}

}  // namespace ember::testing
