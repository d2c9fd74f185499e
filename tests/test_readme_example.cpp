// The README's first example, verbatim in substance: it must compile and learn the posterior.
#include <doctest/doctest.h>

#include "inference/autoguide/autoguide.h"
#include "inference/svi.h"
#include "ppl/ppl.h"

using namespace ember;

TEST_CASE("README example: SVI on a Normal mean finds the conjugate posterior") {
  ParamStore store;
  ParamStoreScope scope(store);
  torch::manual_seed(0);
  auto data = torch::randn({50}) + 3.0;
  auto model = [](const torch::Tensor& data) {
    auto mu = sample("mu", dist::Normal(0., 10.));
    auto points = plate("data", data.size(0));
    sample("x", dist::Normal(mu, 1.), data);
  };
  auto guide = [](const torch::Tensor& data) {
    auto loc = param("loc", torch::tensor(0.));
    auto scale = param("scale", torch::tensor(1.), constraints::positive());
    sample("mu", dist::Normal(loc, scale));
  };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(0.05)), infer::Trace_ELBO());
  for (int step = 0; step < 1000; ++step) svi.step(data);
  // Conjugate posterior: precision n + 1/100, mean sum(x) / precision.
  const double precision = 50 + 0.01;
  const double post_mean = data.sum().item<double>() / precision, post_sd = std::sqrt(1 / precision);
  CHECK(std::abs(store.get("loc").item<double>() - post_mean) < 3 * post_sd);
  CHECK(store.get("scale").item<double>() > post_sd / 2);
  CHECK(store.get("scale").item<double>() < post_sd * 2);
}

TEST_CASE("README autoguide example: AutoNormal beside the model finds the conjugate posterior") {
  ParamStore store;
  ParamStoreScope scope(store);
  torch::manual_seed(0);
  auto data = torch::randn({50}) + 3.0;
  auto model = [](const torch::Tensor& data) {
    auto mu = sample("mu", dist::Normal(0., 10.));
    auto points = plate("data", data.size(0));
    sample("x", dist::Normal(mu, 1.), data);
  };
  infer::AutoNormal guide(model);
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(0.05)), infer::Trace_ELBO());
  for (int step = 0; step < 1000; ++step) svi.step(data);
  ValueMap median = guide.median();              // median["mu"]
  ValueMap q = guide.quantiles({0.05, 0.95});    // q["mu"]: the 90% interval
  const double precision = 50 + 0.01;
  const double post_mean = data.sum().item<double>() / precision, post_sd = std::sqrt(1 / precision);
  CHECK(std::abs(median.at("mu").item<double>() - post_mean) < 3 * post_sd);
  const double width = (q.at("mu")[1] - q.at("mu")[0]).item<double>();  // exact: 2 x 1.645 sd
  CHECK(width > 2 * 1.645 * post_sd / 2);
  CHECK(width < 2 * 1.645 * post_sd * 2);
}
