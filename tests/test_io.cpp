// PyTorch state_dict import: real files written by Python's torch.save (tests/fixtures/io,
// made by scripts/gen_state_dict_fixtures.py with Debian's python3-torch).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/state_dict.h"

using namespace ember;
using ember::io::load_state_dict_into;
using ember::io::load_torch_state_dict;
using ember::io::LoadStateDictOptions;

namespace {

std::string fixture(const std::string& name) { return std::string(EMBER_TEST_DATA_DIR) + "/io/" + name; }

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ember-tests";
  std::filesystem::create_directories(dir);
  return (dir / (std::to_string(::getpid()) + "-" + name)).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

const nlohmann::json& expected() {
  static const nlohmann::json j = nlohmann::json::parse(read_bytes(fixture("expected.json")));
  return j;
}

torch::Dtype dtype_of(const std::string& name) {
  static const std::map<std::string, torch::Dtype> table = {
      {"float32", torch::kFloat32}, {"float64", torch::kFloat64}, {"int64", torch::kInt64},
      {"int32", torch::kInt32},     {"bool", torch::kBool}};
  return table.at(name);
}

/// Checks a file against expected.json: keys in order, dtype, shape and every value exactly.
void check_file(const std::string& name) {
  CAPTURE(name);
  auto got = load_torch_state_dict(fixture(name));
  const auto& want = expected()["files"][name];
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& [key, t] = got[i];
    const auto& w = want[i];
    CAPTURE(key);
    CHECK(key == w["key"].get<std::string>());
    CHECK(c10::toString(t.scalar_type()) == std::string(c10::toString(dtype_of(w["dtype"]))));
    CHECK(t.sizes().vec() == w["shape"].get<std::vector<int64_t>>());
    CHECK(t.is_contiguous());
    CHECK(t.device().is_cpu());
    auto flat = t.reshape(-1);
    REQUIRE(flat.numel() == static_cast<int64_t>(w["values"].size()));
    for (int64_t k = 0; k < flat.numel(); ++k) {
      if (t.scalar_type() == torch::kBool) {
        CHECK(flat[k].item<bool>() == w["values"][k].get<bool>());
      } else if (t.is_floating_point()) {
        // float32 values went through Python floats (doubles) exactly.
        CHECK(flat[k].item<double>() == w["values"][k].get<double>());
      } else {
        CHECK(flat[k].item<int64_t>() == w["values"][k].get<int64_t>());
      }
    }
  }
}

/// The book's encoder layout at the fixtures' size (6 -> 5 -> 3).
struct EncoderImpl : torch::nn::Module {
  EncoderImpl(int64_t x = 6, int64_t h = 5, int64_t z = 3, bool extra = false)
      : fc1(register_module("fc1", torch::nn::Linear(x, h))),
        fc21(register_module("fc21", torch::nn::Linear(h, z))),
        fc22(register_module("fc22", torch::nn::Linear(h, z))) {
    if (extra) fc3 = register_module("fc3", torch::nn::Linear(z, 2));
  }
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    auto hidden = torch::softplus(fc1(x));
    return {fc21(hidden), torch::exp(fc22(hidden))};
  }
  torch::nn::Linear fc1, fc21, fc22, fc3{nullptr};
};
TORCH_MODULE(Encoder);

/// Copies of every parameter, to check that a failed load changed nothing.
std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}
bool unchanged(torch::nn::Module& m, const std::vector<torch::Tensor>& before) {
  auto params = m.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!torch::equal(params[i], before[i])) return false;
  }
  return true;
}

torch::Tensor json_tensor(const nlohmann::json& rows) {
  std::vector<torch::Tensor> out;
  for (auto& r : rows) out.push_back(torch::tensor(r.get<std::vector<float>>()));
  return torch::stack(out);
}

}  // namespace

TEST_CASE("torch::pickle_load and Ember's reader") {
  // The LibTorch limitation behind io/state_dict.cpp: its unpickler maps
  // collections.OrderedDict to None, so a real state_dict fails (LibTorch 1.13). A warning,
  // not a failure, if some LibTorch version reads it.
  auto bytes = read_bytes(fixture("encoder.pt"));
  std::vector<char> data(bytes.begin(), bytes.end());
  WARN_THROWS(torch::pickle_load(data));

  // Where pickle_load does work (a plain dict), both readers agree exactly.
  bytes = read_bytes(fixture("plain_dict.pt"));
  auto theirs = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
  auto ours = load_torch_state_dict(fixture("plain_dict.pt"));
  REQUIRE(ours.size() == theirs.size());
  size_t i = 0;
  for (const auto& item : theirs) {
    CHECK(item.key().toStringRef() == ours[i].first);
    CHECK(torch::equal(item.value().toTensor(), ours[i].second));
    ++i;
  }
}

TEST_CASE("state_dict saved by file name: keys in order, dtypes, shapes, exact values") { check_file("encoder.pt"); }
TEST_CASE("state_dict saved through a buffer (archive/ prefix)") { check_file("encoder_buffer.pt"); }
TEST_CASE("a plain dict instead of an OrderedDict") { check_file("plain_dict.pt"); }
TEST_CASE("views sharing one storage, with offsets and non-unit strides") { check_file("views.pt"); }
TEST_CASE("float64, int64 (incl. > 32 bit), int32, bool, 0-dim and empty tensors") { check_file("mixed.pt"); }
TEST_CASE("many entries (pickle memo past 255: LONG_BINPUT/LONG_BINGET)") { check_file("many.pt"); }

TEST_CASE("parameters and buffers (BatchNorm running statistics, int64 counter)") {
  check_file("batchnorm.pt");
  struct WithNorm : torch::nn::Module {
    torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(6, 5))};
    torch::nn::BatchNorm1d bn1{register_module("bn1", torch::nn::BatchNorm1d(5))};
  } m;
  load_state_dict_into(m, fixture("batchnorm.pt"));
  auto sd = load_torch_state_dict(fixture("batchnorm.pt"));
  CHECK(torch::equal(m.bn1->running_mean, sd[4].second));
  CHECK(torch::equal(m.bn1->running_var, sd[5].second));
  CHECK(m.bn1->num_batches_tracked.item<int64_t>() == 2);
}

TEST_CASE("tensors from shared storages do not alias each other") {
  auto sd = load_torch_state_dict(fixture("views.pt"));
  auto base = sd[0].second, rows = sd[1].second;
  float before = rows[0][0].item<float>();
  base.fill_(100.0);
  CHECK(rows[0][0].item<float>() == before);
}

TEST_CASE("load_state_dict_into copies the book's encoder and reproduces PyTorch's forward") {
  Encoder enc;
  load_state_dict_into(*enc, fixture("encoder.pt"));
  auto sd = load_torch_state_dict(fixture("encoder.pt"));
  auto params = enc->named_parameters();
  for (auto& [key, t] : sd) CHECK(torch::equal(params[key], t));
  const auto& fwd = expected()["encoder_forward"];
  auto [loc, scale] = enc->forward(json_tensor(fwd["input"]));
  CHECK(torch::allclose(loc, json_tensor(fwd["loc"]), 1e-5, 1e-6));
  CHECK(torch::allclose(scale, json_tensor(fwd["scale"]), 1e-5, 1e-6));
  CHECK_FALSE(enc->fc1->weight.grad().defined());
  CHECK(enc->fc1->weight.requires_grad());

  // Float64 parameters receive converted values; so do parameters on a GPU, when there is one.
  Encoder enc64;
  enc64->to(torch::kFloat64);
  load_state_dict_into(*enc64, fixture("encoder.pt"));
  CHECK(torch::equal(enc64->fc1->weight, sd[0].second.to(torch::kFloat64)));
  if (torch::cuda::is_available()) {
    Encoder gpu;
    gpu->to(torch::Device(torch::kCUDA, 0));
    load_state_dict_into(*gpu, fixture("encoder.pt"));
    CHECK(gpu->fc21->weight.device().is_cuda());
    CHECK(torch::equal(gpu->fc21->weight.cpu(), sd[2].second));
  }
}

TEST_CASE("load_state_dict_into renames keys through a key map") {
  struct Renamed : torch::nn::Module {
    torch::nn::Linear hidden{register_module("hidden", torch::nn::Linear(6, 5))};
    torch::nn::Linear loc{register_module("loc", torch::nn::Linear(5, 3))};
    torch::nn::Linear scale{register_module("scale", torch::nn::Linear(5, 3))};
  } m;
  std::map<std::string, std::string> map = {{"fc1.weight", "hidden.weight"}, {"fc1.bias", "hidden.bias"},
                                            {"fc21.weight", "loc.weight"},   {"fc21.bias", "loc.bias"},
                                            {"fc22.weight", "scale.weight"}, {"fc22.bias", "scale.bias"}};
  load_state_dict_into(m, fixture("encoder.pt"), map);
  auto sd = load_torch_state_dict(fixture("encoder.pt"));
  CHECK(torch::equal(m.loc->weight, sd[2].second));
  CHECK(torch::equal(m.scale->bias, sd[5].second));

  // A map entry for a key the file lacks is an error, not ignored.
  Encoder enc;
  auto msg = error_of([&] { load_state_dict_into(*enc, fixture("encoder.pt"), {{"fc9.weight", "fc1.weight"}}); });
  CHECK(msg.find("fc9.weight") != std::string::npos);
  // Two keys onto one parameter.
  msg = error_of([&] { load_state_dict_into(*enc, fixture("encoder.pt"), {{"fc21.bias", "fc22.bias"}}); });
  CHECK(msg.find("both map to parameter 'fc22.bias'") != std::string::npos);
}

TEST_CASE("load_state_dict_into with a prefix loads one part of a larger state_dict") {
  auto sd = load_torch_state_dict(fixture("encoder.pt"));
  io::NamedTensors vae;
  for (auto& [k, t] : sd) vae.emplace_back("encoder." + k, t);
  vae.emplace_back("decoder.fc1.weight", torch::zeros({4, 3}));
  Encoder enc;
  load_state_dict_into(*enc, vae, "vae.pt", LoadStateDictOptions().prefix("encoder."));
  CHECK(torch::equal(enc->fc22->weight, sd[4].second));
  // Without the prefix nothing matches.
  auto msg = error_of([&] { load_state_dict_into(*enc, vae, "vae.pt"); });
  CHECK(msg.find("unexpected key 'encoder.fc1.weight'") != std::string::npos);
}

TEST_CASE("load_state_dict_into: missing key -> ValueError naming file and parameter, module unchanged") {
  Encoder enc(6, 5, 3, /*extra=*/true);
  auto before = snapshot(*enc);
  CHECK_THROWS_AS(load_state_dict_into(*enc, fixture("encoder.pt")), ValueError);
  auto msg = error_of([&] { load_state_dict_into(*enc, fixture("encoder.pt")); });
  CHECK(msg.find(fixture("encoder.pt")) != std::string::npos);
  CHECK(msg.find("missing key for parameter 'fc3.weight' [2, 3]") != std::string::npos);
  CHECK(unchanged(*enc, before));
}

TEST_CASE("load_state_dict_into: unexpected key -> ValueError, module unchanged") {
  struct NoScale : torch::nn::Module {
    torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(6, 5))};
    torch::nn::Linear fc21{register_module("fc21", torch::nn::Linear(5, 3))};
  } m;
  auto before = snapshot(m);
  CHECK_THROWS_AS(load_state_dict_into(m, fixture("encoder.pt")), ValueError);
  auto msg = error_of([&] { load_state_dict_into(m, fixture("encoder.pt")); });
  CHECK(msg.find(fixture("encoder.pt")) != std::string::npos);
  CHECK(msg.find("unexpected key 'fc22.weight' [3, 5]") != std::string::npos);
  CHECK(unchanged(m, before));
}

TEST_CASE("load_state_dict_into: shape mismatch -> ValueError with both shapes, module unchanged") {
  Encoder enc(6, 4, 3);  // hidden 4, the file has 5
  auto before = snapshot(*enc);
  CHECK_THROWS_AS(load_state_dict_into(*enc, fixture("encoder.pt")), ValueError);
  auto msg = error_of([&] { load_state_dict_into(*enc, fixture("encoder.pt")); });
  CHECK(msg.find(fixture("encoder.pt")) != std::string::npos);
  CHECK(msg.find("parameter 'fc1.weight' has shape [4, 6] but key 'fc1.weight' holds shape [5, 6]") != std::string::npos);
  CHECK(unchanged(*enc, before));
}

TEST_CASE("unreadable and malformed files -> IOError naming the file") {
  auto expect_io_error = [](const std::string& path, const std::string& part) {
    CAPTURE(path);
    CHECK_THROWS_AS(load_torch_state_dict(path), IOError);
    auto msg = error_of([&] { load_torch_state_dict(path); });
    CAPTURE(msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find(part) != std::string::npos);
  };
  auto good = read_bytes(fixture("encoder.pt"));

  SUBCASE("missing file") { expect_io_error(temp_path("does-not-exist.pt"), "cannot open the file"); }
  SUBCASE("empty file") {
    auto p = temp_path("empty.pt");
    write_bytes(p, "");
    expect_io_error(p, "zip");
  }
  SUBCASE("not a zip") {
    auto p = temp_path("text.pt");
    write_bytes(p, "fc1.weight = [1, 2, 3]\n");
    expect_io_error(p, "cannot open as a zip archive");
  }
  SUBCASE("truncated zip") {
    auto p = temp_path("truncated.pt");
    write_bytes(p, good.substr(0, good.size() / 2));
    expect_io_error(p, "cannot open as a zip archive");
  }
  SUBCASE("truncated by a few bytes") {
    auto p = temp_path("truncated-tail.pt");
    write_bytes(p, good.substr(0, good.size() - 5));
    expect_io_error(p, "zip");
  }
  SUBCASE("a corrupted tensor byte (CRC mismatch)") {
    // Flip a bit of fc1.weight's first value inside the stored blob.
    float first = static_cast<float>(expected()["files"]["encoder.pt"][0]["values"][0].get<double>());
    std::string needle(reinterpret_cast<const char*>(&first), 4);
    auto at = good.find(needle);
    REQUIRE(at != std::string::npos);
    auto bad = good;
    bad[at + 1] = static_cast<char>(bad[at + 1] ^ 0x10);
    auto p = temp_path("corrupt.pt");
    write_bytes(p, bad);
    expect_io_error(p, "encoder/data/0");
  }
  SUBCASE("a truncated data.pkl inside a valid zip") {
    expect_io_error(fixture("bad_pickle.pt"), "bad_pickle/data.pkl at byte");
    expect_io_error(fixture("bad_pickle.pt"), "unexpected end of the pickle");
  }
  SUBCASE("a storage missing from the archive") {
    expect_io_error(fixture("missing_storage.pt"), "no entry 'missing_storage/data/3'");
  }
  SUBCASE("a storage shorter than its tensor") {
    expect_io_error(fixture("short_storage.pt"), "entry 'short_storage/data/0' has 116 bytes; the pickle says 30 elements of Float");
  }
  SUBCASE("legacy non-zip format") { expect_io_error(fixture("legacy.pt"), "legacy"); }
  SUBCASE("a whole pickled module") { expect_io_error(fixture("whole_module.pt"), "'__main__.Encoder'"); }
  SUBCASE("a bare tensor") { expect_io_error(fixture("tensor.pt"), "holds a tensor, not a dict of tensors"); }
}
