#!/usr/bin/env python3
"""Trains the book's chapter-5 causal VAE with the book's own Pyro code on a book-layout CSV
and prints the average test loss after each epoch, for comparison with `causal-vae train`.

    /work/venv-pyro/bin/python scripts/book_pyro_reference.py data.csv --epochs 20 > pyro.jsonl

The model, guide, networks, split (random_split 80/20 with torch.Generator().manual_seed(42)),
loaders (batch 256, shuffle=True), optimiser (Adam lr 1e-3), loss (Trace_ELBO) and test loss
(sum of svi.evaluate_loss over the test loader / test size) are those of the book's notebook
(github.com/altdeep/causalML, book/chapter 5). Two departures that do not change the
mathematics: the CSV is read with the csv module instead of pandas (not installed in the
reference venv), and images are flattened directly instead of through torchvision's ToTensor.
The `--data` CSV can be written from the bundled data with `scripts/write_book_csv.py`.
"""
import argparse
import csv
import json
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn
from torch.utils.data import DataLoader, Dataset, random_split


class CombinedDataset(Dataset):
    def __init__(self, csv_file):
        with open(csv_file) as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = [[float(v) if v not in ("True", "False") else float(v == "True") for v in r] for r in reader]
        table = np.array(rows, dtype="float32")
        col = {name: i for i, name in enumerate(header)}
        self.is_handwritten = table[:, col["is_handwritten"]]
        self.digits = table[:, col["label"]].astype("int64")
        first_pixel = max(col["is_handwritten"], col["label"]) + 1
        self.images = table[:, first_pixel:first_pixel + 784] / 255.0

    def __len__(self):
        return len(self.digits)

    def __getitem__(self, idx):
        return (torch.from_numpy(self.images[idx]).reshape(1, 28, 28), np.array([self.digits[idx]], dtype="int"),
                np.array([self.is_handwritten[idx]], dtype="float32"))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()
        self.fc1 = nn.Linear(z_dim + 10 + 1, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 28 * 28)

    def forward(self, z, digit, is_handwritten):
        hidden = self.softplus(self.fc1(torch.cat([z, digit, is_handwritten], dim=1)))
        return self.sigmoid(self.fc2(hidden))


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.softplus = nn.Softplus()
        self.fc1 = nn.Linear(28 * 28 + 10 + 1, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)

    def forward(self, img, digit, is_handwritten):
        hidden = self.softplus(self.fc1(torch.cat([img, digit, is_handwritten], dim=1)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class VAE(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)

    def model(self, data_size=1):
        pyro.module("decoder", self.decoder)
        options = dict(dtype=torch.float32)
        z = pyro.sample("Z", dist.Normal(torch.zeros(data_size, self.z_dim, **options),
                                         torch.ones(data_size, self.z_dim, **options)).to_event(1))
        digit = pyro.sample("digit", dist.OneHotCategorical(torch.ones(data_size, 10, **options) / 10))
        is_handwritten = pyro.sample("is_handwritten", dist.Bernoulli(torch.ones(data_size, 1, **options) / 2).to_event(1))
        img_param = self.decoder(z, digit, is_handwritten)
        img = pyro.sample("img", dist.Bernoulli(img_param).to_event(1))
        return img, digit, is_handwritten

    def training_model(self, img, digit, is_handwritten, batch_size):
        conditioned_on_data = pyro.condition(self.model, data={"digit": digit, "is_handwritten": is_handwritten, "img": img})
        with pyro.plate("data", batch_size):
            return conditioned_on_data(batch_size)

    def training_guide(self, img, digit, is_handwritten, batch_size):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", batch_size):
            z_loc, z_scale = self.encoder(img, digit, is_handwritten)
            pyro.sample("Z", dist.Normal(z_loc, z_scale).to_event(1))


def reshape_data(img, digit, is_handwritten):
    return img.reshape(-1, 28 * 28), torch.nn.functional.one_hot(digit, 10).squeeze(), is_handwritten


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the initialisation and shuffles")
    args = parser.parse_args()
    dist.enable_validation(False)
    torch.manual_seed(args.seed)
    combined = CombinedDataset(args.csv)
    n = len(combined)
    train_size = int(0.8 * n)
    train_dataset, test_dataset = random_split(combined, [train_size, n - train_size], generator=torch.Generator().manual_seed(42))
    train_loader = DataLoader(train_dataset, batch_size=256, shuffle=True)
    test_loader = DataLoader(test_dataset, batch_size=256, shuffle=True)
    pyro.clear_param_store()
    vae = VAE()
    svi = SVI(vae.training_model, vae.training_guide, Adam({"lr": 1.0e-3}), loss=Trace_ELBO())
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        loss = 0.0
        for img, digit, is_hw in train_loader:
            batch_size = img.shape[0]
            img, digit, is_hw = reshape_data(img, digit, is_hw)
            loss += svi.step(img, digit, is_hw, batch_size)
        test = 0.0
        for img, digit, is_hw in test_loader:
            batch_size = img.shape[0]
            img, digit, is_hw = reshape_data(img, digit, is_hw)
            test += svi.evaluate_loss(img, digit, is_hw, batch_size)
        print(json.dumps({"epoch": epoch, "train_loss": loss / train_size, "test_loss": test / len(test_dataset),
                          "seconds": time.time() - start}), flush=True)


if __name__ == "__main__":
    main()
