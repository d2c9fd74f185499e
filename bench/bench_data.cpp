// bench_data: parsing a 30,000-row CSV in the book's layout (combined_mnist_tmnist_data.csv),
// against a baseline in the same process (read the file + strtol over every cell); and the
// cost of the in-memory batcher for one epoch, against a VAE-sized forward/backward pass
// over the same batches (a stand-in for an SVI epoch).
//
//   bench_data [rows=30000]
#include "datasets/datasets.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

using namespace ember::data;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

template <class F>
double best_of(int n, F&& f) {
  double best = 1e30;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

/// Baseline: read the whole file, then strtol over every cell (no checks, no tensors).
long baseline(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const char* p = s.c_str();
  p = std::strchr(p, '\n') + 1;  // header
  long sum = 0;
  char* end;
  while (*p) {
    sum += std::strtol(p, &end, 10);
    p = end;
    if (*p == ',' || *p == '\n') ++p;
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t rows = argc > 1 ? size_t(std::atol(argv[1])) : 30000;
  torch::manual_seed(0);
  torch::set_num_threads(1);

  // A book-layout CSV of `rows` rows drawn from the bundled data (both styles).
  const DigitTable bundled = load_bundled();
  DigitTable t;
  for (size_t i = 0; i < rows; ++i) {
    const size_t j = (i * 7919) % bundled.size();
    t.pixels.insert(t.pixels.end(), bundled.pixels.begin() + std::ptrdiff_t(j * kPixels),
                    bundled.pixels.begin() + std::ptrdiff_t((j + 1) * kPixels));
    t.labels.push_back(bundled.labels[j]);
    t.handwritten.push_back(bundled.handwritten[j]);
    t.source.push_back(int32_t(i));
  }
  const std::string path =
      (std::filesystem::temp_directory_path() / ("ember_bench_data_" + std::to_string(::getpid()) + ".csv")).string();
  save_book_csv(path, t);
  const auto bytes = std::filesystem::file_size(path);

  size_t parsed = 0;
  long sink = 0;
  const double t_parse = best_of(3, [&] { parsed = load_book_csv(path).size(); });
  const double t_base = best_of(3, [&] { sink += baseline(path); });
  std::filesystem::remove(path);
  if (parsed != rows) {
    std::cerr << "parsed " << parsed << " rows, expected " << rows << "\n";
    return 1;
  }
  std::printf("csv_parse: %zu rows, %.1f MB: %.3f s (%.1f MB/s); baseline read+strtol %.3f s; ratio %.2f\n", rows,
              double(bytes) / 1e6, t_parse, double(bytes) / 1e6 / t_parse, t_base, t_parse / t_base);

  // Batcher: one balanced training epoch of batch 256 on CPU, against a VAE-sized
  // (784-400-2x20, 20-400-784) forward and backward pass over the same batches.
  DatasetOptions balanced;
  balanced.balance(Balance::Balanced);  // the figures in docs/benchmarks.md are of balanced epochs
  DigitDataset ds(t, balanced);
  const int64_t batch = 256;
  int64_t n_batches = 0;
  const double t_batch = best_of(3, [&] {
    n_batches = 0;
    for (const Batch& b : ds.epoch(Split::Train, batch, 0)) n_batches += b.size() > 0;
  });
  torch::nn::Sequential enc(torch::nn::Linear(784, 400), torch::nn::ReLU(), torch::nn::Linear(400, 40));
  torch::nn::Sequential dec(torch::nn::Linear(20, 400), torch::nn::ReLU(), torch::nn::Linear(400, 784));
  const Epoch e = ds.epoch(Split::Train, batch, 0);
  std::vector<torch::Tensor> xs;
  for (const Batch& b : e) xs.push_back(b.images);
  const double t_model = best_of(1, [&] {
    for (const auto& x : xs) {
      auto h = enc->forward(x);
      auto z = h.slice(1, 0, 20) + torch::randn({x.size(0), 20}) * h.slice(1, 20, 40).exp();
      auto loss = torch::binary_cross_entropy_with_logits(dec->forward(z), x);
      loss.backward();
    }
  });
  std::printf("batcher: %lld batches of %lld: %.4f s per epoch; VAE-sized forward/backward %.3f s; ratio %.3f (%.1f %%)\n",
              static_cast<long long>(n_batches), static_cast<long long>(batch), t_batch, t_model, t_batch / t_model,
              100.0 * t_batch / (t_batch + t_model));
  return sink == 42 ? 2 : 0;
}
