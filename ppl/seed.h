#pragma once
/// \file `seed`: makes a run reproducible bit for bit.

#include <cstdint>

#include "ppl/messenger.h"

namespace ember {

/// Seeds LibTorch's generators (CPU, and CUDA where present) on entry and restores their
/// previous state on exit, so a seeded block neither depends on nor disturbs the rest.
class [[nodiscard]] SeedMessenger : public Messenger {
 public:
  explicit SeedMessenger(uint64_t seed);
  ~SeedMessenger() override;

 private:
  torch::Tensor cpu_state_;
  std::vector<torch::Tensor> cuda_states_;
};

inline SeedMessenger seed(uint64_t s) { return SeedMessenger(s); }
template <class Fn>
auto seed(Fn fn, uint64_t s) {
  return wrap_with<SeedMessenger>(std::move(fn), s);
}

}  // namespace ember
