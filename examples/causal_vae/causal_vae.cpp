#include "examples/causal_vae/causal_vae.h"

#include <filesystem>
#include <fstream>

#include "distributions/bernoulli.h"
#include "distributions/continuous_bernoulli.h"
#include "distributions/normal.h"
#include "distributions/one_hot_categorical.h"

namespace ember::causal_vae {

Likelihood likelihood_from_string(const std::string& s) {
  if (s == "bernoulli") return Likelihood::bernoulli;
  if (s == "continuous-bernoulli" || s == "continuous_bernoulli") return Likelihood::continuous_bernoulli;
  throw ValueError(cat("unknown likelihood '", s, "' (expected bernoulli or continuous-bernoulli)"));
}

LabelEncoding label_encoding_from_string(const std::string& s) {
  if (s == "indicator") return LabelEncoding::indicator;
  if (s == "one-hot" || s == "one_hot") return LabelEncoding::one_hot;
  throw ValueError(cat("unknown label encoding '", s, "' (expected indicator or one-hot)"));
}

Abduction abduction_from_string(const std::string& s) {
  if (s == "mean") return Abduction::mean;
  if (s == "sample") return Abduction::sample;
  throw ValueError(cat("unknown abduction '", s, "' (expected mean or sample)"));
}

std::string to_string(Likelihood l) { return l == Likelihood::bernoulli ? "bernoulli" : "continuous-bernoulli"; }
std::string to_string(LabelEncoding e) { return e == LabelEncoding::indicator ? "indicator" : "one-hot"; }

DecoderImpl::DecoderImpl(const Config& c) {
  fc1 = register_module("fc1", torch::nn::Linear(c.z_dim + c.num_digits + c.style_dim(), c.hidden_dim));
  fc2 = register_module("fc2", torch::nn::Linear(c.hidden_dim, c.image_dim));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& z, const torch::Tensor& digit, const torch::Tensor& style) {
  // Inputs broadcast over leading dims: counterfactual worlds give the labels a world dim
  // while Z (upstream of every intervention) is shared.
  auto batch = broadcast_shapes(broadcast_shapes(Shape(z.sizes().begin(), z.sizes().end() - 1),
                                                 Shape(digit.sizes().begin(), digit.sizes().end() - 1), "decoder inputs"),
                                Shape(style.sizes().begin(), style.sizes().end() - 1), "decoder inputs");
  auto expanded = [&](const torch::Tensor& t) {
    Shape shape = batch;
    shape.push_back(t.size(-1));
    return t.expand(shape);
  };
  auto hidden = torch::softplus(fc1->forward(torch::cat({expanded(z), expanded(digit), expanded(style)}, -1)));
  return torch::sigmoid(fc2->forward(hidden));
}

EncoderImpl::EncoderImpl(const Config& c) {
  fc1 = register_module("fc1", torch::nn::Linear(c.image_dim + c.num_digits + c.style_dim(), c.hidden_dim));
  fc21 = register_module("fc21", torch::nn::Linear(c.hidden_dim, c.z_dim));
  fc22 = register_module("fc22", torch::nn::Linear(c.hidden_dim, c.z_dim));
}

std::pair<torch::Tensor, torch::Tensor> EncoderImpl::forward(const torch::Tensor& image, const torch::Tensor& digit,
                                                             const torch::Tensor& style) {
  auto hidden = torch::softplus(fc1->forward(torch::cat({image, digit, style}, 1)));
  return {fc21->forward(hidden), torch::exp(fc22->forward(hidden))};
}

Batch to_model_batch(const data::Batch& b) { return {b.images, b.one_hot(), b.handwritten.unsqueeze(1)}; }

CausalVAE::CausalVAE(Config config, torch::Device device)
    : config_(config), device_(device), encoder_(config), decoder_(config) {
  encoder_->to(device);
  decoder_->to(device);
}

torch::Tensor CausalVAE::encode_style(const torch::Tensor& is_handwritten) const {
  if (config_.label_encoding == LabelEncoding::indicator) return is_handwritten;
  return torch::cat({1 - is_handwritten, is_handwritten}, -1);
}

dist::DistPtr CausalVAE::image_distribution(const torch::Tensor& probs) const {
  // Grey pixels are not in Bernoulli's support {0, 1}: the book turns validation off.
  if (config_.likelihood == Likelihood::bernoulli) return dist::Bernoulli(probs, /*validate_args=*/false).to_event(1);
  return dist::ContinuousBernoulli(probs).to_event(1);
}

Batch CausalVAE::model(int64_t n) {
  module("decoder", decoder_);
  auto options = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  torch::Tensor z;
  {
    auto weight = scale(config_.beta);
    z = sample("Z", dist::Normal(torch::zeros({n, config_.z_dim}, options), torch::ones({n, config_.z_dim}, options))
                        .to_event(1));
  }
  auto digit = sample("digit", dist::OneHotCategorical(torch::full({n, config_.num_digits}, 1.0 / config_.num_digits, options)));
  auto is_handwritten = sample("is_handwritten", dist::Bernoulli(torch::full({n, 1}, 0.5, options)).to_event(1));
  auto probs = decoder_->forward(z, digit, encode_style(is_handwritten));
  auto image = sample("img", image_distribution(probs));
  return {image, digit, is_handwritten};
}

void CausalVAE::training_model(const Batch& b) {
  auto conditioned = condition({{"digit", b.digit}, {"is_handwritten", b.is_handwritten}, {"img", b.image}});
  auto data = plate("data", b.image.size(0));
  model(b.image.size(0));
}

void CausalVAE::training_guide(const Batch& b) {
  module("encoder", encoder_);
  auto data = plate("data", b.image.size(0));
  auto [loc, sd] = encoder_->forward(b.image, b.digit, encode_style(b.is_handwritten));
  auto weight = scale(config_.beta);
  sample("Z", dist::Normal(loc, sd).to_event(1));
}

}  // namespace ember::causal_vae

// ------------------------------------------------------------------ queries through handlers

namespace ember::causal_vae {

namespace {

// The model for n units inside plate("data"): the program the handlers below rewrite.
std::function<void()> plated_model(CausalVAE& vae, int64_t n) {
  return [&vae, n] {
    auto units = plate("data", n);
    vae.model(n);
  };
}

ValueMap label_values(int64_t digit, double handwritten, int64_t n, torch::Device device) {
  if (digit < 0 || digit > 9) throw ValueError(cat("digit must be in 0..9, got ", digit));
  if (handwritten != 0.0 && handwritten != 1.0) throw ValueError(cat("is_handwritten must be 0 or 1, got ", handwritten));
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto one_hot = torch::zeros({n, 10}, opts);
  one_hot.select(1, digit).fill_(1.0);
  return {{"digit", one_hot}, {"is_handwritten", torch::full({n, 1}, handwritten, opts)}};
}

// The decoder's expected image at the model trace's image site.
torch::Tensor expected_image(const Trace& t) { return t.at("img").fn->mean(); }

}  // namespace

void CausalVAE::register_modules() {
  module("encoder", encoder_);
  module("decoder", decoder_);
}

torch::Tensor CausalVAE::generate(int64_t digit, double handwritten, int64_t n) {
  auto program = condition(plated_model(*this, n), label_values(digit, handwritten, n, device_));
  return expected_image(trace(program).get_trace());
}

torch::Tensor CausalVAE::intervene(int64_t digit, double handwritten, int64_t n) {
  auto program = do_(plated_model(*this, n), label_values(digit, handwritten, n, device_));
  return expected_image(trace(program).get_trace());
}

torch::Tensor CausalVAE::counterfactual(const Batch& observed, std::optional<torch::Tensor> is_handwritten,
                                        std::optional<int64_t> digit, Abduction abduction) {
  const int64_t n = observed.image.size(0);
  // Abduction: Z from the guide's posterior given the observed image and labels (its mean, or
  // one draw). Z is a root: it is shared by the factual and the counterfactual world.
  Trace guide = trace([&] { training_guide(observed); }).get_trace();
  auto z = abduction == Abduction::mean ? guide.at("Z").fn->mean() : guide.at("Z").value;
  // Action: intervene on the labels (unset ones keep their observed values).
  ValueMap action = {{"is_handwritten", is_handwritten ? *is_handwritten : observed.is_handwritten},
                     {"digit", observed.digit}};
  if (digit) action["digit"] = label_values(*digit, 0.0, n, device_)["digit"];
  // Prediction: twin worlds; the labels and the image are observed in the factual world, the
  // labels intervened on in the counterfactual one. The image is a sink of the DAG: its two
  // worlds may vary independently, and the picture is the decoder's expected image.
  auto tr = trace();
  auto worlds = twin_world();
  auto act = do_(action);
  auto observe = condition({{"Z", z}, {"digit", observed.digit}, {"is_handwritten", observed.is_handwritten}, {"img", observed.image}});
  auto sink = infer_config([](const Message& msg, InferConfig& infer) {
    if (msg.name == "img") infer.extra["counterfactual"] = "independent";
  });
  {
    auto units = plate("data", n);
    model(n);
  }
  return worlds.gather(tr.trace().at("img").fn->mean(), worlds.counterfactual(), /*event_dim=*/1).squeeze(0);
}

torch::Tensor CausalVAE::counterfactual_samples(const Batch& observed, std::optional<torch::Tensor> is_handwritten,
                                                std::optional<int64_t> digit, int64_t samples) {
  if (samples < 1) throw ValueError(cat("counterfactual_samples: samples must be >= 1, got ", samples));
  const int64_t n = observed.image.size(0);
  // K copies of the batch, one posterior draw of Z each: one vectorised run.
  auto tile = [&](const torch::Tensor& t) { return t.repeat({samples, 1}); };
  Batch tiled{tile(observed.image), tile(observed.digit), tile(observed.is_handwritten)};
  std::optional<torch::Tensor> style;
  if (is_handwritten) style = tile(*is_handwritten);
  auto images = counterfactual(tiled, style, digit, Abduction::sample);
  return images.reshape({samples, n, images.size(-1)});
}

nlohmann::json evaluate(CausalVAE& vae, const data::DigitDataset& ds, int64_t k) {
  torch::NoGradGuard no_grad;
  double elbo_total = 0, iw_total = 0;
  int64_t n = 0;
  // k copies of each image in one batch: per-row log weights log p(x, z) - log q(z | x).
  const int64_t images_per_batch = std::max<int64_t>(1, 4096 / k);
  for (const auto& batch : ds.epoch(data::Split::Test, images_per_batch, 0)) {
    auto b = to_model_batch(batch);
    const int64_t m = b.image.size(0);
    Batch tiled{b.image.repeat_interleave(k, 0), b.digit.repeat_interleave(k, 0), b.is_handwritten.repeat_interleave(k, 0)};
    Trace guide = trace([&] { vae.training_guide(tiled); }).get_trace();
    Trace model = trace(replay([&] { vae.training_model(tiled); }, guide)).get_trace();
    guide.compute_log_prob();
    model.compute_log_prob();
    torch::Tensor log_w = -guide.at("Z").log_prob;
    for (const char* site : {"Z", "digit", "is_handwritten", "img"}) log_w = log_w + model.at(site).log_prob;
    log_w = log_w.reshape({m, k});
    elbo_total += log_w.mean(1).sum().item<double>();
    iw_total += (log_w.logsumexp(1) - std::log(static_cast<double>(k))).sum().item<double>();
    n += m;
  }
  return {{"test_images", n},
          {"test_loss", -elbo_total / static_cast<double>(n)},
          {"importance_samples", k},
          {"iw_log_likelihood", iw_total / static_cast<double>(n)},
          {"note", "test_loss: average negative ELBO per image (nats); iw_log_likelihood: importance-weighted estimate "
                   "of log p(image, digit, is_handwritten) per image, a lower bound tighter than -test_loss"}};
}

// ------------------------------------------------------------------ configs and data

nlohmann::json to_json(const TrainConfig& c) {
  return {{"z_dim", c.model.z_dim},
          {"hidden_dim", c.model.hidden_dim},
          {"likelihood", to_string(c.model.likelihood)},
          {"label_encoding", to_string(c.model.label_encoding)},
          {"beta", c.model.beta},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"seed", c.seed},
          {"test_every", c.test_every},
          {"data", c.data}};
}

TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source) {
  TrainConfig c;
  auto field = [&](const char* key, auto& out) {
    if (!j.contains(key)) throw ValueError(cat(source, ": missing field '", key, "'"));
    try {
      j.at(key).get_to(out);
    } catch (const nlohmann::json::exception& e) {
      throw ValueError(cat(source, ": field '", key, "' has the wrong type: ", j.at(key).dump()));
    }
  };
  std::string likelihood, labels;
  field("z_dim", c.model.z_dim);
  field("hidden_dim", c.model.hidden_dim);
  field("likelihood", likelihood);
  field("label_encoding", labels);
  field("epochs", c.epochs);
  field("batch_size", c.batch_size);
  field("lr", c.lr);
  field("seed", c.seed);
  field("test_every", c.test_every);
  field("data", c.data);
  if (j.contains("beta")) field("beta", c.model.beta);  // absent in configs written before --beta
  c.model.likelihood = likelihood_from_string(likelihood);
  c.model.label_encoding = label_encoding_from_string(labels);
  return c;
}

data::DigitTable load_digits(const std::string& spec) {
  namespace fs = std::filesystem;
  if (spec == "bundled") return data::load_bundled();
  if (fs::is_directory(spec)) return data::load_mnist_dir(spec);
  if (!fs::exists(spec)) throw IOError(cat("--data '", spec, "': no such file or directory"));
  // Kaggle's TMNIST_Data.csv starts with a `names` column; the book's CSV with an index.
  std::ifstream in(spec);
  std::string header;
  std::getline(in, header);
  if (header.rfind("names", 0) == 0) return data::load_tmnist_csv(spec);
  return data::load_book_csv(spec);
}

}  // namespace ember::causal_vae

// ------------------------------------------------------------------ the judge

namespace ember::causal_vae {

ClassifierImpl::ClassifierImpl() {
  fc1 = register_module("fc1", torch::nn::Linear(784, 512));
  fc2 = register_module("fc2", torch::nn::Linear(512, 256));
  digit = register_module("digit", torch::nn::Linear(256, 10));
  style = register_module("style", torch::nn::Linear(256, 1));
}

std::pair<torch::Tensor, torch::Tensor> ClassifierImpl::forward(const torch::Tensor& image) {
  auto h = torch::relu(fc2->forward(torch::relu(fc1->forward(image))));
  return {digit->forward(h), style->forward(h).squeeze(1)};
}

namespace {

struct Accuracy {
  double digit = 0, style = 0;
};

Accuracy accuracy(Classifier& c, const torch::Tensor& images, const torch::Tensor& digits, const torch::Tensor& styles) {
  torch::NoGradGuard no_grad;
  auto [dl, sl] = c->forward(images);
  return {(dl.argmax(1) == digits).to(torch::kDouble).mean().item<double>(),
          ((sl > 0).to(styles.dtype()) == styles).to(torch::kDouble).mean().item<double>()};
}

}  // namespace

nlohmann::json judge(CausalVAE& vae, const data::DigitDataset& ds, const JudgeOptions& o) {
  auto seeded = seed(o.seed);
  const auto device = vae.device();
  Classifier clf;
  clf->to(device);
  torch::optim::Adam adam(clf->parameters(), torch::optim::AdamOptions(1e-3));
  for (int64_t e = 0; e < o.classifier_epochs; ++e) {
    for (const auto& b : ds.epoch(data::Split::Train, 128, e)) {
      auto [dl, sl] = clf->forward(b.images);
      auto loss = torch::cross_entropy_loss(dl, b.labels) + torch::binary_cross_entropy_with_logits(sl, b.handwritten);
      adam.zero_grad();
      loss.backward();
      adam.step();
    }
  }
  clf->eval();
  auto test = ds.all(data::Split::Test);
  auto held_out = accuracy(clf, test.images, test.labels, test.handwritten);

  torch::NoGradGuard no_grad;
  nlohmann::json cells = nlohmann::json::array();
  double digit_hits = 0, style_hits = 0, total = 0;
  for (int64_t d = 0; d < 10; ++d) {
    for (double h : {0.0, 1.0}) {
      auto images = vae.generate(d, h, o.images_per_cell);
      auto acc = accuracy(clf, images, torch::full({o.images_per_cell}, d, torch::TensorOptions().dtype(torch::kLong).device(device)),
                          torch::full({o.images_per_cell}, h, torch::TensorOptions().device(device)));
      cells.push_back({{"digit", d}, {"is_handwritten", static_cast<int>(h)}, {"digit_accuracy", acc.digit},
                       {"style_accuracy", acc.style}});
      digit_hits += acc.digit;
      style_hits += acc.style;
      total += 1;
    }
  }
  // Counterfactuals: flip is_handwritten of test images, keep everything else.
  auto rows = torch::randperm(test.images.size(0), torch::TensorOptions().dtype(torch::kLong)).narrow(
      0, 0, std::min<int64_t>(o.counterfactuals, test.images.size(0)));
  rows = rows.to(device);
  Batch observed{test.images.index_select(0, rows), test.one_hot().index_select(0, rows),
                 test.handwritten.index_select(0, rows).unsqueeze(1)};
  auto flipped = 1 - observed.is_handwritten;
  auto cf = vae.counterfactual(observed, flipped, std::nullopt);
  auto cf_acc = accuracy(clf, cf, test.labels.index_select(0, rows), flipped.squeeze(1));
  // Calibration: the classifier on reconstructions (expected images, as blurry as the
  // generated ones) of the same test images with their own labels.
  auto recon_acc = accuracy(clf, vae.reconstruct(observed), test.labels.index_select(0, rows),
                            observed.is_handwritten.squeeze(1));
  return {{"classifier",
           {{"architecture", "MLP 784-512-256, digit and is_handwritten heads"},
            {"epochs", o.classifier_epochs},
            {"held_out_digit_accuracy", held_out.digit},
            {"held_out_style_accuracy", held_out.style},
            {"test_images", test.images.size(0)},
            {"reconstruction_digit_accuracy", recon_acc.digit},
            {"reconstruction_style_accuracy", recon_acc.style}}},
          {"generated",
           {{"images_per_cell", o.images_per_cell},
            {"digit_accuracy", digit_hits / total},
            {"style_accuracy", style_hits / total},
            {"cells", cells}}},
          {"counterfactual_flip_style",
           {{"images", rows.size(0)}, {"style_flipped", cf_acc.style}, {"digit_kept", cf_acc.digit}}}};
}

}  // namespace ember::causal_vae
