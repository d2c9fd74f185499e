#include "datasets/datasets.h"

#include "core/error.h"
#include "ppl/tensor_archive.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sys/stat.h>

#ifndef EMBER_SOURCE_DATA_DIR
#define EMBER_SOURCE_DATA_DIR "data"
#endif

namespace ember::data {

namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// `base` or `base.gz`, whichever exists (IOError naming both if neither).
std::string find_variant(const std::string& base) {
  if (exists(base)) return base;
  if (exists(base + ".gz")) return base + ".gz";
  throw IOError(cat("cannot find '", base, "' or '", base, ".gz'"));
}

std::string read_raw(const std::string& path) {
  std::string bytes = read_file(path);  // decompresses .gz
  return bytes;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

// ---------------------------------------------------------------- loaders

std::string bundled_data_dir() {
  const char* env = std::getenv("EMBER_DATA_DIR");
  if (env && *env) return env;
  return EMBER_SOURCE_DATA_DIR;
}

DigitTable load_bundled(const std::string& dir) {
  const std::string hw_im = dir + "/handwritten-images-idx3-ubyte.gz", hw_lb = dir + "/handwritten-labels-idx1-ubyte.gz";
  const std::string ty_im = dir + "/typed-images-idx3-ubyte.gz", ty_lb = dir + "/typed-labels-idx1-ubyte.gz";
  const std::string ty_face = dir + "/typed-faces-idx1-int.gz", manifest_path = dir + "/manifest.json";
  DigitTable table = parse_idx_pair(read_raw(hw_im), hw_im, read_raw(hw_lb), hw_lb, 1);
  DigitTable typed = parse_idx_pair(read_raw(ty_im), ty_im, read_raw(ty_lb), ty_lb, 0);
  IdxArray faces = parse_idx(read_raw(ty_face), ty_face);
  if (faces.type != 0x0C || faces.dims.size() != 1 || faces.dims[0] != typed.size())
    throw IOError(cat("'", ty_face, "': expected ", typed.size(), " int32 face indices (IDX type 0x0C, one dimension)"));
  std::vector<std::string> face_names;
  {
    std::string text = read_file(manifest_path);
    try {
      auto j = nlohmann::json::parse(text);
      for (const auto& f : j.at("typed").at("faces")) face_names.push_back(f.at("name").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw IOError(cat("'", manifest_path, "': cannot read the face list: ", e.what()));
    }
  }
  typed.names.resize(typed.size());
  for (size_t i = 0; i < typed.size(); ++i) {
    const auto* b = reinterpret_cast<const uint8_t*>(faces.bytes.data() + 4 * i);
    const int32_t f = int32_t((uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]));
    if (f < 0 || size_t(f) >= face_names.size())
      throw IOError(cat("'", ty_face, "': face index ", f, " at byte offset ", 8 + 4 * i, " is not in '", manifest_path, "'"));
    typed.source[i] = f;
    typed.names[i] = face_names[size_t(f)];
  }
  table.append(typed);
  return table;
}

DigitTable load_mnist_idx(const std::string& images, const std::string& labels) {
  return parse_idx_pair(read_raw(images), images, read_raw(labels), labels, 1);
}

DigitTable load_mnist_dir(const std::string& dir, const std::string& prefix) {
  if (prefix == "all") {
    DigitTable t = load_mnist_dir(dir, "train");
    t.append(load_mnist_dir(dir, "t10k"));
    return t;
  }
  if (prefix != "train" && prefix != "t10k") throw ValueError(cat("load_mnist_dir: prefix '", prefix, "' is not train, t10k or all"));
  return load_mnist_idx(find_variant(dir + "/" + prefix + "-images-idx3-ubyte"), find_variant(dir + "/" + prefix + "-labels-idx1-ubyte"));
}

DigitTable load_book_csv(const std::string& path) { return parse_book_csv(read_file(path), path); }
DigitTable load_tmnist_csv(const std::string& path) { return parse_tmnist_csv(read_file(path), path); }

void save_book_csv(const std::string& path, const DigitTable& table) { write_file_atomic(path, format_book_csv(table)); }

// ---------------------------------------------------------------- shuffling

void shuffle_rows(std::vector<int64_t>& rows, uint64_t seed, uint64_t stream) {
  std::mt19937_64 gen(splitmix64(seed ^ splitmix64(stream + 0x51ED)));
  for (size_t i = rows.size(); i > 1; --i) {
    const uint64_t n = i;
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    uint64_t r;
    do r = gen(); while (r >= limit);
    std::swap(rows[i - 1], rows[size_t(r % n)]);
  }
}

// ---------------------------------------------------------------- DigitDataset

torch::Tensor Batch::one_hot() const {
  return torch::one_hot(labels, 10).to(torch::kFloat);
}

Batch Epoch::operator[](int64_t i) const {
  if (i < 0 || i >= num_batches_) throw ValueError(cat("Epoch: batch ", i, " out of range [0, ", num_batches_, ")"));
  const int64_t start = i * batch_size_, stop = std::min(start + batch_size_, order_.size(0));
  return ds_->gather(order_.slice(0, start, stop));
}

DigitDataset::DigitDataset(const DigitTable& table, DatasetOptions options) : options_(options) {
  table.validate("DigitDataset");
  if (!(options_.test_fraction() >= 0.0 && options_.test_fraction() <= 1.0))
    throw ValueError(cat("DigitDataset: test_fraction ", options_.test_fraction(), " is outside [0, 1]"));
  const int64_t n = int64_t(table.size());
  style_ = table.handwritten;
  digit_ = table.labels;
  auto cpu_u8 = torch::TensorOptions().dtype(torch::kUInt8);
  pixels_ = torch::from_blob(const_cast<uint8_t*>(table.pixels.data()), {n, kPixels}, cpu_u8).clone().to(options_.device());
  labels_ = torch::from_blob(const_cast<uint8_t*>(table.labels.data()), {n}, cpu_u8).to(torch::kLong).to(options_.device());
  handwritten_ = torch::from_blob(const_cast<uint8_t*>(table.handwritten.data()), {n}, cpu_u8).to(torch::kFloat).to(options_.device());

  all_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) all_[size_t(i)] = i;
  if (options_.split() == SplitMethod::Book) {
    if (options_.test_fraction() != 0.2)
      throw ValueError(cat("DigitDataset: the book's split is 80/20; test_fraction ", options_.test_fraction(),
                           " needs the stratified split"));
    std::tie(train_, test_) = book_random_split(n);
    return;
  }
  // Stratified split: the same share of every (style, digit) group goes to the test split.
  std::vector<std::vector<int64_t>> groups(20);
  for (int64_t i = 0; i < n; ++i) groups[size_t(style_[size_t(i)] * 10 + digit_[size_t(i)])].push_back(i);
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& rows = groups[g];
    shuffle_rows(rows, options_.seed(), 1000 + g);
    const auto n_test = size_t(std::llround(options_.test_fraction() * double(rows.size())));
    test_.insert(test_.end(), rows.begin(), rows.begin() + std::ptrdiff_t(n_test));
    train_.insert(train_.end(), rows.begin() + std::ptrdiff_t(n_test), rows.end());
  }
  std::sort(train_.begin(), train_.end());
  std::sort(test_.begin(), test_.end());
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> book_random_split(int64_t n, uint64_t seed) {
  if (n < 0) throw ValueError(cat("book_random_split: n ", n, " is negative"));
  // Python: train_size = int(0.8 * n), a truncation of the double product.
  const auto train_size = static_cast<int64_t>(0.8 * static_cast<double>(n));
  auto generator = at::detail::createCPUGenerator(seed);
  auto perm = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
  const int64_t* p = perm.data_ptr<int64_t>();
  return {std::vector<int64_t>(p, p + train_size), std::vector<int64_t>(p + train_size, p + n)};
}

std::string to_string(SplitMethod m) { return m == SplitMethod::Book ? "book" : "stratified"; }

SplitMethod split_method_from_string(const std::string& s) {
  if (s == "book") return SplitMethod::Book;
  if (s == "stratified") return SplitMethod::Stratified;
  throw ValueError(cat("unknown split '", s, "' (expected book or stratified)"));
}

std::string to_string(Balance b) { return b == Balance::Balanced ? "styles" : "none"; }

Balance balance_from_string(const std::string& s) {
  if (s == "styles") return Balance::Balanced;
  if (s == "none") return Balance::All;
  throw ValueError(cat("unknown balance '", s, "' (expected none or styles)"));
}

const std::vector<int64_t>& DigitDataset::rows(Split split) const {
  switch (split) {
    case Split::Train: return train_;
    case Split::Test: return test_;
    default: return all_;
  }
}

int64_t DigitDataset::size(Split split) const { return int64_t(rows(split).size()); }

std::vector<int64_t> DigitDataset::balanced(Split split, uint64_t stream) const {
  const auto& r = rows(split);
  if (options_.balance() == Balance::All) return r;
  std::vector<int64_t> hw, ty;
  for (int64_t i : r) (style_[size_t(i)] ? hw : ty).push_back(i);
  if (hw.empty() || ty.empty()) return r;
  auto& big = hw.size() > ty.size() ? hw : ty;
  const size_t m = std::min(hw.size(), ty.size());
  shuffle_rows(big, options_.seed(), stream);
  big.resize(m);
  // Table order (the book's split keeps its rows in random_split's order).
  std::vector<int64_t> out(hw.begin(), hw.end());
  out.insert(out.end(), ty.begin(), ty.end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> DigitDataset::epoch_rows(Split split, int64_t epoch) const {
  // Training epochs draw a fresh balanced subsample; evaluation splits keep one fixed subsample.
  const uint64_t sub_stream = split == Split::Train ? 2000000 + uint64_t(epoch) : 1999999;
  std::vector<int64_t> r = balanced(split, sub_stream);
  shuffle_rows(r, options_.seed(), 4000000 + uint64_t(split) * 1000000007ULL + uint64_t(epoch));
  return r;
}

Epoch DigitDataset::epoch(Split split, int64_t batch_size, int64_t epoch, bool drop_last) const {
  if (batch_size <= 0) throw ValueError(cat("DigitDataset::epoch: batch_size ", batch_size, " must be positive"));
  if (epoch < 0) throw ValueError(cat("DigitDataset::epoch: epoch ", epoch, " must be >= 0"));
  std::vector<int64_t> r = epoch_rows(split, epoch);
  Epoch e;
  e.ds_ = this;
  e.batch_size_ = batch_size;
  const auto n = int64_t(r.size());
  e.num_batches_ = drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
  e.order_ = torch::tensor(r, torch::kLong).to(options_.device());
  return e;
}

Batch DigitDataset::gather(const torch::Tensor& rows) const {
  Batch b;
  auto r = rows.to(options_.device(), torch::kLong);
  b.images = pixels_.index_select(0, r).to(torch::kFloat).div_(255.0);
  b.labels = labels_.index_select(0, r);
  b.handwritten = handwritten_.index_select(0, r);
  return b;
}

Batch DigitDataset::all(Split split) const {
  const uint64_t sub_stream = split == Split::Train ? 2000000 : 1999999;
  return gather(torch::tensor(balanced(split, sub_stream), torch::kLong));
}

std::vector<std::vector<int64_t>> DigitDataset::counts(Split split) const {
  std::vector<std::vector<int64_t>> c(2, std::vector<int64_t>(10, 0));
  for (int64_t i : rows(split)) ++c[style_[size_t(i)]][digit_[size_t(i)]];
  return c;
}

}  // namespace ember::data
