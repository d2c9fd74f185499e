// The handler stack, apply_stack and the primitives.
#include <torch/nn/module.h>

#include "core/error.h"
#include "distributions/delta.h"
#include "distributions/unit.h"
#include "ppl/counterfactual.h"
#include "ppl/messenger.h"
#include "ppl/param_store.h"
#include "ppl/primitives.h"
#include "ppl/scale.h"

namespace ember {

// ---------------------------------------------------------------- messages

const char* to_string(SiteType t) { return t == SiteType::sample ? "sample" : "param"; }

std::string Message::plates_str() const {
  std::string s;
  for (const auto& f : cond_indep_stack) {
    s += cat(s.empty() ? "" : " > ", "plate('", f.name, "', ", f.full_size);
    if (f.size != f.full_size) s += cat(", subsample_size=", f.size);
    s += f.vectorized ? cat(", dim=", f.dim, ")") : std::string(", sequential)");
  }
  return s.empty() ? "no plate" : s;
}

// ---------------------------------------------------------------- the stack

namespace {
thread_local std::vector<Messenger*> t_stack;
}

const std::vector<Messenger*>& handler_stack() { return t_stack; }
bool am_i_wrapped() { return !t_stack.empty(); }

Messenger::~Messenger() noexcept(false) {
  if (!active_) return;
  // RAII keeps scopes nested, so this is the innermost messenger; search anyway so a
  // messenger destroyed out of order never leaves a dangling pointer behind.
  for (auto it = t_stack.rbegin(); it != t_stack.rend(); ++it) {
    if (*it == this) {
      t_stack.erase(std::next(it).base());
      break;
    }
  }
}

void Messenger::enter() {
  if (active_) throw RuntimeError("Messenger::enter: this handler is already installed");
  t_stack.push_back(this);
  active_ = true;
}

void Messenger::exit() {
  if (!active_) return;
  if (t_stack.empty() || t_stack.back() != this)
    throw RuntimeError("Messenger::exit: handlers must be exited in the reverse order they were entered");
  t_stack.pop_back();
  active_ = false;
}

namespace {

// An observation must fit the distribution exactly or broadcast *into* it: an obs with more
// dims, or with a size where the distribution has 1, would silently add batch elements that
// no plate accounts for.
void check_observation_shape(const Message& msg) {
  const auto full = msg.fn->extended_shape();
  const auto obs = to_shape(msg.value.sizes());
  const int64_t ev = msg.fn->event_dim();
  bool ok = obs.size() <= full.size();
  if (ok) {
    for (size_t i = 0; i < obs.size(); ++i) {
      int64_t o = obs[obs.size() - 1 - i], d = full[full.size() - 1 - i];
      bool is_event = static_cast<int64_t>(i) < ev;
      if (is_event ? o != d : (o != d && o != 1)) {
        ok = false;
        break;
      }
    }
  }
  if (!ok)
    throw ShapeError(cat("sample site '", msg.name, "' (", msg.plates_str(), "): observed value of shape ",
                         shape_str(obs), " does not match the distribution ", msg.fn->name(), " with batch_shape ",
                         shape_str(msg.fn->batch_shape()), " and event_shape ", shape_str(msg.fn->event_shape()),
                         ". Wrap the site in a plate, or use .expand()/.to_event() so the distribution covers every "
                         "observed dim."));
}

void default_process(Message& msg) {
  if (msg.type == SiteType::sample) {
    // A value a handler has settled (done) is its business: an intervention may carry extra
    // batch dims, and counterfactual worlds add world dims.
    if (!msg.done && msg.is_observed && msg.value.defined()) check_observation_shape(msg);
    if (msg.done || msg.is_observed || msg.value.defined()) {
      msg.done = true;
      return;
    }
    msg.value = msg.fn->draw();
  } else {
    if (msg.done || msg.value.defined()) {
      msg.done = true;
      return;
    }
    auto& store = get_param_store();
    msg.value = msg.param_init_fn ? store.get_or_create(msg.name, msg.param_init_fn, msg.param_constraint)
                                  : store.get_or_create(msg.name, msg.param_init, msg.param_constraint,
                                                        msg.param_is_module);
  }
  msg.done = true;
}

}  // namespace

void apply_stack(Message& msg) {
  auto& stack = t_stack;
  size_t visited = 0;
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    ++visited;
    (*it)->process(msg);
    if (msg.stop) break;
  }
  default_process(msg);
  for (size_t i = stack.size() - visited; i < stack.size(); ++i) stack[i]->postprocess(msg);
}

// ---------------------------------------------------------------- primitives

namespace {

// Pyro 1.8's sample(..., obs_mask): the site splits into `<name>_observed` (the observation,
// masked by obs_mask) and the latent `<name>_unobserved` (masked by ~obs_mask), joined
// elementwise into the deterministic site `<name>`.
torch::Tensor masked_observe(const std::string& name, const dist::DistPtr& fn, const SampleOptions& options) {
  const torch::Tensor& obs_mask = options.obs_mask();
  if (obs_mask.scalar_type() != torch::kBool)
    throw ValueError(cat("sample site '", name, "': obs_mask must be a bool tensor, got ", obs_mask.dtype().name()));
  torch::Tensor observed, unobserved;
  {
    MaskMessenger observed_part(obs_mask);
    observed = sample(name + "_observed", fn, SampleOptions().obs(options.obs()).infer(options.infer()));
  }
  {
    MaskMessenger unobserved_part(obs_mask.logical_not());
    unobserved = sample(name + "_unobserved", fn, SampleOptions().infer(options.infer()));
  }
  // The mask covers batch dims only: the event dims of one element go together.
  Shape mask_shape = to_shape(obs_mask.sizes());
  mask_shape.resize(mask_shape.size() + static_cast<size_t>(fn->event_dim()), 1);
  const auto value_shape = broadcast_shapes(to_shape(observed.sizes()), to_shape(unobserved.sizes()), "obs_mask");
  const Shape batch_shape(value_shape.begin(), value_shape.end() - fn->event_dim());
  if (!shapes_broadcast(mask_shape, value_shape))
    throw ShapeError(cat("sample site '", name, "': obs_mask of shape ", shape_str(obs_mask.sizes()),
                         " does not broadcast with the batch shape ", shape_str(batch_shape)));
  const torch::Tensor value = torch::where(obs_mask.reshape(mask_shape), observed, unobserved);
  return deterministic(name, value);
}

}  // namespace

torch::Tensor sample(const std::string& name, const dist::DistPtr& fn, const SampleOptions& options) {
  if (!fn) throw ValueError(cat("sample site '", name, "': the distribution is null"));
  if (options.obs_mask().defined()) return masked_observe(name, fn, options);
  if (t_stack.empty()) return options.obs().defined() ? options.obs() : fn->draw();
  Message msg;
  msg.type = SiteType::sample;
  msg.name = name;
  msg.fn = fn;
  msg.value = options.obs();
  msg.is_observed = options.obs().defined();
  msg.infer = options.infer();
  apply_stack(msg);
  return msg.value;
}

torch::Tensor sample(const std::string& name, const dist::Distribution& fn, const SampleOptions& options) {
  if (t_stack.empty() && !options.obs_mask().defined()) return options.obs().defined() ? options.obs() : fn.draw();
  return sample(name, fn.clone(), options);
}

torch::Tensor sample(const std::string& name, const dist::DistPtr& fn, const torch::Tensor& obs) {
  return sample(name, fn, SampleOptions().obs(obs));
}

torch::Tensor sample(const std::string& name, const dist::Distribution& fn, const torch::Tensor& obs) {
  return sample(name, fn, SampleOptions().obs(obs));
}

namespace {
torch::Tensor param_message(Message& msg) {
  if (t_stack.empty()) {
    auto& store = get_param_store();
    return msg.param_init_fn ? store.get_or_create(msg.name, msg.param_init_fn, msg.param_constraint)
                             : store.get_or_create(msg.name, msg.param_init, msg.param_constraint, msg.param_is_module);
  }
  apply_stack(msg);
  return msg.value;
}
}  // namespace

torch::Tensor param(const std::string& name, const torch::Tensor& init, constraints::ConstraintPtr constraint) {
  Message msg;
  msg.type = SiteType::param;
  msg.name = name;
  msg.param_init = init;
  msg.param_constraint = std::move(constraint);
  return param_message(msg);
}

torch::Tensor param(const std::string& name, std::function<torch::Tensor()> init, constraints::ConstraintPtr constraint) {
  Message msg;
  msg.type = SiteType::param;
  msg.name = name;
  msg.param_init_fn = std::move(init);
  msg.param_constraint = std::move(constraint);
  return param_message(msg);
}

void module(const std::string& name, torch::nn::Module& m) {
  for (const auto& item : m.named_parameters(/*recurse=*/true)) {
    Message msg;
    msg.type = SiteType::param;
    msg.name = name + kModuleSeparator + item.key();
    msg.param_init = item.value();
    msg.param_constraint = constraints::real();
    msg.param_is_module = true;
    param_message(msg);
  }
}

void factor(const std::string& name, const torch::Tensor& log_weight) {
  auto unit = std::make_shared<dist::Unit>(log_weight);
  sample(name, unit, SampleOptions().obs(unit->rsample()));
}

torch::Tensor deterministic(const std::string& name, const torch::Tensor& value, int64_t event_dim) {
  if (event_dim < 0) {
    event_dim = value.dim();
    // Inside counterfactual worlds the value's world dims are batch dims, never event dims:
    // otherwise the site would carry no world frame and `gather` could not select a world.
    if (const auto* worlds = active_worlds())
      for (const auto& w : worlds->worlds())
        if (value.dim() >= -w.dim && value.size(w.dim) == w.size) event_dim = std::min(event_dim, -w.dim - 1);
  }
  InferConfig infer;
  infer.is_deterministic = true;
  // Masked out, as Pyro: a handler that supplies another value (condition, replay) does not
  // make the run impossible; the site only records the value.
  return sample(name, std::make_shared<dist::Delta>(value, event_dim)->mask(false), SampleOptions().obs(value).infer(infer));
}

}  // namespace ember
