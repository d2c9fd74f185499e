#pragma once
/// \file Digit data sets as tensors: the bundled MNIST + Typeface-MNIST data, MNIST IDX
/// files, and the book's and Kaggle's CSV layouts; a seeded train/test split and
/// per-epoch shuffled batches on a chosen device.
///
/// Batch tensors (see `Batch`):
///   images       float32 [B, 784], grey values in [0, 1] (row-major 28 x 28, 1 = ink)
///   labels       int64   [B], the digit 0..9           (`one_hot()`: float32 [B, 10])
///   handwritten  float32 [B], 1 = handwritten (MNIST), 0 = typed (a font)
///                (`handwritten.unsqueeze(1)` gives [B, 1] for concatenation with images)
///
/// Example:
/// \code
///   using namespace ember::data;
///   DatasetOptions opt;
///   opt.seed(1).device(torch::Device(torch::kCUDA));
///   DigitDataset ds(load_bundled(), opt);
///   for (int64_t epoch = 0; epoch < 10; ++epoch)
///     for (const Batch& b : ds.epoch(Split::Train, 256, epoch)) step(b.images, b.labels);
/// \endcode

#include "datasets/digits_io.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ember::data {

/// The folder holding the bundled data: `$EMBER_DATA_DIR` if set and non-empty, else the
/// source tree's `data/` folder (compiled in).
std::string bundled_data_dir();

/// Loads the bundled data set from `dir` (handwritten then typed images). Typed images are
/// named after their font face from `manifest.json`. Throws IOError naming the file at fault.
DigitTable load_bundled(const std::string& dir = bundled_data_dir());

/// Loads MNIST IDX files, gzip'd or not. `images` and `labels` are file paths.
DigitTable load_mnist_idx(const std::string& images, const std::string& labels);
/// Loads MNIST from a folder holding `<prefix>-images-idx3-ubyte[.gz]` and
/// `<prefix>-labels-idx1-ubyte[.gz]`; `prefix` is "train", "t10k", or "all" (both, train first).
DigitTable load_mnist_dir(const std::string& dir, const std::string& prefix = "all");

/// Loads the book's `combined_mnist_tmnist_data.csv` layout (optionally gzip'd).
DigitTable load_book_csv(const std::string& path);
/// Loads Kaggle's `TMNIST_Data.csv` layout (optionally gzip'd).
DigitTable load_tmnist_csv(const std::string& path);

/// Writes a table in the book's CSV layout (atomically).
void save_book_csv(const std::string& path, const DigitTable& table);

enum class Split { Train, Test, All };

/// How the rows are divided into a train and a test split.
enum class SplitMethod {
  /// `test_fraction` of every (style, digit) group, drawn with `seed`; rows kept in table order.
  Stratified,
  /// The book's: `torch.utils.data.random_split(range(n), [int(0.8 n), n - int(0.8 n)],
  /// generator=torch.Generator().manual_seed(42))`, index for index (see book_random_split());
  /// rows kept in random_split's order. Independent of `seed`; needs test_fraction 0.2.
  Book,
};

/// Which images an epoch visits.
enum class Balance {
  /// As many handwritten as typed images: the larger style is subsampled to the size of
  /// the smaller one, afresh every training epoch (so every image is seen over epochs);
  /// the test split's subsample is fixed by the seed. A split holding only one style is
  /// used whole.
  Balanced,
  /// Every image of the split (the book's choice).
  All,
};

/// "stratified" / "book" and back; parsing throws ValueError naming the accepted values.
std::string to_string(SplitMethod m);
SplitMethod split_method_from_string(const std::string& s);
/// "styles" (Balance::Balanced) / "none" (Balance::All) and back.
std::string to_string(Balance b);
Balance balance_from_string(const std::string& s);

struct DatasetOptions {
  /// Share of the rows put in the test split.
  TORCH_ARG(double, test_fraction) = 0.2;
  /// Fixes the stratified split, the balanced subsamples and the shuffles.
  TORCH_ARG(uint64_t, seed) = 0;
  /// How rows are split into train and test.
  TORCH_ARG(SplitMethod, split) = SplitMethod::Stratified;
  /// Which training rows an epoch uses.
  TORCH_ARG(Balance, balance) = Balance::All;
  /// Where the images live and batches are made.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
};

/// The index lists (train, test) of PyTorch's `random_split(range(n), [int(0.8 n), n -
/// int(0.8 n)], generator=torch.Generator().manual_seed(seed))`, each in random_split's order:
/// the permutation LibTorch's `randperm(n)` draws from a CPU generator seeded with `seed`,
/// cut after int(0.8 n). The same LibTorch kernel serves Python, so this equals the book's
/// split whenever Python's torch and this LibTorch share a version (pinned against torch 1.13
/// by tests/fixtures/data/book_split.json).
std::pair<std::vector<int64_t>, std::vector<int64_t>> book_random_split(int64_t n, uint64_t seed = 42);

/// One mini-batch (see the file comment for shapes and dtypes).
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
  torch::Tensor handwritten;
  /// float32 [B, 10] one-hot encoding of `labels`.
  torch::Tensor one_hot() const;
  int64_t size() const { return labels.size(0); }
};

class DigitDataset;

/// The batches of one epoch in order: `for (const Batch& b : ds.epoch(...))`. Refers to its
/// data set, which must outlive it.
class Epoch {
 public:
  int64_t size() const { return num_batches_; }
  Batch operator[](int64_t i) const;
  /// The shuffled dataset rows of this epoch (int64, on the data set's device).
  const torch::Tensor& order() const { return order_; }

  class iterator {
   public:
    iterator(const Epoch* e, int64_t i) : e_(e), i_(i) {}
    Batch operator*() const { return (*e_)[i_]; }
    iterator& operator++() { ++i_; return *this; }
    bool operator!=(const iterator& o) const { return i_ != o.i_; }
   private:
    const Epoch* e_;
    int64_t i_;
  };
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, num_batches_}; }

 private:
  friend class DigitDataset;
  const DigitDataset* ds_ = nullptr;
  torch::Tensor order_;
  int64_t batch_size_ = 0, num_batches_ = 0;
};

/// An in-memory digit data set split into train and test parts.
class DigitDataset {
 public:
  DigitDataset(const DigitTable& table, DatasetOptions options = {});

  const DatasetOptions& options() const { return options_; }
  /// Number of rows of `split` (before balancing).
  int64_t size(Split split) const;
  /// Rows (indices into the table) of `split`: sorted for the stratified split, in
  /// random_split's order for the book's.
  const std::vector<int64_t>& rows(Split split) const;
  /// Rows one epoch of `split` visits, balanced as the options say, in shuffled order.
  std::vector<int64_t> epoch_rows(Split split, int64_t epoch) const;
  /// The batches of epoch `epoch` (0, 1, ...) of `split`; the last batch may be smaller
  /// unless `drop_last`.
  Epoch epoch(Split split, int64_t batch_size, int64_t epoch = 0, bool drop_last = false) const;
  /// All (balanced) rows of `split` as one batch, in the order of rows(split) (for evaluation).
  Batch all(Split split) const;
  /// The batch of the given table rows.
  Batch gather(const torch::Tensor& rows) const;

  /// Per style (0 typed, 1 handwritten) and digit: the number of rows of `split`.
  std::vector<std::vector<int64_t>> counts(Split split) const;

 private:
  std::vector<int64_t> balanced(Split split, uint64_t stream) const;

  DatasetOptions options_;
  torch::Tensor pixels_;       // uint8 [N, 784] on device
  torch::Tensor labels_;       // int64 [N] on device
  torch::Tensor handwritten_;  // float32 [N] on device
  std::vector<uint8_t> style_, digit_;
  std::vector<int64_t> train_, test_, all_;
};

/// Shuffles `rows` in place (Fisher–Yates driven by std::mt19937_64 seeded from `seed` and
/// `stream`, unbiased by rejection), identically on every platform and standard library.
void shuffle_rows(std::vector<int64_t>& rows, uint64_t seed, uint64_t stream);

}  // namespace ember::data
