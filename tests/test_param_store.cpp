// The param store: constrained params, modules, save/load.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>  // getpid (LibTorch 1.13 included it for us, 2.x does not)

#include "ppl/ppl.h"
#include "pyro_fixture.h"
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
  auto read = [&] {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  auto temp_files = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
      n += e.path().string().find(".tmp.") != std::string::npos;
    return n;
  };
  write_file_atomic(path, "first");
  write_file_atomic(path, "second");
  CHECK(read() == "second");
  // A failure between the complete temporary file and the rename: the previous file is intact.
  std::string seen_temp;
  set_atomic_write_hook([&](const std::string& temp) {
    std::ifstream in(temp);
    seen_temp = std::string((std::istreambuf_iterator<char>(in)), {});
    throw std::runtime_error("simulated crash before rename");
  });
  const auto msg = error_of([&] { write_file_atomic(path, "third, never visible"); });
  set_atomic_write_hook(nullptr);
  CHECK(seen_temp == "third, never visible");  // the hook ran after the full write
  CHECK(msg.find("simulated crash") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(read() == "second");
  CHECK(temp_files() == 0);
  // The same through a param-store checkpoint.
  {
    ParamStore store;
    ParamStoreScope scope(store);
    param("a", torch::tensor({1.0, 2.0}, torch::kFloat64));
    const auto ckpt = temp_path("atomic.params");
    store.save(ckpt);
    store.set("a", torch::tensor({7.0, 8.0}, torch::kFloat64));
    set_atomic_write_hook([](const std::string&) { throw std::runtime_error("disk full"); });
    CHECK_THROWS_AS(store.save(ckpt), IOError);
    set_atomic_write_hook(nullptr);
    ParamStore loaded;
    loaded.load(ckpt);
    CHECK(loaded.get("a").equal(torch::tensor({1.0, 2.0}, torch::kFloat64)));
  }
  // Writing into a missing directory fails and leaves nothing behind.
  CHECK_THROWS_AS(write_file_atomic("/nonexistent-dir/x", "data"), IOError);
  CHECK(temp_files() == 0);
}

TEST_CASE("constraints round-trip through constraint_from_name with the same transformed values") {
  using namespace constraints;
  struct Case {
    ConstraintPtr c;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {real(), {3}},           {positive(), {3}},
      {unit_interval(), {3}},  {interval(-2.0, 3.5), {3}},
      {interval(1.0 / 3, 2.0 / 3), {3}},  // bounds with no short decimal form
      {greater_than(0.1), {3}}, {greater_than(1.0 / 7), {3}},
      {greater_than_eq(0.5), {3}}, {less_than(M_PI), {3}},
      {half_open_interval(-1e-9, 1e7 + 1.0 / 3), {3}},
      {simplex(), {4}},        {lower_cholesky(), {3, 3}},
      {independent(positive(), 2), {2, 3}}};
  torch::manual_seed(4);
  for (const auto& [c, shape] : cases) {
    INFO(c->name());
    auto back = constraint_from_name(c->name());
    REQUIRE(back);
    const auto x = torch::randn(shape, torch::kFloat64);
    const auto y = transforms::transform_to(c)->forward(x);
    CHECK(transforms::transform_to(back)->forward(x).equal(y));
    CHECK(back->check(y).equal(c->check(y)));
  }
  CHECK(constraint_from_name("no such constraint") == nullptr);
}

TEST_CASE_FIXTURE(StoreFixture, "constraint bounds survive a checkpoint exactly") {
  const double lower = 1.0 / 3;
  auto before = param("x", torch::tensor({0.5, 2.0}, torch::kFloat64), constraints::greater_than(lower)).detach().clone();
  auto inside = param("y", torch::tensor({0.2, 0.24}, torch::kFloat64), constraints::interval(0.1, 0.1 + 1.0 / 7)).detach().clone();
  const auto path = temp_path("bounds.params");
  store.save(path);
  ParamStore other;
  other.load(path);
  CHECK(dynamic_cast<const constraints::GreaterThan&>(*other.constraint("x")).lower == lower);
  CHECK(other.get("x").equal(before));
  CHECK(other.get("y").equal(inside));
}

TEST_CASE_FIXTURE(StoreFixture, "Pyro parity: simplex params use Pyro's layout (softmax over K values)") {
  const auto& c = ember::testing::pyro_cases("distributions").at("simplex_param");
  using ember::testing::fixture_tensor;
  auto p = param("p", fixture_tensor(c.at("init")), constraints::simplex());
  CHECK(torch::allclose(p, fixture_tensor(c.at("constrained")), 1e-6, 1e-6));
  // The unconstrained tensor is Pyro's: [K] log-probabilities.
  CHECK(store.unconstrained("p").sizes() == torch::IntArrayRef{3});
  CHECK(torch::allclose(store.unconstrained("p"), fixture_tensor(c.at("unconstrained")), 1e-6, 1e-6));
  // One SGD step through the softmax gives Pyro's gradient and value.
  torch::optim::SGD sgd({store.unconstrained("p")}, torch::optim::SGDOptions(c.at("lr").get<double>()));
  sgd.zero_grad();
  (param("p") * fixture_tensor(c.at("w"))).sum().backward();
  CHECK(torch::allclose(store.unconstrained("p").grad(), fixture_tensor(c.at("grad")), 1e-6, 1e-6));
  sgd.step();
  CHECK(torch::allclose(param("p"), fixture_tensor(c.at("after")), 1e-6, 1e-6));
  CHECK(torch::allclose(store.unconstrained("p"), fixture_tensor(c.at("after_unconstrained")), 1e-6, 1e-6));
  // Pyro's unconstrained values load as they are.
  ParamStore from_pyro;
  from_pyro.load_archive_entries(
      {{"p", fixture_tensor(c.at("after_unconstrained")), {{"constraint", "simplex"}, {"transform", "softmax"}}}}, "pyro");
  CHECK(torch::allclose(from_pyro.get("p"), fixture_tensor(c.at("after")), 1e-6, 1e-6));
  // A checkpoint from before the transform was recorded holds stick-breaking values over K - 1.
  const auto probs = torch::tensor({0.1, 0.6, 0.3}, torch::kFloat64);
  const auto legacy = transforms::stick_breaking()->inverse(probs);
  ParamStore old;
  old.load_archive_entries({{"p", legacy, {{"constraint", "simplex"}}}}, "legacy");
  CHECK(old.unconstrained("p").sizes() == torch::IntArrayRef{3});
  CHECK(torch::allclose(old.get("p"), probs, 1e-12, 1e-12));
}
