// Per-parameter optimisers (Pyro's PyroOptim) with hand-written, checkpointable update rules.
#include "inference/optim.h"

#include <cmath>
#include <cstring>

#include <ATen/Parallel.h>

#include "core/error.h"
#include "inference/fused_adam.h"
#include "ppl/param_store.h"

namespace ember::infer {

Optimizer::Optimizer(ClipOptions clip) : clip_(clip) {
  if (clip_.clip_norm() && !(*clip_.clip_norm() > 0))
    throw ValueError(cat("optimiser: clip_norm must be positive, got ", *clip_.clip_norm()));
  if (clip_.clip_value() && !(*clip_.clip_value() > 0))
    throw ValueError(cat("optimiser: clip_value must be positive, got ", *clip_.clip_value()));
}

void Optimizer::clip_gradient(torch::Tensor& grad) const {
  if (const auto& max_norm = clip_.clip_norm()) {
    // torch.nn.utils.clip_grad_norm_ on this param alone (Pyro clips per param).
    const auto coef = (*max_norm / (grad.norm(2) + 1e-6)).clamp_max(1.0);
    grad.mul_(coef);
  }
  if (const auto& v = clip_.clip_value()) grad.clamp_(-*v, *v);
}

void Optimizer::set_learning_rate(const std::string& param, double lr) {
  auto it = states_.find(param);
  if (it == states_.end())
    throw ValueError(cat(name(), ": cannot set the learning rate of param '", param, "', which has no optimiser state yet"));
  it->second.lr = lr;
}

std::vector<std::string> Optimizer::state_names() const {
  std::vector<std::string> out;
  for (const auto& [n, s] : states_) out.push_back(n);
  return out;
}

void Optimizer::step(const std::vector<std::string>& names) { step(names, get_param_store()); }

namespace {
// Small contiguous CPU float/double tensors: their gradients are zeroed by memset, since at
// the scalar params of small models a LibTorch op costs more than the work.
constexpr int64_t kSmallParam = 64;
bool small_cpu(const torch::Tensor& t) {
  return t.device().is_cpu() && t.numel() <= kSmallParam && t.is_contiguous() &&
         (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble);
}
}  // namespace

void Optimizer::step(const std::vector<std::string>& names, ParamStore& store) {
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, const State*>> stepped;
  stepped.reserve(names.size());
  for (const auto& n : names) {
    if (!store.contains(n)) continue;  // e.g. a value substituted for a param never stored
    torch::Tensor p = store.unconstrained(n);
    State& s = state_for(n, p);
    s.gradient_zeroed = false;
    begin_step(s);
    if (p.grad().defined()) {
      if (clip_.clip_norm() || clip_.clip_value()) clip_gradient(p.mutable_grad());
      update(p, p.grad(), s);
    }
    stepped.emplace_back(std::move(p), &s);
  }
  // As Pyro's zero_grads: gradients become zeros (not None) once a param has been stepped.
  for (auto& [p, s] : stepped) {
    if (!p.grad().defined() || s->gradient_zeroed) continue;
    torch::Tensor& g = p.mutable_grad();
    if (small_cpu(g)) {
      std::memset(g.data_ptr(), 0, static_cast<size_t>(g.numel()) * g.element_size());
      g.unsafeGetTensorImpl()->bump_version();
    }
    else g.zero_();
  }
}

Optimizer::State& Optimizer::state_for(const std::string& name, const torch::Tensor& p) {
  auto it = states_.find(name);
  const bool fresh = it == states_.end() ||
                     (it->second.tensor && it->second.tensor->lock().get() != p.unsafeGetTensorImpl());
  if (fresh) {
    State s;
    s.lr = initial_lr();
    it = states_.insert_or_assign(name, std::move(s)).first;
  }
  if (!it->second.tensor) {
    it->second.tensor.emplace(p.getIntrusivePtr());
    // A state read from a checkpoint is on the CPU: it follows its param to the param's device
    // when they meet, as torch.optim.Optimizer.load_state_dict does.
    for (auto& [key, b] : it->second.buffers)
      if (b.device() != p.device()) b = b.to(p.device());
  }
  return it->second;
}

int64_t Optimizer::step_count(const std::string& param) const {
  auto it = states_.find(param);
  return it == states_.end() ? 0 : it->second.step;
}

double Optimizer::learning_rate(const std::string& param) const {
  auto it = states_.find(param);
  return it == states_.end() ? initial_lr() : it->second.lr;
}

torch::Tensor& Optimizer::buffer(State& s, const std::string& key, const torch::Tensor& p, double fill) {
  auto it = s.buffers.find(key);
  if (it == s.buffers.end())
    it = s.buffers.emplace(key, torch::full_like(p, fill, torch::MemoryFormat::Preserve)).first;
  return it->second;
}

namespace {
constexpr const char* kSep = "$";
}

std::vector<ArchiveEntry> Optimizer::state_entries() const {
  std::vector<ArchiveEntry> out;
  for (const auto& [param, s] : states_) {
    if (s.tensor && s.tensor->expired()) continue;  // its param is gone: the state is dead
    // One entry per buffer; a state without buffers still gets a marker entry for its step.
    nlohmann::json meta = {{"param", param}, {"step", s.step}, {"lr", s.lr}};
    if (s.buffers.empty()) {
      ArchiveEntry e;
      e.name = cat("optim", kSep, param, kSep);
      e.tensor = torch::zeros({0});
      e.meta = meta;
      e.meta["buffer"] = "";
      out.push_back(std::move(e));
    }
    for (const auto& [key, t] : s.buffers) {
      ArchiveEntry e;
      e.name = cat("optim", kSep, param, kSep, key);
      e.tensor = t;
      e.meta = meta;
      e.meta["buffer"] = key;
      out.push_back(std::move(e));
    }
  }
  return out;
}

nlohmann::json Optimizer::state_meta() const {
  nlohmann::json meta = {{"algorithm", name()}, {"hyperparameters", hyperparameters()}};
  for (const auto& [key, weak] : attached_)
    if (auto state = weak.lock()) meta["attached"][key] = state->save();
  return meta;
}

void Optimizer::attach_state(const std::string& key, const std::shared_ptr<AttachedState>& state) {
  auto it = attached_.find(key);
  if (it != attached_.end()) {
    auto live = it->second.lock();
    if (live && live != state)
      throw ValueError(cat(name(), ": '", key, "' is already attached to this optimiser (one learning-rate scheduler per optimiser)"));
  }
  attached_[key] = state;
}

void Optimizer::load_state_entries(const std::vector<ArchiveEntry>& entries, const nlohmann::json& meta,
                                   const std::string& source) {
  check_state_meta(meta, source);  // the algorithm and any attached state, before anything changes
  std::map<std::string, State> loaded;
  for (const auto& e : entries) {
    if (e.name.rfind(cat("optim", kSep), 0) != 0) continue;
    try {
      const std::string param = e.meta.at("param").get<std::string>();
      State& s = loaded[param];
      s.step = e.meta.at("step").get<int64_t>();
      s.lr = e.meta.at("lr").get<double>();
      const std::string key = e.meta.at("buffer").get<std::string>();
      if (!key.empty()) s.buffers[key] = e.tensor.clone();
    } catch (const nlohmann::json::exception& ex) {
      throw IOError(cat("'", source, "': optimiser entry '", e.name, "' has malformed metadata: ", ex.what()));
    }
  }
  // Attached states (a scheduler's counters): a checkpoint without one leaves it as it is.
  if (auto attached = meta.find("attached"); attached != meta.end())
    for (const auto& [key, weak] : attached_)
      if (auto state = weak.lock(); state && attached->contains(key)) state->load(attached->at(key));
  states_ = std::move(loaded);
}

void Optimizer::check_state_meta(const nlohmann::json& meta, const std::string& source) const {
  const std::string algo = meta.value("algorithm", std::string());
  if (algo != name())
    throw ValueError(cat("'", source, "': the optimiser state was saved by ", algo.empty() ? "an unknown optimiser" : algo,
                         " but this SVI uses ", name()));
  if (auto attached = meta.find("attached"); attached != meta.end())
    for (const auto& [key, weak] : attached_)
      if (auto state = weak.lock(); state && attached->contains(key)) state->check(attached->at(key), source);
}

// ---------------------------------------------------------------- update rules (torch.optim's formulas)

nlohmann::json Adam::hyperparameters() const {
  return {{"lr", o_.lr()}, {"betas", {o_.beta1(), o_.beta2()}}, {"eps", o_.eps()}, {"weight_decay", o_.weight_decay()},
          {"amsgrad", o_.amsgrad()}};
}

namespace {
// Contiguous CPU float/double param, gradient and buffers of one shape: Adam's update runs
// as one pass over the elements (inference/fused_adam.h), split over LibTorch's intra-op
// threads as its elementwise ops are.
bool fused_adam_applies(const torch::Tensor& p, std::initializer_list<const torch::Tensor*> others) {
  if (!p.device().is_cpu() || !p.is_contiguous() || (p.scalar_type() != torch::kFloat && p.scalar_type() != torch::kDouble))
    return false;
  for (const auto* t : others)
    if (!t->device().is_cpu() || !t->is_contiguous() || t->scalar_type() != p.scalar_type() || t->sizes() != p.sizes())
      return false;
  return true;
}

template <class T>
void fused_adam(torch::Tensor& p, torch::Tensor& g, torch::Tensor& m, torch::Tensor& v, torch::Tensor* vmax,
                const kernels::AdamStepScalars& scalars, bool zero_gradient) {
  T* pp = p.data_ptr<T>();
  T* gp = g.data_ptr<T>();
  T* mp = m.data_ptr<T>();
  T* vp = v.data_ptr<T>();
  T* vmaxp = vmax ? vmax->data_ptr<T>() : nullptr;
  // at::internal::GRAIN_SIZE elements per task, as LibTorch's own elementwise kernels.
  at::parallel_for(0, p.numel(), at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
    kernels::adam_update(pp + begin, gp + begin, mp + begin, vp + begin, vmaxp ? vmaxp + begin : nullptr, end - begin,
                         scalars, zero_gradient);
  });
}
}  // namespace

void Adam::update(torch::Tensor& p, torch::Tensor grad, State& s) const {
  s.step += 1;
  auto& m = buffer(s, "exp_avg", p);
  auto& v = buffer(s, "exp_avg_sq", p);
  torch::Tensor* vmax = o_.amsgrad() ? &buffer(s, "max_exp_avg_sq", p) : nullptr;
  const double bc1 = 1 - std::pow(o_.beta1(), static_cast<double>(s.step));
  const double bc2 = 1 - std::pow(o_.beta2(), static_cast<double>(s.step));
  if (fused_adam_applies(p, {&grad, &m, &v}) && (!vmax || fused_adam_applies(p, {vmax}))) {
    kernels::AdamStepScalars scalars;
    scalars.beta1 = o_.beta1();
    scalars.beta2 = o_.beta2();
    scalars.eps = o_.eps();
    scalars.weight_decay = o_.weight_decay();
    scalars.bias_correction1 = bc1;
    scalars.bias_correction2 = bc2;
    scalars.lr = s.lr;
    // The gradient is zeroed in the same pass when it is the param's own (not a copy made
    // by weight decay or clipping elsewhere): the step would zero it next anyway.
    const bool zero_gradient = grad.is_same(p.grad());
    if (p.scalar_type() == torch::kFloat) fused_adam<float>(p, grad, m, v, vmax, scalars, zero_gradient);
    else fused_adam<double>(p, grad, m, v, vmax, scalars, zero_gradient);
    s.gradient_zeroed = zero_gradient;
    // As in-place ops would: autograd's saved-tensor checks see the change.
    for (auto* t : {&p, &m, &v, &grad}) t->unsafeGetTensorImpl()->bump_version();
    if (vmax) vmax->unsafeGetTensorImpl()->bump_version();
    return;
  }
  if (o_.weight_decay() != 0) grad = grad.add(p, o_.weight_decay());
  m.mul_(o_.beta1()).add_(grad, 1 - o_.beta1());
  v.mul_(o_.beta2()).addcmul_(grad, grad, 1 - o_.beta2());
  torch::Tensor denom;
  if (vmax) {
    torch::maximum_out(*vmax, *vmax, v);
    denom = (vmax->sqrt() / std::sqrt(bc2)).add_(o_.eps());
  } else {
    denom = (v.sqrt() / std::sqrt(bc2)).add_(o_.eps());
  }
  p.addcdiv_(m, denom, -s.lr / bc1);
}

nlohmann::json ClippedAdam::hyperparameters() const {
  return {{"lr", o_.lr()},           {"betas", {o_.beta1(), o_.beta2()}}, {"eps", o_.eps()},
          {"weight_decay", o_.weight_decay()}, {"clip_norm", o_.clip_norm()}, {"lrd", o_.lrd()}};
}

void ClippedAdam::update(torch::Tensor& p, torch::Tensor grad, State& s) const {
  // Pyro: gradients are clamped elementwise (the learning rate decayed in begin_step).
  grad = grad.clamp(-o_.clip_norm(), o_.clip_norm());
  s.step += 1;
  if (o_.weight_decay() != 0) grad = grad.add(p, o_.weight_decay());
  auto& m = buffer(s, "exp_avg", p);
  auto& v = buffer(s, "exp_avg_sq", p);
  m.mul_(o_.beta1()).add_(grad, 1 - o_.beta1());
  v.mul_(o_.beta2()).addcmul_(grad, grad, 1 - o_.beta2());
  auto denom = v.sqrt().add_(o_.eps());
  const double bc1 = 1 - std::pow(o_.beta1(), static_cast<double>(s.step));
  const double bc2 = 1 - std::pow(o_.beta2(), static_cast<double>(s.step));
  p.addcdiv_(m, denom, -s.lr * std::sqrt(bc2) / bc1);
}

nlohmann::json SGD::hyperparameters() const {
  return {{"lr", o_.lr()}, {"momentum", o_.momentum()}, {"dampening", o_.dampening()},
          {"weight_decay", o_.weight_decay()}, {"nesterov", o_.nesterov()}};
}

void SGD::update(torch::Tensor& p, torch::Tensor grad, State& s) const {
  s.step += 1;
  if (o_.weight_decay() != 0) grad = grad.add(p, o_.weight_decay());
  if (o_.momentum() != 0) {
    auto it = s.buffers.find("momentum_buffer");
    if (it == s.buffers.end()) {
      it = s.buffers.emplace("momentum_buffer", grad.clone()).first;
    } else {
      it->second.mul_(o_.momentum()).add_(grad, 1 - o_.dampening());
    }
    grad = o_.nesterov() ? grad.add(it->second, o_.momentum()) : it->second;
  }
  p.add_(grad, -s.lr);
}

nlohmann::json RMSprop::hyperparameters() const {
  return {{"lr", o_.lr()},           {"alpha", o_.alpha()},       {"eps", o_.eps()},
          {"weight_decay", o_.weight_decay()}, {"momentum", o_.momentum()}, {"centered", o_.centered()}};
}

void RMSprop::update(torch::Tensor& p, torch::Tensor grad, State& s) const {
  s.step += 1;
  if (o_.weight_decay() != 0) grad = grad.add(p, o_.weight_decay());
  auto& sq = buffer(s, "square_avg", p);
  sq.mul_(o_.alpha()).addcmul_(grad, grad, 1 - o_.alpha());
  torch::Tensor avg;
  if (o_.centered()) {
    auto& ga = buffer(s, "grad_avg", p);
    ga.mul_(o_.alpha()).add_(grad, 1 - o_.alpha());
    avg = sq.addcmul(ga, ga, -1).sqrt_();
  } else {
    avg = sq.sqrt();
  }
  avg.add_(o_.eps());
  if (o_.momentum() > 0) {
    auto& buf = buffer(s, "momentum_buffer", p);
    buf.mul_(o_.momentum()).addcdiv_(grad, avg);
    p.add_(buf, -s.lr);
  } else {
    p.addcdiv_(grad, avg, -s.lr);
  }
}

nlohmann::json Adagrad::hyperparameters() const {
  return {{"lr", o_.lr()},
          {"lr_decay", o_.lr_decay()},
          {"weight_decay", o_.weight_decay()},
          {"initial_accumulator_value", o_.initial_accumulator_value()},
          {"eps", o_.eps()}};
}

void Adagrad::update(torch::Tensor& p, torch::Tensor grad, State& s) const {
  auto& sum = buffer(s, "sum", p, o_.initial_accumulator_value());
  s.step += 1;
  if (o_.weight_decay() != 0) grad = grad.add(p, o_.weight_decay());
  const double clr = s.lr / (1 + static_cast<double>(s.step - 1) * o_.lr_decay());
  sum.addcmul_(grad, grad, 1);
  auto std = sum.sqrt().add_(o_.eps());
  p.addcdiv_(grad, std, -clr);
}

}  // namespace ember::infer
