#pragma once
/// \file Study 1 of section 5.3: semi-supervised learning in the anti-causal direction (the
/// digit causes the image) and in the causal direction (a seeded random teacher network maps
/// the image to a label), with Kingma et al.'s M2 model trained as Pyro's SS-VAE example does
/// (TraceEnum_ELBO summing y out of unlabelled images inside the data plate, and the
/// classifier's log-likelihood on labelled images added with weight alpha through `scale`),
/// against the same classifier trained on the labelled images only. See docs/section-5-3.md.
///
/// M2: p(y) p(z) p(x | y, z) with y ~ OneHot(uniform over 10), z ~ N(0, I), x ~ Bernoulli(decoder(y, z));
/// guide q(y | x) q(z | x, y). One training step draws a minibatch of unlabelled images
/// (plate "unlabelled", subsampled, so its log-probs count N_u / B_u times) and one of
/// labelled images (plate "labelled", N_l / B_l), so each step's loss is an unbiased estimate
/// of the whole data set's objective
///     sum_unlabelled -ELBO(x) + sum_labelled [-ELBO(x, y) - alpha log q(y | x)].

#include <torch/arg.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/datasets.h"
#include "ppl/ppl.h"

namespace ember::semi_supervised {

/// Number of classes of both tasks.
inline constexpr int64_t kClasses = 10;
/// Pixels per image.
inline constexpr int64_t kPixels = 28 * 28;

/// Sizes of the M2 networks and the weight of the auxiliary classifier term.
struct M2Options {
  /// Width of z.
  TORCH_ARG(int64_t, z_dim) = 32;
  /// Hidden units of every network (one hidden layer each).
  TORCH_ARG(int64_t, hidden_dim) = 256;
  /// alpha: weight of log q(y | x) on labelled images (Pyro's `aux_loss_multiplier`, whose
  /// example default is 46). 0 leaves the term out (M2 without the auxiliary loss).
  TORCH_ARG(double, aux_weight) = 46.0;
};

/// q(y | x): Linear -> ReLU -> Linear, giving logits [..., 10]. Also the baseline classifier.
struct ClassifierImpl : torch::nn::Module {
  explicit ClassifierImpl(const M2Options& o);
  torch::Tensor forward(const torch::Tensor& image);
  torch::nn::Linear hidden{nullptr}, out{nullptr};
};
TORCH_MODULE(Classifier);

/// q(z | x, y): the first layer is split into an image part and a label part whose sum
/// broadcasts, so an enumerated y of shape [10, 1, 10] meets images [B, 784] without copying
/// the images ten times. Returns (loc, scale), each [..., B, z_dim].
struct EncoderZImpl : torch::nn::Module {
  explicit EncoderZImpl(const M2Options& o);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image, const torch::Tensor& y);
  torch::nn::Linear from_image{nullptr}, from_label{nullptr}, loc{nullptr}, log_scale{nullptr};
};
TORCH_MODULE(EncoderZ);

/// p(x | y, z): pixel probabilities [..., B, 784] (label and z parts broadcast as above).
struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const M2Options& o);
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& y);
  torch::nn::Linear from_z{nullptr}, from_label{nullptr}, out{nullptr};
};
TORCH_MODULE(Decoder);

/// One training step's data: positions drawn from the unlabelled pool and the labelled set.
struct Minibatch {
  /// Unlabelled images [B_u, 784] (B_u may be 0) and their positions in the pool (int64).
  torch::Tensor unlabelled, unlabelled_index;
  /// Size of the unlabelled pool.
  int64_t unlabelled_total = 0;
  /// Labelled images [B_l, 784], one-hot labels [B_l, 10], positions in the labelled set.
  torch::Tensor labelled, labels, labelled_index;
  /// Size of the labelled set.
  int64_t labelled_total = 0;
};

/// Kingma et al.'s M2 with Pyro's auxiliary classifier loss.
class M2 {
 public:
  explicit M2(M2Options options, torch::Device device = torch::kCPU, torch::Dtype dtype = torch::kFloat);

  /// The model: plate "unlabelled" (sites u.z, u.y latent, u.x observed) and plate
  /// "labelled" (l.z latent, l.y and l.x observed, and l.y_aux: log q(y | x) scaled by alpha).
  void model(const Minibatch& b);
  /// The guide: q(y | x) for u.y (marked for parallel enumeration by `config_enumerate`,
  /// which training_guide() applies), q(z | x, y) for u.z and l.z.
  void guide(const Minibatch& b);
  /// guide() under config_enumerate: what TraceEnum_ELBO trains.
  void training_guide(const Minibatch& b);

  /// The labels-only baseline's model: plate "labelled" with l.y_aux ~ OneHot(q(y | x)) observed
  /// (alpha 1); its guide is empty.
  void classifier_model(const Minibatch& b);

  /// Predicted classes [N] of images [N, 784] (argmax of q(y | x)), without gradients.
  torch::Tensor predict(const torch::Tensor& images);

  const M2Options& options() const { return options_; }
  Classifier& classifier() { return classifier_; }
  EncoderZ& encoder_z() { return encoder_z_; }
  Decoder& decoder() { return decoder_; }

 private:
  M2Options options_;
  torch::TensorOptions tensor_options_;
  Classifier classifier_{nullptr};
  EncoderZ encoder_z_{nullptr};
  Decoder decoder_{nullptr};
};

/// The causal task's mechanism image -> label, chosen independently of the images: a fixed
/// random network (784 -> 64 tanh -> 10, weights drawn from `seed` by a portable generator)
/// whose 10 output offsets are then set so that the argmax classes of `calibration` images
/// are balanced (the only use of any image distribution: 10 numbers, needed for balanced
/// label budgets), and label noise: with probability `noise`, decided by a hash of the
/// image's bytes and the seed, the label is replaced by a class drawn from the same hash.
/// So labels are a deterministic function of (image, seed, calibration set).
class Teacher {
 public:
  Teacher(uint64_t seed, double noise, const torch::Tensor& calibration);
  /// Noise-free teacher logits [N, 10] of images [N, 784].
  torch::Tensor logits(const torch::Tensor& images) const;
  /// Labels [N] (int64) of images [N, 784], noise included.
  torch::Tensor labels(const torch::Tensor& images) const;
  uint64_t seed() const { return seed_; }
  double noise() const { return noise_; }

 private:
  uint64_t seed_;
  double noise_;
  torch::Tensor w1_, w2_, offset_;
};

/// Which way the label and the image are related.
enum class Task {
  /// The digit causes the image (M2's factorisation is the causal one).
  anti_causal,
  /// The image causes the label through the Teacher.
  causal
};
std::string to_string(Task t);

/// What one training run learns from.
struct TrainingData {
  /// Training images [N, 784] (labelled ones included) and their labels [N] (int64).
  torch::Tensor images, labels;
  /// Positions (into images) of the labelled subset, and of the unlabelled pool (the rest).
  torch::Tensor labelled, unlabelled;
};

/// Draws a class-balanced labelled subset of `budget` positions (budget / 10 per class) from
/// `labels` [N], with `seed`; the unlabelled pool is every other position. Throws ValueError
/// if the budget is not a multiple of 10 or a class has too few images.
TrainingData draw_labelled_subset(const torch::Tensor& images, const torch::Tensor& labels, int64_t budget, uint64_t seed);

/// How M2's training steps use the labelled and the unlabelled images. Both optimise the same
/// objective in expectation; they differ in what each Adam step sees.
enum class Schedule {
  /// Every step: one unlabelled and one labelled minibatch in one loss, each plate scaled up to
  /// its whole set (an unbiased estimate of the whole objective at every step).
  joint,
  /// As Pyro's SS-VAE example: a step on an unlabelled minibatch, or, interleaved so that one
  /// pass over the labelled images takes as many steps as one over the unlabelled ones, a step
  /// on a labelled minibatch followed by a second step on the same minibatch for the
  /// alpha-weighted classifier term; each loss is the plain sum over its minibatch (no plate
  /// scaling), and both kinds of step share one Adam state.
  alternating
};
std::string to_string(Schedule s);
/// "joint" or "alternating"; throws ValueError otherwise.
Schedule schedule_from_string(const std::string& s);

/// Settings of one training run.
struct TrainOptions {
  TORCH_ARG(int64_t, steps) = 1000;
  TORCH_ARG(int64_t, unlabelled_batch) = 100;
  /// Labelled images per step (all of them when fewer).
  TORCH_ARG(int64_t, labelled_batch) = 100;
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(uint64_t, seed) = 0;
  /// M2's schedule (the labels-only classifier always takes labelled minibatches). With
  /// `alternating`, `steps` counts minibatches: unlabelled and labelled ones.
  TORCH_ARG(Schedule, schedule) = Schedule::joint;
  /// Call train()'s on_checkpoint every this many steps (0: never), to follow accuracy
  /// during training.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
};

/// Which learner a run trains.
enum class Method {
  /// M2 with enumeration and the auxiliary loss, on labelled and unlabelled images.
  m2,
  /// The classifier q(y | x) alone, on the labelled images only.
  labels_only
};
std::string to_string(Method m);

/// Trains `method` on `data` in the current param store (cleared first) and returns the
/// trained M2 (for labels_only only its classifier is trained). `on_step(step, loss per
/// image)` is called after each step, `on_checkpoint(step, model)` every
/// options.checkpoint_every() steps. Throws ember::Error naming the step on a non-finite loss.
M2 train(Method method, const TrainingData& data, const M2Options& m2, const TrainOptions& options,
         const std::function<void(int64_t, double)>& on_step = {},
         const std::function<void(int64_t, M2&)>& on_checkpoint = {});

/// Share of `images` whose predicted class equals `labels`.
double accuracy(M2& m2, const torch::Tensor& images, const torch::Tensor& labels);

/// Mean and two-sided 95% Student-t interval of `values` (half-width 0 for one value).
struct Interval {
  double mean = 0, low = 0, high = 0;
};
Interval interval95(const std::vector<double>& values);

}  // namespace ember::semi_supervised
