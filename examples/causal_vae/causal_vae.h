#pragma once
/// \file The causal VAE of chapter 5 of Ness, *Causal AI*: a causal DAG
/// {digit, is_handwritten, Z} -> image whose image kernel is a decoder network, and a guide
/// Q(Z | image, digit, is_handwritten) given by an encoder network.
///
/// The model and guide are ordinary functions calling Ember's primitives, so they read like
/// the book's Pyro listings 5.4-5.9 (see docs/tutorial-causal-vae.md).

#include <torch/arg.h>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datasets/datasets.h"
#include "ppl/ppl.h"

namespace ember::causal_vae {

/// How the image's likelihood is modelled.
enum class Likelihood {
  /// Bernoulli on grey pixels with validation off, as in the book.
  bernoulli,
  /// ContinuousBernoulli: the normalised density for values in [0, 1].
  continuous_bernoulli
};

/// How is_handwritten enters the networks.
enum class LabelEncoding {
  /// One 0/1 indicator, as printed in the book.
  indicator,
  /// One-hot of size 2.
  one_hot
};

/// Sizes and choices of the causal VAE (book defaults).
struct Config {
  int64_t z_dim = 50;
  int64_t hidden_dim = 400;
  int64_t image_dim = 28 * 28;
  int64_t num_digits = 10;
  Likelihood likelihood = Likelihood::bernoulli;
  LabelEncoding label_encoding = LabelEncoding::indicator;
  /// Weight of Z's KL term (beta-VAE), applied with the `scale` handler to Z in the model and
  /// the guide. 1 is the book's ELBO; larger values push Z to leave to the labels what they
  /// explain.
  double beta = 1.0;
  /// Width of the is_handwritten encoding fed to the networks.
  int64_t style_dim() const { return label_encoding == LabelEncoding::indicator ? 1 : 2; }
};

Likelihood likelihood_from_string(const std::string& s);
LabelEncoding label_encoding_from_string(const std::string& s);
std::string to_string(Likelihood l);
std::string to_string(LabelEncoding e);

/// P(X | Z, digit, is_handwritten): Linear -> Softplus -> Linear -> Sigmoid.
struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const Config& c);
  /// Pixel probabilities [B, image_dim] from z [B, z_dim], one-hot digit [B, 10] and the
  /// style encoding [B, style_dim]: the sigmoid of `logits`.
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& digit, const torch::Tensor& style);
  /// Pixel log-odds [B, image_dim] (the network before its final Sigmoid); the model's image
  /// likelihood is built from these, so no probability is clamped or turned back into logits.
  torch::Tensor logits(const torch::Tensor& z, const torch::Tensor& digit, const torch::Tensor& style);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Decoder);

/// Q(Z | X, digit, is_handwritten): Linear -> Softplus -> two heads (loc, exp -> scale).
struct EncoderImpl : torch::nn::Module {
  explicit EncoderImpl(const Config& c);
  /// (loc, scale) of Z, each [B, z_dim].
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image, const torch::Tensor& digit,
                                                  const torch::Tensor& style);
  torch::nn::Linear fc1{nullptr}, fc21{nullptr}, fc22{nullptr};
};
TORCH_MODULE(Encoder);

/// How a counterfactual query infers the unit's Z from its observed image and labels.
enum class Abduction {
  /// The guide's posterior mean (one deterministic answer per unit).
  mean,
  /// A draw from the guide's posterior (the answer varies with the unit's uncertainty).
  sample
};
/// "mean" or "sample"; throws ValueError otherwise.
Abduction abduction_from_string(const std::string& s);

/// A minibatch: images [B, 784] in [0, 1], one-hot digits [B, 10], is_handwritten [B, 1] (0/1).
struct Batch {
  torch::Tensor image, digit, is_handwritten;
};

/// A model batch from a data-set batch (one-hot digits, is_handwritten as [B, 1]).
Batch to_model_batch(const data::Batch& b);

/// The networks and the model/guide pair.
class CausalVAE {
 public:
  explicit CausalVAE(Config config, torch::Device device = torch::kCPU);

  /// The generative model for `batch_size` units: Z ~ N(0, I), digit ~ OneHot(uniform),
  /// is_handwritten ~ Bernoulli(1/2), image ~ Bernoulli(decoder(Z, digit, is_handwritten)).
  /// Returns (image, digit, is_handwritten). Runs inside whatever plate the caller opened.
  Batch model(int64_t batch_size);
  /// The model conditioned on a batch, inside plate("data") (the book's training_model).
  void training_model(const Batch& batch);
  /// Z ~ Normal(encoder(image, digit, is_handwritten)) inside plate("data") (training_guide).
  void training_guide(const Batch& batch);

  /// Registers encoder and decoder with the param store (binding loaded values to them).
  void register_modules();

  /// Expected images [n, 784] from the model conditioned on digit = `digit` and
  /// is_handwritten = `handwritten` (roots of the DAG, so conditioning equals intervening).
  torch::Tensor generate(int64_t digit, double handwritten, int64_t n);
  /// Expected images [n, 784] from the interventional distribution
  /// P(image | do(digit, is_handwritten)), through the `do_` handler.
  torch::Tensor intervene(int64_t digit, double handwritten, int64_t n);
  /// Counterfactual images [n, 784] for a batch, through TwinWorldCounterfactual: abduction
  /// (Z from the guide's posterior given the observed image and labels: its mean, or one draw),
  /// action (`do_` on is_handwritten and/or digit; unset = as observed), prediction (the
  /// decoder's expected image in the counterfactual world). With no action this is the
  /// reconstruction.
  torch::Tensor counterfactual(const Batch& observed, std::optional<torch::Tensor> is_handwritten,
                               std::optional<int64_t> digit, Abduction abduction = Abduction::mean);
  /// `samples` counterfactual images per unit [samples, n, 784], each from its own posterior
  /// draw of Z (abduction by sampling).
  torch::Tensor counterfactual_samples(const Batch& observed, std::optional<torch::Tensor> is_handwritten,
                                       std::optional<int64_t> digit, int64_t samples);
  /// Expected reconstructions of a batch (counterfactual with no action).
  torch::Tensor reconstruct(const Batch& b) { return counterfactual(b, std::nullopt, std::nullopt); }

  /// The style encoding the networks see for is_handwritten [B, 1].
  torch::Tensor encode_style(const torch::Tensor& is_handwritten) const;

  const Config& config() const { return config_; }
  torch::Device device() const { return device_; }
  Encoder& encoder() { return encoder_; }
  Decoder& decoder() { return decoder_; }

 private:
  dist::DistPtr image_distribution(const torch::Tensor& logits) const;

  Config config_;
  torch::Device device_;
  Encoder encoder_{nullptr};
  Decoder decoder_{nullptr};
};

/// Training settings, saved as the run's config.json.
struct TrainConfig {
  Config model;
  int64_t epochs = 20;
  int64_t batch_size = 256;
  double lr = 1e-3;
  uint64_t seed = 0;
  int64_t test_every = 1;
  /// "bundled", a folder of MNIST IDX files, or a CSV file (book or Kaggle layout).
  std::string data = "bundled";
  /// How train and test are split; default_split() picks the book's for a CSV.
  data::SplitMethod split = data::SplitMethod::Stratified;
  /// Which training images an epoch visits (the book: every one).
  data::Balance balance = data::Balance::All;
};

/// The split a run uses unless told otherwise: the book's random_split for a CSV file (the
/// book's data), the stratified split for the bundled data and IDX folders.
data::SplitMethod default_split(const std::string& data_spec);

/// The data set of a run: its data, split, balance and seed, on `device`.
data::DigitDataset open_dataset(const TrainConfig& config, torch::Device device);

/// One line saying what a run's data set holds and how it is used (source, images per style,
/// split and its sizes, balance).
std::string describe_data(const TrainConfig& config, const data::DigitDataset& ds);

nlohmann::json to_json(const TrainConfig& c);
/// Parses a config; throws ValueError naming `source` and the bad field.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source);

/// Where import_weights() reads the networks from, and what it may not infer.
struct ImportOptions {
  /// state_dict of a whole VAE (keys `encoder.fc1.weight`, `decoder.fc1.weight`, ...), or
  /// empty to read `encoder` and `decoder`.
  TORCH_ARG(std::string, state_dict) = "";
  /// state_dict of the encoder (fc1, fc21, fc22).
  TORCH_ARG(std::string, encoder) = "";
  /// state_dict of the decoder (fc1, fc2; the book's published file names it fc21).
  TORCH_ARG(std::string, decoder) = "";
  /// Layer renames `"<encoder|decoder>.<file layer>=<Ember layer>"`, e.g. `"decoder.out=fc2"`.
  TORCH_ARG(std::vector<std::string>, key_map) = {};
  /// Settings the user gave (the others are read off the weights' shapes): fixed, and
  /// refused with a suggestion when the weights do not fit them.
  TORCH_ARG(std::optional<LabelEncoding>, label_encoding) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, z_dim) = std::nullopt;
  TORCH_ARG(std::optional<int64_t>, hidden_dim) = std::nullopt;
};

/// Networks read from PyTorch state_dicts, with the layout they were recognised as.
struct ImportedWeights {
  /// `base` with the label encoding and sizes the weights have.
  Config config;
  std::shared_ptr<CausalVAE> vae;
  /// What was recognised or renamed, one sentence each (for the user).
  std::vector<std::string> notes;
};

/// Loads encoder and decoder weights saved with `torch.save(net.state_dict())`. The label
/// encoding (is_handwritten as an indicator or one-hot), z_dim and hidden_dim are read off the
/// shapes unless `options` fixes them; a decoder whose output layer is `fc21` and has no `fc2`
/// (the book's published mnist_tmnist_decoder_weights.pt) is read as fc2. Other settings
/// (likelihood, beta) come from `base`. Throws ValueError naming the file, every missing and
/// unexpected key, and the option (`--label-encoding`, `--z-dim`, `--key-map ...`) that would fit.
ImportedWeights import_weights(const ImportOptions& options, Config base);

/// Loads digits from "bundled", a folder of IDX files or a CSV file (layout detected from
/// its header); throws IOError naming the path otherwise.
data::DigitTable load_digits(const std::string& spec);

/// Average negative ELBO per image over the test split (no gradients).
template <class SVI>
double test_loss(CausalVAE& vae, const data::DigitDataset& ds, SVI& svi) {
  double total = 0;
  int64_t n = 0;
  for (const auto& batch : ds.epoch(data::Split::Test, 1024, 0)) {
    auto b = to_model_batch(batch);
    total += svi.evaluate_loss(b);
    n += b.image.size(0);
  }
  return total / static_cast<double>(n);
}

/// Test loss (Trace_ELBO) and the importance-weighted estimate of log p(image, labels) per
/// image with `k` samples from the guide, as JSON.
nlohmann::json evaluate(CausalVAE& vae, const data::DigitDataset& ds, int64_t k);

/// An independent judge of the VAE's pictures: an MLP (784 -> 512 -> 256) with a digit head
/// and an is_handwritten head, trained on the real training images only.
struct ClassifierImpl : torch::nn::Module {
  ClassifierImpl();
  /// (digit logits [B, 10], is_handwritten logit [B]).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, digit{nullptr}, style{nullptr};
};
TORCH_MODULE(Classifier);

/// Settings of `judge`.
struct JudgeOptions {
  int64_t classifier_epochs = 8;
  int64_t images_per_cell = 100;
  int64_t counterfactuals = 1000;
  uint64_t seed = 0;
};

/// Trains the classifier on the training split, reports its held-out accuracy, then the
/// share of generated images (per digit x style, through `generate`) that it labels with the
/// intended digit and style, and the share of counterfactuals that flip is_handwritten where
/// it sees the new style while keeping the digit. Returns the report as JSON.
nlohmann::json judge(CausalVAE& vae, const data::DigitDataset& ds, const JudgeOptions& options);

}  // namespace ember::causal_vae
