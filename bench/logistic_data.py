"""The logistic-regression data of the NUTS benchmarks (bench_mcmc.cpp's `logistic`,
bench_mcmc_pyro.py, bench_mcmc_numpyro.py): 1,000 rows, 100 features, from SplitMix64 so that
C++ and Python make the same numbers bit for bit without sharing a random generator.

X[n, d] = sqrt(3) (2 u - 1) (unit variance), row-major from one SplitMix64 stream seeded
20261127; then the true coefficients beta_d = 0.6 (u - 1/2) (X beta has variance about 3); then
y_n = 1 if u < sigmoid(X_n beta) else 0; all from the same stream, in that order.
Check values: X[0, :3] = (-0.14882607, 1.54162344, -1.58150352), sum(y) = 524.
"""
import math

ROWS, FEATURES, SEED = 1000, 100, 20261127


def splitmix64_uniforms(n, state=SEED):
    """n uniforms in [0, 1): the top 53 bits of each SplitMix64 output (Steele, Lea and Flood
    2014) over 2^53; integer arithmetic only."""
    mask = (1 << 64) - 1
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append((z >> 11) * 2.0 ** -53)
    return out


def logistic_data(rows=ROWS, features=FEATURES):
    """(X as a list of rows, y as a list of 0.0/1.0)."""
    u = splitmix64_uniforms(rows * features + features + rows)
    x = [[math.sqrt(3.0) * (2.0 * u[n * features + d] - 1.0) for d in range(features)] for n in range(rows)]
    beta = [0.6 * (u[rows * features + d] - 0.5) for d in range(features)]
    y = []
    for n in range(rows):
        eta = sum(x[n][d] * beta[d] for d in range(features))
        y.append(1.0 if u[rows * features + features + n] < 1.0 / (1.0 + math.exp(-eta)) else 0.0)
    return x, y
