// Counterfactual worlds: world dims, shared exogenous noise, factual conditioning.
#include "ppl/counterfactual.h"

#include <algorithm>

#include "distributions/distributions.h"
#include "core/error.h"
#include "ppl/plate.h"

namespace ember {

namespace {

// World dims in the coordinates of a value tensor (negative, counted from its right end).
std::vector<int64_t> value_dims(const std::vector<PlateFrame>& worlds, int64_t event_dim) {
  std::vector<int64_t> r;
  for (const auto& w : worlds) r.push_back(w.dim - event_dim);
  return r;
}

bool has_dim(const torch::Tensor& t, int64_t d) { return t.dim() >= -d; }

// Index 0 along each of `dims` (kept, size 1) where `t` varies.
torch::Tensor factual_slice(torch::Tensor t, const std::vector<int64_t>& dims) {
  for (int64_t d : dims)
    if (has_dim(t, d) && t.size(d) > 1) t = t.narrow(d, 0, 1);
  return t;
}

// True at index 0 of every world dim, false elsewhere; shaped to broadcast against values.
torch::Tensor factual_mask(const std::vector<PlateFrame>& worlds, int64_t event_dim, const torch::Device& device) {
  torch::Tensor mask = torch::ones({}, torch::TensorOptions().dtype(torch::kBool).device(device));
  for (const auto& w : worlds) {
    std::vector<int64_t> shape(static_cast<size_t>(-(w.dim - event_dim)), 1);
    shape[0] = w.size;
    mask = mask & (torch::arange(w.size, torch::TensorOptions().dtype(torch::kLong).device(device)) == 0).reshape(shape);
  }
  return mask;
}

// ------------------------------------------------------------------ exogenous noise
//
// A noise model writes a site's value as f_w(eps) with eps shared by every world w: `to_noise`
// recovers eps from the factual value, `from_noise` gives the value in every world.
struct NoiseModel {
  std::function<torch::Tensor(const torch::Tensor&)> to_noise;
  std::function<torch::Tensor(const torch::Tensor&)> from_noise;
};

template <class D>
const D* as(const dist::DistPtr& d) {
  return dynamic_cast<const D*>(d.get());
}

// Location-scale families: value = loc + scale * eps.
NoiseModel loc_scale(torch::Tensor loc, torch::Tensor scale, std::vector<int64_t> dims) {
  return {[=](const torch::Tensor& v) { return factual_slice((v - loc) / scale, dims); },
          [=](const torch::Tensor& e) { return loc + scale * e; }};
}

// Whether `d`'s parameters differ along any of `dims` (value coordinates).
bool varies(const dist::DistPtr& d, const std::vector<int64_t>& dims) {
  const Shape& batch = d->batch_shape();
  for (int64_t vd : dims) {
    const int64_t bd = vd + d->event_dim();
    if (bd < 0 && static_cast<int64_t>(batch.size()) >= -bd && batch[batch.size() + bd] > 1) return true;
  }
  return false;
}

// A value that is the same law in every world is its own noise.
NoiseModel identity_noise(std::vector<int64_t> dims) {
  return {[=](const torch::Tensor& v) { return factual_slice(v, dims); }, [](const torch::Tensor& e) { return e; }};
}

std::optional<NoiseModel> noise_model(const dist::DistPtr& d, const std::vector<int64_t>& dims) {
  using namespace dist;
  if (auto n = as<Normal>(d)) return loc_scale(n->loc, n->scale, dims);
  if (auto n = as<Laplace>(d)) return loc_scale(n->loc, n->scale, dims);
  if (auto n = as<Cauchy>(d)) return loc_scale(n->loc, n->scale, dims);
  if (auto n = as<Uniform>(d)) return loc_scale(n->low, n->high - n->low, dims);
  if (auto n = as<HalfNormal>(d)) return loc_scale(torch::zeros({}, n->scale.options()), n->scale, dims);
  if (auto n = as<Exponential>(d)) return loc_scale(torch::zeros({}, n->rate.options()), n->rate.reciprocal(), dims);
  if (auto n = as<LogNormal>(d)) {
    auto loc = n->loc, scale = n->scale;
    return NoiseModel{[=](const torch::Tensor& v) { return factual_slice((v.log() - loc) / scale, dims); },
                      [=](const torch::Tensor& e) { return (loc + scale * e).exp(); }};
  }
  if (auto n = as<MultivariateNormal>(d)) {
    auto loc = n->loc, L = n->scale_tril;
    return NoiseModel{[=](const torch::Tensor& v) {
                        auto diff = v - loc;
                        Shape batch = broadcast_shapes(Shape(diff.sizes().begin(), diff.sizes().end() - 1),
                                                       Shape(L.sizes().begin(), L.sizes().end() - 2), "MultivariateNormal");
                        Shape vshape = batch, mshape = batch;
                        vshape.push_back(L.size(-1));
                        mshape.push_back(L.size(-1));
                        mshape.push_back(L.size(-1));
                        auto eps = torch::linalg_solve_triangular(L.expand(mshape), diff.expand(vshape).unsqueeze(-1),
                                                                  /*upper=*/false)
                                       .squeeze(-1);
                        return factual_slice(eps, dims);
                      },
                      [=](const torch::Tensor& e) { return loc + L.matmul(e.unsqueeze(-1)).squeeze(-1); }};
  }
  if (auto n = as<Delta>(d)) {
    auto v0 = n->v;
    return NoiseModel{[=](const torch::Tensor& v) { return v; }, [=](const torch::Tensor&) { return v0; }};
  }
  if (auto n = as<Independent>(d)) return noise_model(n->base(), dims);
  if (auto n = as<MaskedDistribution>(d)) return noise_model(n->base(), dims);
  if (auto n = as<TransformedDistribution>(d)) {
    // A base that does not vary across worlds is its own noise.
    auto base = varies(n->base_dist(), dims) ? noise_model(n->base_dist(), dims) : identity_noise(dims);
    if (!base) return std::nullopt;
    auto ts = n->transforms();
    return NoiseModel{[=](const torch::Tensor& v) {
                        torch::Tensor u = v;
                        for (auto it = ts.rbegin(); it != ts.rend(); ++it) u = (*it)->inverse(u);
                        return base->to_noise(factual_slice(u, dims));
                      },
                      [=](const torch::Tensor& e) {
                        torch::Tensor u = base->from_noise(e);
                        for (const auto& t : ts) u = t->forward(u);
                        return u;
                      }};
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ the distribution of a site's worlds

// The law of a site's value in every world: its values are f_w(eps) for one shared noise, and
// its log-density is the factual world's (0 in every other world): only the factual world is
// evidence.
class WorldsDistribution : public dist::Distribution {
 public:
  WorldsDistribution(dist::DistPtr full, std::vector<PlateFrame> worlds, bool independent)
      : full_(std::move(full)), worlds_(std::move(worlds)), independent_(independent) {
    set_shapes(full_->batch_shape(), full_->event_shape());
  }
  std::string name() const override { return "Worlds"; }
  std::shared_ptr<dist::Distribution> clone() const override { return std::make_shared<WorldsDistribution>(*this); }
  const dist::DistPtr& base() const { return full_; }

  /// Every world's value given the factual one.
  torch::Tensor resolve(const torch::Tensor& factual, const std::string& site) const {
    const auto dims = value_dims(worlds_, event_dim());
    torch::Tensor others;
    if (independent_) {
      others = full_->sample();
    } else {
      auto model = noise_model(full_, dims);
      if (!model) throw NotImplementedError(cat("site '", site, "': no noise model for ", full_->name()));
      others = model->from_noise(model->to_noise(factual));
    }
    auto mask = factual_mask(worlds_, event_dim(), factual.device());
    return torch::where(mask, factual, others);
  }

  torch::Tensor sample(const Shape& sample_shape = {}) const override {
    if (!sample_shape.empty()) throw NotImplementedError("a counterfactual site's worlds cannot be drawn with a sample_shape");
    return resolve(factual_slice(full_->sample(), value_dims(worlds_, event_dim())), name());
  }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override {
    if (!sample_shape.empty()) throw NotImplementedError("a counterfactual site's worlds cannot be drawn with a sample_shape");
    return resolve(factual_slice(full_->rsample(), value_dims(worlds_, event_dim())), name());
  }
  bool has_rsample() const override { return full_->has_rsample(); }

  torch::Tensor log_prob(const torch::Tensor& value) const override {
    auto lp = full_->log_prob(value);
    auto mask = factual_mask(worlds_, 0, lp.device());
    return torch::where(mask, lp, torch::zeros({}, lp.options()));
  }
  torch::Tensor mean() const override { return full_->mean(); }
  torch::Tensor variance() const override { return full_->variance(); }
  dist::ConstraintPtr support() const override { return full_->support(); }
  dist::DistPtr expand(const Shape& batch_shape) const override {
    return std::make_shared<WorldsDistribution>(full_->expand(batch_shape), worlds_, independent_);
  }
  dist::DistPtr to(const torch::TensorOptions& options) const override {
    return std::make_shared<WorldsDistribution>(full_->to(options), worlds_, independent_);
  }
  torch::TensorOptions options() const override { return full_->options(); }
  std::string to_string() const override { return "Worlds(" + full_->to_string() + ")"; }

 private:
  dist::DistPtr full_;
  std::vector<PlateFrame> worlds_;
  bool independent_;
};

// The factual world's law of a site whose parameters vary across worlds: draws come from the
// factual world (size 1 along each world dim). Used only to ask the handlers further out for
// the factual value (an observation, a guide's replayed draw, or a fresh draw).
class FactualDistribution : public dist::Distribution {
 public:
  FactualDistribution(dist::DistPtr full, std::vector<PlateFrame> worlds)
      : full_(std::move(full)), worlds_(std::move(worlds)) {
    Shape batch = full_->batch_shape();
    for (const auto& w : worlds_) batch[batch.size() + w.dim] = 1;
    set_shapes(batch, full_->event_shape());
  }
  std::string name() const override { return full_->name(); }
  std::shared_ptr<dist::Distribution> clone() const override { return std::make_shared<FactualDistribution>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override {
    return factual_slice(full_->sample(sample_shape), value_dims(worlds_, event_dim()));
  }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override {
    return factual_slice(full_->rsample(sample_shape), value_dims(worlds_, event_dim()));
  }
  bool has_rsample() const override { return full_->has_rsample(); }
  torch::Tensor log_prob(const torch::Tensor& value) const override {
    return factual_slice(full_->log_prob(value), value_dims(worlds_, 0));
  }
  dist::ConstraintPtr support() const override { return full_->support(); }
  bool has_enumerate_support() const override { return false; }
  dist::DistPtr expand(const Shape& batch_shape) const override {
    Shape full = batch_shape;
    for (const auto& w : worlds_) {
      if (static_cast<int64_t>(full.size()) < -w.dim) full.insert(full.begin(), -w.dim - full.size(), 1);
      full[full.size() + w.dim] = w.size;
    }
    return std::make_shared<FactualDistribution>(full_->expand(full), worlds_);
  }
  dist::DistPtr to(const torch::TensorOptions& options) const override {
    return std::make_shared<FactualDistribution>(full_->to(options), worlds_);
  }
  torch::TensorOptions options() const override { return full_->options(); }

 private:
  dist::DistPtr full_;
  std::vector<PlateFrame> worlds_;
};

std::string world_names(const std::vector<PlateFrame>& worlds) {
  std::string s;
  for (const auto& w : worlds) s += cat(s.empty() ? "" : ", ", "'", w.name, "' (dim ", w.dim, ", size ", w.size, ")");
  return s.empty() ? "none" : s;
}

// `value` with world dim `d` (of `size`) in value coordinates: index 0 = `factual`, 1.. = `action`.
torch::Tensor stack_worlds(const std::string& site, const torch::Tensor& factual, const torch::Tensor& action, int64_t d,
                           int64_t size) {
  auto shape = broadcast_shapes(to_shape(factual.sizes()), to_shape(action.sizes()), "intervention");
  while (static_cast<int64_t>(shape.size()) < -d) shape.insert(shape.begin(), 1);
  const size_t pos = shape.size() + d;
  if (shape[pos] != 1)
    throw ShapeError(cat("do_ at site '", site, "': the factual value ", shape_str(factual.sizes()), " and intervention ",
                         shape_str(action.sizes()), " already use dim ", d,
                         ", the world dim; set CounterfactualOptions().first_available_dim further left"));
  shape[pos] = size;
  auto mask = torch::arange(size, torch::TensorOptions().dtype(torch::kLong).device(factual.device())) == 0;
  std::vector<int64_t> mshape(static_cast<size_t>(-d), 1);
  mshape[0] = size;
  return torch::where(mask.reshape(mshape), factual.expand(shape), action.to(factual.dtype()).expand(shape));
}

}  // namespace

// ------------------------------------------------------------------ the handler

CounterfactualMessenger::CounterfactualMessenger(CounterfactualOptions options) : options_(options) {
  if (options_.first_available_dim() && *options_.first_available_dim() >= 0)
    throw ValueError(cat("counterfactual worlds: first_available_dim must be negative, got ", *options_.first_available_dim()));
  enter();
}

CounterfactualMessenger::~CounterfactualMessenger() {
  if (active()) exit();
  for (const auto& w : worlds_) plate_dim_allocator().free("world:" + w.name, w.dim);
}

const PlateFrame& CounterfactualMessenger::allocate_world(const std::string& name, int64_t size) {
  auto& allocator = plate_dim_allocator();
  int64_t dim = -(allocator.depth() + 1);
  if (options_.first_available_dim()) dim = std::min(dim, *options_.first_available_dim());
  PlateFrame f;
  f.name = name;
  f.dim = allocator.allocate("world:" + name, dim);
  f.size = f.full_size = size;
  f.world = true;
  worlds_.push_back(f);
  std::sort(worlds_.begin(), worlds_.end(), [](const PlateFrame& a, const PlateFrame& b) { return a.dim < b.dim; });
  return *find_world(name);
}

const PlateFrame* CounterfactualMessenger::find_world(const std::string& name) const {
  for (const auto& w : worlds_)
    if (w.name == name) return &w;
  return nullptr;
}

void CounterfactualMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || !msg.fn || is_subsample_site(msg) || msg.world_resolver == this || worlds_.empty())
    return;
  int64_t plates = 0;
  for (const auto& f : msg.cond_indep_stack) plates += f.vectorized && !f.world;
  for (const auto& f : msg.cond_indep_stack) {
    if (!f.vectorized || f.world) continue;
    for (const auto& w : worlds_)
      if (f.dim <= w.dim)
        throw RuntimeError(cat("site '", msg.name, "': plate '", f.name, "' (dim ", f.dim, ") lies left of the counterfactual world '",
                               w.name, "' (dim ", w.dim, "); world dims must be left of every plate. Pass ",
                               "CounterfactualOptions().first_available_dim(", -plates - 1,
                               ") (one more than the program's plate nesting) to the world handler"));
  }
  const Shape& batch = msg.fn->batch_shape();
  std::vector<PlateFrame> depends;
  for (const auto& w : worlds_)
    if (static_cast<int64_t>(batch.size()) >= -w.dim && batch[batch.size() + w.dim] > 1) depends.push_back(w);
  if (!depends.empty()) resolve_worlds(msg, depends);
}

void CounterfactualMessenger::resolve_worlds(Message& msg, const std::vector<PlateFrame>& depends) {
  const int64_t ev = msg.fn->event_dim();
  const auto dims = value_dims(depends, ev);
  const std::string how = msg.infer.extra.is_object() ? msg.infer.extra.value("counterfactual", "") : "";
  if (!how.empty() && how != "independent")
    throw ValueError(cat("site '", msg.name, "': infer \"counterfactual\" must be \"independent\", got \"", how, "\""));
  const bool independent = how == "independent";
  if (!independent && !noise_model(msg.fn, dims))
    throw NotImplementedError(cat(
        "sample site '", msg.name, "' (", msg.plates_str(), ") depends on the counterfactual world(s) ", world_names(depends),
        ", but its distribution ", msg.fn->name(),
        " has no noise reparameterisation: its value in the other worlds is not determined by its factual value. Write its "
        "exogenous noise as a site of its own (e.g. u ~ Uniform(0, 1) and the site as Delta(u < p), or Gumbel-max for a "
        "categorical), or, if the site has no observed descendants, mark it with infer extra {\"counterfactual\": "
        "\"independent\"} to draw its worlds independently"));

  // Ask every handler (those further out included) for the factual value, without tracing it.
  Message sub = msg;
  sub.cond_indep_stack.clear();
  sub.scale = 1.0;
  sub.scale_tensor = torch::Tensor();
  sub.mask = torch::Tensor();
  sub.fn = std::make_shared<FactualDistribution>(msg.fn, depends);
  sub.world_resolver = this;
  sub.infer.do_not_trace = true;
  // An observation that already varies across the worlds (a `deterministic` site, or a
  // mechanism observed at its own value, downstream of an intervention) is shown to the
  // handlers as its factual slice, the shape of the factual law; unless one of them replaces
  // it (e.g. `condition` further out), the site keeps its observed value in every world.
  torch::Tensor observed_worlds, factual_observation;
  if (sub.is_observed && sub.value.defined()) {
    factual_observation = factual_slice(sub.value, dims);
    if (!factual_observation.is_same(sub.value)) {
      observed_worlds = sub.value;
      sub.value = factual_observation;
    }
  }
  apply_stack(sub);

  torch::Tensor value = sub.value;
  if (observed_worlds.defined() && value.is_same(factual_observation)) value = observed_worlds;
  bool joint = true;
  for (int64_t d : dims) joint = joint && has_dim(value, d) && value.size(d) > 1;
  if (!joint) {
    for (size_t i = 0; i < dims.size(); ++i)
      if (has_dim(value, dims[i]) && value.size(dims[i]) != 1)
        throw ShapeError(cat("site '", msg.name, "': its value of shape ", shape_str(value.sizes()), " has size ",
                             value.size(dims[i]), " at the world dim ", depends[i].dim, " of '", depends[i].name,
                             "' (size ", depends[i].size, ")"));
    WorldsDistribution worlds(msg.fn, depends, independent);
    value = worlds.resolve(value, msg.name);
  }
  msg.value = value;
  msg.is_observed = sub.is_observed;
  const bool keep_do_not_trace = msg.infer.do_not_trace;
  msg.infer = sub.infer;
  msg.infer.do_not_trace = keep_do_not_trace;
  msg.fn = std::make_shared<WorldsDistribution>(msg.fn, depends, independent);
  msg.done = true;
  msg.world_resolver = this;
  msg.world_settled = true;
  // World frames go first: they are the leftmost dims.
  msg.cond_indep_stack.insert(msg.cond_indep_stack.begin(), depends.begin(), depends.end());
}

torch::Tensor CounterfactualMessenger::gather(const torch::Tensor& value, const IndexSet& indices, int64_t event_dim) const {
  torch::Tensor r = value;
  for (const auto& [name, idx] : indices) {
    const PlateFrame* w = find_world(name);
    if (!w) throw ValueError(cat("gather: no counterfactual world named '", name, "'; the worlds are ", world_names(worlds_)));
    for (int64_t i : idx)
      if (i < 0 || i >= w->size)
        throw ValueError(cat("gather: index ", i, " of world '", name, "' is out of range [0, ", w->size, ")"));
    const int64_t d = w->dim - event_dim;
    if (!has_dim(r, d) || r.size(d) == 1) continue;  // the same in every world
    if (r.size(d) != w->size)
      throw ShapeError(cat("gather: value of shape ", shape_str(r.sizes()), " has size ", r.size(d), " at dim ", d, ", not the ",
                           w->size, " worlds of '", name, "'"));
    r = r.index_select(d, torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong).device(r.device())));
  }
  return r;
}

IndexSet CounterfactualMessenger::factual() const {
  IndexSet s;
  for (const auto& w : worlds_) s[w.name] = {0};
  return s;
}

IndexSet CounterfactualMessenger::counterfactual() const {
  IndexSet s;
  for (const auto& w : worlds_) s[w.name] = {1};
  return s;
}

// ------------------------------------------------------------------ the three handlers

SingleWorldCounterfactual::SingleWorldCounterfactual(CounterfactualOptions options) : CounterfactualMessenger(options) {}

torch::Tensor SingleWorldCounterfactual::intervene(const Message&, const torch::Tensor&, const torch::Tensor& action) {
  return action;
}

TwinWorldCounterfactual::TwinWorldCounterfactual(CounterfactualOptions options) : CounterfactualMessenger(options) {}

torch::Tensor TwinWorldCounterfactual::intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) {
  const PlateFrame* w = find_world(kTwinWorld);
  if (!w) w = &allocate_world(kTwinWorld, 2);
  const int64_t d = w->dim - msg.fn->event_dim();
  // A factual value that already varies across the twin worlds (the site is downstream of an
  // earlier intervention) keeps its factual world; the counterfactual world takes the action.
  return stack_worlds(msg.name, factual_slice(factual, {d}), action, d, 2);
}

MultiWorldCounterfactual::MultiWorldCounterfactual(CounterfactualOptions options) : CounterfactualMessenger(options) {}

torch::Tensor MultiWorldCounterfactual::intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) {
  if (find_world(msg.name))
    throw RuntimeError(cat("MultiWorldCounterfactual: site '", msg.name, "' is intervened on twice in one run"));
  const PlateFrame& w = allocate_world(msg.name, 2);
  return stack_worlds(msg.name, factual, action, w.dim - msg.fn->event_dim(), 2);
}

// ------------------------------------------------------------------ free functions

CounterfactualMessenger* active_worlds() {
  const auto& stack = handler_stack();
  for (auto it = stack.rbegin(); it != stack.rend(); ++it)
    if (auto* w = dynamic_cast<CounterfactualMessenger*>(*it)) return w;
  return nullptr;
}

torch::Tensor gather(const torch::Tensor& value, const IndexSet& indices, int64_t event_dim) {
  auto* w = active_worlds();
  if (!w)
    throw RuntimeError("gather: no counterfactual world handler is active; call the handler's own gather, or gather(site, ...) "
                       "on a recorded site");
  return w->gather(value, indices, event_dim);
}

std::vector<PlateFrame> world_frames(const Site& site) {
  std::vector<PlateFrame> r;
  for (const auto& f : site.cond_indep_stack)
    if (f.world) r.push_back(f);
  return r;
}

torch::Tensor gather(const Trace& trace, const std::string& site_name, const IndexSet& indices) {
  std::vector<PlateFrame> all;
  for (const auto& s : trace)
    for (const auto& f : world_frames(s))
      if (std::none_of(all.begin(), all.end(), [&](const PlateFrame& w) { return w.name == f.name; })) all.push_back(f);
  const Site& site = trace.at(site_name);
  const auto worlds = world_frames(site);
  const int64_t ev = site.fn ? site.fn->event_dim() : 0;
  torch::Tensor r = site.value;
  for (const auto& [name, idx] : indices) {
    auto known = std::find_if(all.begin(), all.end(), [&](const PlateFrame& w) { return w.name == name; });
    if (known == all.end())
      throw ValueError(cat("gather: no counterfactual world named '", name, "' in this trace; its worlds are ", world_names(all)));
    for (int64_t i : idx)
      if (i < 0 || i >= known->size)
        throw ValueError(cat("gather: index ", i, " of world '", name, "' is out of range [0, ", known->size, ")"));
    auto it = std::find_if(worlds.begin(), worlds.end(), [&](const PlateFrame& w) { return w.name == name; });
    if (it == worlds.end()) continue;  // the site is the same in every world of this dim
    r = r.index_select(it->dim - ev, torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong).device(r.device())));
  }
  return r;
}

}  // namespace ember
