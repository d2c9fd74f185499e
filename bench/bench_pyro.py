"""The workloads of bench/bench_causal_vae.cpp and bench/bench_inference.cpp in Pyro 1.8.4,
so that docs/benchmarks.md's Pyro column is measured on the same machine (run through
scripts/bench_pyro.sh; not part of CI).

    python bench/bench_pyro.py vae [--threads N] [--epochs 6] [--data DIR] [--out FILE.json]
    python bench/bench_pyro.py svi-step [--out FILE.json]

vae: the book's causal VAE (chapter 5 of Ness, *Causal AI*; listings 5.4-5.9: decoder with
a Sigmoid, Bernoulli(probs) image likelihood with validation off), trained with SVI,
Trace_ELBO and Adam(lr 1e-3) on the bundled data: one epoch = the same number of images
as Ember's balanced epoch, batches of 256. Reports the median epoch time over epochs after
the first, and the time of one step at batch size 1.

svi-step: k = 1, 10, 100 scalar latents z_i ~ N(0, 1), x ~ N(z_{k-1}, 1) observed, guide
N(loc_i, softplus(s_i)), Trace_ELBO + Adam(lr 0.01), one thread; microseconds per step and
the least-squares slope per site (process CPU time, fastest of the trials).
"""
import argparse
import gzip
import json
import os
import pathlib
import statistics
import struct
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

ROOT = pathlib.Path(__file__).resolve().parent.parent


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_bundled(folder):
    folder = pathlib.Path(folder)
    hw_im = read_idx(folder / "handwritten-images-idx3-ubyte.gz").reshape(-1, 784)
    hw_lb = read_idx(folder / "handwritten-labels-idx1-ubyte.gz")
    ty_im = read_idx(folder / "typed-images-idx3-ubyte.gz").reshape(-1, 784)
    ty_lb = read_idx(folder / "typed-labels-idx1-ubyte.gz")
    images = np.concatenate([hw_im, ty_im])
    labels = np.concatenate([hw_lb, ty_lb]).astype(np.int64)
    handwritten = np.concatenate([np.ones(len(hw_lb)), np.zeros(len(ty_lb))]).astype(np.float32)
    return images, labels, handwritten


# ----------------------------------------------------------------- the book's causal VAE


class Decoder(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400):
        super().__init__()
        self.fc1 = nn.Linear(z_dim + 10 + 1, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 784)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z, digit, is_handwritten):
        hidden = self.softplus(self.fc1(torch.cat([z, digit, is_handwritten], 1)))
        return self.sigmoid(self.fc2(hidden))


class Encoder(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400):
        super().__init__()
        self.fc1 = nn.Linear(784 + 10 + 1, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, img, digit, is_handwritten):
        hidden = self.softplus(self.fc1(torch.cat([img, digit, is_handwritten], 1)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class VAE(nn.Module):
    def __init__(self, z_dim=50):
        super().__init__()
        self.encoder, self.decoder, self.z_dim = Encoder(z_dim), Decoder(z_dim), z_dim

    def model(self, data_size=1):
        pyro.module("decoder", self.decoder)
        options = dict(dtype=torch.float32)
        z = pyro.sample("Z", dist.Normal(torch.zeros(data_size, self.z_dim), torch.ones(data_size, self.z_dim)).to_event(1))
        digit = pyro.sample("digit", dist.OneHotCategorical(torch.ones(data_size, 10, **options) / 10.0))
        is_handwritten = pyro.sample("is_handwritten", dist.Bernoulli(torch.ones(data_size, 1, **options) / 2.0).to_event(1))
        img_param = self.decoder(z, digit, is_handwritten)
        img = pyro.sample("img", dist.Bernoulli(img_param, validate_args=False).to_event(1))
        return img, digit, is_handwritten

    def training_model(self, img, digit, is_handwritten, batch_size):
        conditioned = pyro.condition(self.model, data={"digit": digit, "is_handwritten": is_handwritten, "img": img})
        with pyro.plate("data", batch_size):
            return conditioned(batch_size)

    def training_guide(self, img, digit, is_handwritten, batch_size):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", batch_size):
            z_loc, z_scale = self.encoder(img, digit, is_handwritten)
            pyro.sample("Z", dist.Normal(z_loc, z_scale).to_event(1))


def bench_vae(args):
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    images, labels, handwritten = load_bundled(args.data)
    rng = np.random.default_rng(0)
    train = rng.permutation(len(labels))[: int(0.8 * len(labels))]
    images_t = torch.from_numpy(images.astype(np.float32) / 255.0)
    digits_t = torch.nn.functional.one_hot(torch.from_numpy(labels), 10).float()
    hw_t = torch.from_numpy(handwritten).unsqueeze(1)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    vae = VAE()
    svi = SVI(vae.training_model, vae.training_guide, Adam({"lr": 1e-3}), loss=Trace_ELBO())
    epoch_seconds, epoch_cpu_seconds = [], []
    for epoch in range(args.epochs):
        order = torch.from_numpy(rng.permutation(train)[: args.images_per_epoch])
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(0, len(order), 256):
            rows = order[i : i + 256]
            # As the Ember data set: uint8 pixels made float per batch.
            img = images_t[rows]
            svi.step(img, digits_t[rows], hw_t[rows], len(rows))
        epoch_seconds.append(time.perf_counter() - start)
        epoch_cpu_seconds.append(time.process_time() - cpu_start)
    one = order[:1]
    for _ in range(20):
        svi.step(images_t[one], digits_t[one], hw_t[one], 1)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.b1_steps):
        svi.step(images_t[one], digits_t[one], hw_t[one], 1)
    b1 = (time.perf_counter() - start) / args.b1_steps
    b1_cpu = (time.process_time() - cpu_start) / args.b1_steps
    skip = 1 if len(epoch_seconds) > 2 else 0
    timed, timed_cpu = epoch_seconds[skip:], epoch_cpu_seconds[skip:]
    return {
        "workload": "causal VAE epoch (book's Pyro model, Bernoulli(probs))",
        "threads": torch.get_num_threads(),
        "images_per_epoch": args.images_per_epoch,
        "seconds_per_epoch": statistics.median(timed),
        "epoch_seconds": epoch_seconds,
        "seconds_per_step_batch1": b1,
        "cpu_seconds_per_epoch": statistics.median(timed_cpu),
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "cpu_seconds_per_step_batch1": b1_cpu,
        "load_average": os.getloadavg()[0],
    }


# ----------------------------------------------------------------- k-site SVI step


def bench_svi_step(args):
    torch.set_num_threads(1)
    sizes, rows = [1, 10, 100], []
    for k in sizes:
        zero, one, obs = torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.5)
        names = [f"z{i}" for i in range(k)]

        def model():
            last = None
            for i in range(k):
                last = pyro.sample(names[i], dist.Normal(zero, one))
            pyro.sample("x", dist.Normal(last, one), obs=obs)

        def guide():
            for i in range(k):
                loc = pyro.param(f"loc{i}", torch.tensor(0.1 * (i % 7)))
                s = pyro.param(f"s{i}", torch.tensor(0.5 + 0.01 * (i % 5)))
                pyro.sample(names[i], dist.Normal(loc, torch.nn.functional.softplus(s)))

        pyro.clear_param_store()
        svi = SVI(model, guide, Adam({"lr": 0.01}), loss=Trace_ELBO())
        reps = 2000 // (k + 4) + 5
        for _ in range(max(1, reps // 5)):
            svi.step()
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(reps):
                svi.step()
            best = min(best, (time.process_time() - start) / reps * 1e6)
        rows.append({"sites": k, "pyro_us": best})
    xs = np.array(sizes, dtype=float)
    ys = np.array([r["pyro_us"] for r in rows])
    slope = float(np.polyfit(xs, ys, 1)[0])
    return {"workload": "full SVI step, k scalar Normal sites", "rows": rows, "pyro_us_per_site": slope}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["vae", "svi-step"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--images-per-epoch", type=int, default=16000)  # Ember's balanced epoch of the bundled data
    p.add_argument("--b1-steps", type=int, default=300)
    p.add_argument("--data", default=str(ROOT / "data"))
    p.add_argument("--out", default="")
    args = p.parse_args()
    pyro.enable_validation(True)  # Pyro 1.8.4's default
    result = bench_vae(args) if args.workload == "vae" else bench_svi_step(args)
    result.update({"pyro": pyro.__version__, "torch": torch.__version__})
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
