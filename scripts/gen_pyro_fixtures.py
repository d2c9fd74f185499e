#!/usr/bin/env python3
"""Runs deterministic programs in Pyro 1.8.4 and writes what they compute as JSON fixtures.

Each module scripts/pyro_fixtures/<area>.py defines `generate() -> dict`; its result is
written to tests/fixtures/pyro/<area>.json. The C++ tests run the same programs in Ember and
compare (float64, 1e-6 unless a test says otherwise and why).

    bash scripts/setup_pyro_venv.sh
    build/venv-pyro/bin/python scripts/gen_pyro_fixtures.py [area ...]
"""
import importlib
import json
import os
import pathlib
import sys

import pyro
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "pyro"
sys.path.insert(0, str(ROOT / "scripts"))


def to_json(x):
    """Tensors become {"shape": [...], "values": [...]} (row-major, float64/int/bool)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.double()
        values = [v if not isinstance(v, float) or v == v and abs(v) != float("inf") else str(v)
                  for v in t.reshape(-1).tolist()]
        return {"shape": list(t.shape), "values": values}
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)
    return x


def main(areas):
    assert pyro.__version__ == "1.8.4", f"fixtures come from Pyro 1.8.4, this is {pyro.__version__}"
    torch.set_default_dtype(torch.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    if not areas:
        areas = sorted(p.stem for p in (ROOT / "scripts" / "pyro_fixtures").glob("*.py") if not p.stem.startswith("_"))
    for area in areas:
        module = importlib.import_module(f"pyro_fixtures.{area}")
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        data = {"pyro_version": pyro.__version__, "torch_version": torch.__version__, "cases": to_json(module.generate())}
        path = OUT / f"{area}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path.relative_to(ROOT)} ({len(data['cases'])} cases)")


if __name__ == "__main__":
    main(sys.argv[1:])
