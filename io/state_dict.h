#pragma once
/// \file Reading PyTorch state_dicts saved by Python's `torch.save(model.state_dict(), path)`.
///
/// The supported format is the one `torch.save` writes by default since PyTorch 1.6: a zip
/// archive holding `<prefix>/data.pkl` (a pickle, protocol 2, of an `OrderedDict` whose values
/// are rebuilt by `torch._utils._rebuild_tensor_v2`) and one raw little-endian blob per storage
/// in `<prefix>/data/<key>`. `<prefix>` is the file's stem when saved by name and `archive`
/// when saved to a buffer; the reader takes it from the first entry, as PyTorch does.
///
/// LibTorch's own `torch::pickle_load` cannot read these files: its unpickler turns every
/// `collections.OrderedDict` into `None` (it expects them only as backward-hook placeholders),
/// so a real state_dict fails with "Expected GenericDict but got None". Ember therefore unzips
/// the archive with libzip and runs a small pickle reader that accepts exactly the opcodes and
/// globals `torch.save` emits for a dict of tensors; anything else (a whole pickled
/// `nn.Module`, the legacy non-zip format, TorchScript archives) is rejected with an
/// ember::IOError naming the file and what was found.

#include <torch/types.h>

#include <torch/arg.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace ember::io {

/// Named tensors in the order they were saved.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Reads a state_dict written by `torch.save(model.state_dict(), path)` (zip format).
///
/// Returns the entries in saved order. Each tensor is on the CPU, contiguous, with the saved
/// dtype, and owns its memory (views that shared a storage in Python are copied apart).
/// Supported dtypes: float16/32/64, bfloat16, complex64/128, int8/16/32/64, uint8, bool.
/// Throws ember::IOError naming `path` when the file cannot be read, is not a zip archive, is
/// truncated or corrupt (CRC mismatch), or holds anything other than a dict of tensors.
NamedTensors load_torch_state_dict(const std::string& path);

/// `{file key -> module name}`.
using KeyMap = std::map<std::string, std::string>;

/// How load_state_dict_into() matches a file's keys to a module's tensors.
struct LoadStateDictOptions {
  /// Renames file keys before matching: `{file key -> module name}`. Keys not in the map
  /// keep their name. Applied after `prefix` is stripped.
  TORCH_ARG(KeyMap, key_map);
  /// Only file keys that start with `prefix` are used, with it removed (e.g. `"encoder."` to
  /// load the encoder out of a whole VAE's state_dict); other keys are ignored. Default: all.
  TORCH_ARG(std::string, prefix);
};

/// Copies the tensors of `tensors` (read from `source`, named in messages) into `module`'s
/// parameters and buffers, matched by their dotted names (`fc1.weight`).
///
/// Strict, like PyTorch's `load_state_dict(strict=True)`: every parameter and buffer of the
/// module must receive a tensor of exactly its shape, and every selected key must name one.
/// All checks run before anything is copied, so when one fails the module is left unchanged;
/// the ember::ValueError names `source` and lists every missing key, every unexpected key and
/// every shape mismatch (with both shapes) at once. Values are converted to each parameter's dtype and device (as `copy_` does),
/// without recording gradients.
void load_state_dict_into(torch::nn::Module& module, const NamedTensors& tensors, const std::string& source,
                          const LoadStateDictOptions& options = {});

/// Reads `path` with load_torch_state_dict() and copies it into `module` as above, file keys
/// renamed through `key_map` (`{file key -> module name}`).
void load_state_dict_into(torch::nn::Module& module, const std::string& path,
                          const std::map<std::string, std::string>& key_map = {});

/// Reads `path` with load_torch_state_dict() and copies it into `module` as above.
void load_state_dict_into(torch::nn::Module& module, const std::string& path, const LoadStateDictOptions& options);

}  // namespace ember::io
