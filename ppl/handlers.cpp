// The effect handlers: condition, uncondition, do, replay, block, scale, mask, seed,
// substitute, infer_config.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#include <algorithm>
#include <exception>

#include "core/error.h"
#include "ppl/block.h"
#include "ppl/condition.h"
#include "ppl/counterfactual.h"
#include "ppl/do.h"
#include "ppl/infer_config.h"
#include "ppl/markov.h"
#include "ppl/lift.h"
#include "ppl/param_store.h"
#include "ppl/primitives.h"
#include "ppl/replay.h"
#include "ppl/scale.h"
#include "ppl/seed.h"
#include "ppl/substitute.h"

namespace ember {

// ---------------------------------------------------------------- site usage

bool SiteUsage::record(const std::string& site, const ValueMap& data) {
  ran_ = true;
  const bool named = data.count(site) > 0;
  if (used_.size() == data.size()) return named;  // every name found: nothing left to report
  if (named) used_.insert(site);
  if (seen_index_.insert(site).second) seen_.push_back(site);
  return named;
}

void SiteUsage::check(const char* handler, const char* consequence, const ValueMap& data) const {
  std::vector<std::string> missing;
  for (const auto& [name, value] : data)
    if (!used_.count(name)) missing.push_back(name);
  if (missing.empty()) return;
  std::sort(missing.begin(), missing.end());
  std::string names, sites;
  for (const auto& m : missing) names += cat(names.empty() ? "" : ", ", "'", m, "'");
  for (const auto& s : seen_) sites += cat(sites.empty() ? "" : ", ", "'", s, "'");
  throw ValueError(cat(handler, ": the program never samples ", names, ", so ", consequence, "; its sample sites are ",
                       sites.empty() ? std::string("none") : sites));
}

// ---------------------------------------------------------------- condition

ConditionMessenger::ConditionMessenger(ValueMap data, bool check_sites)
    : data_(std::move(data)), check_sites_(check_sites) {
  enter();
}

ConditionMessenger::~ConditionMessenger() noexcept(false) {
  if (active()) exit();
  // Observing a name the program never samples is a typo, not a no-op (Pyro ignores it); not
  // raised while another error unwinds the stack.
  if (check_sites_ && std::uncaught_exceptions() == 0 && usage_.ran()) check_all_used();
}

void ConditionMessenger::check_all_used() const {
  usage_.check("condition", "the observation would be ignored", data_);
}

ConditionMessenger::ConditionMessenger(const Trace& trace) {
  // Plates' subsample sites included, as in Pyro: the model then draws the trace's
  // subsample, so its latents stay paired with the data rows they were drawn for.
  for (const auto& s : trace)
    if (s.type == SiteType::sample) data_.emplace(s.name, s.value);
  enter();
}

void ConditionMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.world_settled) return;
  if (check_sites_) usage_.record(msg.name, data_);
  auto it = data_.find(msg.name);
  if (it == data_.end()) return;
  // An undefined value (Pyro's None) un-observes the site: it is sampled even if the
  // program observed it.
  msg.value = it->second;
  msg.is_observed = it->second.defined();
}

UnconditionMessenger::UnconditionMessenger() { enter(); }

void UnconditionMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || !msg.is_observed || msg.world_settled) return;
  msg.is_observed = false;
  msg.infer.was_observed = true;
  msg.infer.obs = msg.value;
  msg.value = torch::Tensor();
  msg.done = false;
}

// ---------------------------------------------------------------- do

DoMessenger::DoMessenger(ValueMap data) : data_(std::move(data)) { enter(); }

DoMessenger::~DoMessenger() noexcept(false) {
  if (active()) exit();
  // A scope whose program never sampled an intervened site is a typo, not a no-op (Pyro
  // silently ignores it); not raised while another error unwinds the stack.
  if (std::uncaught_exceptions() == 0 && usage_.ran()) check_all_used();
}

void DoMessenger::check_all_used() const {
  usage_.check("do_", "the intervention on it would do nothing", data_);
}

void DoMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.intervener == this || is_subsample_site(msg)) return;
  if (!usage_.record(msg.name, data_)) return;
  auto it = data_.find(msg.name);
  if (!it->second.defined()) return;  // an undefined value leaves the site alone
  if (msg.intervener != nullptr)
    throw RuntimeError(cat("sample site '", msg.name, "' is intervened on by two do_ handlers; this is almost certainly a mistake"));
  msg.intervener = this;
  // Split the node: the original site is still sampled (and traced) under its own name, as a
  // fresh message: the plates, scales and masks inside this handler apply to it once, not twice.
  Message original = msg;
  original.cond_indep_stack.clear();
  original.scale = 1.0;
  original.scale_tensor = torch::Tensor();
  original.mask = torch::Tensor();
  apply_stack(original);
  // ...while the program continues with the intervened value (beside the factual one inside a
  // counterfactual world handler), hidden from outer handlers. The value may carry extra batch
  // dims (several interventions at once) and is not checked against the site's shape.
  auto* worlds = active_worlds();
  msg.value = worlds ? worlds->intervene(msg, original.value, it->second) : it->second;
  msg.name += "__CF";
  msg.is_observed = true;
  msg.done = true;
  msg.stop = true;
}

// ---------------------------------------------------------------- replay

ReplayMessenger::ReplayMessenger(Trace trace, ValueMap params)
    : trace_(std::make_shared<Trace>(std::move(trace))), params_(std::move(params)) {
  enter();
}

ReplayMessenger::ReplayMessenger(std::shared_ptr<const Trace> trace, ValueMap params)
    : trace_(std::move(trace)), params_(std::move(params)) {
  if (!trace_) throw ValueError("replay: the trace is null");
  enter();
}

void ReplayMessenger::process(Message& msg) {
  if (msg.type == SiteType::param) {
    auto it = params_.find(msg.name);
    if (it != params_.end()) {
      msg.value = it->second;
      msg.done = true;
    }
    return;
  }
  const Site* guide = trace_->find(msg.name);
  if (!guide || msg.is_observed || msg.world_settled) return;
  if (guide->type != SiteType::sample || guide->is_observed)
    throw RuntimeError(cat("site '", msg.name, "' must be sampled in the replayed trace, but it is ",
                           guide->type == SiteType::param ? "a param" : "observed", " there"));
  msg.done = true;
  msg.value = guide->value;
  const bool do_not_trace = msg.infer.do_not_trace;  // a handler's private query stays private
  msg.infer = guide->infer;
  msg.infer.do_not_trace = msg.infer.do_not_trace || do_not_trace;
}

// ---------------------------------------------------------------- block

namespace {
bool contains(const std::optional<std::vector<std::string>>& v, const std::string& s) {
  return v && std::find(v->begin(), v->end(), s) != v->end();
}
}  // namespace

BlockMessenger::BlockMessenger(BlockOptions o) {
  if (o.hide_fn()) {
    hide_ = std::move(o.hide_fn());
  } else {
    if (o.hide_all() && o.expose_all()) throw ValueError("block: cannot both hide_all and expose_all");
    bool hide_all = o.hide_all() && !o.expose_all();
    if (o.hide()) hide_all = false;
    if (o.expose()) hide_all = true;
    if (o.hide_types()) hide_all = false;
    if (o.expose_types()) hide_all = true;
    for (const auto& h : o.hide().value_or(std::vector<std::string>{}))
      if (contains(o.expose(), h)) throw ValueError(cat("block: site '", h, "' is both hidden and exposed"));
    for (const auto& h : o.hide_types().value_or(std::vector<std::string>{}))
      if (contains(o.expose_types(), h)) throw ValueError(cat("block: site type '", h, "' is both hidden and exposed"));
    hide_ = [o = std::move(o), hide_all](const Message& msg) {
      const std::string type = msg.is_observed ? "observe" : to_string(msg.type);
      const bool not_exposed = !contains(o.expose(), msg.name) && !contains(o.expose_types(), type);
      return contains(o.hide(), msg.name) || contains(o.hide_types(), type) || (not_exposed && hide_all);
    };
  }
  enter();
}

void BlockMessenger::process(Message& msg) { msg.stop = hide_(msg); }

// ---------------------------------------------------------------- scale, mask

ScaleMessenger::ScaleMessenger(double factor) : factor_(factor) {
  if (!(factor > 0)) throw ValueError(cat("scale: expected a factor > 0, got ", factor));
  enter();
}

ScaleMessenger::ScaleMessenger(torch::Tensor factor) : tensor_(std::move(factor)) {
  if (!tensor_.defined() || !tensor_.is_floating_point())
    throw ValueError("scale: expected a floating-point tensor of weights");
  if (!(tensor_ > 0).all().item<bool>())
    throw ValueError(cat("scale: every weight must be > 0; the tensor of shape ", shape_str(tensor_.sizes()),
                         " has a weight <= 0 (use mask to drop entries)"));
  enter();
}

void ScaleMessenger::process(Message& msg) {
  if (!tensor_.defined()) {
    msg.scale *= factor_;
  } else if (!is_subsample_site(msg)) {  // a plate's index draw has no batch shape to weight
    msg.scale_tensor = msg.scale_tensor.defined() ? msg.scale_tensor * tensor_ : tensor_;
  }
}

MaskMessenger::MaskMessenger(torch::Tensor m) : mask_(std::move(m)) {
  if (!mask_.defined() || mask_.scalar_type() != torch::kBool)
    throw ValueError(cat("mask: expected a bool tensor, got ", mask_.defined() ? mask_.dtype().name() : "an undefined tensor"));
  enter();
}

MaskMessenger::MaskMessenger(bool m) : MaskMessenger(torch::scalar_tensor(m, torch::kBool)) {}

void MaskMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample) return;
  msg.mask = msg.mask.defined() ? (msg.mask & mask_) : mask_;
}

// ---------------------------------------------------------------- seed

SeedMessenger::SeedMessenger(uint64_t s) {
  cpu_state_ = at::detail::getDefaultCPUGenerator().get_state();
  if (torch::cuda::is_available()) {
    for (int64_t d = 0; d < static_cast<int64_t>(torch::cuda::device_count()); ++d)
      cuda_states_.push_back(at::globalContext().defaultGenerator(at::Device(at::kCUDA, d)).get_state());
  }
  torch::manual_seed(s);
  enter();
}

SeedMessenger::~SeedMessenger() {
  if (active()) exit();
  // Generators are shared handles: a copy sets the state of the default generator itself.
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  cpu.set_state(cpu_state_);
  for (size_t d = 0; d < cuda_states_.size(); ++d) {
    at::Generator g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<int64_t>(d)));
    g.set_state(cuda_states_[d]);
  }
}

// ---------------------------------------------------------------- substitute

SubstituteMessenger::SubstituteMessenger(ValueMap data) : data_(std::move(data)) { enter(); }

void SubstituteMessenger::process(Message& msg) {
  if (msg.type != SiteType::param) return;
  auto it = data_.find(msg.name);
  if (it == data_.end()) return;
  msg.value = it->second;
  msg.done = true;
}

// ---------------------------------------------------------------- lift

LiftMessenger::LiftMessenger(PriorMap priors) : priors_(std::move(priors)) {
  for (const auto& [name, prior] : priors_)
    if (!prior) throw ValueError(cat("lift: the prior of param '", name, "' is null"));
  enter();
}

LiftMessenger::LiftMessenger(dist::DistPtr prior) : all_(std::move(prior)) {
  if (!all_) throw ValueError("lift: the prior is null");
  enter();
}

LiftMessenger::~LiftMessenger() {
  if (active()) exit();
  // Module parameters hold this scope's draws; give the modules their own values back.
  torch::NoGradGuard no_grad;
  for (auto& [tensor, original] : module_originals_) tensor.copy_(original);
}

dist::DistPtr LiftMessenger::prior_of(const std::string& name) const {
  if (all_) return all_;
  auto it = priors_.find(name);
  if (it != priors_.end()) return it->second;
  // As Pyro, a module parameter `net$$$fc.weight` also matches the prior named `fc.weight`.
  const auto sep = name.find(kModuleSeparator);
  if (sep == std::string::npos) return nullptr;
  it = priors_.find(name.substr(sep + std::char_traits<char>::length(kModuleSeparator)));
  return it == priors_.end() ? nullptr : it->second;
}

void LiftMessenger::process(Message& msg) {
  if (msg.type != SiteType::param) return;
  dist::DistPtr prior = prior_of(msg.name);
  if (!prior) return;
  if (msg.param_is_module) module_params_[msg.name] = msg.param_init;  // the module's own tensor
  // The prior is used as given (as Pyro): its shape is the draw's shape.
  msg.type = SiteType::sample;
  msg.fn = prior;
  msg.param_init = torch::Tensor();
  msg.param_init_fn = nullptr;
  msg.param_is_module = false;
  auto cached = draws_.find(msg.name);
  if (cached != draws_.end()) {
    // One draw per param per run: a second read returns the first draw, hidden from outer
    // handlers (a trace records the site once).
    msg.value = cached->second;
    msg.is_observed = true;
    msg.done = true;
    msg.stop = true;
    return;
  }
  msg.value = torch::Tensor();
  msg.is_observed = false;
  msg.done = false;
  lifting_.insert(msg.name);
}

void LiftMessenger::postprocess(Message& msg) {
  if (msg.type != SiteType::sample || !lifting_.count(msg.name)) return;
  lifting_.erase(msg.name);
  draws_[msg.name] = msg.value;
  auto module_param = module_params_.find(msg.name);
  if (module_param == module_params_.end()) return;
  // Pyro's random_module: the module computes with the draw for the rest of this scope.
  torch::Tensor& tensor = module_param->second;
  if (msg.value.sizes() != tensor.sizes())
    throw ShapeError(cat("lift: module parameter '", msg.name, "' has shape ", shape_str(tensor.sizes()),
                         " but its prior ", msg.fn->to_string(), " drew a value of shape ", shape_str(msg.value.sizes()),
                         "; give it a prior of the parameter's shape, e.g. .expand(", shape_str(tensor.sizes()),
                         ").to_event()"));
  if (msg.value.requires_grad())
    throw NotImplementedError(cat("lift: module parameter '", msg.name,
                                  "' received a value that carries gradients (e.g. replayed from a guide); LibTorch "
                                  "modules compute with their own leaf parameters, so those gradients cannot flow "
                                  "through the module. Lift params declared with `param`, or write the network "
                                  "functionally over sampled weights"));
  torch::NoGradGuard no_grad;
  module_originals_.emplace_back(tensor, tensor.detach().clone());
  tensor.copy_(msg.value);
}

// ---------------------------------------------------------------- infer_config

InferConfigMessenger::InferConfigMessenger(ConfigFn f) : config_fn_(std::move(f)) { enter(); }

void InferConfigMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample) return;
  config_fn_(msg, msg.infer);
}

InferConfigMessenger::ConfigFn enumerate_config(EnumerateOptions o) {
  if (o.strategy() != "parallel" && o.strategy() != "sequential")
    throw ValueError(cat("config_enumerate: strategy must be \"parallel\" or \"sequential\", got \"", o.strategy(), "\""));
  return [o](const Message& msg, InferConfig& infer) {
    if (msg.is_observed || is_subsample_site(msg)) return;
    if (o.num_samples() == 0 && !msg.fn->has_enumerate_support()) return;
    if (infer.enumerate.empty()) infer.enumerate = o.strategy();
    infer.expand = o.expand();
    if (o.num_samples() > 0) infer.num_samples = o.num_samples();
  };
}

}  // namespace ember

// ---------------------------------------------------------------- markov

namespace ember {

MarkovMessenger::MarkovMessenger(MarkovOptions options) : o_(options) {
  if (o_.history() < 0) throw ValueError(cat("markov: history must be >= 0, got ", o_.history()));
}

MarkovMessenger::~MarkovMessenger() {
  if (active()) exit();
}

void MarkovMessenger::enter_level() {
  ++pos_;
  if (static_cast<int64_t>(levels_.size()) <= pos_) levels_.emplace_back();
  if (entered_++ == 0) enter();
}

void MarkovMessenger::exit_level() {
  if (entered_ == 0) throw RuntimeError("markov: exit_level without a matching enter_level");
  if (!o_.keep()) levels_.pop_back();
  --pos_;
  if (--entered_ == 0) exit();
}

void MarkovMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.done || msg.infer.is_subsample) return;
  // Sites of this level and of the `history` levels before it are visible; counted per
  // enclosing markov messenger, so enumeration can tell sites hidden by an inner one.
  for (int64_t p = std::max<int64_t>(0, pos_ - o_.history()); p <= pos_; ++p)
    for (const auto& name : levels_[static_cast<size_t>(p)]) ++msg.infer.markov_scope[name];
  ++msg.infer.markov_depth;
  levels_[static_cast<size_t>(pos_)].insert(msg.name);
}

Markov::Markov(MarkovOptions options) : messenger_(std::make_shared<MarkovMessenger>(options)) {
  messenger_->enter_level();
}

Markov::Markov(std::shared_ptr<MarkovMessenger> messenger) : messenger_(std::move(messenger)) {
  if (!messenger_) throw ValueError("markov: the messenger is null");
  messenger_->enter_level();
}

Markov::~Markov() noexcept(false) { messenger_->exit_level(); }

MarkovRange::MarkovRange(int64_t size, MarkovOptions options) : size_(size), messenger_(options) {
  if (size < 0) throw ValueError(cat("markov_range: size must be >= 0, got ", size));
}

MarkovRange::~MarkovRange() noexcept(false) {
  while (levels_entered_ > 0) {
    --levels_entered_;
    messenger_.exit_level();
  }
}

int64_t MarkovRange::iterator::operator*() {
  range_->messenger_.enter_level();
  ++range_->levels_entered_;
  return position_;
}

}  // namespace ember
