// Tests of the digit data: the bundled files, the IDX and CSV loaders, their errors, the
// split and the balanced batches.
#include <doctest/doctest.h>

#include "core/error.h"
#include "datasets/datasets.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

using namespace ember::data;
namespace fs = std::filesystem;

namespace {

/// A fresh temporary folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("ember_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

/// A small table with every digit and both styles; pixel values depend on the row.
DigitTable sample_table(size_t n) {
  DigitTable t;
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < kPixels; ++k) t.pixels.push_back(uint8_t((i * 31 + size_t(k) * 7) % 256));
    t.labels.push_back(uint8_t(i % 10));
    t.handwritten.push_back(uint8_t((i / 10) % 2));
    t.source.push_back(int32_t(i));
  }
  return t;
}

std::string idx_images(const DigitTable& t) {
  IdxArray a;
  a.type = 0x08;
  a.dims = {uint32_t(t.size()), 28, 28};
  a.bytes.assign(t.pixels.begin(), t.pixels.end());
  return format_idx(a);
}

std::string idx_labels(const DigitTable& t) {
  IdxArray a;
  a.type = 0x08;
  a.dims = {uint32_t(t.size())};
  a.bytes.assign(t.labels.begin(), t.labels.end());
  return format_idx(a);
}

/// The message of the exception of type E that `f` throws ("" if none).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("unexpected exception type: " << e.what());
  }
  FAIL("no exception thrown");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string sha256_of(const std::string& path) {
  FILE* p = popen(("sha256sum '" + path + "'").c_str(), "r");
  REQUIRE(p);
  char buf[65] = {0};
  size_t n = fread(buf, 1, 64, p);
  pclose(p);
  REQUIRE(n == 64);
  return std::string(buf, 64);
}

}  // namespace

// ---------------------------------------------------------------- bundled data

TEST_CASE("bundled data: files match the manifest's SHA-256 hashes and sizes") {
  const std::string dir = bundled_data_dir();
  std::ifstream in(dir + "/manifest.json");
  REQUIRE(in);
  auto m = nlohmann::json::parse(in);
  REQUIRE(m.at("files").size() == 5);
  for (const auto& f : m.at("files")) {
    const std::string path = dir + "/" + f.at("name").get<std::string>();
    CAPTURE(path);
    CHECK(fs::file_size(path) == f.at("bytes").get<uint64_t>());
    CHECK(sha256_of(path) == f.at("sha256").get<std::string>());
  }
}

TEST_CASE("bundled data: counts, styles, labels and face names agree with the manifest") {
  const DigitTable t = load_bundled();
  auto m = nlohmann::json::parse(std::ifstream(bundled_data_dir() + "/manifest.json"));
  const auto& c = m.at("counts");
  const size_t n_hw = c.at("handwritten"), n_ty = c.at("typed");
  CHECK(n_hw == 10000);
  CHECK(m.at("typed").at("faces_kept").get<int>() >= 400);
  REQUIRE(t.size() == n_hw + n_ty);
  t.validate("bundled");
  std::vector<int64_t> hw(10, 0), ty(10, 0);
  for (size_t i = 0; i < t.size(); ++i) {
    (t.handwritten[i] ? hw : ty)[t.labels[i]]++;
    if (!t.handwritten[i]) CHECK_FALSE(t.names[i].empty());
  }
  CHECK(hw == c.at("handwritten_per_digit").get<std::vector<int64_t>>());
  CHECK(ty == c.at("typed_per_digit").get<std::vector<int64_t>>());
  // Every image has ink, and the typed images are centred like MNIST (centre of mass near 14).
  double cx = 0, cy = 0;
  for (size_t i = n_hw; i < t.size(); ++i) {
    double s = 0, sx = 0, sy = 0;
    for (int k = 0; k < kPixels; ++k) {
      const double v = t.pixels[i * kPixels + size_t(k)];
      s += v, sx += v * (k % 28), sy += v * (k / 28);
    }
    REQUIRE(s > 0);
    cx += sx / s, cy += sy / s;
  }
  CHECK(cx / double(n_ty) == doctest::Approx(14.0).epsilon(0.01));
  CHECK(cy / double(n_ty) == doctest::Approx(14.0).epsilon(0.01));
}

TEST_CASE("bundled data: EMBER_DATA_DIR overrides the folder") {
  const char* old = std::getenv("EMBER_DATA_DIR");
  const std::string saved = old ? old : "";
  ::setenv("EMBER_DATA_DIR", "/nonexistent/ember-data", 1);
  CHECK(bundled_data_dir() == "/nonexistent/ember-data");
  const std::string e = error_of<ember::IOError>([] { load_bundled(); });
  CHECK_MESSAGE(contains(e, "cannot open '/nonexistent/ember-data/handwritten-"), e);
  if (old) ::setenv("EMBER_DATA_DIR", saved.c_str(), 1); else ::unsetenv("EMBER_DATA_DIR");
}

// ---------------------------------------------------------------- round trips

TEST_CASE("IDX round trip, plain and gzip'd, through load_mnist_dir") {
  TempDir tmp;
  const DigitTable train = sample_table(37), test = sample_table(13);
  write(tmp.file("train-images-idx3-ubyte.gz"), gzip(idx_images(train)));
  write(tmp.file("train-labels-idx1-ubyte.gz"), gzip(idx_labels(train)));
  write(tmp.file("t10k-images-idx3-ubyte"), idx_images(test));
  write(tmp.file("t10k-labels-idx1-ubyte"), idx_labels(test));
  const DigitTable a = load_mnist_dir(tmp.path.string(), "train");
  CHECK(a.pixels == train.pixels);
  CHECK(a.labels == train.labels);
  CHECK(a.handwritten == std::vector<uint8_t>(37, 1));
  const DigitTable all = load_mnist_dir(tmp.path.string());
  REQUIRE(all.size() == 50);
  CHECK(std::equal(test.pixels.begin(), test.pixels.end(), all.pixels.begin() + 37 * kPixels));
  const std::string e = error_of<ember::IOError>([&] { load_mnist_dir(tmp.file("missing")); });
  CHECK_MESSAGE(contains(e, "missing/train-"), e);
}

TEST_CASE("gzip round trip, multi-member streams, and other IDX element types") {
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char((i * i) % 251);
  CHECK(gunzip(gzip(data), "x") == data);
  CHECK(gzip(data) == gzip(data));  // deterministic
  CHECK(gunzip(gzip("ab") + gzip("cd"), "x") == "abcd");
  IdxArray a;
  a.type = 0x0C;
  a.dims = {2, 3};
  a.bytes = std::string(24, '\x7f');
  const IdxArray b = parse_idx(format_idx(a), "ints");
  CHECK(b.type == 0x0C);
  CHECK(b.dims == a.dims);
  CHECK(b.bytes == a.bytes);
}

TEST_CASE("book CSV round trip (file, gzip'd file, True/False, 12.0, swapped columns)") {
  TempDir tmp;
  const DigitTable t = sample_table(25);
  save_book_csv(tmp.file("combined.csv"), t);
  DigitTable r = load_book_csv(tmp.file("combined.csv"));
  CHECK(r.pixels == t.pixels);
  CHECK(r.labels == t.labels);
  CHECK(r.handwritten == t.handwritten);
  CHECK(r.source == t.source);
  write(tmp.file("combined.csv.gz"), gzip(format_book_csv(t)));
  CHECK(load_book_csv(tmp.file("combined.csv.gz")).pixels == t.pixels);

  std::string header = ",label,is_handwritten";
  for (int k = 0; k < kPixels; ++k) header += ",p" + std::to_string(k);
  std::string row = "7,3.0,True";
  for (int k = 0; k < kPixels; ++k) row += k == 5 ? ",255.0" : ",0";
  const DigitTable s = parse_book_csv(header + "\r\n" + row + "\r\n\r\n", "swapped.csv");
  REQUIRE(s.size() == 1);
  CHECK(s.labels[0] == 3);
  CHECK(s.handwritten[0] == 1);
  CHECK(s.source[0] == 7);
  CHECK(s.pixels[5] == 255);
  CHECK(parse_book_csv(header + "\n", "empty-body.csv").size() == 0);
}

TEST_CASE("TMNIST CSV round trip with quoted font names") {
  DigitTable t = sample_table(12);
  t.handwritten.assign(12, 0);
  t.source.assign(12, -1);
  for (size_t i = 0; i < t.size(); ++i) t.names.push_back(i % 3 ? "Font-" + std::to_string(i) : "Odd, \"quoted\" name");
  const DigitTable r = parse_tmnist_csv(format_tmnist_csv(t), "tmnist.csv");
  CHECK(r.pixels == t.pixels);
  CHECK(r.labels == t.labels);
  CHECK(r.names == t.names);
  CHECK(r.handwritten == t.handwritten);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("IDX errors name the file and the byte offset") {
  const DigitTable t = sample_table(4);
  const std::string im = idx_images(t), lb = idx_labels(t);
  auto pair = [](const std::string& i, const std::string& l) { parse_idx_pair(i, "imgs.idx", l, "lbls.idx", 1); };
  std::string e;

  e = error_of<ember::IOError>([&] { pair(im.substr(0, im.size() - 100), lb); });
  CHECK(contains(e, "'imgs.idx' is truncated at byte offset 3052"));
  e = error_of<ember::IOError>([&] { pair(im.substr(0, 2), lb); });
  CHECK(contains(e, "truncated at byte offset 2"));
  e = error_of<ember::IOError>([&] { pair(im.substr(0, 9), lb); });
  CHECK(contains(e, "truncated at byte offset 9"));

  std::string bad = im;
  bad[0] = 0x1f;
  e = error_of<ember::IOError>([&] { pair(bad, lb); });
  CHECK(contains(e, "bad IDX magic number 0x1F000803 at byte offset 0"));
  bad = im;
  bad[2] = 0x07;
  CHECK(contains(error_of<ember::IOError>([&] { pair(bad, lb); }), "bad IDX magic"));

  IdxArray big;
  big.dims = {1, 32, 32};
  big.bytes.assign(32 * 32, '\0');
  e = error_of<ember::IOError>([&] { pair(format_idx(big), lb); });
  CHECK(contains(e, "'imgs.idx': IDX image dimensions 1 x 32 x 32"));
  e = error_of<ember::IOError>([&] { pair(lb, lb); });
  CHECK(contains(e, "expected N x 28 x 28"));
  e = error_of<ember::IOError>([&] { pair(im, im); });
  CHECK(contains(e, "'lbls.idx': IDX label dimensions 4 x 28 x 28"));

  std::string badlb = lb;
  badlb[8 + 2] = 10;
  e = error_of<ember::ValueError>([&] { pair(im, badlb); });
  CHECK(contains(e, "'lbls.idx': label 10 at byte offset 10 is outside 0..9"));

  e = error_of<ember::IOError>([&] { pair(im, idx_labels(sample_table(3))); });
  CHECK(contains(e, "holds 4 images but 'lbls.idx' holds 3 labels"));
  e = error_of<ember::IOError>([&] { pair(im + "xx", lb); });
  CHECK(contains(e, "2 unexpected trailing bytes from byte offset 3152"));

  std::string h = format_idx(IdxArray{0x08, {1, 28, 28}, std::string(784, '\0')});
  h[4] = h[5] = h[6] = h[7] = h[8] = h[9] = h[10] = h[11] = '\xff';
  CHECK(contains(error_of<ember::IOError>([&] { pair(h, lb); }), "implausibly large"));
}

TEST_CASE("gzip errors: truncated and corrupt streams name the file") {
  TempDir tmp;
  const std::string z = gzip(idx_images(sample_table(50)));
  write(tmp.file("train-images-idx3-ubyte.gz"), z.substr(0, z.size() / 2));
  write(tmp.file("train-labels-idx1-ubyte.gz"), gzip(idx_labels(sample_table(50))));
  std::string e = error_of<ember::IOError>([&] { load_mnist_dir(tmp.path.string(), "train"); });
  CHECK(contains(e, "train-images-idx3-ubyte.gz' is truncated: the gzip stream ends at byte offset"));
  std::string c = z;
  for (size_t i = 20; i < 60; ++i) c[i] = char(c[i] ^ 0x5a);
  e = error_of<ember::IOError>([&] { gunzip(c, "corrupt.gz"); });
  CHECK(contains(e, "'corrupt.gz': corrupt gzip data near byte offset"));
}

TEST_CASE("CSV errors name the file, the line and the column") {
  const std::string good = format_book_csv(sample_table(3));
  // Line 3 is the second data row: header, row 0, row 1, row 2.
  auto line_start = [&](int line) {
    size_t p = 0;
    for (int i = 1; i < line; ++i) p = good.find('\n', p) + 1;
    return p;
  };
  auto with_cell = [&](int line, int col, const std::string& v) {  // col is 1-based
    std::string s = good;
    size_t p = line_start(line);
    for (int c = 1; c < col; ++c) p = s.find(',', p) + 1;
    const size_t e = s.find_first_of(",\n", p);
    return s.replace(p, e - p, v);
  };
  auto book = [](const std::string& s) { return [s] { parse_book_csv(s, "book.csv"); }; };
  std::string e;

  e = error_of<ember::IOError>(book(good.substr(0, good.size() - 10)));
  CHECK(contains(e, "'book.csv' line 4: expected 787 columns, found"));
  e = error_of<ember::IOError>(book(with_cell(3, 100, "1,2")));
  CHECK(contains(e, "'book.csv' line 3: expected 787 columns, found 788"));
  e = error_of<ember::IOError>(book(with_cell(3, 100, "x7")));
  CHECK(contains(e, "'book.csv' line 3, column 100: pixel 'x7' is not a number"));
  e = error_of<ember::IOError>(book(with_cell(2, 50, "")));
  CHECK(contains(e, "line 2, column 50: pixel '' is not a number"));
  e = error_of<ember::ValueError>(book(with_cell(3, 100, "256")));
  CHECK(contains(e, "'book.csv' line 3, column 100: pixel 256 is outside 0..255"));
  e = error_of<ember::ValueError>(book(with_cell(4, 9, "-1")));
  CHECK(contains(e, "line 4, column 9: pixel -1 is outside 0..255"));
  e = error_of<ember::ValueError>(book(with_cell(4, 9, "1.5")));
  CHECK(contains(e, "line 4, column 9: pixel '1.5' is not a whole number"));
  e = error_of<ember::ValueError>(book(with_cell(2, 3, "10")));
  CHECK(contains(e, "'book.csv' line 2, column 3: label 10 is outside 0..9"));
  e = error_of<ember::IOError>(book(with_cell(2, 3, "seven")));
  CHECK(contains(e, "line 2, column 3: label 'seven' is not a number"));
  e = error_of<ember::ValueError>(book(with_cell(3, 2, "2")));
  CHECK(contains(e, "line 3, column 2: is_handwritten 2 is outside {0, 1}"));
  e = error_of<ember::IOError>(book(with_cell(3, 1, "abc")));
  CHECK(contains(e, "line 3, column 1: row index 'abc' is not a number"));
  e = error_of<ember::IOError>(book(""));
  CHECK(contains(e, "'book.csv' is empty"));
  e = error_of<ember::IOError>(book("a,b,c\n"));
  CHECK(contains(e, "'book.csv' line 1: expected 787 columns, found 3"));

  DigitTable t = sample_table(2);
  t.names = {"A", "B"};
  const std::string tm = format_tmnist_csv(t);
  e = error_of<ember::ValueError>([&] { parse_tmnist_csv(tm.substr(0, tm.rfind('\n', tm.size() - 2) + 1) + "C,12" + std::string(784 * 2, ',').substr(0, 784) + "\n", "tm.csv"); });
  CHECK(contains(e, "'tm.csv' line 3, column 2: label 12 is outside 0..9"));
  e = error_of<ember::IOError>([&] { parse_tmnist_csv(tm + "\"unterminated,1\n", "tm.csv"); });
  CHECK(contains(e, "'tm.csv' line 4: unterminated quoted cell in column 1"));
  e = error_of<ember::IOError>([&] { parse_tmnist_csv(good, "tm.csv"); });
  CHECK(contains(e, "'tm.csv' line 1: expected 786 columns, found 787"));
}

// ---------------------------------------------------------------- split and batches

TEST_CASE("split: deterministic for a seed, stratified, disjoint, 80/20") {
  const DigitTable t = sample_table(1000);
  DatasetOptions o;
  o.seed(42);
  DigitDataset a(t, o), b(t, o);
  CHECK(a.rows(Split::Train) == b.rows(Split::Train));
  CHECK(a.rows(Split::Test) == b.rows(Split::Test));
  CHECK(a.size(Split::Train) == 800);
  CHECK(a.size(Split::Test) == 200);
  std::set<int64_t> all(a.rows(Split::Train).begin(), a.rows(Split::Train).end());
  for (int64_t r : a.rows(Split::Test)) CHECK(all.insert(r).second);
  CHECK(all.size() == 1000);
  const auto c = a.counts(Split::Test);
  for (int s = 0; s < 2; ++s)
    for (int d = 0; d < 10; ++d) CHECK(c[size_t(s)][size_t(d)] == 10);  // 50 per group, 20 %
  o.seed(43);
  DigitDataset other(t, o);
  CHECK(other.rows(Split::Test) != a.rows(Split::Test));
  // Known values pin the shuffle across platforms and standard libraries.
  std::vector<int64_t> r = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  shuffle_rows(r, 1, 2);
  std::vector<int64_t> again = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  shuffle_rows(again, 1, 2);
  CHECK(r == again);
  CHECK(r == std::vector<int64_t>{8, 6, 2, 1, 5, 7, 0, 4, 3, 9});
}

TEST_CASE("book split: index for index the book's random_split (fixture from python3-torch)") {
  std::ifstream in(std::string(EMBER_TEST_DATA_DIR) + "/data/book_split.json");
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  REQUIRE(fixture["cases"].size() >= 8);
  auto checksum = [](const std::vector<int64_t>& v) {
    int64_t s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += int64_t(i + 1) * v[i];
    return s;
  };
  for (const auto& c : fixture["cases"]) {
    const int64_t n = c["n"];
    CAPTURE(n);
    const auto [train, test] = book_random_split(n);
    CHECK(int64_t(train.size()) == c["train_size"].get<int64_t>());
    CHECK(int64_t(test.size()) == c["test_size"].get<int64_t>());
    if (c.contains("train")) {
      CHECK(train == c["train"].get<std::vector<int64_t>>());
      CHECK(test == c["test"].get<std::vector<int64_t>>());
      continue;
    }
    for (const auto& [name, rows] : {std::pair{std::string("train"), train}, std::pair{std::string("test"), test}}) {
      const auto head = c[name + "_head"].get<std::vector<int64_t>>(), tail = c[name + "_tail"].get<std::vector<int64_t>>();
      CHECK(std::vector<int64_t>(rows.begin(), rows.begin() + std::ptrdiff_t(head.size())) == head);
      CHECK(std::vector<int64_t>(rows.end() - std::ptrdiff_t(tail.size()), rows.end()) == tail);
      CHECK(checksum(rows) == c[name + "_checksum"].get<int64_t>());
    }
  }
}

TEST_CASE("book split in DigitDataset: rows in random_split's order, independent of the seed, every row used") {
  const DigitTable t = sample_table(97);
  DatasetOptions o;
  o.split(SplitMethod::Book);
  o.seed(11);
  DigitDataset ds(t, o);
  const auto [train, test] = book_random_split(97);
  CHECK(ds.rows(Split::Train) == train);
  CHECK(ds.rows(Split::Test) == test);
  CHECK(ds.size(Split::Train) == 77);
  auto epoch = ds.epoch_rows(Split::Train, 0);
  std::sort(epoch.begin(), epoch.end());
  auto sorted_train = train;
  std::sort(sorted_train.begin(), sorted_train.end());
  CHECK(epoch == sorted_train);  // the default balance uses every row
  o.test_fraction(0.3);
  CHECK_THROWS_WITH_AS(DigitDataset(t, o), doctest::Contains("the book's split is 80/20"), ember::ValueError);
  CHECK(split_method_from_string(to_string(SplitMethod::Book)) == SplitMethod::Book);
  CHECK(balance_from_string(to_string(Balance::Balanced)) == Balance::Balanced);
  CHECK_THROWS_WITH_AS(balance_from_string("yes"), doctest::Contains("expected none or styles"), ember::ValueError);
}

TEST_CASE("split of the bundled data: pinned rows for seed 0 (same on every run and platform)") {
  DatasetOptions balanced;
  balanced.balance(Balance::Balanced);
  DigitDataset ds(load_bundled(), balanced);
  const auto& test = ds.rows(Split::Test);
  CHECK(std::vector<int64_t>(test.begin(), test.begin() + 8) == std::vector<int64_t>{0, 18, 19, 23, 27, 32, 34, 37});
  const auto e = ds.epoch_rows(Split::Train, 3);
  CHECK(std::vector<int64_t>(e.begin(), e.begin() + 8) == std::vector<int64_t>{10349, 7453, 23246, 18486, 56, 20283, 5673, 5534});
}

TEST_CASE("batches: shapes, dtypes, ranges, per-epoch shuffles, drop_last") {
  const DigitTable t = sample_table(100);
  DatasetOptions o;
  o.balance(Balance::All);
  DigitDataset ds(t, o);
  const Epoch e0 = ds.epoch(Split::Train, 32, 0), e1 = ds.epoch(Split::Train, 32, 1);
  REQUIRE(e0.size() == 3);  // 80 rows: 32, 32, 16
  const Batch b = e0[0];
  CHECK(b.images.sizes() == torch::IntArrayRef{32, 784});
  CHECK(b.images.dtype() == torch::kFloat);
  CHECK(b.images.min().item<float>() >= 0.0f);
  CHECK(b.images.max().item<float>() <= 1.0f);
  CHECK(b.labels.sizes() == torch::IntArrayRef{32});
  CHECK(b.labels.dtype() == torch::kLong);
  CHECK(b.handwritten.sizes() == torch::IntArrayRef{32});
  CHECK(b.handwritten.dtype() == torch::kFloat);
  CHECK(b.one_hot().sizes() == torch::IntArrayRef{32, 10});
  CHECK(b.one_hot().argmax(1).equal(b.labels));
  CHECK(e0[2].size() == 16);
  CHECK(ds.epoch(Split::Train, 32, 0, true).size() == 2);
  CHECK_FALSE(e0.order().equal(e1.order()));
  CHECK(e0.order().equal(ds.epoch(Split::Train, 32, 0).order()));
  // Each row's tensors match the table.
  const int64_t row = e0.order()[5].item<int64_t>();
  CHECK(b.labels[5].item<int64_t>() == t.labels[size_t(row)]);
  CHECK(b.images[5][3].item<float>() == doctest::Approx(t.pixels[size_t(row) * kPixels + 3] / 255.0));
  int64_t seen = 0;
  for (const Batch& x : e1) seen += x.size();
  CHECK(seen == 80);
  CHECK_THROWS_AS(ds.epoch(Split::Train, 0), ember::ValueError);
}

TEST_CASE("balance: balanced epochs hold as many handwritten as typed images, All keeps every row") {
  // 300 handwritten, 100 typed.
  DigitTable t;
  for (size_t i = 0; i < 400; ++i) {
    t.pixels.insert(t.pixels.end(), kPixels, uint8_t(i % 256));
    t.labels.push_back(uint8_t(i % 10));
    t.handwritten.push_back(i < 300);
    t.source.push_back(int32_t(i));
  }
  DatasetOptions o;
  o.seed(7);
  o.balance(Balance::Balanced);
  DigitDataset ds(t, o);
  CHECK(ds.size(Split::Train) == 320);
  std::set<int64_t> hw_seen;
  for (int64_t epoch = 0; epoch < 12; ++epoch) {
    const auto rows = ds.epoch_rows(Split::Train, epoch);
    int64_t hw = 0;
    for (int64_t r : rows)
      if (t.handwritten[size_t(r)]) {
        ++hw;
        hw_seen.insert(r);
      }
    CHECK(rows.size() == 160);
    CHECK(hw == 80);
    const Batch b = ds.gather(torch::tensor(rows));
    CHECK(b.handwritten.mean().item<float>() == doctest::Approx(0.5));
  }
  CHECK(hw_seen.size() > 220);  // fresh subsamples cover (nearly) every handwritten training row of 240
  CHECK(ds.epoch_rows(Split::Test, 0) != ds.epoch_rows(Split::Test, 1));  // reshuffled...
  auto t0 = ds.epoch_rows(Split::Test, 0), t1 = ds.epoch_rows(Split::Test, 1);
  std::sort(t0.begin(), t0.end());
  std::sort(t1.begin(), t1.end());
  CHECK(t0 == t1);  // ...but the same fixed subsample
  CHECK(ds.all(Split::Test).handwritten.sum().item<float>() == 20.0f);
  o.balance(Balance::All);
  DigitDataset all(t, o);
  CHECK(all.epoch_rows(Split::Train, 0).size() == 320);
  CHECK(all.all(Split::Test).size() == 80);
}

TEST_CASE("bundled data set: balanced batches are half handwritten") {
  DatasetOptions o;
  o.seed(3);
  o.balance(Balance::Balanced);
  DigitDataset ds(load_bundled(), o);
  const auto c = ds.counts(Split::Train);
  int64_t hw = 0, ty = 0;
  for (int d = 0; d < 10; ++d) hw += c[1][size_t(d)], ty += c[0][size_t(d)];
  CHECK(hw == 8000);
  const Epoch e = ds.epoch(Split::Train, 512, 0);
  double share = 0;
  int64_t n = 0;
  for (const Batch& b : e) share += b.handwritten.sum().item<double>(), n += b.size();
  CHECK(n == 2 * std::min(hw, ty));
  CHECK(share / double(n) == doctest::Approx(0.5));
}
