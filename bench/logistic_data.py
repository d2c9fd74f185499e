"""The logistic-regression data of the NUTS benchmarks (bench_mcmc.cpp's `logistic`,
bench_mcmc_pyro.py, bench_mcmc_numpyro.py): 1,000 rows, 100 features, from a 32-bit linear
congruential generator (state 12345, a = 1664525, c = 1013904223, m = 2^32; u = (state + 0.5) / m)
so that C++ and Python make the same numbers bit for bit without sharing a random generator.

X[n, d] = sqrt(12) (u - 1/2) (unit variance), row-major; then for each row in turn
y_n = 1 if u < sigmoid(X_n beta) else 0, with beta_d = 0.25 (d mod 5 - 2). The same generator
as bench_mcmc.cpp and bench_mcmc_pyro.py.
"""
import math

ROWS, FEATURES = 1000, 100


def logistic_data(rows=ROWS, features=FEATURES):
    """(X as a list of rows, y as a list of 0.0/1.0)."""
    state = 12345

    def uniform():
        nonlocal state
        state = (1664525 * state + 1013904223) % 4294967296
        return (state + 0.5) / 4294967296.0

    flat = [(uniform() - 0.5) * math.sqrt(12.0) for _ in range(rows * features)]
    x = [flat[n * features:(n + 1) * features] for n in range(rows)]
    y = []
    for n in range(rows):
        logit = 0.0
        for d in range(features):
            logit += x[n][d] * 0.25 * (d % 5 - 2)
        y.append(1.0 if uniform() < 1.0 / (1.0 + math.exp(-logit)) else 0.0)
    return x, y
