#include "examples/causal_vae/causal_vae.h"

#include <filesystem>
#include <fstream>

#include "distributions/bernoulli.h"
#include "distributions/continuous_bernoulli.h"
#include "distributions/normal.h"
#include "distributions/one_hot_categorical.h"
#include "io/state_dict.h"

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
  return torch::sigmoid(logits(z, digit, style));
}

torch::Tensor DecoderImpl::logits(const torch::Tensor& z, const torch::Tensor& digit, const torch::Tensor& style) {
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
  return fc2->forward(hidden);
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

dist::DistPtr CausalVAE::image_distribution(const torch::Tensor& logits) const {
  // The book's Bernoulli(probs = sigmoid(logits)), built from the logits themselves: the same
  // distribution without the sigmoid, clamp and logit round trip of the probs form (which
  // differs only where |logits| > 15.9, where the probs form clamps). Grey pixels are not in
  // Bernoulli's support {0, 1}: the book turns validation off.
  if (config_.likelihood == Likelihood::bernoulli)
    return dist::Bernoulli(dist::Logits{logits}, /*validate_args=*/false).to_event(1);
  return dist::ContinuousBernoulli(torch::sigmoid(logits)).to_event(1);
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
  auto logits = decoder_->logits(z, digit, encode_style(is_handwritten));
  auto image = sample("img", image_distribution(logits));
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
  double objective_total = 0, elbo_total = 0, iw_total = 0;
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
    // The training objective weights Z's terms by beta (the `scale` handler); the estimate of
    // log p(x, labels) needs the densities themselves.
    torch::Tensor objective = -guide.at("Z").log_prob, log_w = -guide.at("Z").unscaled_log_prob;
    for (const char* site : {"Z", "digit", "is_handwritten", "img"}) {
      objective = objective + model.at(site).log_prob;
      log_w = log_w + model.at(site).unscaled_log_prob;
    }
    // In float64, and reduced as log_w below (per image, then over images): with beta = 1 the
    // two totals are then the same sums, and float32 sums of a few hundred terms differ in the
    // 7th digit between LibTorch versions' reduction kernels (1.13 vs 2.11).
    log_w = log_w.to(torch::kFloat64).reshape({m, k});
    objective_total += objective.to(torch::kFloat64).reshape({m, k}).mean(1).sum().item<double>();
    elbo_total += log_w.mean(1).sum().item<double>();
    iw_total += (log_w.logsumexp(1) - std::log(static_cast<double>(k))).sum().item<double>();
    n += m;
  }
  const double images = static_cast<double>(n);
  return {{"test_images", n},
          {"beta", vae.config().beta},
          {"test_loss", -objective_total / images},
          {"negative_elbo", -elbo_total / images},
          {"importance_samples", k},
          {"iw_log_likelihood", iw_total / images},
          {"note", "test_loss: the training objective per image (nats; Z's KL weighted by beta, as in metrics.jsonl); "
                   "negative_elbo: the unweighted negative ELBO (equal to test_loss when beta = 1); "
                   "iw_log_likelihood: importance-weighted estimate of log p(image, digit, is_handwritten) per image, "
                   "a lower bound tighter than -negative_elbo"}};
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
          {"data", c.data},
          {"split", data::to_string(c.split)},
          {"balance", data::to_string(c.balance)}};
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
  // Configs written before --split/--balance used the stratified split and balanced styles.
  std::string split = "stratified", balance = "styles";
  if (j.contains("split")) field("split", split);
  if (j.contains("balance")) field("balance", balance);
  try {
    c.model.likelihood = likelihood_from_string(likelihood);
    c.model.label_encoding = label_encoding_from_string(labels);
    c.split = data::split_method_from_string(split);
    c.balance = data::balance_from_string(balance);
  } catch (const ValueError& e) {
    throw ValueError(cat(source, ": ", e.what()));
  }
  return c;
}

data::SplitMethod default_split(const std::string& data_spec) {
  namespace fs = std::filesystem;
  const bool csv_file = data_spec != "bundled" && !fs::is_directory(data_spec);
  return csv_file ? data::SplitMethod::Book : data::SplitMethod::Stratified;
}

data::DigitDataset open_dataset(const TrainConfig& config, torch::Device device) {
  data::DatasetOptions o;
  o.seed(config.seed);
  o.split(config.split);
  o.balance(config.balance);
  o.device(device);
  return data::DigitDataset(load_digits(config.data), o);
}

std::string describe_data(const TrainConfig& config, const data::DigitDataset& ds) {
  const auto counts = ds.counts(data::Split::All);
  int64_t handwritten = 0, typed = 0;
  for (int d = 0; d < 10; ++d) handwritten += counts[1][size_t(d)], typed += counts[0][size_t(d)];
  const std::string split = config.split == data::SplitMethod::Book
                                ? "book (random_split 80/20, generator seed 42, as the book)"
                                : cat("stratified (20% of each digit and style, seed ", config.seed, ")");
  const std::string balance = config.balance == data::Balance::All
                                  ? "none (every training image each epoch, as the book)"
                                  : "styles (each epoch subsamples the larger style to the size of the smaller)";
  return cat("data ", config.data, ": ", handwritten + typed, " images (", handwritten, " handwritten, ", typed,
             " typed); split ", split, ": ", ds.size(data::Split::Train), " train, ", ds.size(data::Split::Test),
             " test; balance ", balance);
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

// ------------------------------------------------------------------ importing PyTorch weights

namespace {

/// One network's tensors as read, with the name of the file they came from.
struct NetworkFile {
  std::string network;  // "encoder" or "decoder"
  std::string source;
  io::NamedTensors tensors;

  const torch::Tensor* find(const std::string& key) const {
    for (const auto& [k, t] : tensors)
      if (k == key) return &t;
    return nullptr;
  }
  /// The shape of `key`; ValueError naming the file if it is absent.
  std::vector<int64_t> shape(const std::string& key) const {
    if (const auto* t = find(key)) return t->sizes().vec();
    std::string keys;
    for (const auto& [k, t] : tensors) keys += cat(keys.empty() ? "" : ", ", k);
    throw ValueError(cat(network, " weights '", source, "' have no key '", key, "' (keys: ", keys, ")"));
  }
  /// Renames layer `from` (keys `from.*`) to `to`; returns how many keys it renamed.
  int rename_layer(const std::string& from, const std::string& to) {
    int renamed = 0;
    for (auto& [k, t] : tensors)
      if (k.compare(0, from.size() + 1, from + ".") == 0) {
        k = to + k.substr(from.size());
        ++renamed;
      }
    return renamed;
  }
};

std::string layer_of(const std::string& key) { return key.substr(0, key.rfind('.')); }

/// "--key-map decoder.out=fc2" for each module layer the file lacks that one of the file's
/// extra layers fits by shape.
std::string key_map_hint(torch::nn::Module& net, const NetworkFile& file) {
  std::map<std::string, std::vector<int64_t>> wanted, offered;  // layer -> weight shape
  for (const auto& item : net.named_parameters())
    if (!file.find(item.key()) && item.key().size() > 7 && item.key().substr(item.key().size() - 7) == ".weight")
      wanted[layer_of(item.key())] = item.value().sizes().vec();
  auto params = net.named_parameters();
  for (const auto& [k, t] : file.tensors)
    if (!params.contains(k) && k.size() > 7 && k.substr(k.size() - 7) == ".weight") offered[layer_of(k)] = t.sizes().vec();
  std::string hint;
  for (const auto& [layer, shape] : wanted)
    for (const auto& [from, from_shape] : offered)
      if (from_shape == shape) hint += cat(hint.empty() ? "" : " ", "--key-map ", file.network, ".", from, "=", layer);
  return hint;
}

}  // namespace

ImportedWeights import_weights(const ImportOptions& o, Config base) {
  NetworkFile enc{"encoder", o.encoder(), {}}, dec{"decoder", o.decoder(), {}};
  if (!o.state_dict().empty()) {
    if (!o.encoder().empty() || !o.decoder().empty())
      throw ValueError("import-weights: give either --state-dict or --encoder and --decoder, not both");
    enc.source = dec.source = o.state_dict();
    for (auto& [k, t] : io::load_torch_state_dict(o.state_dict())) {
      if (k.rfind("encoder.", 0) == 0) enc.tensors.emplace_back(k.substr(8), t);
      else if (k.rfind("decoder.", 0) == 0) dec.tensors.emplace_back(k.substr(8), t);
      else throw ValueError(cat("state_dict '", o.state_dict(), "': key '", k,
                                "' belongs to neither encoder. nor decoder.; give the networks' files with --encoder and --decoder"));
    }
  } else {
    if (o.encoder().empty() || o.decoder().empty())
      throw ValueError("import-weights needs --state-dict, or both --encoder and --decoder");
    enc.tensors = io::load_torch_state_dict(o.encoder());
    dec.tensors = io::load_torch_state_dict(o.decoder());
  }

  ImportedWeights out;
  bool decoder_mapped = false;
  for (const auto& spec : o.key_map()) {
    const auto eq = spec.find('='), dot = spec.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      throw ValueError(cat("--key-map '", spec, "': expected <encoder|decoder>.<file layer>=<layer>, e.g. decoder.fc21=fc2"));
    const std::string network = spec.substr(0, dot), from = spec.substr(dot + 1, eq - dot - 1), to = spec.substr(eq + 1);
    if (network != "encoder" && network != "decoder")
      throw ValueError(cat("--key-map '", spec, "': '", network, "' is neither encoder nor decoder"));
    auto& file = network == "encoder" ? enc : dec;
    if (file.rename_layer(from, to) == 0) throw ValueError(cat("--key-map '", spec, "': ", network, " weights '", file.source, "' have no layer '", from, "'"));
    decoder_mapped |= network == "decoder";
    out.notes.push_back(cat(network, " layer '", from, "' read as '", to, "' (--key-map)"));
  }
  // The book's published decoder names its output layer fc21.
  if (!decoder_mapped && !dec.find("fc2.weight") && dec.find("fc21.weight") && dec.find("fc21.bias")) {
    dec.rename_layer("fc21", "fc2");
    out.notes.push_back("decoder layer 'fc21' read as 'fc2' (the layout of the book's published weights)");
  }

  // Sizes and label encoding from the shapes: encoder fc1 [hidden, 784 + 10 + style],
  // encoder fc21 [z, hidden], decoder fc1 [hidden, z + 10 + style].
  const auto enc_fc1 = enc.shape("fc1.weight"), enc_fc21 = enc.shape("fc21.weight"), dec_fc1 = dec.shape("fc1.weight");
  const int64_t hidden = enc_fc1[0], z = enc_fc21[0];
  const int64_t enc_style = enc_fc1[1] - base.image_dim - base.num_digits, dec_style = dec_fc1[1] - z - base.num_digits;
  std::optional<LabelEncoding> seen;
  if (enc_style == dec_style && (enc_style == 1 || enc_style == 2))
    seen = enc_style == 1 ? LabelEncoding::indicator : LabelEncoding::one_hot;
  auto describe = [&] {
    return cat("encoder fc1.weight ", shape_str(enc_fc1), ", fc21.weight ", shape_str(enc_fc21), "; decoder fc1.weight ",
               shape_str(dec_fc1));
  };
  Config c = base;
  if (o.label_encoding()) {
    c.label_encoding = *o.label_encoding();
    if (seen && *seen != c.label_encoding)
      throw ValueError(cat("the weights take is_handwritten ", *seen == LabelEncoding::one_hot ? "one-hot (2 inputs)" : "as an indicator (1 input)",
                           " (", describe(), "), but --label-encoding ", to_string(c.label_encoding), " was given; --label-encoding ",
                           to_string(*seen), " fits them"));
  } else if (seen) {
    c.label_encoding = *seen;
  } else {
    throw ValueError(cat("cannot tell how the weights take is_handwritten (", describe(), "): expected 1 (indicator) or 2 (one-hot) inputs beyond the ",
                         base.image_dim, " pixels and ", base.num_digits, " digits"));
  }
  auto size = [&](const char* flag, const std::optional<int64_t>& given, int64_t found) {
    if (given && *given != found)
      throw ValueError(cat(flag, " ", *given, " was given, but the weights have ", found, " (", describe(), "); ", flag, " ", found, " fits them"));
    return found;
  };
  c.z_dim = size("--z-dim", o.z_dim(), z);
  c.hidden_dim = size("--hidden-dim", o.hidden_dim(), hidden);
  out.notes.insert(out.notes.begin(), cat("recognised: is_handwritten ", to_string(c.label_encoding), ", z_dim ", c.z_dim,
                                          ", hidden_dim ", c.hidden_dim, " (", describe(), ")"));

  out.config = c;
  out.vae = std::make_shared<CausalVAE>(c);
  for (auto* file : {&enc, &dec}) {
    torch::nn::Module& net = file == &enc ? static_cast<torch::nn::Module&>(*out.vae->encoder())
                                          : static_cast<torch::nn::Module&>(*out.vae->decoder());
    try {
      io::load_state_dict_into(net, file->tensors, file->source);
    } catch (const ValueError& e) {
      const auto hint = key_map_hint(net, *file);
      throw ValueError(cat(file->network, ": ", e.what(), hint.empty() ? "" : cat("; ", hint, " would fit")));
    }
  }
  return out;
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
