// HMC and NUTS transitions, and Stan's warmup adaptation (dual averaging, windowed metric).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>

#include <cmath>
#include <limits>
#include <mutex>

#include "inference/mcmc/mcmc.h"
#include "core/error.h"

namespace ember::infer::mcmc {

namespace {
double log_sum_exp(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  const double m = std::max(a, b);
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}
}  // namespace

HMC::HMC(HMCOptions options) : options_(std::move(options)) {
  if (!(options_.step_size() > 0)) throw ValueError(cat("HMC: step_size must be positive, got ", options_.step_size()));
  if (!(options_.target_accept() > 0 && options_.target_accept() < 1))
    throw ValueError(cat("HMC: target_accept must be in (0, 1), got ", options_.target_accept()));
}

void HMC::set_inverse_metric(torch::Tensor m) {
  inv_metric_ = std::move(m);
  if (inv_metric_.dim() == 2) metric_chol_ = torch::linalg_cholesky(inv_metric_);
  const torch::Tensor values = inv_metric_.to(torch::kCPU, torch::kFloat64).contiguous();
  inv_metric_values_.assign(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
}

namespace {
std::vector<double> to_vec(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
torch::Tensor to_tensor(const std::vector<double>& v, const torch::TensorOptions& options) {
  return torch::tensor(v, torch::kFloat64).to(options);
}
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

torch::Tensor HMC::position() const {
  if (!potential_) throw RuntimeError("HMC::position: call setup first");
  return to_tensor(point_.z, potential_->options());
}

void HMC::evaluate(PhasePoint& point) const {
  point.grad.resize(point.z.size());
  point.potential = evaluator_ ? evaluator_(point.z.data(), point.grad.data())
                               : potential_->energy_and_grad(point.z.data(), point.grad.data());
}

void HMC::setup(const Potential& potential, const torch::Tensor& z0, int64_t num_warmup, at::Generator gen) {
  potential_ = &potential;
  gen_ = std::move(gen);
  num_warmup_ = num_warmup;
  iteration_ = 0;
  const int64_t d = potential.dim();
  auto opts = potential.options();
  set_inverse_metric(options_.dense_mass() ? torch::eye(d, opts) : torch::ones({d}, opts));
  point_.z = to_vec(z0);
  evaluate(point_);
  if (!std::isfinite(point_.potential)) throw ValueError("HMC: the potential energy is not finite at the initial point");
  step_size_ = options_.step_size();
  if (num_warmup_ > 0 && options_.adapt_step_size()) find_reasonable_step_size();
  restart_dual_averaging();
  // Stan's windows: shrink the buffers when warmup is too short for the defaults.
  init_buffer_ = 75, term_buffer_ = 50, base_window_ = 25;
  if (num_warmup_ < 20) {
    init_buffer_ = num_warmup_, term_buffer_ = 0, base_window_ = 0;  // no metric adaptation
  } else if (init_buffer_ + base_window_ + term_buffer_ > num_warmup_) {
    init_buffer_ = static_cast<int64_t>(0.15 * num_warmup_);
    term_buffer_ = static_cast<int64_t>(0.1 * num_warmup_);
    base_window_ = num_warmup_ - (init_buffer_ + term_buffer_);
  }
  window_counter_ = 0;
  window_size_ = base_window_;
  next_window_ = init_buffer_ + window_size_ - 1;
  welford_n_ = 0;
  welford_mean_ = torch::zeros({d}, opts);
  welford_m2_ = options_.dense_mass() ? torch::zeros({d, d}, opts) : torch::zeros({d}, opts);
}

double HMC::uniform() {
  // Straight from the chain's generator (as torch::rand draws it, without a tensor).
  auto* impl = gen_.get<at::CPUGeneratorImpl>();
  std::lock_guard<std::mutex> lock(gen_.mutex());
  return at::uniform_real_distribution<double>(0.0, 1.0)(impl);
}

HMC::Vec HMC::sample_momentum() {
  torch::Tensor u = torch::randn({potential_->dim()}, gen_, torch::TensorOptions().dtype(torch::kFloat64));
  if (inv_metric_.dim() == 1) return to_vec(u / inv_metric_.to(torch::kCPU, torch::kFloat64).sqrt());
  // p = L^{-T} u has covariance (L L^T)^{-1} = M when the inverse metric is L L^T.
  const torch::Tensor chol = metric_chol_.to(torch::kCPU, torch::kFloat64);
  return to_vec(torch::linalg_solve_triangular(chol.t(), u.unsqueeze(1), /*upper=*/true).squeeze(1));
}

HMC::Vec HMC::velocity(const Vec& p) const {
  const size_t d = p.size();
  Vec v(d);
  if (inv_metric_values_.size() == d) {
    for (size_t i = 0; i < d; ++i) v[i] = inv_metric_values_[i] * p[i];
  } else {
    for (size_t i = 0; i < d; ++i) {
      double s = 0;
      const double* row = inv_metric_values_.data() + i * d;
      for (size_t j = 0; j < d; ++j) s += row[j] * p[j];
      v[i] = s;
    }
  }
  return v;
}

double HMC::kinetic(const Vec& p) const { return 0.5 * dot(p, velocity(p)); }

void HMC::leapfrog(PhasePoint& point, Vec& p, double eps) const {
  const size_t d = p.size();
  const double half = 0.5 * eps;
  for (size_t i = 0; i < d; ++i) p[i] -= half * point.grad[i];
  const Vec v = velocity(p);
  for (size_t i = 0; i < d; ++i) point.z[i] += eps * v[i];
  evaluate(point);
  for (size_t i = 0; i < d; ++i) p[i] -= half * point.grad[i];
}

void HMC::find_reasonable_step_size() {
  // Stan's init_stepsize: double or halve until the one-step acceptance crosses 0.8.
  const double log_threshold = std::log(0.8);
  auto one_step_delta = [&] {
    PhasePoint q = point_;
    Vec p = sample_momentum();
    const double h0 = q.potential + kinetic(p);
    leapfrog(q, p, step_size_);
    double h = q.potential + kinetic(p);
    if (std::isnan(h)) h = INFINITY;
    return h0 - h;
  };
  const int direction = one_step_delta() > log_threshold ? 1 : -1;
  for (int i = 0; i < 100; ++i) {
    const double delta = one_step_delta();
    if (direction == 1 && !(delta > log_threshold)) break;
    if (direction == -1 && !(delta < log_threshold)) break;
    step_size_ = direction == 1 ? 2 * step_size_ : 0.5 * step_size_;
    if (step_size_ > 1e7) throw ValueError("HMC: the posterior is improper (step size diverged to infinity); check the model");
    if (step_size_ == 0) throw ValueError("HMC: no acceptably small step size (the potential is not finite nearby); check the model");
  }
}

void HMC::restart_dual_averaging() {
  mu_ = std::log(10 * step_size_);
  s_bar_ = 0, x_bar_ = 0;
  da_count_ = 0;
}

void HMC::adapt(const TransitionStats& s) {
  if (options_.adapt_step_size()) {
    const auto& da = options_.dual_averaging();
    ++da_count_;
    const double stat = std::min(1.0, s.accept_prob);
    const double eta = 1.0 / (da_count_ + da.t0());
    s_bar_ = (1 - eta) * s_bar_ + eta * (options_.target_accept() - stat);
    const double x = mu_ - s_bar_ * std::sqrt(static_cast<double>(da_count_)) / da.gamma();
    const double x_eta = std::pow(static_cast<double>(da_count_), -da.kappa());
    x_bar_ = (1 - x_eta) * x_bar_ + x_eta * x;
    step_size_ = std::exp(x);
  }
  if (options_.adapt_mass_matrix() && base_window_ > 0) {
    const bool in_window = window_counter_ >= init_buffer_ && window_counter_ < num_warmup_ - term_buffer_ &&
                           window_counter_ != num_warmup_;
    if (in_window) {  // Welford's running (co)variance
      ++welford_n_;
      const torch::Tensor z = position();
      torch::Tensor delta = z - welford_mean_;
      welford_mean_ = welford_mean_ + delta / static_cast<double>(welford_n_);
      torch::Tensor delta2 = z - welford_mean_;
      welford_m2_ = welford_m2_ + (welford_m2_.dim() == 1 ? delta * delta2 : torch::outer(delta, delta2));
    }
    if (window_counter_ == next_window_ && window_counter_ != num_warmup_) {
      // Next window: twice as long, stretched to the terminal buffer if the one after would not fit.
      if (next_window_ != num_warmup_ - term_buffer_ - 1) {
        window_size_ *= 2;
        next_window_ = window_counter_ + window_size_;
        if (next_window_ != num_warmup_ - term_buffer_ - 1 && next_window_ + 2 * window_size_ >= num_warmup_ - term_buffer_)
          next_window_ = num_warmup_ - term_buffer_ - 1;
      }
      const double n = static_cast<double>(welford_n_);
      torch::Tensor var = welford_m2_ / (n - 1);
      // Regularise towards 1e-3 * identity as Stan does.
      torch::Tensor shrunk = (n / (n + 5.0)) * var;
      if (var.dim() == 1) shrunk = shrunk + 1e-3 * (5.0 / (n + 5.0));
      else shrunk = shrunk + 1e-3 * (5.0 / (n + 5.0)) * torch::eye(var.size(0), var.options());
      set_inverse_metric(shrunk);
      welford_n_ = 0;
      welford_mean_.zero_();
      welford_m2_.zero_();
      if (options_.adapt_step_size()) {
        find_reasonable_step_size();
        restart_dual_averaging();
      }
    }
    ++window_counter_;
  }
  if (iteration_ == num_warmup_ && options_.adapt_step_size()) step_size_ = std::exp(x_bar_);
}

TransitionStats HMC::step() {
  if (!potential_) throw RuntimeError("HMC::step: call setup first");
  TransitionStats s = transition();
  ++iteration_;
  if (iteration_ <= num_warmup_) adapt(s);
  return s;
}

TransitionStats HMC::transition() {
  const int64_t steps = options_.num_steps() > 0
                            ? options_.num_steps()
                            : std::max<int64_t>(1, static_cast<int64_t>(std::llround(options_.trajectory_length() / step_size_)));
  Vec p = sample_momentum();
  const double h0 = point_.potential + kinetic(p);
  PhasePoint q = point_;
  for (int64_t i = 0; i < steps; ++i) leapfrog(q, p, step_size_);
  double h = q.potential + kinetic(p);
  if (std::isnan(h)) h = INFINITY;
  TransitionStats s;
  s.step_size = step_size_;
  s.num_leapfrog = steps;
  s.divergent = h - h0 > options_.max_delta_energy();
  s.accept_prob = h0 - h > 0 ? 1.0 : std::exp(h0 - h);
  if (uniform() < s.accept_prob) point_ = q;
  s.potential_energy = point_.potential;
  return s;
}

// ----------------------------------------------------------------------------------------------
// Checkpoint state

nlohmann::json HMC::config() const {
  const auto& o = options_;
  return {{"kernel", "HMC"},
          {"step_size", o.step_size()},
          {"trajectory_length", o.trajectory_length()},
          {"num_steps", o.num_steps()},
          {"adapt_step_size", o.adapt_step_size()},
          {"adapt_mass_matrix", o.adapt_mass_matrix()},
          {"dense_mass", o.dense_mass()},
          {"target_accept", o.target_accept()},
          {"dual_averaging", {o.dual_averaging().gamma(), o.dual_averaging().t0(), o.dual_averaging().kappa()}},
          {"max_delta_energy", o.max_delta_energy()}};
}

nlohmann::json NUTS::config() const {
  nlohmann::json j = HMC::config();
  j["kernel"] = "NUTS";
  j["max_tree_depth"] = nuts_options_.max_tree_depth();
  return j;
}

namespace {
// Doubles and counters travel as float64 / int64 tensors: exact, unlike a decimal rendering.
constexpr int64_t kNumScalars = 5, kNumCounters = 10;
}  // namespace

void HMC::save_state(std::vector<ArchiveEntry>& out, const std::string& prefix) const {
  if (!potential_) throw RuntimeError("HMC::save_state: the kernel has no state (call setup first)");
  out.push_back({prefix + "z", torch::tensor(point_.z, torch::kFloat64)});
  out.push_back({prefix + "grad", torch::tensor(point_.grad, torch::kFloat64)});
  out.push_back({prefix + "inverse_mass_matrix", inv_metric_.clone()});
  out.push_back({prefix + "welford_mean", welford_mean_.clone()});
  out.push_back({prefix + "welford_m2", welford_m2_.clone()});
  out.push_back({prefix + "rng", gen_.get_state()});
  out.push_back({prefix + "scalars", torch::tensor({point_.potential, step_size_, mu_, s_bar_, x_bar_}, torch::kFloat64)});
  out.push_back({prefix + "counters", torch::tensor({num_warmup_, iteration_, da_count_, init_buffer_, term_buffer_, base_window_,
                                                     window_counter_, window_size_, next_window_, welford_n_},
                                                    torch::kInt64)});
}

void HMC::load_state(const Potential& potential, const TensorArchive& archive, const std::string& prefix) {
  auto get = [&](const std::string& field, c10::IntArrayRef shape) {
    const ArchiveEntry* e = archive.find(prefix + field);
    if (!e) throw ValueError(cat("HMC::load_state: the checkpoint has no entry '", prefix + field, "'"));
    if (!shape.empty() && e->tensor.sizes() != shape)
      throw ValueError(cat("HMC::load_state: entry '", prefix + field, "' has shape ", e->tensor.sizes(), ", expected ", shape));
    return e->tensor;
  };
  const int64_t d = potential.dim();
  const auto opts = potential.options();
  const bool dense = options_.dense_mass();
  const std::vector<int64_t> vec{d}, mat = dense ? std::vector<int64_t>{d, d} : std::vector<int64_t>{d};
  potential_ = &potential;
  point_.z = to_vec(get("z", vec));
  point_.grad = to_vec(get("grad", vec));
  set_inverse_metric(get("inverse_mass_matrix", mat).to(opts));
  welford_mean_ = get("welford_mean", vec).to(opts);
  welford_m2_ = get("welford_m2", mat).to(opts);
  gen_ = at::make_generator<at::CPUGeneratorImpl>();
  gen_.set_state(get("rng", {}));
  const torch::Tensor scalars = get("scalars", {kNumScalars}).to(torch::kFloat64).contiguous();
  const double* x = scalars.data_ptr<double>();
  point_.potential = x[0], step_size_ = x[1], mu_ = x[2], s_bar_ = x[3], x_bar_ = x[4];
  const torch::Tensor counters = get("counters", {kNumCounters}).to(torch::kInt64).contiguous();
  const int64_t* n = counters.data_ptr<int64_t>();
  num_warmup_ = n[0], iteration_ = n[1], da_count_ = n[2], init_buffer_ = n[3], term_buffer_ = n[4], base_window_ = n[5];
  window_counter_ = n[6], window_size_ = n[7], next_window_ = n[8], welford_n_ = n[9];
}

// ----------------------------------------------------------------------------------------------
// NUTS

NUTS::NUTS(NUTSOptions options) : HMC(options), nuts_options_(std::move(options)) {
  if (nuts_options_.max_tree_depth() < 1)
    throw ValueError(cat("NUTS: max_tree_depth must be at least 1, got ", nuts_options_.max_tree_depth()));
}

bool NUTS::criterion(const Vec& p_sharp_minus, const Vec& p_sharp_plus, const Vec& rho) {
  return dot(p_sharp_plus, rho) > 0 && dot(p_sharp_minus, rho) > 0;
}

namespace {
std::vector<double> sum(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> s(a.size());
  for (size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}
}  // namespace

// What one subtree reports to its parent: the proposal drawn from it, its weight, the summed
// momenta (rho) and the momenta and velocities at both ends.
struct NUTS::Tree {
  PhasePoint proposal;
  double log_sum_weight = -INFINITY;
  Vec rho, p_beg, p_end, p_sharp_beg, p_sharp_end;
};

bool NUTS::build_tree(int64_t depth, PhasePoint& state, Vec& p, int direction, double h0, Tree& tree) {
  if (depth == 0) {
    leapfrog(state, p, direction * step_size_);
    ++num_leapfrog_;
    double h = state.potential + kinetic(p);
    if (std::isnan(h)) h = INFINITY;
    if (h - h0 > nuts_options_.max_delta_energy()) divergent_ = true;
    tree.log_sum_weight = log_sum_exp(tree.log_sum_weight, h0 - h);
    sum_metropolis_ += h0 - h > 0 ? 1.0 : std::exp(h0 - h);
    tree.proposal = state;
    tree.p_beg = tree.p_end = p;
    tree.p_sharp_beg = tree.p_sharp_end = velocity(p);
    tree.rho = tree.rho.empty() ? p : sum(tree.rho, p);
    return !divergent_;
  }
  Tree init;
  if (!build_tree(depth - 1, state, p, direction, h0, init)) return false;
  Tree final_;
  if (!build_tree(depth - 1, state, p, direction, h0, final_)) return false;
  // Multinomial sample between the halves, uniformly in proportion to their weights.
  const double log_sum_weight_subtree = log_sum_exp(init.log_sum_weight, final_.log_sum_weight);
  tree.log_sum_weight = log_sum_exp(tree.log_sum_weight, log_sum_weight_subtree);
  if (final_.log_sum_weight > log_sum_weight_subtree || uniform() < std::exp(final_.log_sum_weight - log_sum_weight_subtree))
    tree.proposal = final_.proposal;
  else
    tree.proposal = init.proposal;
  Vec rho_subtree = sum(init.rho, final_.rho);
  tree.rho = tree.rho.empty() ? rho_subtree : sum(tree.rho, rho_subtree);
  tree.p_beg = init.p_beg, tree.p_sharp_beg = init.p_sharp_beg;
  tree.p_end = final_.p_end, tree.p_sharp_end = final_.p_sharp_end;
  // U-turn over the whole subtree, and Stan's extra checks across the two halves.
  bool persist = criterion(init.p_sharp_beg, final_.p_sharp_end, rho_subtree);
  persist = persist && criterion(init.p_sharp_beg, final_.p_sharp_beg, sum(init.rho, final_.p_beg));
  persist = persist && criterion(init.p_sharp_end, final_.p_sharp_end, sum(final_.rho, init.p_end));
  return persist;
}

TransitionStats NUTS::transition() {
  divergent_ = false;
  num_leapfrog_ = 0;
  sum_metropolis_ = 0.0;
  Vec p0 = sample_momentum();
  const double h0 = point_.potential + kinetic(p0);
  // The trajectory's two ends (state and momentum), their end momenta and velocities.
  PhasePoint z_fwd = point_, z_bck = point_;
  Vec pf = p0, pb = p0;
  Vec p_sharp0 = velocity(p0);
  Vec p_fwd_bck = p0, p_fwd_fwd = p0, p_bck_fwd = p0, p_bck_bck = p0;
  Vec ps_fwd_bck = p_sharp0, ps_fwd_fwd = p_sharp0, ps_bck_fwd = p_sharp0, ps_bck_bck = p_sharp0;
  Vec rho = p0;
  double log_sum_weight = 0.0;  // weight of the initial point: exp(h0 - h0)
  PhasePoint sample = point_;
  int64_t depth = 0;
  while (depth < nuts_options_.max_tree_depth()) {
    Tree sub;
    Vec rho_fwd, rho_bck;
    bool valid;
    if (uniform() > 0.5) {
      // The old trajectory becomes the backward part; its forward end borders the new subtree.
      rho_bck = rho, p_bck_fwd = p_fwd_fwd, ps_bck_fwd = ps_fwd_fwd;
      valid = build_tree(depth, z_fwd, pf, +1, h0, sub);
      rho_fwd = sub.rho, p_fwd_bck = sub.p_beg, p_fwd_fwd = sub.p_end, ps_fwd_bck = sub.p_sharp_beg, ps_fwd_fwd = sub.p_sharp_end;
    } else {
      rho_fwd = rho, p_fwd_bck = p_bck_bck, ps_fwd_bck = ps_bck_bck;
      valid = build_tree(depth, z_bck, pb, -1, h0, sub);
      rho_bck = sub.rho, p_bck_fwd = sub.p_beg, p_bck_bck = sub.p_end, ps_bck_fwd = sub.p_sharp_beg, ps_bck_bck = sub.p_sharp_end;
    }
    if (!valid) break;
    ++depth;
    // Biased progressive sampling: prefer the new subtree when it outweighs the old trajectory.
    if (sub.log_sum_weight > log_sum_weight || uniform() < std::exp(sub.log_sum_weight - log_sum_weight)) sample = sub.proposal;
    log_sum_weight = log_sum_exp(log_sum_weight, sub.log_sum_weight);
    rho = sum(rho_bck, rho_fwd);
    bool persist = criterion(ps_bck_bck, ps_fwd_fwd, rho);
    persist = persist && criterion(ps_bck_bck, ps_fwd_bck, sum(rho_bck, p_fwd_bck));
    persist = persist && criterion(ps_bck_fwd, ps_fwd_fwd, sum(rho_fwd, p_bck_fwd));
    if (!persist) break;
  }
  point_ = sample;
  TransitionStats s;
  s.step_size = step_size_;
  s.num_leapfrog = num_leapfrog_;
  s.tree_depth = depth;
  s.divergent = divergent_;
  s.accept_prob = num_leapfrog_ > 0 ? sum_metropolis_ / static_cast<double>(num_leapfrog_) : 0.0;
  s.potential_energy = point_.potential;
  return s;
}

}  // namespace ember::infer::mcmc
