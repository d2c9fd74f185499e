// CUDA code paths: distributions on the GPU against the CPU, the CUDA generator under `seed`
// and in SVI checkpoints, and an SVI step of the causal VAE on the GPU. Each test needs a CUDA
// device; without one (or with a CPU-only LibTorch) it prints "SKIPPED: no CUDA device" and
// CTest reports it as skipped (tests/CMakeLists.txt), so a CPU machine's suite stays green.
#include <doctest/doctest.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "distributions/distributions.h"
#include "inference/inference.h"
#include "ppl/ppl.h"
#ifdef EMBER_TEST_CAUSAL_VAE
#include "examples/causal_vae/causal_vae.h"
#endif

using namespace ember;

namespace {

// True when a CUDA device is there; otherwise says so in the form CTest's skip pattern matches.
bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  std::cout << "SKIPPED: no CUDA device (torch::cuda::is_available() is false)" << std::endl;
  return false;
}

const torch::Device kGpu(torch::kCUDA, 0);
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// log_prob of the same distribution and values on the CPU and on the GPU.
void check_same_log_prob(const std::string& what, const std::function<dist::DistPtr(torch::Device)>& make,
                         const torch::Tensor& value_cpu) {
  CAPTURE(what);
  auto cpu = make(torch::kCPU)->log_prob(value_cpu);
  auto gpu = make(kGpu)->log_prob(value_cpu.to(kGpu));
  REQUIRE(gpu.device().is_cuda());
  REQUIRE(gpu.sizes() == cpu.sizes());
  // float64 on both sides: the CUDA math library's lgamma/log1p/exp are within a few ulp of
  // glibc's, so the two agree to ~1e-15 relative; 1e-12 leaves room for summation order.
  CHECK(torch::allclose(gpu.cpu(), cpu, 1e-12, 1e-12));
}

}  // namespace

TEST_CASE("CUDA: distributions' log_prob on the GPU equals the CPU's (float64)") {
  if (!have_cuda()) return;
  auto t = [](std::vector<double> v, torch::Device d) { return torch::tensor(v, kF64).to(d); };
  check_same_log_prob("Normal", [&](torch::Device d) { return std::make_shared<dist::Normal>(t({0.3, -1.0}, d), t({1.5, 0.2}, d)); },
                      torch::tensor({0.1, -0.7}, kF64));
  check_same_log_prob("Gamma", [&](torch::Device d) { return std::make_shared<dist::Gamma>(t({2.5, 0.7}, d), t({1.3, 4.0}, d)); },
                      torch::tensor({0.4, 2.2}, kF64));
  check_same_log_prob("Beta", [&](torch::Device d) { return std::make_shared<dist::Beta>(t({2.0, 0.5}, d), t({3.0, 0.8}, d)); },
                      torch::tensor({0.25, 0.9}, kF64));
  check_same_log_prob("Dirichlet", [&](torch::Device d) { return std::make_shared<dist::Dirichlet>(t({0.5, 2.0, 3.5}, d)); },
                      torch::tensor({0.2, 0.3, 0.5}, kF64));
  check_same_log_prob("StudentT", [&](torch::Device d) { return std::make_shared<dist::StudentT>(t({3.0}, d), t({0.5}, d), t({2.0}, d)); },
                      torch::tensor({1.7}, kF64));
  check_same_log_prob("Poisson", [&](torch::Device d) { return std::make_shared<dist::Poisson>(t({3.5, 0.2}, d)); },
                      torch::tensor({2.0, 0.0}, kF64));
  check_same_log_prob("Bernoulli(logits)",
                      [&](torch::Device d) { return std::make_shared<dist::Bernoulli>(dist::Logits{t({-0.3, 2.0}, d)}); },
                      torch::tensor({1.0, 0.0}, kF64));
  check_same_log_prob("Categorical", [&](torch::Device d) { return std::make_shared<dist::Categorical>(t({0.2, 0.3, 0.5}, d)); },
                      torch::tensor({2, 0}, torch::kLong));
  check_same_log_prob("MultivariateNormal",
                      [&](torch::Device d) {
                        return std::make_shared<dist::MultivariateNormal>(
                            t({0.0, 1.0}, d), dist::CovarianceMatrix{torch::tensor({{2.0, 0.3}, {0.3, 0.5}}, kF64).to(d)});
                      },
                      torch::tensor({0.5, 0.4}, kF64));
}

TEST_CASE("CUDA: seed makes GPU draws reproducible and restores the CUDA generator afterwards") {
  if (!have_cuda()) return;
  auto loc = torch::zeros({1000}, kF64).to(kGpu), scale = torch::ones({1000}, kF64).to(kGpu);
  auto draw = [&] { return sample("x", dist::Normal(loc, scale)); };
  torch::Tensor a, b;
  {
    auto s = seed(7);
    a = draw();
  }
  {
    auto s = seed(7);
    b = draw();
  }
  REQUIRE(a.device().is_cuda());
  CHECK(torch::equal(a, b));
  {
    auto s = seed(8);
    CHECK(!torch::equal(a, draw()));
  }
  // The seeded blocks left the CUDA generator where it was: the next unseeded draws are the
  // ones made from the state saved before them.
  at::Generator g = at::globalContext().defaultGenerator(kGpu);
  auto before = g.get_state();
  {
    auto s = seed(9);
    (void)draw();
  }
  auto after_unseeded = torch::randn({16}, torch::TensorOptions().device(kGpu));
  g.set_state(before);
  CHECK(torch::equal(after_unseeded, torch::randn({16}, torch::TensorOptions().device(kGpu))));
}

TEST_CASE("CUDA: an SVI checkpoint saves and restores the CUDA generator state") {
  if (!have_cuda()) return;
  clear_param_store();
  auto data = torch::tensor({0.5, 1.5, 1.0}, kF64).to(kGpu);
  auto model = [&] {
    auto mu = sample("mu", dist::Normal(torch::zeros({}, kF64).to(kGpu), torch::ones({}, kF64).to(kGpu)));
    auto p = plate("data", 3);
    sample("x", dist::Normal(mu, torch::ones({}, kF64).to(kGpu)), data);
  };
  auto guide = [&] {
    auto loc = param("loc", torch::zeros({}, kF64).to(kGpu));
    auto scale = param("scale", torch::ones({}, kF64).to(kGpu), constraints::positive());
    sample("mu", dist::Normal(loc, scale));
  };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(0.05)), infer::Trace_ELBO());
  for (int i = 0; i < 3; ++i) svi.step();
  CHECK(get_param_store().get("loc").device().is_cuda());
  const auto path = (std::filesystem::temp_directory_path() / ("ember-cuda-ckpt-" + std::to_string(::getpid()))).string();
  svi.save(path);
  const double loss_a = svi.step();
  auto draws_a = torch::randn({8}, torch::TensorOptions().device(kGpu));
  svi.load(path);  // params, Adam state, CPU and CUDA generators as they were at the save
  const double loss_b = svi.step();
  auto draws_b = torch::randn({8}, torch::TensorOptions().device(kGpu));
  CHECK(loss_a == loss_b);
  CHECK(torch::equal(draws_a, draws_b));
  std::filesystem::remove(path);
  clear_param_store();
}

#ifdef EMBER_TEST_CAUSAL_VAE
TEST_CASE("CUDA: the causal VAE's model runs on the GPU as on the CPU, and SVI steps there") {
  if (!have_cuda()) return;
  clear_param_store();
  causal_vae::Config c;
  c.z_dim = 4;
  c.hidden_dim = 8;
  torch::manual_seed(3);
  causal_vae::CausalVAE cpu_vae(c);
  torch::manual_seed(3);
  causal_vae::CausalVAE gpu_vae(c, kGpu);  // same initial weights, moved to the GPU
  const int64_t n = 6;
  auto digits = torch::randint(10, {n}, torch::kLong);
  causal_vae::Batch b{torch::rand({n, 784}), torch::one_hot(digits, 10).to(torch::kFloat), torch::randint(2, {n, 1}).to(torch::kFloat)};
  causal_vae::Batch gb{b.image.to(kGpu), b.digit.to(kGpu), b.is_handwritten.to(kGpu)};
  auto z = torch::randn({n, c.z_dim});
  // log p(image, labels, Z = z) through the handlers, on each device.
  auto log_joint = [&](causal_vae::CausalVAE& vae, const causal_vae::Batch& batch, const torch::Tensor& zz) {
    clear_param_store();
    Trace t = trace(condition([&] { vae.training_model(batch); }, ValueMap{{"Z", zz}})).get_trace();
    return t.log_prob_sum().item<double>();
  };
  const double lp_cpu = log_joint(cpu_vae, b, z);
  const double lp_gpu = log_joint(gpu_vae, gb, z.to(kGpu));
  // float32 networks: cuBLAS and the CPU's BLAS sum in different orders (TF32 is off by
  // default for matrix products), so the two agree to float32 rounding of a sum of ~5,000 terms.
  CHECK(lp_gpu == doctest::Approx(lp_cpu).epsilon(1e-5));

  clear_param_store();
  auto model = [&] { gpu_vae.training_model(gb); };
  auto guide = [&] { gpu_vae.training_guide(gb); };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(1e-3)), infer::Trace_ELBO());
  const auto w0 = gpu_vae.decoder()->parameters().front().detach().clone();
  const double l1 = svi.step();
  const double l2 = svi.step();
  CHECK(std::isfinite(l1));
  CHECK(std::isfinite(l2));
  for (const auto& p : gpu_vae.decoder()->parameters()) CHECK(p.device().is_cuda());
  CHECK(!torch::equal(w0, gpu_vae.decoder()->parameters().front()));
  clear_param_store();
}
#endif
