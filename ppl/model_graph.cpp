// The model's DAG: autograd provenance plus perturbation reruns (see model_graph.h).
#include "ppl/model_graph.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "distributions/delta.h"
#include "distributions/independent.h"
#include "distributions/masked.h"
#include "core/error.h"
#include "ppl/messenger.h"
#include "ppl/seed.h"

namespace ember {

// ---------------------------------------------------------------- the graph

std::vector<std::pair<std::string, std::string>> ModelGraph::edges() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& n : nodes)
    for (const auto& p : n.parents) out.emplace_back(p, n.name);
  return out;
}

namespace {

template <class Item>
const Item& find_named(const std::vector<Item>& items, const std::string& name, const char* what) {
  for (const auto& item : items)
    if (item.name == name) return item;
  std::string known;
  for (const auto& item : items) known += cat(known.empty() ? "" : ", ", item.name);
  throw ValueError(cat("model graph: no ", what, " named '", name, "'; the model has ",
                       known.empty() ? std::string("none") : known));
}

}  // namespace

const ModelGraphNode& ModelGraph::node(const std::string& name) const { return find_named(nodes, name, "sample site"); }
const ModelGraphPlate& ModelGraph::plate(const std::string& name) const { return find_named(plates, name, "plate"); }

// ---------------------------------------------------------------- tracing

namespace {

// The distribution under Independent / Masked wrappers (what Pyro's render names).
const dist::Distribution& unwrapped(const dist::Distribution& d) {
  if (auto* i = dynamic_cast<const dist::Independent*>(&d)) return unwrapped(*i->base());
  if (auto* m = dynamic_cast<const dist::MaskedDistribution*>(&d)) return unwrapped(*m->base());
  return d;
}

bool is_graph_site(const Message& msg) { return msg.type == SiteType::sample && !msg.infer.is_subsample; }

struct RecordedSite {
  std::string name;
  dist::DistPtr fn;
  torch::Tensor value;  // detached
  bool is_observed = false;
  bool is_deterministic = false;
  std::vector<PlateFrame> plates;
  std::set<size_t> parents;  // indices of earlier recorded sites
};

// Records every sample site and its autograd parents, and hands the program a fresh leaf in
// place of each floating-point value so later sites' provenance stops at this site.
class ProvenanceMessenger : public Messenger {
 public:
  ProvenanceMessenger() { enter(); }
  ~ProvenanceMessenger() override {
    if (active()) exit();
  }

  void postprocess(Message& msg) override {
    if (msg.type == SiteType::sample && msg.infer.is_subsample) subsamples_[msg.name] = msg.value;
    if (!is_graph_site(msg)) return;
    if (index_.count(msg.name))
      throw RuntimeError(cat("model graph: sample site '", msg.name, "' is reached twice in one run"));
    RecordedSite site;
    site.name = msg.name;
    site.fn = msg.fn;
    site.value = msg.value.detach();
    site.is_deterministic = msg.infer.is_deterministic;
    site.is_observed = msg.is_observed && !site.is_deterministic;
    site.plates = msg.cond_indep_stack;
    site.parents = autograd_parents(msg);
    index_.emplace(site.name, sites_.size());
    if (msg.value.is_floating_point() && msg.value.numel() > 0) {
      auto leaf = msg.value.detach().requires_grad_(true);
      leaves_.push_back(leaf);
      leaf_site_.push_back(sites_.size());
      msg.value = leaf;
    }
    sites_.push_back(std::move(site));
  }

  std::vector<RecordedSite> take_sites() { return std::move(sites_); }
  /// Each plate's subsample indices, so reruns see the same minibatch.
  std::unordered_map<std::string, torch::Tensor> take_subsamples() { return std::move(subsamples_); }

 private:
  std::set<size_t> autograd_parents(const Message& msg) const {
    std::set<size_t> parents;
    if (leaves_.empty()) return parents;
    // The log-density at the (detached) value depends on the distribution's parameters;
    // a Delta's comparison is not differentiable, so its point is followed directly.
    std::vector<torch::Tensor> roots{msg.fn->log_prob(msg.value.detach())};
    if (auto* delta = dynamic_cast<const dist::Delta*>(&unwrapped(*msg.fn))) roots.push_back(delta->v);
    torch::Tensor total;
    for (const auto& r : roots) {
      if (!r.requires_grad()) continue;
      auto s = r.sum();
      total = total.defined() ? total + s : s;
    }
    if (!total.defined()) return parents;
    auto grads = torch::autograd::grad({total}, leaves_, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i].defined()) parents.insert(leaf_site_[i]);
    return parents;
  }

  std::vector<RecordedSite> sites_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<torch::Tensor> leaves_;
  std::vector<size_t> leaf_site_;
  std::unordered_map<std::string, torch::Tensor> subsamples_;
};

// Holds every recorded site at its recorded value except `target`, which takes
// `alternative`, and records the distribution each site gets.
class HoldMessenger : public Messenger {
 public:
  HoldMessenger(const std::vector<RecordedSite>& sites, const std::unordered_map<std::string, size_t>& index,
                const std::unordered_map<std::string, torch::Tensor>& subsamples, size_t target,
                torch::Tensor alternative)
      : sites_(sites), index_(index), subsamples_(subsamples), target_(target), alternative_(std::move(alternative)) {
    enter();
  }
  ~HoldMessenger() override {
    if (active()) exit();
  }

  void process(Message& msg) override {
    if (msg.type != SiteType::sample) return;
    if (msg.infer.is_subsample) {
      auto sub = subsamples_.find(msg.name);
      if (sub != subsamples_.end()) {
        msg.value = sub->second;
        msg.done = true;
      }
      return;
    }
    auto it = index_.find(msg.name);
    if (it == index_.end()) return;
    const auto& recorded = sites_[it->second];
    // A site whose shape changed cannot take its recorded value; it runs as the program says
    // and the comparison reports the change.
    if (msg.fn && (msg.fn->batch_shape() != recorded.fn->batch_shape() ||
                   msg.fn->event_shape() != recorded.fn->event_shape()))
      return;
    msg.value = it->second == target_ ? alternative_ : recorded.value;
    msg.done = true;
  }

  void postprocess(Message& msg) override {
    if (is_graph_site(msg)) fns_[msg.name] = msg.fn;
  }

  const std::unordered_map<std::string, dist::DistPtr>& fns() const { return fns_; }

 private:
  const std::vector<RecordedSite>& sites_;
  const std::unordered_map<std::string, size_t>& index_;
  const std::unordered_map<std::string, torch::Tensor>& subsamples_;
  size_t target_;
  torch::Tensor alternative_;
  std::unordered_map<std::string, dist::DistPtr> fns_;
};

// Values tried in place of `site`'s value: the enumerable support, else fresh draws, else
// (a point mass) the value shifted.
std::vector<torch::Tensor> alternatives(const RecordedSite& site, const ModelGraphOptions& o) {
  std::vector<torch::Tensor> out;
  const auto& v = site.value;
  if (v.numel() == 0) return out;
  auto add = [&](torch::Tensor a) {
    a = a.to(v.dtype());
    if (a.sizes() != v.sizes()) a = a.expand(v.sizes());
    a = a.contiguous();
    if (!torch::equal(a, v)) out.push_back(a);
  };
  if (site.fn->has_enumerate_support()) {
    auto support = site.fn->enumerate_support(/*expand=*/false);
    for (int64_t k = 0; k < std::min(support.size(0), o.max_support()); ++k) add(support[k]);
  } else {
    for (int64_t i = 0; i < o.draws(); ++i) {
      auto seeded = seed(o.seed() + 1 + static_cast<uint64_t>(i));
      add(site.fn->sample());
    }
  }
  // The mirror image flips sign thresholds (`x > 0`) that draws may all miss.
  if (!site.fn->has_enumerate_support() && v.is_floating_point() && site.fn->support()->check(-v).all().item<bool>())
    add(-v);
  if (out.empty() && !site.fn->has_enumerate_support()) {
    if (v.scalar_type() == torch::kBool) out.push_back(v.logical_not());
    else out.push_back(v + 1);
  }
  return out;
}

// Equal up to float rounding (non-deterministic GPU reductions), infinities and NaNs included.
bool same_values(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  return torch::isclose(a, b, /*rtol=*/1e-5, /*atol=*/1e-8, /*equal_nan=*/true).all().item<bool>();
}

// Points at which a site's distribution is compared across runs, with their base log-densities.
struct Probe {
  torch::Tensor point, base_log_prob;
};

std::vector<Probe> probes(const dist::DistPtr& fn, const torch::Tensor& value, const ModelGraphOptions& o) {
  std::vector<torch::Tensor> points;
  points.push_back(value);
  if (value.numel() > 0) {
    auto seeded = seed(o.seed() + 7919);
    points.push_back(fn->sample());
  }
  if (fn->has_enumerate_support()) points.push_back(fn->enumerate_support(/*expand=*/false));
  std::vector<Probe> out;
  for (auto& p : points) out.push_back({p, fn->log_prob(p)});
  return out;
}

bool distribution_changed(const dist::DistPtr& reference, const std::vector<Probe>& site_probes,
                          const dist::DistPtr& now) {
  if (!now) return true;  // the program no longer reaches the site
  if (now->name() != reference->name() || now->batch_shape() != reference->batch_shape() ||
      now->event_shape() != reference->event_shape())
    return true;
  for (const auto& probe : site_probes) {
    torch::Tensor lp;
    try {
      lp = now->log_prob(probe.point);
    } catch (const ValueError&) {
      return true;  // the point left the new distribution's support: it changed
    }
    if (!same_values(lp, probe.base_log_prob)) return true;
  }
  return false;
}

}  // namespace

ModelGraph trace_model_graph(const std::function<void()>& program, const ModelGraphOptions& options) {
  std::vector<RecordedSite> sites;
  std::unordered_map<std::string, torch::Tensor> subsamples;
  {
    torch::AutoGradMode enable_grad(true);
    auto seeded = seed(options.seed());
    ProvenanceMessenger provenance;
    program();
    sites = provenance.take_sites();
    subsamples = provenance.take_subsamples();
  }
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < sites.size(); ++i) index.emplace(sites[i].name, i);

  if (options.perturb() && sites.size() > 1) {
    torch::NoGradGuard no_grad;
    // The reference is a run with every site held at its recorded value, so that it draws
    // exactly the random numbers a perturbed run draws (held sites draw nothing).
    auto held_run = [&](size_t target, const torch::Tensor& alternative) {
      auto seeded = seed(options.seed());
      HoldMessenger hold(sites, index, subsamples, target, alternative);
      if (target == sites.size()) {
        program();
      } else {
        try {
          program();
        } catch (const Error& e) {
          throw RuntimeError(cat("model graph: the program failed when sample site '", sites[target].name,
                                 "' was set to another value of its distribution (perturbation check): ", e.what(),
                                 " (ModelGraphOptions().perturb(false) keeps only the autograd pass)"));
        }
      }
      return hold.fns();
    };
    auto reference = held_run(sites.size(), torch::Tensor());
    std::vector<dist::DistPtr> reference_fns;
    std::vector<std::vector<Probe>> site_probes;
    for (const auto& s : sites) {
      auto it = reference.find(s.name);
      if (it == reference.end())
        throw RuntimeError(cat("model graph: sample site '", s.name, "' is not reached when the program reruns with ",
                               "every site at its recorded value: the program is not repeatable"));
      reference_fns.push_back(it->second);
      site_probes.push_back(probes(it->second, s.value, options));
    }
    for (size_t target = 0; target + 1 < sites.size(); ++target) {
      for (const auto& alternative : alternatives(sites[target], options)) {
        auto fns = held_run(target, alternative);
        for (size_t later = target + 1; later < sites.size(); ++later) {
          if (sites[later].parents.count(target)) continue;
          auto it = fns.find(sites[later].name);
          if (distribution_changed(reference_fns[later], site_probes[later], it == fns.end() ? nullptr : it->second))
            sites[later].parents.insert(target);
        }
      }
    }
  }

  ModelGraph graph;
  for (const auto& s : sites) {
    ModelGraphNode node;
    node.name = s.name;
    node.distribution = unwrapped(*s.fn).name();
    node.is_observed = s.is_observed;
    node.is_deterministic = s.is_deterministic;
    for (const auto& f : s.plates) {
      node.plates.push_back(f.name);
      bool known = std::any_of(graph.plates.begin(), graph.plates.end(), [&](const auto& p) { return p.name == f.name; });
      if (!known) graph.plates.push_back({f.name, f.full_size, f.vectorized});
    }
    for (size_t p : s.parents) node.parents.push_back(sites[p].name);
    graph.nodes.push_back(std::move(node));
  }
  return graph;
}

}  // namespace ember
