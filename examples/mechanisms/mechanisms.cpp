#include "examples/mechanisms/mechanisms.h"

#include <algorithm>
#include <cmath>

#include "distributions/categorical.h"
#include "inference/svi.h"

namespace ember::mechanisms {

std::string to_string(Factorisation f) { return f == Factorisation::causal ? "causal" : "anti-causal"; }
std::string to_string(Shift s) { return s == Shift::cause ? "intervention on A (the cause)" : "new P(B | A) (the control)"; }

namespace {

double uniform01(std::mt19937_64& rng) { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; }

// Names of the marginal and conditional params of a factorisation.
std::pair<std::string, std::string> param_names(Factorisation f) {
  return f == Factorisation::causal ? std::pair<std::string, std::string>{"A.logits", "B|A.logits"}
                                    : std::pair<std::string, std::string>{"B.logits", "A|B.logits"};
}

}  // namespace

torch::Tensor flat_dirichlet(int64_t n, std::mt19937_64& rng) {
  auto p = torch::empty({n}, torch::kDouble);
  for (int64_t i = 0; i < n; ++i) p[i] = -std::log(uniform01(rng));
  return p / p.sum();
}

CausalPair random_pair(int64_t n, std::mt19937_64& rng) {
  if (n < 2) throw ValueError(cat("a categorical pair needs at least 2 values, got ", n));
  CausalPair pair{flat_dirichlet(n, rng), torch::empty({n, n}, torch::kDouble)};
  for (int64_t a = 0; a < n; ++a) pair.p_b_given_a[a] = flat_dirichlet(n, rng);
  return pair;
}

std::pair<torch::Tensor, torch::Tensor> CausalPair::sample(int64_t n, std::mt19937_64& rng) const {
  // Inverse-CDF draws: portable (the same numbers on every platform).
  auto draw = [&rng](const double* p, int64_t k) {
    double u = uniform01(rng), c = 0;
    for (int64_t i = 0; i < k; ++i) {
      c += p[i];
      if (u < c) return i;
    }
    return k - 1;
  };
  const int64_t k = size();
  auto pa = p_a.contiguous(), pba = p_b_given_a.contiguous();
  auto a = torch::empty({n}, torch::kLong), b = torch::empty({n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ai = draw(pa.data_ptr<double>(), k);
    a[i] = ai;
    b[i] = draw(pba.data_ptr<double>() + ai * k, k);
  }
  return {a, b};
}

void pair_model(Factorisation f, int64_t n_values, const Observations& data) {
  if (!data.a.defined() || !data.b.defined() || data.a.dim() != 1 || data.a.sizes() != data.b.sizes())
    throw ShapeError(cat("pair model: observations a and b must be int64 [n] of the same length"));
  const auto [marginal_name, conditional_name] = param_names(f);
  auto options = torch::TensorOptions().dtype(torch::kDouble);
  auto marginal = param(marginal_name, [&] { return torch::zeros({n_values}, options); });
  auto conditional = param(conditional_name, [&] { return torch::zeros({n_values, n_values}, options); });
  const auto& first = f == Factorisation::causal ? data.a : data.b;
  const auto& second = f == Factorisation::causal ? data.b : data.a;
  const std::string first_site = f == Factorisation::causal ? "A" : "B", second_site = f == Factorisation::causal ? "B" : "A";
  auto units = plate("data", data.a.size(0));
  std::optional<ScaleMessenger> weight;
  if (data.weights.defined()) weight.emplace(data.weights);
  sample(first_site, dist::Categorical(dist::Logits{marginal}), first);
  sample(second_site, dist::Categorical(dist::Logits{conditional.index_select(0, first)}), second);
}

torch::Tensor model_log_joint(Factorisation f, int64_t n_values) {
  const auto [marginal_name, conditional_name] = param_names(f);
  auto& store = get_param_store();
  if (!store.contains(marginal_name) || !store.contains(conditional_name))
    throw ValueError(cat("the param store holds no ", to_string(f), " model ('", marginal_name, "', '", conditional_name, "')"));
  torch::NoGradGuard no_grad;
  auto log_marginal = torch::log_softmax(store.get(marginal_name), 0);
  auto log_conditional = torch::log_softmax(store.get(conditional_name), 1);
  auto log_joint = log_marginal.unsqueeze(1) + log_conditional;  // [first, second]
  return f == Factorisation::causal ? log_joint : log_joint.t().contiguous();
}

void set_from_joint(Factorisation f, const torch::Tensor& joint) {
  auto j = f == Factorisation::causal ? joint : joint.t();
  auto marginal = j.sum(1);
  auto conditional = j / marginal.unsqueeze(1).clamp_min(1e-300);
  auto safe_log = [](const torch::Tensor& p) { return torch::where(p > 0, p.log(), torch::full_like(p, -30.0)); };
  const auto [marginal_name, conditional_name] = param_names(f);
  get_param_store().set(marginal_name, safe_log(marginal));
  get_param_store().set(conditional_name, safe_log(conditional));
}

double expected_log_likelihood(Factorisation f, const CausalPair& truth) {
  auto joint = truth.joint();
  auto log_q = model_log_joint(f, truth.size());
  return torch::where(joint > 0, joint * log_q, torch::zeros_like(joint)).sum().item<double>();
}

double fit(Factorisation f, int64_t n_values, const Observations& data, const FitOptions& options) {
  if (options.steps() < 1 || !(options.lr() > 0))
    throw ValueError(cat("fit: steps and lr must be positive, got ", options.steps(), " and ", options.lr()));
  const double total = data.weights.defined() ? data.weights.sum().item<double>() : static_cast<double>(data.a.size(0));
  auto model = [f, n_values](const Observations& d) { pair_model(f, n_values, d); };
  auto guide = [](const Observations&) {};
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(options.lr())), infer::Trace_ELBO());
  double loss = 0;
  for (int64_t step = 0; step < options.steps(); ++step) loss = svi.step(data);
  return loss / total;
}

Observations count_cells(const torch::Tensor& a, const torch::Tensor& b, int64_t n_values) {
  auto counts = torch::bincount(a * n_values + b, {}, n_values * n_values);
  auto cells = counts.nonzero().squeeze(1);
  return {cells.div(n_values, "floor"), cells.remainder(n_values), counts.index_select(0, cells).to(torch::kDouble)};
}

std::vector<int64_t> checkpoints(int64_t max_samples) {
  std::vector<int64_t> n = {0};
  for (int64_t decade = 1; decade <= max_samples; decade *= 10)
    for (int64_t m : {1, 2, 3, 5, 7})
      if (m * decade <= max_samples) n.push_back(m * decade);
  if (n.back() != max_samples) n.push_back(max_samples);
  std::sort(n.begin(), n.end());
  n.erase(std::unique(n.begin(), n.end()), n.end());
  return n;
}

ShiftResult run_shift(Shift shift, const StudyOptions& o, uint64_t shift_seed) {
  std::mt19937_64 rng(shift_seed);
  const int64_t n = o.values();
  const CausalPair before = random_pair(n, rng);
  CausalPair after = before;
  if (shift == Shift::cause) {
    after.p_a = flat_dirichlet(n, rng);
  } else {
    after.p_b_given_a = random_pair(n, rng).p_b_given_a;
  }
  Observations pretrain_cells;
  if (o.pretrain_samples() > 0) {
    auto [pre_a, pre_b] = before.sample(o.pretrain_samples(), rng);
    pretrain_cells = count_cells(pre_a, pre_b, n);
  } else {
    // Infinite pre-shift data: every cell weighted by its probability.
    auto cells = torch::arange(n * n);
    pretrain_cells = {cells.div(n, "floor"), cells.remainder(n), before.joint().flatten()};
  }
  auto [new_a, new_b] = after.sample(o.max_samples(), rng);
  const auto marks = checkpoints(o.max_samples());

  ShiftResult result;
  result.optimum = torch::where(after.joint() > 0, after.joint() * after.joint().log(), torch::zeros({n, n}, torch::kDouble))
                       .sum()
                       .item<double>();
  for (Factorisation f : {Factorisation::causal, Factorisation::anti_causal}) {
    ParamStore store;
    ParamStoreScope scope(store);
    fit(f, n, pretrain_cells, FitOptions().steps(o.pretrain_steps()).lr(0.1));
    auto model = [f, n](const Observations& d) { pair_model(f, n, d); };
    auto guide = [](const Observations&) {};
    infer::SVI svi(model, guide, infer::SGD(infer::SGDOptions().lr(o.lr())), infer::Trace_ELBO());
    auto& curve = f == Factorisation::causal ? result.causal : result.anti_causal;
    size_t next_mark = 0;
    for (int64_t seen = 0;; ++seen) {
      if (next_mark < marks.size() && marks[next_mark] == seen) {
        curve.push_back(expected_log_likelihood(f, after));
        ++next_mark;
      }
      if (seen == o.max_samples()) break;
      Observations one{new_a.narrow(0, seen, 1), new_b.narrow(0, seen, 1), {}};
      svi.step(one);
    }
  }
  return result;
}

}  // namespace ember::mechanisms
