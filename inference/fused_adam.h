#pragma once
/// \file Adam's update as one pass over raw arrays (`Adam::update` on contiguous CPU params).
///
/// LibTorch's op-by-op update reads and writes each of the param, its gradient and the two
/// moment buffers about eight times per step (`mul_`, `add_`, `addcmul_`, `sqrt`, `div`,
/// `add_`, `addcdiv_`, plus a temporary per op); this loop touches each element once. It
/// follows the ops' formulas in the tensors' own dtype, so results agree with the op path to
/// float rounding (the ops may use fused multiply-adds where this loop does not).
/// Deliberately free of LibTorch headers: the file is compiled with `-fno-math-errno` so that
/// the compiler can vectorise `sqrt`.

#include <cstdint>

namespace ember::infer::kernels {

/// The scalars of one Adam step of one param (torch.optim.Adam's formulas).
struct AdamStepScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  /// 1 - beta1^t and 1 - beta2^t at this step t.
  double bias_correction1 = 1, bias_correction2 = 1;
  double lr = 1e-3;
};

/// Updates `n` elements in place: `p` (param), `m` (exp_avg), `v` (exp_avg_sq) and, when
/// `vmax` is not null, the AMSGrad running maximum of `v`; `g` is the gradient, set to zero
/// in the same pass when `zero_gradient` (the optimiser zeroes gradients after each step).
void adam_update(float* p, float* g, float* m, float* v, float* vmax, int64_t n, const AdamStepScalars& s,
                 bool zero_gradient);
/// The same in double.
void adam_update(double* p, double* g, double* m, double* v, double* vmax, int64_t n, const AdamStepScalars& s,
                 bool zero_gradient);

}  // namespace ember::infer::kernels
