#include "examples/semi_supervised/semi_supervised.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "distributions/bernoulli.h"
#include "distributions/normal.h"
#include "distributions/one_hot_categorical.h"
#include "inference/enum.h"
#include "inference/svi.h"

namespace ember::semi_supervised {

std::string to_string(Task t) { return t == Task::anti_causal ? "anti-causal" : "causal"; }
std::string to_string(Method m) { return m == Method::m2 ? "M2" : "labels-only"; }
std::string to_string(Schedule s) { return s == Schedule::joint ? "joint" : "alternating"; }
Schedule schedule_from_string(const std::string& s) {
  if (s == "joint") return Schedule::joint;
  if (s == "alternating") return Schedule::alternating;
  throw ValueError(cat("unknown training schedule '", s, "' (expected joint or alternating)"));
}

// ------------------------------------------------------------------ networks

ClassifierImpl::ClassifierImpl(const M2Options& o) {
  hidden = register_module("hidden", torch::nn::Linear(kPixels, o.hidden_dim()));
  out = register_module("out", torch::nn::Linear(o.hidden_dim(), kClasses));
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& image) { return out->forward(torch::relu(hidden->forward(image))); }

EncoderZImpl::EncoderZImpl(const M2Options& o) {
  from_image = register_module("from_image", torch::nn::Linear(kPixels, o.hidden_dim()));
  from_label = register_module("from_label", torch::nn::Linear(torch::nn::LinearOptions(kClasses, o.hidden_dim()).bias(false)));
  loc = register_module("loc", torch::nn::Linear(o.hidden_dim(), o.z_dim()));
  log_scale = register_module("log_scale", torch::nn::Linear(o.hidden_dim(), o.z_dim()));
}

std::pair<torch::Tensor, torch::Tensor> EncoderZImpl::forward(const torch::Tensor& image, const torch::Tensor& y) {
  auto hidden = torch::softplus(from_image->forward(image) + from_label->forward(y));
  return {loc->forward(hidden), torch::exp(log_scale->forward(hidden))};
}

DecoderImpl::DecoderImpl(const M2Options& o) {
  from_z = register_module("from_z", torch::nn::Linear(o.z_dim(), o.hidden_dim()));
  from_label = register_module("from_label", torch::nn::Linear(torch::nn::LinearOptions(kClasses, o.hidden_dim()).bias(false)));
  out = register_module("out", torch::nn::Linear(o.hidden_dim(), kPixels));
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& z, const torch::Tensor& y) {
  return torch::sigmoid(out->forward(torch::softplus(from_z->forward(z) + from_label->forward(y))));
}

// ------------------------------------------------------------------ model and guide

M2::M2(M2Options options, torch::Device device, torch::Dtype dtype)
    : options_(options),
      tensor_options_(torch::TensorOptions().dtype(dtype).device(device)),
      classifier_(options),
      encoder_z_(options),
      decoder_(options) {
  if (options.z_dim() < 1 || options.hidden_dim() < 1)
    throw ValueError(cat("M2: z_dim and hidden_dim must be >= 1, got ", options.z_dim(), " and ", options.hidden_dim()));
  if (!(options.aux_weight() >= 0)) throw ValueError(cat("M2: aux_weight (alpha) must be >= 0, got ", options.aux_weight()));
  for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(classifier_.get()), static_cast<torch::nn::Module*>(encoder_z_.get()),
                               static_cast<torch::nn::Module*>(decoder_.get())})
    m->to(device, dtype);
}

namespace {

// Pixel likelihood: Bernoulli on grey values in [0, 1] with validation off (as Pyro's SS-VAE
// and the book do with MNIST's grey pixels).
dist::DistPtr pixels(const torch::Tensor& probs) { return dist::Bernoulli(probs, /*validate_args=*/false).to_event(1); }

void check_minibatch(const Minibatch& b) {
  if (b.unlabelled.defined() && b.unlabelled.size(0) > 0 &&
      (b.unlabelled.dim() != 2 || b.unlabelled.size(1) != kPixels || b.unlabelled_index.numel() != b.unlabelled.size(0)))
    throw ShapeError(cat("M2: unlabelled images must be [B, 784] with B indices, got ", shape_str(b.unlabelled.sizes()), " and ",
                         b.unlabelled_index.defined() ? shape_str(b.unlabelled_index.sizes()) : std::string("none")));
  if (b.labelled.defined() && b.labelled.size(0) > 0 &&
      (b.labelled.dim() != 2 || b.labelled.size(1) != kPixels || b.labels.sizes() != torch::IntArrayRef({b.labelled.size(0), kClasses}) ||
       b.labelled_index.numel() != b.labelled.size(0)))
    throw ShapeError(cat("M2: labelled images must be [B, 784] with one-hot labels [B, 10] and B indices, got ",
                         shape_str(b.labelled.sizes()), ", ", b.labels.defined() ? shape_str(b.labels.sizes()) : std::string("none")));
}

bool has(const torch::Tensor& t) { return t.defined() && t.size(0) > 0; }

// q(y | x) from the classifier's logits (validated as any distribution: the logits it is given).
dist::OneHotCategorical labels_given(const torch::Tensor& logits) { return dist::OneHotCategorical(dist::Logits{logits}); }

}  // namespace

void M2::model(const Minibatch& b) {
  check_minibatch(b);
  module("decoder", decoder_);
  module("classifier", classifier_);
  auto units = [&](const std::string& prefix, const torch::Tensor& x, const torch::Tensor& y_obs) {
    const int64_t n = x.size(0);
    auto z = sample(prefix + "z", dist::Normal(torch::zeros({n, options_.z_dim()}, tensor_options_),
                                               torch::ones({n, options_.z_dim()}, tensor_options_))
                                      .to_event(1));
    auto y = sample(prefix + "y", dist::OneHotCategorical(torch::full({n, kClasses}, 1.0 / kClasses, tensor_options_)),
                    SampleOptions().obs(y_obs));
    sample(prefix + "x", pixels(decoder_->forward(z, y)), x);
  };
  if (has(b.unlabelled)) {
    auto data = plate("unlabelled", b.unlabelled_total, PlateOptions().subsample(b.unlabelled_index));
    units("u.", b.unlabelled, torch::Tensor());
  }
  if (has(b.labelled)) {
    auto data = plate("labelled", b.labelled_total, PlateOptions().subsample(b.labelled_index));
    units("l.", b.labelled, b.labels);
    if (options_.aux_weight() > 0) {
      // Pyro's auxiliary loss: the classifier's log-likelihood of the observed labels, weighted.
      auto weight = scale(options_.aux_weight());
      sample("l.y_aux", labels_given(classifier_->forward(b.labelled)), b.labels);
    }
  }
}

void M2::guide(const Minibatch& b) {
  check_minibatch(b);
  module("encoder_z", encoder_z_);
  module("classifier", classifier_);
  if (has(b.unlabelled)) {
    auto data = plate("unlabelled", b.unlabelled_total, PlateOptions().subsample(b.unlabelled_index));
    auto y = sample("u.y", labels_given(classifier_->forward(b.unlabelled)));
    auto [loc, sd] = encoder_z_->forward(b.unlabelled, y);
    sample("u.z", dist::Normal(loc, sd).to_event(1));
  }
  if (has(b.labelled)) {
    auto data = plate("labelled", b.labelled_total, PlateOptions().subsample(b.labelled_index));
    auto [loc, sd] = encoder_z_->forward(b.labelled, b.labels);
    sample("l.z", dist::Normal(loc, sd).to_event(1));
  }
}

void M2::training_guide(const Minibatch& b) {
  auto enumerate = config_enumerate();
  guide(b);
}

void M2::classifier_model(const Minibatch& b) {
  check_minibatch(b);
  if (!has(b.labelled)) throw ValueError("labels-only classifier: the minibatch has no labelled images");
  module("classifier", classifier_);
  auto data = plate("labelled", b.labelled_total, PlateOptions().subsample(b.labelled_index));
  sample("l.y_aux", labels_given(classifier_->forward(b.labelled)), b.labels);
}

torch::Tensor M2::predict(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += 2048)
    parts.push_back(classifier_->forward(images.narrow(0, start, std::min<int64_t>(2048, images.size(0) - start))).argmax(-1));
  return torch::cat(parts);
}

// ------------------------------------------------------------------ the causal task's teacher

namespace {

// splitmix64: a portable 64-bit mixer (same numbers on every platform and standard library).
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double unit_uniform(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// Standard normal draws [rows, cols] from a splitmix64 stream (Box-Muller), portable.
torch::Tensor portable_normal(int64_t rows, int64_t cols, uint64_t seed, uint64_t stream) {
  auto t = torch::empty({rows, cols}, torch::kDouble);
  auto* p = t.data_ptr<double>();
  uint64_t state = splitmix64(seed ^ splitmix64(stream));
  for (int64_t i = 0; i < rows * cols; i += 2) {
    state = splitmix64(state);
    double u1 = unit_uniform(state);
    state = splitmix64(state);
    double u2 = unit_uniform(state);
    double r = std::sqrt(-2.0 * std::log(1.0 - u1)), a = 2.0 * M_PI * u2;
    p[i] = r * std::cos(a);
    if (i + 1 < rows * cols) p[i + 1] = r * std::sin(a);
  }
  return t.to(torch::kFloat);
}

// FNV-1a over the bytes of one float32 image row.
uint64_t image_hash(const float* row) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(row);
  for (size_t i = 0; i < kPixels * sizeof(float); ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
  return h;
}

constexpr int64_t kTeacherHidden = 64;

}  // namespace

Teacher::Teacher(uint64_t seed, double noise, const torch::Tensor& calibration) : seed_(seed), noise_(noise) {
  if (!(noise >= 0 && noise <= 1)) throw ValueError(cat("teacher: label noise must be in [0, 1], got ", noise));
  if (calibration.dim() != 2 || calibration.size(1) != kPixels || calibration.size(0) < kClasses)
    throw ShapeError(cat("teacher: calibration images must be [N >= 10, 784], got ", shape_str(calibration.sizes())));
  // Scales chosen so the hidden units are neither saturated nor linear for images with ~100-150
  // ink pixels, and the output is a non-trivial function of them.
  w1_ = portable_normal(kPixels, kTeacherHidden, seed, 1) / 8.0;
  w2_ = portable_normal(kTeacherHidden, kClasses, seed, 2) * (3.0 / std::sqrt(double(kTeacherHidden)));
  offset_ = torch::zeros({kClasses});
  // Offsets that balance the argmax classes on the calibration images (a damped fixed point).
  auto base = logits(calibration.to(torch::kCPU, torch::kFloat));
  const double target = static_cast<double>(base.size(0)) / kClasses;
  for (int iteration = 0; iteration < 200; ++iteration) {
    auto counts = torch::bincount((base + offset_).argmax(1), {}, kClasses).to(torch::kDouble);
    offset_ = offset_ - 0.5 * torch::log((counts + 1.0) / target).to(torch::kFloat);
  }
}

torch::Tensor Teacher::logits(const torch::Tensor& images) const {
  torch::NoGradGuard no_grad;
  auto x = images.to(torch::kCPU, torch::kFloat);
  return torch::tanh(x.matmul(w1_)).matmul(w2_) + offset_;
}

torch::Tensor Teacher::labels(const torch::Tensor& images) const {
  if (images.dim() != 2 || images.size(1) != kPixels)
    throw ShapeError(cat("teacher: images must be [N, 784], got ", shape_str(images.sizes())));
  auto x = images.to(torch::kCPU, torch::kFloat).contiguous();
  auto labels = logits(x).argmax(1).contiguous();
  auto* l = labels.data_ptr<int64_t>();
  const float* rows = x.data_ptr<float>();
  for (int64_t i = 0; i < x.size(0); ++i) {
    uint64_t h = splitmix64(image_hash(rows + i * kPixels) ^ splitmix64(seed_));
    if (unit_uniform(h) < noise_) l[i] = static_cast<int64_t>(splitmix64(h) % kClasses);
  }
  return labels;
}

// ------------------------------------------------------------------ data, training, evaluation

TrainingData draw_labelled_subset(const torch::Tensor& images, const torch::Tensor& labels, int64_t budget, uint64_t seed) {
  if (budget <= 0 || budget % kClasses != 0)
    throw ValueError(cat("label budget must be a positive multiple of 10 (balanced classes), got ", budget));
  auto l = labels.to(torch::kCPU).contiguous();
  const int64_t n = l.size(0);
  std::vector<std::vector<int64_t>> by_class(kClasses);
  for (int64_t i = 0; i < n; ++i) by_class[static_cast<size_t>(l.data_ptr<int64_t>()[i])].push_back(i);
  std::vector<int64_t> picked;
  std::vector<bool> is_labelled(static_cast<size_t>(n), false);
  for (int64_t c = 0; c < kClasses; ++c) {
    auto rows = by_class[static_cast<size_t>(c)];
    if (static_cast<int64_t>(rows.size()) < budget / kClasses)
      throw ValueError(cat("label budget ", budget, ": class ", c, " has only ", rows.size(), " training images, fewer than ",
                           budget / kClasses));
    data::shuffle_rows(rows, seed, static_cast<uint64_t>(c));
    for (int64_t k = 0; k < budget / kClasses; ++k) {
      picked.push_back(rows[static_cast<size_t>(k)]);
      is_labelled[static_cast<size_t>(rows[static_cast<size_t>(k)])] = true;
    }
  }
  std::sort(picked.begin(), picked.end());
  std::vector<int64_t> rest;
  for (int64_t i = 0; i < n; ++i)
    if (!is_labelled[static_cast<size_t>(i)]) rest.push_back(i);
  return {images, labels, torch::tensor(picked, torch::kLong), torch::tensor(rest, torch::kLong)};
}

M2 train(Method method, const TrainingData& data, const M2Options& m2_options, const TrainOptions& o,
         const std::function<void(int64_t, double)>& on_step, const std::function<void(int64_t, M2&)>& on_checkpoint) {
  if (o.checkpoint_every() < 0) throw ValueError(cat("training options: checkpoint_every must be >= 0, got ", o.checkpoint_every()));
  if (o.steps() < 1 || o.unlabelled_batch() < 1 || o.labelled_batch() < 1 || !(o.lr() > 0))
    throw ValueError(cat("training options: steps, batch sizes and lr must be positive (steps ", o.steps(), ", batches ",
                         o.unlabelled_batch(), "/", o.labelled_batch(), ", lr ", o.lr(), ")"));
  clear_param_store();
  torch::manual_seed(o.seed());
  const auto device = data.images.device();
  const bool alternating = method == Method::m2 && o.schedule() == Schedule::alternating;
  // Alternating: the classifier term gets its own step (below), so the ELBO steps' model leaves it out.
  M2 m2(alternating ? M2Options(m2_options).aux_weight(0) : m2_options, device, data.images.scalar_type());
  const int64_t n_labelled = data.labelled.size(0), n_unlabelled = data.unlabelled.size(0);
  const int64_t labelled_batch = std::min(o.labelled_batch(), n_labelled);
  const int64_t unlabelled_batch = std::min(o.unlabelled_batch(), n_unlabelled);
  const int64_t images_per_step_total = n_labelled + (method == Method::m2 ? n_unlabelled : 0);
  auto one_hot = torch::one_hot(data.labels, kClasses).to(data.images.scalar_type());
  std::mt19937_64 positions(splitmix64(o.seed() ^ 0x5EED));

  auto draw = [&](int64_t total, int64_t size) {
    // size distinct positions in [0, total): a partial Fisher-Yates shuffle.
    std::vector<int64_t> all(static_cast<size_t>(total));
    for (int64_t i = 0; i < total; ++i) all[static_cast<size_t>(i)] = i;
    for (int64_t i = 0; i < size; ++i) {
      auto j = i + static_cast<int64_t>(positions() % static_cast<uint64_t>(total - i));
      std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
    }
    all.resize(static_cast<size_t>(size));
    return torch::tensor(all, torch::kLong);
  };
  auto minibatch = [&](bool with_labelled, bool with_unlabelled) {
    Minibatch b;
    if (with_labelled) {
      b.labelled_total = n_labelled;
      b.labelled_index = draw(n_labelled, labelled_batch);
      auto rows = data.labelled.index_select(0, b.labelled_index).to(device);
      b.labelled = data.images.index_select(0, rows);
      b.labels = one_hot.index_select(0, rows);
      b.labelled_index = b.labelled_index.to(device);
    }
    if (with_unlabelled) {
      b.unlabelled_total = n_unlabelled;
      b.unlabelled_index = draw(n_unlabelled, unlabelled_batch);
      b.unlabelled = data.images.index_select(0, data.unlabelled.index_select(0, b.unlabelled_index).to(device));
      b.unlabelled_index = b.unlabelled_index.to(device);
    }
    return b;
  };
  // Pyro's plates without a size: the loss is the plain sum over the minibatch.
  auto unscaled = [&](Minibatch b) {
    if (b.labelled.defined()) {
      b.labelled_total = b.labelled.size(0);
      b.labelled_index = torch::arange(b.labelled_total, torch::TensorOptions().dtype(torch::kLong).device(device));
    }
    if (b.unlabelled.defined()) {
      b.unlabelled_total = b.unlabelled.size(0);
      b.unlabelled_index = torch::arange(b.unlabelled_total, torch::TensorOptions().dtype(torch::kLong).device(device));
    }
    return b;
  };

  auto check = [&](double loss, int64_t step) {
    if (!std::isfinite(loss))
      throw RuntimeError(cat(to_string(method), " training: the loss is ", loss, " at step ", step, "; lower the learning rate"));
    if (on_step) on_step(step, loss / static_cast<double>(images_per_step_total));
    if (on_checkpoint && o.checkpoint_every() > 0 && step % o.checkpoint_every() == 0) on_checkpoint(step, m2);
  };
  infer::Adam adam(infer::AdamOptions().lr(o.lr()));
  if (method == Method::m2 && !alternating) {
    auto model = [&m2](const Minibatch& b) { m2.model(b); };
    auto guide = [&m2](const Minibatch& b) { m2.training_guide(b); };
    infer::SVI svi(model, guide, adam, infer::TraceEnum_ELBO(infer::ELBOOptions().max_plate_nesting(1)));
    for (int64_t step = 1; step <= o.steps(); ++step) {
      auto b = minibatch(true, true);
      check(svi.step(b), step);
    }
  } else if (method == Method::m2) {
    auto model = [&m2](const Minibatch& b) { m2.model(b); };
    auto guide = [&m2](const Minibatch& b) { m2.training_guide(b); };
    infer::SVI svi(model, guide, adam, infer::TraceEnum_ELBO(infer::ELBOOptions().max_plate_nesting(1)));
    const double alpha = m2_options.aux_weight();
    auto aux_model = [&m2, alpha](const Minibatch& b) {
      auto weight = scale(alpha);
      m2.classifier_model(b);
    };
    infer::SVI aux_svi(aux_model, [](const Minibatch&) {}, adam, infer::Trace_ELBO());
    // One labelled minibatch every `period` minibatches: a pass over the labelled images takes as
    // many steps as a pass over the unlabelled ones (Pyro's periodic_interval_batches).
    const int64_t labelled_per_pass = (n_labelled + labelled_batch - 1) / labelled_batch;
    const int64_t unlabelled_per_pass = std::max<int64_t>(1, n_unlabelled / unlabelled_batch);
    const int64_t period = std::max<int64_t>(2, (unlabelled_per_pass + labelled_per_pass) / labelled_per_pass);
    for (int64_t step = 1; step <= o.steps(); ++step) {
      if (step % period == 1) {
        auto b = unscaled(minibatch(true, false));
        double loss = svi.step(b);
        if (alpha > 0) loss += aux_svi.step(b);
        // Per image of this minibatch, reported on the whole set's scale like the joint schedule's.
        check(loss / static_cast<double>(b.labelled.size(0)) * static_cast<double>(images_per_step_total), step);
      } else {
        auto b = unscaled(minibatch(false, true));
        check(svi.step(b) / static_cast<double>(b.unlabelled.size(0)) * static_cast<double>(images_per_step_total), step);
      }
    }
  } else {
    auto model = [&m2](const Minibatch& b) { m2.classifier_model(b); };
    auto guide = [](const Minibatch&) {};
    infer::SVI svi(model, guide, adam, infer::Trace_ELBO());
    for (int64_t step = 1; step <= o.steps(); ++step) {
      auto b = minibatch(true, false);
      check(svi.step(b), step);
    }
  }
  return m2;
}

double accuracy(M2& m2, const torch::Tensor& images, const torch::Tensor& labels) {
  auto predicted = m2.predict(images);
  return predicted.eq(labels.to(predicted.device())).to(torch::kDouble).mean().item<double>();
}

Interval interval95(const std::vector<double>& values) {
  if (values.empty()) throw ValueError("interval95: no values");
  const double n = static_cast<double>(values.size());
  double mean = 0;
  for (double v : values) mean += v;
  mean /= n;
  if (values.size() == 1) return {mean, mean, mean};
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  var /= n - 1;
  // Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom, then the normal's.
  static const double t975[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  const size_t df = values.size() - 1;
  const double t = df <= 30 ? t975[df - 1] : 1.960;
  const double half = t * std::sqrt(var / n);
  return {mean, mean - half, mean + half};
}

}  // namespace ember::semi_supervised
