// Trace and the trace handler.
#include "ppl/trace.h"

#include <algorithm>

#include <iomanip>

#include "core/error.h"

namespace ember {

namespace detail {
void rethrow_with_shapes(const Trace& t) {
  const std::string shapes = t.size() ? "\n" + t.format_shapes() : "";
  try {
    throw;
  } catch (const ShapeError& e) {
    throw ShapeError(e.what() + shapes);
  } catch (const ValueError& e) {
    throw ValueError(e.what() + shapes);
  } catch (const NotImplementedError& e) {
    throw NotImplementedError(e.what() + shapes);
  } catch (const IOError& e) {
    throw IOError(e.what() + shapes);
  } catch (const RuntimeError& e) {
    throw RuntimeError(e.what() + shapes);
  } catch (const Error& e) {
    throw Error(e.what() + shapes);
  }
}
}  // namespace detail

void Trace::add(const Message& msg) {
  auto it = index_.find(msg.name);
  if (it != index_.end()) {
    const Site& old = sites_[it->second];
    if (old.type != msg.type)
      throw RuntimeError(cat("site '", msg.name, "' is already in the trace as a ", to_string(old.type),
                             " site; a ", to_string(msg.type), " site cannot reuse its name"));
    if (msg.type == SiteType::param) return;  // params may be read many times
    if (is_subsample_site(old) && is_subsample_site(msg)) {
      // The same plate entered again: fine if it is the same plate.
      if (old.fn->event_shape() != msg.fn->event_shape() || !old.value.equal(msg.value))
        throw RuntimeError(cat("plate '", msg.name, "' was entered twice in one trace with different subsamples (",
                               old.value.size(0), " and ", msg.value.size(0),
                               " indices); pass the same indices with PlateOptions().subsample(...)"));
      return;
    }
    throw RuntimeError(cat("Multiple ", to_string(msg.type), " sites named '", msg.name, "'"));
  }
  for (const auto& f : msg.cond_indep_stack) {
    auto [p, inserted] = plates_.emplace(f.name, f);
    if (!inserted && (p->second.full_size != f.full_size || p->second.size != f.size))
      throw RuntimeError(cat("plate '", f.name, "' is used with size ", f.full_size,
                             (f.size != f.full_size ? cat(" (subsample ", f.size, ")") : std::string()), " at site '", msg.name,
                             "', but it was first used with size ", p->second.full_size,
                             (p->second.size != p->second.full_size ? cat(" (subsample ", p->second.size, ")") : std::string())));
  }
  index_.emplace(msg.name, sites_.size());
  sites_.push_back(msg);
}

void Trace::remove(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  sites_.erase(sites_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < sites_.size(); ++i) index_.emplace(sites_[i].name, i);
}

const Site* Trace::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &sites_[it->second];
}

const Site& Trace::at(const std::string& name) const {
  if (auto* s = find(name)) return *s;
  std::string names;
  for (const auto& s : sites_) names += (names.empty() ? "" : ", ") + s.name;
  throw RuntimeError(cat("no site named '", name, "' in the trace (sites: ", names.empty() ? "none" : names, ")"));
}

Site& Trace::at(const std::string& name) { return const_cast<Site&>(static_cast<const Trace&>(*this).at(name)); }

void Trace::compute_log_prob(const SiteFilter& filter) {
  for (auto& site : sites_) {
    if (site.type != SiteType::sample || site.log_prob.defined()) continue;
    if (filter && !filter(site)) continue;
    torch::Tensor lp;
    try {
      lp = site.fn->log_prob(site.value);
    } catch (const Error& e) {
      throw ValueError(cat("Error while computing log_prob at site '", site.name, "' (", site.plates_str(), "):\n", e.what(),
                           "\n", format_shapes()));
    } catch (const c10::Error& e) {
      throw ValueError(cat("Error while computing log_prob at site '", site.name, "' (", site.plates_str(), "):\n",
                           e.what_without_backtrace(), "\n", format_shapes()));
    }
    site.unscaled_log_prob = lp;
    if (site.mask.defined()) lp = torch::where(site.mask, lp, torch::zeros({}, lp.options()));
    if (site.scale != 1.0) lp = lp * site.scale;
    if (site.scale_tensor.defined()) {
      if (broadcast_shapes(to_shape(lp.sizes()), to_shape(site.scale_tensor.sizes()), "scale") != to_shape(lp.sizes()))
        throw ShapeError(cat("site '", site.name, "' (", site.plates_str(), "): scale weights of shape ",
                             shape_str(site.scale_tensor.sizes()), " do not broadcast to its log_prob shape ",
                             shape_str(lp.sizes())));
      lp = lp * site.scale_tensor;
    }
    site.log_prob = lp;
    site.log_prob_sum = lp.dim() == 0 ? lp : lp.sum();
  }
}

torch::Tensor Trace::log_prob_sum(const SiteFilter& filter) {
  compute_log_prob(filter);
  torch::Tensor total;
  for (const auto& site : sites_) {
    if (site.type != SiteType::sample || !site.log_prob_sum.defined()) continue;
    if (filter && !filter(site)) continue;
    total = total.defined() ? total + site.log_prob_sum : site.log_prob_sum;
  }
  return total.defined() ? total : torch::zeros({});
}

std::vector<std::string> Trace::stochastic_nodes() const {
  std::vector<std::string> r;
  for (const auto& s : sites_)
    if (s.type == SiteType::sample && !s.is_observed && !is_subsample_site(s)) r.push_back(s.name);
  return r;
}

std::vector<std::string> Trace::observation_nodes() const {
  std::vector<std::string> r;
  for (const auto& s : sites_)
    if (s.type == SiteType::sample && s.is_observed) r.push_back(s.name);
  return r;
}

std::vector<std::string> Trace::param_nodes() const {
  std::vector<std::string> r;
  for (const auto& s : sites_)
    if (s.type == SiteType::param) r.push_back(s.name);
  return r;
}

std::vector<std::string> Trace::reparameterized_nodes() const {
  std::vector<std::string> r;
  for (const auto& n : stochastic_nodes())
    if (at(n).fn->has_rsample()) r.push_back(n);
  return r;
}

std::vector<std::string> Trace::nonreparam_stochastic_nodes() const {
  std::vector<std::string> r;
  for (const auto& n : stochastic_nodes())
    if (!at(n).fn->has_rsample()) r.push_back(n);
  return r;
}

void Trace::detach() {
  for (auto& s : sites_) {
    if (s.value.defined()) s.value = s.value.detach();
    if (s.log_prob.defined()) s.log_prob = s.log_prob.detach();
    if (s.unscaled_log_prob.defined()) s.unscaled_log_prob = s.unscaled_log_prob.detach();
    if (s.log_prob_sum.defined()) s.log_prob_sum = s.log_prob_sum.detach();
  }
}

std::string Trace::format_shapes(const std::string& title) const {
  // Rows: name, kind, batch dims | event dims (right-aligned on the bar).
  struct Row {
    std::string name, kind, batch, event;
  };
  std::vector<Row> rows;
  auto dims = [](c10::IntArrayRef s) {
    std::string r;
    for (size_t i = 0; i < s.size(); ++i) r += (i ? " " : "") + std::to_string(s[i]);
    return r;
  };
  // Counterfactual world dims first, by name (they are batch dims like plates').
  std::vector<std::string> worlds;
  for (const auto& s : sites_)
    for (const auto& f : s.cond_indep_stack)
      if (f.world && std::find(worlds.begin(), worlds.end(), f.name) == worlds.end()) {
        worlds.push_back(f.name);
        rows.push_back({f.name, "world", cat(f.size, " at dim ", f.dim), ""});
      }
  for (const auto& s : sites_) {
    if (s.type == SiteType::param) {
      rows.push_back({s.name, "", s.value.defined() ? dims(s.value.sizes()) : "?", ""});
      continue;
    }
    if (is_subsample_site(s)) continue;
    rows.push_back({s.name, "dist", dims(s.fn->batch_shape()), dims(s.fn->event_shape())});
    if (s.value.defined()) {
      auto v = s.value.sizes();
      const int64_t ev = std::min<int64_t>(s.fn->event_dim(), v.size());
      rows.push_back({"", "value", dims(v.slice(0, v.size() - ev)), dims(v.slice(v.size() - ev))});
    }
    if (s.log_prob.defined()) rows.push_back({"", "log_prob", dims(s.log_prob.sizes()), ""});
  }
  size_t w0 = 0, w1 = 0, w2 = 0;
  for (const auto& r : rows) {
    w0 = std::max(w0, r.name.size());
    w1 = std::max(w1, r.kind.size());
    w2 = std::max(w2, r.batch.size());
  }
  std::ostringstream os;
  os << title << "\n";
  for (const auto& r : rows) {
    os << std::setw(static_cast<int>(w0)) << r.name << " " << std::setw(static_cast<int>(w1)) << r.kind << " "
       << std::setw(static_cast<int>(w2)) << r.batch << " | " << r.event << "\n";
  }
  return os.str();
}

TraceMessenger::TraceMessenger(bool param_only) : param_only_(param_only) { enter(); }

void TraceMessenger::postprocess(Message& msg) {
  if (param_only_ && msg.type != SiteType::param) return;
  if (msg.infer.do_not_trace) return;
  trace_.add(msg);
}

}  // namespace ember
