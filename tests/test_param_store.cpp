// The param store: constrained params, modules, save/load.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "ppl/ppl.h"
#include "test_util.h"

using namespace ember;
using ember::testing::error_of;
using ember::testing::normal_log_prob;

namespace {

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ember-tests";
  std::filesystem::create_directories(dir);
  return (dir / (name + "-" + std::to_string(::getpid()))).string();
}

struct StoreFixture {
  ParamStore store;
  ParamStoreScope scope{store};
};

}  // namespace

TEST_CASE_FIXTURE(StoreFixture, "param returns the constrained value of an unconstrained leaf") {
  auto p = param("p", torch::tensor({0.2, 0.9}), constraints::unit_interval());
  CHECK(torch::allclose(p, torch::tensor({0.2, 0.9})));
  auto u = store.unconstrained("p");
  CHECK(u.requires_grad());
  CHECK(u.is_leaf());
  CHECK(torch::allclose(u, torch::logit(torch::tensor({0.2, 0.9}))));
  auto s = param("s", torch::tensor(2.0), constraints::positive());
  CHECK(torch::allclose(store.unconstrained("s"), torch::tensor(std::log(2.0))));
  // Gradients reach the unconstrained leaf.
  s.backward();
  CHECK(store.unconstrained("s").grad().item<double>() == doctest::Approx(2.0));  // d exp(u)/du
  // A second call ignores the init value.
  CHECK(param("s", torch::tensor(100.0), constraints::positive()).item<double>() == doctest::Approx(2.0));
}

TEST_CASE_FIXTURE(StoreFixture, "param errors: no init, init outside the constraint") {
  CHECK(error_of([] { param("missing"); }).find("param 'missing' is not in the param store") != std::string::npos);
  CHECK(error_of([] { param("neg", torch::tensor(-1.0), constraints::positive()); }).find("param 'neg'") != std::string::npos);
}

TEST_CASE_FIXTURE(StoreFixture, "lazy initialisers run only once") {
  int calls = 0;
  auto init = [&] {
    ++calls;
    return torch::zeros({3});
  };
  param("z", init);
  param("z", init);
  CHECK(calls == 1);
}

TEST_CASE_FIXTURE(StoreFixture, "save and load round-trip params, module params included") {
  torch::nn::Linear lin(4, 3);
  module("net", lin);
  param("scale", torch::tensor({1.5, 2.5}), constraints::positive());
  param("probs", torch::tensor({0.2, 0.3, 0.5}), constraints::simplex());
  const auto path = temp_path("store.params");
  store.save(path);
  auto w = lin->weight.detach().clone();
  auto scale = store.get("scale").detach().clone();
  auto probs = store.get("probs").detach().clone();

  // Perturb, then load back in place.
  {
    torch::NoGradGuard g;
    lin->weight.add_(1.0);
  }
  store.set("scale", torch::tensor({9.0, 9.0}), constraints::positive());
  store.load(path);
  CHECK(lin->weight.equal(w));
  CHECK(store.unconstrained("net$$$weight").is_same(lin->weight));
  CHECK(torch::allclose(store.get("scale"), scale));
  CHECK(torch::allclose(store.get("probs"), probs, 1e-6, 1e-6));

  // A fresh store + fresh module: loaded values flow into the module on registration.
  ParamStore other;
  ParamStoreScope s2(other);
  other.load(path);
  torch::nn::Linear lin2(4, 3);
  module("net", lin2);
  CHECK(lin2->weight.equal(w));
  CHECK(other.constraint("probs")->name() == "simplex");

  auto manifest = other.manifest();
  CHECK(manifest.size() == 4);
  CHECK(manifest[0]["name"] == "net$$$weight");
  CHECK(manifest[0]["shape"] == std::vector<int64_t>{3, 4});
}

TEST_CASE_FIXTURE(StoreFixture, "loading a file that does not match the registered modules names the parameter") {
  torch::nn::Linear small(4, 3);
  module("net", small);
  const auto path = temp_path("small.params");
  store.save(path);

  ParamStore other;
  ParamStoreScope s2(other);
  torch::nn::Linear big(5, 3);
  module("net", big);
  auto before = big->weight.detach().clone();
  auto msg = error_of([&] { other.load(path); });
  CHECK(msg.find("net$$$weight") != std::string::npos);
  CHECK(msg.find("[3, 4]") != std::string::npos);
  CHECK(msg.find("[3, 5]") != std::string::npos);
  CHECK(big->weight.equal(before));  // nothing changed

  torch::nn::Linear extra(4, 3);
  module("other_net", extra);
  ParamStore third;
  ParamStoreScope s3(third);
  module("net", small);
  module("decoder", extra);
  CHECK(error_of([&] { third.load(path); }).find("no value for param 'decoder$$$weight'") != std::string::npos);
}

TEST_CASE_FIXTURE(StoreFixture, "corrupt and truncated files are clear errors naming the file") {
  param("w", torch::randn({100}));
  const auto path = temp_path("corrupt.params");
  store.save(path);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Flip one data byte.
  {
    auto b = bytes;
    b[b.size() - 10] ^= 0x5a;
    std::ofstream(path, std::ios::binary) << b;
    auto msg = error_of([&] { store.load(path); });
    CHECK(msg.find("CRC-32") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
  }
  // Truncate.
  {
    std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CHECK(error_of([&] { store.load(path); }).find("truncated") != std::string::npos);
  }
  // Not an archive.
  {
    std::ofstream(path, std::ios::binary) << "hello world, not a checkpoint";
    CHECK(error_of([&] { store.load(path); }).find("not an Ember tensor archive") != std::string::npos);
  }
  CHECK_THROWS_AS(store.load(temp_path("does-not-exist")), IOError);
}

TEST_CASE("atomic writes never leave a torn file and keep the previous one on failure") {
  const auto path = temp_path("atomic.txt");
  write_file_atomic(path, "first");
  write_file_atomic(path, "second");
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  CHECK(s == "second");
  // Writing into a missing directory fails and leaves nothing behind.
  CHECK_THROWS_AS(write_file_atomic("/nonexistent-dir/x", "data"), IOError);
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    CHECK(e.path().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("constraint names round-trip through constraint_from_name") {
  using namespace constraints;
  for (const auto& c : {real(), positive(), unit_interval(), interval(-2.0, 3.5), greater_than(1.0), greater_than_eq(0.5),
                        less_than(4.0), simplex(), lower_cholesky(), independent(positive(), 2)}) {
    auto back = constraint_from_name(c->name());
    REQUIRE(back);
    CHECK(back->name() == c->name());
  }
  CHECK(constraint_from_name("no such constraint") == nullptr);
}
