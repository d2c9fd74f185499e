// Times the causal VAE's dense-layer workload (784+11 -> 400 -> 50 encoder, 50+11 -> 400 -> 784
// decoder, batch 256, forward + backward + Adam) to compare BLAS implementations.
// Run through scripts/bench_blas.sh, which runs it once per libblas.so.3 and prints the ratio.
#include <torch/torch.h>

#include <chrono>
#include <iostream>

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 30;
  torch::manual_seed(0);
  torch::nn::Sequential enc(torch::nn::Linear(795, 400), torch::nn::Softplus(), torch::nn::Linear(400, 100));
  torch::nn::Sequential dec(torch::nn::Linear(61, 400), torch::nn::Softplus(), torch::nn::Linear(400, 784));
  std::vector<torch::Tensor> params;
  for (auto& p : enc->parameters()) params.push_back(p);
  for (auto& p : dec->parameters()) params.push_back(p);
  torch::optim::Adam opt(params, 1e-3);
  auto x = torch::rand({256, 784}), labels = torch::rand({256, 11});
  auto step = [&] {
    auto h = enc->forward(torch::cat({x, labels}, 1));
    auto loc = h.narrow(1, 0, 50), scale = h.narrow(1, 50, 50).exp();
    auto z = loc + scale * torch::randn_like(loc);
    auto logits = dec->forward(torch::cat({z, labels}, 1));
    auto loss = torch::binary_cross_entropy_with_logits(logits, x, {}, {}, at::Reduction::Sum);
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  std::cout << "seconds_per_step " << s << "\n";
  return 0;
}
