#pragma once
/// \file The param store: every learnable parameter by name, kept unconstrained.
///
/// `param(name, init, constraint)` returns `transform_to(constraint)(u)` for the store's
/// unconstrained leaf tensor `u`; optimisers update `u`. Module parameters are stored as the
/// module's own tensors, so training through the store trains the module.

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "distributions/constraints.h"
#include "distributions/transforms.h"
#include "ppl/tensor_archive.h"

namespace ember {

/// A set of named, constrained, learnable tensors.
class ParamStore {
 public:
  ParamStore() = default;
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  /// The constrained value of `name`, creating it from `init` (constrained) if absent.
  /// `bind_module_tensor`: store `init` itself (a module parameter) rather than a copy; if a
  /// value was loaded for `name` before, it is copied into `init` first.
  torch::Tensor get_or_create(const std::string& name, const torch::Tensor& init,
                              const constraints::ConstraintPtr& constraint, bool bind_module_tensor = false);
  /// As above with a lazy initialiser.
  torch::Tensor get_or_create(const std::string& name, const std::function<torch::Tensor()>& init,
                              const constraints::ConstraintPtr& constraint);

  bool contains(const std::string& name) const;
  /// Constrained value; throws RuntimeError naming `name` if absent.
  torch::Tensor get(const std::string& name) const;
  /// The unconstrained leaf tensor that optimisers update.
  torch::Tensor unconstrained(const std::string& name) const;
  /// The param's constraint.
  constraints::ConstraintPtr constraint(const std::string& name) const;
  /// Sets (or creates) `name` to the constrained `value` (Pyro's `store[name] = value`).
  void set(const std::string& name, const torch::Tensor& value,
           const constraints::ConstraintPtr& constraint = constraints::real());
  /// Removes one param.
  void erase(const std::string& name);
  /// Removes every param.
  void clear();
  /// Names in creation order.
  std::vector<std::string> names() const;
  size_t size() const;

  /// Names, shapes, dtypes and constraints of every param, as JSON.
  nlohmann::json manifest() const;

  /// Saves every param (module params included) to `path`, atomically, with the manifest.
  void save(const std::string& path) const;
  /// Loads params saved by `save`. Every param already in the store must be in the file
  /// with the same shape, and is updated in place; params in the file not yet in the store
  /// are added (and bound to a module when it is registered). Nothing changes if any check
  /// fails; the error names the file and the mismatched parameter.
  void load(const std::string& path);

  /// The params as archive entries (for checkpoints that add optimiser state).
  std::vector<ArchiveEntry> to_archive_entries() const;
  /// Loads params from archive entries with the checks of `load`; `source` names them in errors.
  void load_archive_entries(const std::vector<ArchiveEntry>& entries, const std::string& source);

 private:
  struct Entry {
    torch::Tensor unconstrained;
    constraints::ConstraintPtr constraint;
    transforms::TransformPtr transform;
    bool is_module = false;
  };
  torch::Tensor constrained(const Entry& e) const;
  Entry& create(const std::string& name, const torch::Tensor& init, const constraints::ConstraintPtr& c, bool bind);

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> params_;
  std::vector<std::string> order_;
};

/// The current thread's param store: the global store unless a ParamStoreScope is active.
ParamStore& get_param_store();
/// Clears the current param store.
void clear_param_store();

/// Makes `store` the current param store of this thread for the scope's lifetime
/// (e.g. to train two models in two threads without sharing names).
class [[nodiscard]] ParamStoreScope {
 public:
  explicit ParamStoreScope(ParamStore& store);
  ~ParamStoreScope();
  ParamStoreScope(const ParamStoreScope&) = delete;
  ParamStoreScope& operator=(const ParamStoreScope&) = delete;

 private:
  ParamStore* previous_;
};

/// Constraint names the param store can serialise and restore (real, positive, ...);
/// returns nullptr for an unknown name.
constraints::ConstraintPtr constraint_from_name(const std::string& name);

}  // namespace ember
