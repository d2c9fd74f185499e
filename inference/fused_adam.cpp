// Adam's per-element update (see fused_adam.h); compiled with -fno-math-errno.
#include "inference/fused_adam.h"

#include <algorithm>
#include <cmath>

namespace ember::infer::kernels {

namespace {
// Op for op as Adam::update's tensor path: m = m*b1 + (1-b1)*g; v = v*b2 + ((1-b2)*g)*g;
// denom = sqrt(v or vmax)/sqrt(bc2) + eps; p = p + (-lr/bc1) * (m/denom).
template <class T, bool kDecay, bool kAmsgrad, bool kZeroGrad>
void update(T* __restrict p, T* __restrict g, T* __restrict m, T* __restrict v, T* __restrict vmax, int64_t n,
            const AdamStepScalars& s) {
  const T b1 = static_cast<T>(s.beta1), b2 = static_cast<T>(s.beta2), a1 = static_cast<T>(1 - s.beta1),
          a2 = static_cast<T>(1 - s.beta2), wd = static_cast<T>(s.weight_decay), eps = static_cast<T>(s.eps),
          sqrt_bc2 = static_cast<T>(std::sqrt(s.bias_correction2)), step = static_cast<T>(-s.lr / s.bias_correction1);
  for (int64_t i = 0; i < n; ++i) {
    const T grad = kDecay ? g[i] + wd * p[i] : g[i];
    if constexpr (kZeroGrad) g[i] = 0;
    const T mi = m[i] * b1 + a1 * grad;
    const T vi = v[i] * b2 + a2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if constexpr (kAmsgrad) {
      second = std::max(vmax[i], vi);
      vmax[i] = second;
    }
    const T denom = std::sqrt(second) / sqrt_bc2 + eps;
    p[i] = p[i] + step * (mi / denom);
  }
}

template <class T, bool kZeroGrad>
void dispatch(T* p, T* g, T* m, T* v, T* vmax, int64_t n, const AdamStepScalars& s) {
  const bool decay = s.weight_decay != 0;
  if (vmax) {
    if (decay) update<T, true, true, kZeroGrad>(p, g, m, v, vmax, n, s);
    else update<T, false, true, kZeroGrad>(p, g, m, v, vmax, n, s);
  } else {
    if (decay) update<T, true, false, kZeroGrad>(p, g, m, v, vmax, n, s);
    else update<T, false, false, kZeroGrad>(p, g, m, v, vmax, n, s);
  }
}
}  // namespace

void adam_update(float* p, float* g, float* m, float* v, float* vmax, int64_t n, const AdamStepScalars& s,
                 bool zero_gradient) {
  if (zero_gradient) dispatch<float, true>(p, g, m, v, vmax, n, s);
  else dispatch<float, false>(p, g, m, v, vmax, n, s);
}

void adam_update(double* p, double* g, double* m, double* v, double* vmax, int64_t n, const AdamStepScalars& s,
                 bool zero_gradient) {
  if (zero_gradient) dispatch<double, true>(p, g, m, v, vmax, n, s);
  else dispatch<double, false>(p, g, m, v, vmax, n, s);
}

}  // namespace ember::infer::kernels
