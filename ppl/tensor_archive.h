#pragma once
/// \file A small, self-describing file of named tensors, written atomically.
///
/// Layout: the 8 bytes `EMBERTA1`, a little-endian uint64 header length, a JSON header
/// (`meta`, and per tensor: name, dtype, shape, offset, nbytes, crc32), then the raw
/// little-endian bytes of each tensor. Files are written to a temporary file in the same
/// directory, flushed and renamed over the target, so a crash never leaves a torn file and
/// never destroys the previous one. Reading checks sizes and CRCs and names the file and
/// the entry at fault.

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

namespace ember {

/// One named tensor with free-form metadata.
struct ArchiveEntry {
  std::string name;
  torch::Tensor tensor;
  nlohmann::json meta = nlohmann::json::object();
};

/// The contents of an archive.
struct TensorArchive {
  nlohmann::json meta = nlohmann::json::object();
  std::vector<ArchiveEntry> entries;
  /// The entry named `name`, or nullptr.
  const ArchiveEntry* find(const std::string& name) const;
};

/// Writes `archive` to `path` atomically (tensors are copied to CPU). Throws IOError naming `path`.
void write_tensor_archive(const std::string& path, const TensorArchive& archive);
/// Reads an archive (tensors on CPU). Throws IOError naming `path` and the corrupt part.
TensorArchive read_tensor_archive(const std::string& path);

/// Writes `contents` to `path` atomically (temporary file + fsync + rename).
void write_file_atomic(const std::string& path, const std::string& contents);

/// Test hook: called by `write_file_atomic` on this thread between writing the temporary
/// file and renaming it over the target (empty = none). An exception it throws aborts the
/// write as a failed rename would (the temporary file is removed, the target is untouched,
/// IOError names both), so tests can check that the previous file survives a failed write.
void set_atomic_write_hook(std::function<void(const std::string& temp_path)> hook);

}  // namespace ember
