#!/usr/bin/env python3
"""Summarises posteriordb reference posteriors into small fixtures (mean, sd, quantiles per
parameter) for tests/test_mcmc.cpp.

posteriordb (https://github.com/stan-dev/posteriordb) ships reference draws computed with
Stan (for eight schools non-centred: rstan 2.21.1, 10 chains x 10,000 iterations, 10,000
warmup, thinned by 10, adapt_delta 0.95, seed 4711: 10,000 draws, bulk ESS about 10,000 for
every parameter). The draws are zipped JSON; this script reads them from a checkout of the
repository and writes tests/fixtures/posteriordb/<posterior>.json with provenance.

    git clone https://github.com/stan-dev/posteriordb
    python3 scripts/gen_posteriordb_fixtures.py path/to/posteriordb [commit]
"""
import json
import math
import pathlib
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
POSTERIORS = ["eight_schools-eight_schools_noncentered"]


def quantile(sorted_values, q):
    """Linear interpolation between order statistics (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def summarise(repo, name, commit):
    base = repo / "posterior_database" / "reference_posteriors" / "draws"
    info = json.loads((base / "info" / f"{name}.info.json").read_text())
    draws_path = base / "draws" / f"{name}.json.zip"
    with zipfile.ZipFile(draws_path) as z:
        chains = json.loads(z.read(z.namelist()[0]))
    params = {}
    for key in chains[0]:
        values = [v for chain in chains for v in chain[key]]
        n = len(values)
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        s = sorted(values)
        params[key] = {"mean": mean, "sd": sd, "q5": quantile(s, 0.05), "median": quantile(s, 0.5),
                       "q95": quantile(s, 0.95), "num_draws": n}
    diag = info["diagnostics"]
    for key, bulk in zip(diag["diagnostic_information"]["names"], diag["effective_sample_size_bulk"]):
        params[key]["ess_bulk"] = bulk
    return {
        "posterior": name,
        "provenance": {
            "repository": "https://github.com/stan-dev/posteriordb",
            "commit": commit,
            "draws": str(draws_path.relative_to(repo)),
            "method": info["inference"],
            "stan": info["versions"]["rstan_version"],
            "summary": "mean, sd (n - 1), quantiles (linear interpolation) over all chains' draws; "
                       "ess_bulk from the reference's info file",
        },
        "parameters": params,
    }


def main(argv):
    repo = pathlib.Path(argv[1])
    commit = argv[2] if len(argv) > 2 else "unknown"
    out = ROOT / "tests" / "fixtures" / "posteriordb"
    out.mkdir(parents=True, exist_ok=True)
    for name in POSTERIORS:
        path = out / f"{name}.json"
        path.write_text(json.dumps(summarise(repo, name, commit), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv)
