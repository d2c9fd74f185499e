#!/usr/bin/python3
"""Writes the PyTorch state_dict fixtures that tests/test_io.cpp reads.

Run with Debian's interpreter, which has python3-torch:

    /usr/bin/python3 scripts/gen_state_dict_fixtures.py

Every file is written by `torch.save` with its defaults (zip serialization, pickle
protocol 2), exactly as a user of the book's Pyro code would save a model. Beside the
.pt files, `expected.json` records, per file, the keys in saved order with dtype, shape
and the values (flattened in row-major order of the logical tensor, so views and
non-contiguous tensors are checked through their strides). The output is deterministic
(fixed seed, fixed zip dates), so rerunning rewrites the same files, except legacy.pt, whose
old format records storage ids that change from run to run.
"""
import collections
import io
import json
import os
import zipfile

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")


class Encoder(nn.Module):
    """The book's VAE encoder layout (fc1, fc21, fc22), at a tiny size: 6 -> 5 -> 3."""

    def __init__(self, x_dim=6, hidden_dim=5, z_dim=3):
        super().__init__()
        self.fc1 = nn.Linear(x_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        h = self.softplus(self.fc1(x))
        return self.fc21(h), torch.exp(self.fc22(h))


def fixed_time(name):
    """A zip entry dated like torch.save's (1980-01-01), so reruns write identical files."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def describe(state):
    entries = []
    for key, t in state.items():
        entries.append({
            "key": key,
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "values": t.reshape(-1).tolist() if t.dtype != torch.bool
                      else [bool(v) for v in t.reshape(-1).tolist()],
        })
    return entries


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    # 1. The book's encoder, saved by file name (archive prefix "encoder/").
    enc = Encoder()
    sd = enc.state_dict()
    torch.save(sd, os.path.join(OUT, "encoder.pt"))
    expected["encoder.pt"] = describe(sd)

    # 2. The same state_dict saved through a buffer (archive prefix "archive/").
    buf = io.BytesIO()
    torch.save(sd, buf)
    with open(os.path.join(OUT, "encoder_buffer.pt"), "wb") as f:
        f.write(buf.getvalue())
    expected["encoder_buffer.pt"] = describe(sd)

    # 2b. The same tensors in a plain dict, which LibTorch's torch::pickle_load can read too:
    #     the tests cross-check Ember's reader against it.
    torch.save(dict(sd), os.path.join(OUT, "plain_dict.pt"))
    expected["plain_dict.pt"] = describe(sd)

    # 3. Views: several tensors sharing one storage, with offsets and non-unit strides.
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5) * 0.5 - 3.0
    views = collections.OrderedDict()
    views["base"] = base
    views["rows"] = base[1:3]          # storage offset 5
    views["t"] = base.t()              # strides (1, 5): non-contiguous
    views["col"] = base[:, 2]          # stride 5, offset 2
    views["scalar"] = base[3, 4]       # 0-dim view, offset 19
    torch.save(views, os.path.join(OUT, "views.pt"))
    expected["views.pt"] = describe(views)

    # 4. Other dtypes: float64, int64 (BatchNorm's num_batches_tracked), int32, bool, empty.
    mixed = collections.OrderedDict()
    mixed["w64"] = torch.randn(2, 3, dtype=torch.float64)
    mixed["num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    mixed["big_int"] = torch.tensor([-(2**40), 2**40 + 3, -1], dtype=torch.int64)
    mixed["i32"] = torch.tensor([[1, -2], [3, 4]], dtype=torch.int32)
    mixed["mask"] = torch.tensor([True, False, True])
    mixed["empty"] = torch.zeros(0, 3)
    torch.save(mixed, os.path.join(OUT, "mixed.pt"))
    expected["mixed.pt"] = describe(mixed)

    # 5. Many entries: the pickle memo passes 255 (LONG_BINPUT / LONG_BINGET).
    many = collections.OrderedDict()
    for i in range(120):
        many[f"layer{i}.weight"] = torch.full((2,), float(i)) + torch.tensor([0.25, -0.5])
    torch.save(many, os.path.join(OUT, "many.pt"))
    expected["many.pt"] = describe(many)

    # 6. Buffers beside parameters: BatchNorm's running statistics and its int64 counter,
    #    updated by two training-mode forward passes.
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 5)
            self.bn1 = nn.BatchNorm1d(5)

    net = WithNorm()
    for _ in range(2):
        net.bn1(net.fc1(torch.randn(8, 6)))
    torch.save(net.state_dict(), os.path.join(OUT, "batchnorm.pt"))
    expected["batchnorm.pt"] = describe(net.state_dict())

    # 7. Damaged archives with valid zip CRCs: a truncated data.pkl, a missing storage, and a
    #    storage shorter than the pickle says.
    with zipfile.ZipFile(os.path.join(OUT, "encoder.pt")) as src:
        entries = [(i.filename, src.read(i.filename)) for i in src.infolist()]
    with zipfile.ZipFile(os.path.join(OUT, "bad_pickle.pt"), "w", zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            dst.writestr(fixed_time(name.replace("encoder/", "bad_pickle/")),
                         data[:300] if name.endswith("data.pkl") else data)
    with zipfile.ZipFile(os.path.join(OUT, "missing_storage.pt"), "w", zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            if name != "encoder/data/3":
                dst.writestr(fixed_time(name.replace("encoder/", "missing_storage/")), data)

    with zipfile.ZipFile(os.path.join(OUT, "short_storage.pt"), "w", zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            dst.writestr(fixed_time(name.replace("encoder/", "short_storage/")),
                         data[:-4] if name == "encoder/data/0" else data)

    # 8. Not a state_dict: a whole pickled module, and a bare tensor (both must be rejected).
    torch.save(enc, os.path.join(OUT, "whole_module.pt"))
    torch.save(torch.ones(2, 2), os.path.join(OUT, "tensor.pt"))

    # 9. The legacy (pre-1.6, non-zip) format: the reader must reject it clearly.
    torch.save(sd, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)

    # The encoder's output for a fixed input, to check a C++ port end to end.
    x = torch.linspace(0.0, 1.0, 12).reshape(2, 6)
    with torch.no_grad():
        loc, scale = enc(x)
    forward = {"input": x.tolist(), "loc": loc.tolist(), "scale": scale.tolist()}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"torch_version": torch.__version__, "files": expected, "encoder_forward": forward}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
