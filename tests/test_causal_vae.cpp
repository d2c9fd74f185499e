// The causal VAE example: its model and guide, the handler-composed queries, the import of
// the book's state_dict, and the command line's behaviour on good and bad input.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>  // getpid (LibTorch 1.13 included it for us, 2.x does not)

#include <filesystem>
#include <fstream>
#include <set>

#include "examples/causal_vae/causal_vae.h"
#include "inference/elbo.h"
#include "io/state_dict.h"
#include "viz/model_graph.h"

using namespace ember;
using causal_vae::CausalVAE;
namespace fs = std::filesystem;

namespace {

causal_vae::Config small_config() {
  causal_vae::Config c;
  c.z_dim = 4;
  c.hidden_dim = 8;
  return c;
}

causal_vae::Batch random_batch(int64_t n) {
  auto digits = torch::randint(10, {n}, torch::kLong);
  return {torch::rand({n, 784}), torch::one_hot(digits, 10).to(torch::kFloat), torch::randint(2, {n, 1}).to(torch::kFloat)};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

struct Command {
  int rc;
  std::string output;
};

Command run(const std::string& args) {
  const std::string log = (fs::temp_directory_path() / ("ember-causal-vae-cmd-" + std::to_string(::getpid()) + ".log")).string();
  int status = std::system((std::string(EMBER_CAUSAL_VAE_BIN) + " " + args + " > " + log + " 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(log)};
}

// A small CSV in the book's layout: 120 handwritten and 120 typed bundled images.
std::string tiny_csv() {
  static const std::string path = [] {
    auto all = data::load_bundled();
    data::DigitTable t;
    int64_t typed = 0, hand = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      int64_t& count = all.handwritten[i] ? hand : typed;
      if (count >= 120 || (i % 7) != 0) continue;
      ++count;
      t.pixels.insert(t.pixels.end(), all.pixels.begin() + static_cast<std::ptrdiff_t>(i * 784),
                      all.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * 784));
      t.labels.push_back(all.labels[i]);
      t.handwritten.push_back(all.handwritten[i]);
      t.source.push_back(-1);
      t.names.emplace_back();
    }
    auto p = (fs::temp_directory_path() / ("ember-tiny-" + std::to_string(::getpid()) + ".csv")).string();
    data::save_book_csv(p, t);
    return p;
  }();
  return path;
}

std::string fresh_dir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("ember-cvae-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

const std::string kSmall = " --z-dim 4 --hidden-dim 8 --batch-size 40 --threads 1 ";

}  // namespace

TEST_CASE("the training model and guide have the book's sites, shapes and observations") {
  clear_param_store();
  torch::manual_seed(0);
  CausalVAE vae(small_config());
  auto b = random_batch(5);
  Trace guide = trace([&] { vae.training_guide(b); }).get_trace();
  Trace model = trace(replay([&] { vae.training_model(b); }, guide)).get_trace();
  CHECK(guide.stochastic_nodes() == std::vector<std::string>{"Z"});
  CHECK(model.stochastic_nodes() == std::vector<std::string>{"Z"});
  CHECK(model.observation_nodes() == std::vector<std::string>{"digit", "is_handwritten", "img"});
  CHECK(model.at("Z").fn->batch_shape() == Shape{5});
  CHECK(model.at("Z").fn->event_shape() == Shape{4});
  CHECK(model.at("digit").fn->event_shape() == Shape{10});
  CHECK(model.at("is_handwritten").fn->event_shape() == Shape{1});
  CHECK(model.at("img").fn->batch_shape() == Shape{5});
  CHECK(model.at("img").fn->event_shape() == Shape{784});
  CHECK(model.at("Z").value.equal(guide.at("Z").value));
  CHECK(get_param_store().contains("encoder$$$fc21.weight"));
  CHECK(get_param_store().contains("decoder$$$fc2.bias"));
  clear_param_store();
}

TEST_CASE("Ember's Trace_ELBO equals the negative ELBO written out by hand") {
  clear_param_store();
  torch::manual_seed(1);
  CausalVAE vae(small_config());
  auto b = random_batch(6);
  auto model = [&](const causal_vae::Batch& x) { vae.training_model(x); };
  auto guide = [&](const causal_vae::Batch& x) { vae.training_guide(x); };
  torch::manual_seed(7);
  const double ember_loss = infer::Trace_ELBO().loss(model, guide, b);
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  auto [loc, scale] = vae.encoder()->forward(b.image, b.digit, b.is_handwritten);
  auto z = loc + scale * torch::randn_like(loc);
  auto normal_lp = [](const torch::Tensor& x, const torch::Tensor& m, const torch::Tensor& s) {
    return (-0.5 * ((x - m) / s).pow(2) - s.log() - 0.5 * std::log(2 * M_PI)).sum(1);
  };
  auto p = vae.decoder()->forward(z, b.digit, b.is_handwritten);
  auto log_px = (b.image * p.log() + (1 - b.image) * (1 - p).log()).sum(1);
  auto elbo = normal_lp(z, torch::zeros_like(z), torch::ones_like(z)) + std::log(0.1) + std::log(0.5) + log_px -
              normal_lp(z, loc, scale);
  CHECK(ember_loss == doctest::Approx(-elbo.sum().item<double>()).epsilon(1e-5));
  clear_param_store();
}

TEST_CASE("counterfactuals composed from trace, condition and do_ equal decoding the abducted Z") {
  clear_param_store();
  torch::manual_seed(2);
  CausalVAE vae(small_config());
  auto b = random_batch(4);
  torch::NoGradGuard no_grad;
  auto [loc, scale] = vae.encoder()->forward(b.image, b.digit, b.is_handwritten);
  auto flipped = 1 - b.is_handwritten;
  auto cf = vae.counterfactual(b, flipped, std::nullopt);
  CHECK(torch::allclose(cf, vae.decoder()->forward(loc, b.digit, flipped), 1e-6, 1e-6));
  auto three = torch::zeros({4, 10});
  three.select(1, 3).fill_(1);
  auto cf3 = vae.counterfactual(b, std::nullopt, 3);
  CHECK(torch::allclose(cf3, vae.decoder()->forward(loc, three, b.is_handwritten), 1e-6, 1e-6));
  // No action: the reconstruction, which differs from the style-flipped counterfactual.
  CHECK(torch::allclose(vae.reconstruct(b), vae.decoder()->forward(loc, b.digit, b.is_handwritten), 1e-6, 1e-6));
  CHECK_FALSE(torch::allclose(cf, vae.reconstruct(b)));
  // Abduction by sampling: K posterior draws of Z per image, each decoded in the
  // counterfactual world.
  torch::manual_seed(5);
  auto draws = vae.counterfactual_samples(b, flipped, std::nullopt, 3);
  REQUIRE(draws.sizes() == torch::IntArrayRef({3, 4, 784}));
  torch::manual_seed(5);
  auto z = loc.repeat({3, 1}) + scale.repeat({3, 1}) * torch::randn({12, 4});  // the guide's first draw
  CHECK(torch::allclose(draws.reshape({12, 784}), vae.decoder()->forward(z, b.digit.repeat({3, 1}), flipped.repeat({3, 1})),
                        1e-5, 1e-6));
  CHECK_FALSE(torch::allclose(draws[0], draws[1]));
  clear_param_store();
}

TEST_CASE("the counterfactual query runs in twin worlds: Z shared, labels and image split") {
  clear_param_store();
  torch::manual_seed(4);
  CausalVAE vae(small_config());
  auto b = random_batch(3);
  torch::NoGradGuard no_grad;
  auto tr = trace();
  auto worlds = twin_world();
  auto act = do_({{"is_handwritten", 1 - b.is_handwritten}});
  auto observe = condition({{"digit", b.digit}, {"is_handwritten", b.is_handwritten}, {"img", b.image}});
  // The image has no noise model (Bernoulli): the query must say how its worlds relate.
  CHECK_THROWS_AS(([&] {
                    auto units = plate("data", 3);
                    vae.model(3);
                  }()),
                  NotImplementedError);
  clear_param_store();
}

TEST_CASE("intervening with do_ decodes prior draws of Z with the intervened labels") {
  clear_param_store();
  torch::manual_seed(3);
  CausalVAE vae(small_config());
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  auto images = vae.intervene(7, 0.0, 5);
  torch::manual_seed(11);
  auto z = torch::randn({5, 4});  // Z is the model's first draw
  auto seven = torch::zeros({5, 10});
  seven.select(1, 7).fill_(1);
  CHECK(torch::allclose(images, vae.decoder()->forward(z, seven, torch::zeros({5, 1})), 1e-6, 1e-6));
  CHECK_THROWS_AS(vae.intervene(10, 0.0, 1), ValueError);
  CHECK_THROWS_AS(vae.intervene(1, 0.5, 1), ValueError);
  clear_param_store();
}

TEST_CASE("the book's state_dict (torch.save, zip format) loads into the networks exactly") {
  clear_param_store();
  CausalVAE vae(small_config());
  const std::string dir = EMBER_TEST_DATA_DIR "/causal_vae/";
  io::load_state_dict_into(*vae.encoder(), dir + "vae_z4_h8.pt", io::LoadStateDictOptions().prefix("encoder."));
  io::load_state_dict_into(*vae.decoder(), dir + "vae_z4_h8.pt", io::LoadStateDictOptions().prefix("decoder."));
  auto expected = nlohmann::json::parse(slurp(dir + "expected.json"));
  torch::NoGradGuard no_grad;
  auto z = torch::tensor(expected["z"].get<std::vector<float>>()).unsqueeze(0);
  auto digit = torch::zeros({1, 10});
  digit[0][3] = 1;
  auto probs = vae.decoder()->forward(z, digit, torch::ones({1, 1}));
  auto want = expected["decoder_probs_first10"].get<std::vector<double>>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(probs[0][static_cast<int64_t>(i)].item<double>() == doctest::Approx(want[i]).epsilon(1e-6));
  auto img = torch::linspace(0, 1, 784).unsqueeze(0);
  auto [loc, scale] = vae.encoder()->forward(img, digit, torch::ones({1, 1}));
  auto want_loc = expected["encoder_loc"].get<std::vector<double>>();
  for (size_t i = 0; i < want_loc.size(); ++i) CHECK(loc[0][static_cast<int64_t>(i)].item<double>() == doctest::Approx(want_loc[i]).epsilon(1e-5));
  clear_param_store();
}

TEST_CASE("the book's published weights import as published and reproduce PyTorch's outputs") {
  // tests/fixtures/causal_vae/book/: the files of github.com/altdeep/causalML (MIT);
  // book_decoder_outputs.json: computed from the same files by python3-torch
  // (scripts/gen_book_fixtures.py).
  clear_param_store();
  const std::string dir = EMBER_TEST_DATA_DIR "/causal_vae/";
  const auto encoder = dir + "book/mnist_tmnist_encoder_weights.pt", decoder = dir + "book/mnist_tmnist_decoder_weights.pt";
  auto imported = causal_vae::import_weights(causal_vae::ImportOptions().encoder(encoder).decoder(decoder), causal_vae::Config());
  CHECK(imported.config.label_encoding == causal_vae::LabelEncoding::one_hot);
  CHECK(imported.config.z_dim == 50);
  CHECK(imported.config.hidden_dim == 400);
  REQUIRE(imported.notes.size() == 2);
  CHECK(imported.notes[1].find("'fc21' read as 'fc2'") != std::string::npos);

  auto expected = nlohmann::json::parse(slurp(dir + "book_decoder_outputs.json"));
  auto tensor = [&](const char* key) {
    std::vector<std::vector<double>> rows = expected[key];
    std::vector<torch::Tensor> t;
    for (auto& r : rows) t.push_back(torch::tensor(r, torch::kDouble));
    return torch::stack(t).to(torch::kFloat);
  };
  auto& vae = *imported.vae;
  torch::NoGradGuard no_grad;
  const auto digit = torch::one_hot(torch::tensor(expected["digit"].get<std::vector<int64_t>>()), 10).to(torch::kFloat);
  const auto hw = torch::tensor(expected["is_handwritten"].get<std::vector<int64_t>>()).to(torch::kFloat).unsqueeze(1);
  const auto probs = vae.decoder()->forward(tensor("z"), digit, vae.encode_style(hw));
  CHECK((probs - tensor("decoder_probs")).abs().max().item<double>() < 1e-5);
  auto [loc, scale] = vae.encoder()->forward(probs, digit, vae.encode_style(hw));
  CHECK((loc - tensor("encoder_loc")).abs().max().item<double>() < 1e-4);
  CHECK(((scale - tensor("encoder_scale")).abs() / tensor("encoder_scale")).max().item<double>() < 1e-4);

  // Settings that contradict the files are refused with the one that fits.
  auto refused = [&](const causal_vae::ImportOptions& o) {
    try {
      causal_vae::import_weights(o, causal_vae::Config());
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto base = causal_vae::ImportOptions().encoder(encoder).decoder(decoder);
  CHECK(refused(causal_vae::ImportOptions(base).label_encoding(causal_vae::LabelEncoding::indicator))
            .find("--label-encoding indicator was given; --label-encoding one-hot fits them") != std::string::npos);
  CHECK(refused(causal_vae::ImportOptions(base).z_dim(20)).find("--z-dim 50 fits them") != std::string::npos);
  // A wrong key map: every missing and unexpected key is named, and the fitting map suggested.
  const auto wrong = refused(causal_vae::ImportOptions(base).key_map({"decoder.fc21=out"}));
  CAPTURE(wrong);
  CHECK(wrong.find("missing key for parameter 'fc2.weight' [784, 400]") != std::string::npos);
  CHECK(wrong.find("missing key for parameter 'fc2.bias' [784]") != std::string::npos);
  CHECK(wrong.find("unexpected key 'out.weight' [784, 400] matches no parameter") != std::string::npos);
  CHECK(wrong.find("--key-map decoder.out=fc2 would fit") != std::string::npos);
  CHECK(refused(causal_vae::ImportOptions(base).key_map({"decoder.nope=fc2"})).find("have no layer 'nope'") != std::string::npos);
  // The explicit map the recognition stands for.
  auto mapped = causal_vae::import_weights(causal_vae::ImportOptions(base).key_map({"decoder.fc21=fc2"}), causal_vae::Config());
  CHECK(torch::equal(mapped.vae->decoder()->fc2->weight, vae.decoder()->fc2->weight));
  clear_param_store();
}

TEST_CASE("causal-vae: import-weights loads the book's published files and generate and counterfactual run on them") {
  const std::string dir = EMBER_TEST_DATA_DIR "/causal_vae/book/";
  const auto out = fresh_dir("import-book");
  auto ok = run("import-weights --encoder " + dir + "mnist_tmnist_encoder_weights.pt --decoder " + dir +
                "mnist_tmnist_decoder_weights.pt --out " + out);
  REQUIRE_MESSAGE(ok.rc == 0, ok.output);
  CHECK(ok.output.find("is_handwritten one-hot, z_dim 50, hidden_dim 400") != std::string::npos);
  CHECK(nlohmann::json::parse(slurp(out + "/config.json"))["label_encoding"] == "one-hot");
  auto gen = run("generate --run " + out + " --per-cell 1");
  CHECK_MESSAGE(gen.rc == 0, gen.output);
  auto cf = run("counterfactual --run " + out + " --indices 0 1");
  CHECK_MESSAGE(cf.rc == 0, cf.output);
  CHECK(fs::exists(out + "/counterfactuals.png"));
  auto wrong = run("import-weights --encoder " + dir + "mnist_tmnist_encoder_weights.pt --decoder " + dir +
                   "mnist_tmnist_decoder_weights.pt --label-encoding indicator --out " + fresh_dir("import-book-wrong"));
  CHECK(wrong.rc != 0);
  CHECK(wrong.output.find("--label-encoding one-hot fits them") != std::string::npos);
}

TEST_CASE("evaluate: with beta != 1 the importance-weighted estimate is still of log p(image, labels)") {
  data::DatasetOptions o;
  o.split(data::SplitMethod::Book);
  data::DigitDataset ds(data::load_book_csv(tiny_csv()), o);
  auto run_evaluate = [&](double beta) {
    clear_param_store();
    auto c = small_config();
    c.beta = beta;
    torch::manual_seed(3);
    CausalVAE vae(c);  // the networks do not depend on beta: the same weights each time
    torch::manual_seed(4);
    auto result = causal_vae::evaluate(vae, ds, 8);
    clear_param_store();
    return result;
  };
  const auto one = run_evaluate(1.0), four = run_evaluate(4.0);
  CHECK(one["test_loss"].get<double>() == doctest::Approx(one["negative_elbo"].get<double>()).epsilon(1e-12));
  CHECK(four["iw_log_likelihood"].get<double>() == doctest::Approx(one["iw_log_likelihood"].get<double>()).epsilon(1e-9));
  CHECK(four["negative_elbo"].get<double>() == doctest::Approx(one["negative_elbo"].get<double>()).epsilon(1e-9));
  // The objective weights Z's KL by beta: with untrained networks the KL is large, so it differs.
  CHECK(four["test_loss"].get<double>() > one["test_loss"].get<double>() + 1.0);
  CHECK(four["beta"] == 4.0);
}

TEST_CASE("causal-vae: nonsense settings are refused and a diverging run stops naming epoch, step and site") {
  for (const char* flags : {"--threads -3", "--seed -1", "--z-dim 0", "--hidden-dim -4", "--lr 0", "--batch-size 0", "--epochs 0"}) {
    CAPTURE(flags);
    auto r = run(std::string("train ") + flags + " --out " + fresh_dir("nonsense"));
    CHECK(r.rc != 0);
    CHECK(r.output.find(std::string(flags).substr(0, std::string(flags).find(' ')) + ": must be") != std::string::npos);
  }
  const auto out = fresh_dir("diverged");
  auto r = run("train --data " + tiny_csv() + kSmall + "--epochs 2 --lr 1000 --out " + out);
  CAPTURE(r.output);
  CHECK(r.rc != 0);
  CHECK(r.output.find("training diverged in epoch 1, step ") != std::string::npos);
  CHECK(r.output.find("site 'Z'") != std::string::npos);
  CHECK(r.output.find("lower --lr than 1000") != std::string::npos);
  CHECK(r.output.find("No checkpoint was written") != std::string::npos);
  CHECK_FALSE(fs::exists(out + "/checkpoint.ember"));
}

TEST_CASE("causal-vae: bad flags and missing data are clear errors with a non-zero exit") {
  auto unknown = run("train --no-such-flag");
  CHECK(unknown.rc != 0);
  CHECK(unknown.output.find("--no-such-flag") != std::string::npos);
  auto missing = run("train --data /nonexistent/digits.csv --out " + fresh_dir("missing"));
  CHECK(missing.rc != 0);
  CHECK(missing.output.find("/nonexistent/digits.csv") != std::string::npos);
  auto no_run = run("evaluate --run " + fresh_dir("no-run"));
  CHECK(no_run.rc != 0);
  CHECK(no_run.output.find("config.json") != std::string::npos);
}

TEST_CASE("causal-vae: train writes its run directory, resuming continues exactly, nothing is lost on errors") {
  const auto csv = tiny_csv();
  const auto straight = fresh_dir("straight"), resumed = fresh_dir("resumed");
  auto a = run("train --data " + csv + kSmall + "--epochs 2 --out " + straight);
  REQUIRE_MESSAGE(a.rc == 0, a.output);
  // A CSV is split as the book does and every image is used; both are said and recorded.
  CHECK(a.output.find("split book (random_split 80/20, generator seed 42") != std::string::npos);
  CHECK(a.output.find("balance none (every training image each epoch") != std::string::npos);
  const auto config = nlohmann::json::parse(slurp(straight + "/config.json"));
  // Off a terminal: one line per epoch (the metrics), no progress-bar lines.
  CHECK(a.output.find("train epoch") == std::string::npos);
  size_t epoch_lines = 0;
  for (size_t at = a.output.find("{\"epoch\""); at != std::string::npos; at = a.output.find("{\"epoch\"", at + 1)) ++epoch_lines;
  CHECK(epoch_lines == 2);
  CHECK(config["split"] == "book");
  CHECK(config["balance"] == "none");
  // Runs written before --split/--balance read as what they used: stratified and balanced.
  auto old = config;
  old.erase("split");
  old.erase("balance");
  const auto old_cfg = causal_vae::train_config_from_json(old, "old config.json");
  CHECK(old_cfg.split == data::SplitMethod::Stratified);
  CHECK(old_cfg.balance == data::Balance::Balanced);
  CHECK(causal_vae::default_split("bundled") == data::SplitMethod::Stratified);
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.ember", "loss-curve.png", "reconstructions.png",
                        "prior-samples.png"})
    CHECK_MESSAGE(fs::exists(straight + "/" + f), f);
  REQUIRE(run("train --data " + csv + kSmall + "--epochs 1 --out " + resumed).rc == 0);
  auto r = run("train --data " + csv + kSmall + "--epochs 2 --out " + resumed + " --resume");
  REQUIRE_MESSAGE(r.rc == 0, r.output);
  // Same metrics (timings aside) and the same parameters, bit for bit.
  std::ifstream ma(straight + "/metrics.jsonl"), mb(resumed + "/metrics.jsonl");
  std::string la, lb;
  int lines = 0;
  while (std::getline(ma, la) && std::getline(mb, lb)) {
    auto ja = nlohmann::json::parse(la), jb = nlohmann::json::parse(lb);
    CHECK(ja["train_loss"] == jb["train_loss"]);
    CHECK(ja["test_loss"] == jb["test_loss"]);
    ++lines;
  }
  CHECK(lines == 2);
  auto pa = read_tensor_archive(straight + "/checkpoint.ember"), pb = read_tensor_archive(resumed + "/checkpoint.ember");
  REQUIRE(pa.entries.size() == pb.entries.size());
  for (size_t i = 0; i < pa.entries.size(); ++i) CHECK_MESSAGE(pa.entries[i].tensor.equal(pb.entries[i].tensor), pa.entries[i].name);

  // A resumed run keeps its settings: contradicting them is refused.
  auto changed = run("train --data " + csv + kSmall + "--epochs 3 --lr 0.5 --out " + resumed + " --resume");
  CHECK(changed.rc != 0);
  CHECK(changed.output.find("--lr 0.5 differs") != std::string::npos);

  // Training into an existing run without --resume is refused, and the run is untouched.
  const auto before = slurp(straight + "/checkpoint.ember");
  auto again = run("train --data " + csv + kSmall + "--epochs 2 --out " + straight);
  CHECK(again.rc != 0);
  CHECK(again.output.find("already holds a run") != std::string::npos);
  CHECK(slurp(straight + "/checkpoint.ember") == before);

  // A corrupt checkpoint is reported with the file's name; the file is left as it was.
  auto bytes = before;
  bytes[bytes.size() - 100] ^= 0x3c;
  std::ofstream(straight + "/checkpoint.ember", std::ios::binary) << bytes;
  auto ev = run("evaluate --run " + straight + " -k 2 --data " + csv);
  CHECK(ev.rc != 0);
  CHECK(ev.output.find("checkpoint.ember") != std::string::npos);
  auto res = run("train --data " + csv + kSmall + "--epochs 3 --out " + straight + " --resume");
  CHECK(res.rc != 0);
  CHECK(slurp(straight + "/checkpoint.ember") == bytes);
  CHECK(nlohmann::json::parse(slurp(straight + "/config.json"))["epochs"] == 2);
}

TEST_CASE("causal-vae: import-weights accepts the book's state_dict and refuses a mis-shaped one") {
  const std::string dir = EMBER_TEST_DATA_DIR "/causal_vae/";
  const auto good = fresh_dir("import-good"), bad = fresh_dir("import-bad");
  auto ok = run("import-weights --state-dict " + dir + "vae_z4_h8.pt --z-dim 4 --hidden-dim 8 --out " + good);
  REQUIRE_MESSAGE(ok.rc == 0, ok.output);
  CHECK(fs::exists(good + "/checkpoint.ember"));
  auto gen = run("generate --run " + good + " --per-cell 1");
  CHECK_MESSAGE(gen.rc == 0, gen.output);
  CHECK(fs::exists(good + "/generated.png"));
  auto no = run("import-weights --state-dict " + dir + "vae_bad_shape.pt --z-dim 4 --hidden-dim 8 --out " + bad);
  CHECK(no.rc != 0);
  CHECK(no.output.find("fc1.weight") != std::string::npos);
  CHECK_FALSE(fs::exists(bad + "/checkpoint.ember"));
}

// ------------------------------------------------------------------ the model's DAG

TEST_CASE("causal VAE DAG: exactly {Z, digit, is_handwritten} -> img inside plate data, read from the program") {
  CausalVAE vae(small_config());
  auto batch = random_batch(3);
  auto graph = get_model_graph([&] { vae.training_model(batch); });
  auto edges = graph.edges();
  CHECK(std::set<std::pair<std::string, std::string>>(edges.begin(), edges.end()) ==
        std::set<std::pair<std::string, std::string>>{{"Z", "img"}, {"digit", "img"}, {"is_handwritten", "img"}});
  CHECK(edges.size() == 3);
  REQUIRE(graph.nodes.size() == 4);
  for (const auto& n : graph.nodes) CHECK(n.plates == std::vector<std::string>{"data"});
  REQUIRE(graph.plates.size() == 1);
  CHECK(graph.plate("data").size == 3);
  CHECK_FALSE(graph.node("Z").is_observed);
  CHECK(graph.node("digit").is_observed);
  CHECK(graph.node("is_handwritten").is_observed);
  CHECK(graph.node("img").is_observed);
  CHECK(graph.node("Z").distribution == "Normal");
  CHECK(graph.node("digit").distribution == "OneHotCategorical");
  CHECK(graph.node("img").distribution == "Bernoulli");

  auto dot = viz::model_graph_dot(graph);
  for (const char* e : {"\"Z\" -> \"img\";", "\"digit\" -> \"img\";", "\"is_handwritten\" -> \"img\";",
                        "subgraph \"cluster_data\" {", "label=\"data (size 3)\""})
    CHECK_MESSAGE(dot.find(e) != std::string::npos, e, " not in\n", dot);
}

TEST_CASE("causal-vae render writes the plate diagram as PNG and DOT and prints the text form") {
  auto dir = fresh_dir("render");
  auto c = run("render --batch-size 5 --out " + dir + "/model");
  REQUIRE_MESSAGE(c.rc == 0, c.output);
  CHECK(c.output.find("img ~ Bernoulli (observed) <- Z, digit, is_handwritten") != std::string::npos);
  CHECK(c.output.find("data (size 5): Z, digit, is_handwritten, img") != std::string::npos);
  auto png = slurp(dir + "/model.png");
  REQUIRE(png.size() > 1000);
  CHECK(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  auto dot = slurp(dir + "/model.dot");
  CHECK(dot.find("\"is_handwritten\" -> \"img\";") != std::string::npos);
  CHECK(dot.find("img ~ Bernoulli\\l") != std::string::npos);
}
