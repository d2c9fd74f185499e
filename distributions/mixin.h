#pragma once
/// \file `DistributionMixin<Derived>`: the boilerplate of a distribution, written once.
///
/// A distribution declares its tensor parameters with `BOOST_HANA_DEFINE_STRUCT` and
/// derives from `DistributionMixin<Self>`. The mixin reflects those parameters to give
/// `clone`, `expand`, `to(device/dtype)`, `options`, printing, and validation of each
/// parameter against `Derived::arg_constraint(name)`.
///
///     class Normal : public DistributionMixin<Normal> {
///      public:
///       BOOST_HANA_DEFINE_STRUCT(Normal, (torch::Tensor, loc), (torch::Tensor, scale));
///       static ConstraintPtr arg_constraint(std::string_view p) { ... }
///       ...
///     };
///
/// Undefined tensors (e.g. `logits` when built from `probs`) are skipped. Parameters must
/// have shape `batch_shape + <parameter event shape>` once the constructor has run.

#include <boost/hana.hpp>

#include <string_view>
#include <type_traits>

#include "distributions/distribution.h"
#include "distributions/util.h"

namespace ember::dist {

/// Implements the reflective parts of `Distribution` for `Derived`.
template <class Derived>
class DistributionMixin : public Distribution {
 public:
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<Derived>(self()); }

  DistPtr expand(const Shape& batch_shape) const override {
    check_expandable(batch_shape);
    auto copy = std::make_shared<Derived>(self());
    const auto old_batch = static_cast<int64_t>(batch_shape_.size());
    for_each_tensor(*copy, [&](const char*, torch::Tensor& t) {
      Shape target = batch_shape;
      for (int64_t i = old_batch; i < t.dim(); ++i) target.push_back(t.size(i));
      t = t.expand(target);
    });
    copy->batch_shape_ = batch_shape;
    return copy;
  }

  DistPtr to(const torch::TensorOptions& options) const override {
    auto copy = std::make_shared<Derived>(self());
    for_each_tensor(*copy, [&](const char*, torch::Tensor& t) {
      if (t.is_floating_point()) t = t.to(options);
      else t = t.to(options.device());
    });
    return copy;
  }

  torch::TensorOptions options() const override {
    torch::TensorOptions result;
    bool found = false;
    for_each_tensor(const_cast<Derived&>(self()), [&](const char*, torch::Tensor& t) {
      if (!found && t.is_floating_point()) {
        result = t.options();
        found = true;
      }
    });
    return result;
  }

  std::string to_string() const override {
    std::string s = name() + "(";
    bool first = true;
    for_each_tensor(const_cast<Derived&>(self()), [&](const char* key, torch::Tensor& t) {
      s += cat(first ? "" : ", ", key, ": ");
      if (t.numel() == 1) s += cat(t.item<double>());
      else s += shape_str(t.sizes());
      first = false;
    });
    return s + ")";
  }

 protected:
  /// Records shapes, then checks every parameter against `Derived::arg_constraint` when
  /// validation is on, except the `derived` ones (as torch, which checks only the parameters
  /// it was given: probabilities computed from logits may leave the simplex by a rounding
  /// error). Call at the end of each constructor.
  void init(Shape batch, Shape event, std::optional<bool> validate, std::initializer_list<std::string_view> derived = {}) {
    validate_args_ = validate;
    set_shapes(std::move(batch), std::move(event));
    if (!validate_args()) return;
    for_each_tensor(const_cast<Derived&>(self()), [&](const char* key, torch::Tensor& t) {
      for (auto d : derived)
        if (d == key) return;
      auto c = Derived::arg_constraint(key);
      if (!c) return;
      if (constraints::all_satisfied(*c, t)) return;
      auto ok = c->check(t.detach());
      throw ValueError(cat(name(), ": parameter '", key, "' of shape ", shape_str(t.sizes()), " must satisfy ",
                             c->name(), first_false_index(ok, t),
                             ". Pass validate_args=false or call ember::dist::enable_validation(false) to skip this check."));
    });
  }

  /// Throws ValueError naming this distribution and parameter `key` when validation is on
  /// and `ok` (elementwise over `values`) is not all true; `requirement` says what must hold.
  void check_arg(const char* key, const torch::Tensor& ok, const torch::Tensor& values,
                 const std::string& requirement) const {
    if (!validate_args() || ok.all().template item<bool>()) return;
    throw ValueError(cat(name(), ": parameter '", key, "' of shape ", shape_str(values.sizes()), " must be ", requirement,
                         first_false_index(ok, values),
                         ". Pass validate_args=false or call ember::dist::enable_validation(false) to skip this check."));
  }

  /// Calls `f(name, tensor&)` for every defined tensor parameter of `d`.
  template <class F>
  static void for_each_tensor(Derived& d, F&& f) {
    boost::hana::for_each(boost::hana::accessors<Derived>(), [&](auto pair) {
      auto& member = boost::hana::second(pair)(d);
      if constexpr (std::is_same_v<std::decay_t<decltype(member)>, torch::Tensor>) {
        if (member.defined()) f(boost::hana::to<const char*>(boost::hana::first(pair)), member);
      }
    });
  }

  const Derived& self() const { return static_cast<const Derived&>(*this); }

 private:
  void check_expandable(const Shape& target) const {
    const auto& b = batch_shape_;
    bool ok = target.size() >= b.size();
    for (size_t i = 0; ok && i < b.size(); ++i) {
      auto have = b[b.size() - 1 - i], want = target[target.size() - 1 - i];
      ok = have == want || have == 1;
    }
    if (!ok)
      throw ShapeError(cat(name(), ".expand: batch shape ", shape_str(b), " cannot be expanded to ", shape_str(target)));
  }
};

}  // namespace ember::dist
