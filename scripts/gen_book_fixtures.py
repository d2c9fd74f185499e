#!/usr/bin/python3
"""Writes the fixtures that pin Ember to the book's own Python code (chapter 5 of Causal AI).

Run with Debian's interpreter, which has python3-torch (1.13):

    /usr/bin/python3 scripts/gen_book_fixtures.py

tests/fixtures/data/book_split.json
    For several data-set sizes n, the index lists of the book's split

        random_split(range(n), [int(0.8 * n), n - int(0.8 * n)],
                     generator=torch.Generator().manual_seed(42))

    (train, then test, each in random_split's order). Small n are stored whole; for large n
    the head, the tail and a position-weighted checksum of each list (sum of (i + 1) * index,
    exact in int64).

tests/fixtures/causal_vae/book_decoder_outputs.json
    Outputs of the book's published decoder (tests/fixtures/causal_vae/book/
    mnist_tmnist_decoder_weights.pt, from github.com/altdeep/causalML) and encoder, computed
    here from the same files: Linear -> Softplus -> Linear -> Sigmoid on
    cat([z, one_hot(digit, 10), one_hot(is_handwritten, 2)]), for fixed inputs.
"""
import json
import os

import torch
from torch.utils.data import random_split

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
BOOK = os.path.join(FIXTURES, "causal_vae", "book")


def checksum(indices):
    return sum((i + 1) * v for i, v in enumerate(indices))


def book_split(n):
    train_size = int(0.8 * n)
    train, test = random_split(range(n), [train_size, n - train_size], generator=torch.Generator().manual_seed(42))
    return list(train.indices), list(test.indices)


def split_cases():
    cases = []
    for n in [1, 2, 5, 10, 97, 1000, 27229, 120000]:
        train, test = book_split(n)
        case = {"n": n, "train_size": len(train), "test_size": len(test)}
        if n <= 1000:
            case.update(train=train, test=test)
        else:
            for name, lst in (("train", train), ("test", test)):
                case[name + "_head"] = lst[:20]
                case[name + "_tail"] = lst[-20:]
                case[name + "_checksum"] = checksum(lst)
        cases.append(case)
    return {"torch_version": torch.__version__,
            "generator": "random_split(range(n), [int(0.8 n), n - int(0.8 n)], torch.Generator().manual_seed(42))",
            "cases": cases}


def decoder_cases():
    dec = torch.load(os.path.join(BOOK, "mnist_tmnist_decoder_weights.pt"))
    enc = torch.load(os.path.join(BOOK, "mnist_tmnist_encoder_weights.pt"))
    g = torch.Generator().manual_seed(5)
    n = 6
    z = torch.randn(n, 50, generator=g)
    digit = torch.tensor([0, 3, 7, 9, 1, 4])
    is_handwritten = torch.tensor([1, 0, 1, 0, 0, 1])
    labels = torch.cat([torch.nn.functional.one_hot(digit, 10), torch.nn.functional.one_hot(is_handwritten, 2)], 1).float()
    hidden = torch.nn.functional.softplus(torch.cat([z, labels], 1) @ dec["fc1.weight"].T + dec["fc1.bias"])
    probs = torch.sigmoid(hidden @ dec["fc21.weight"].T + dec["fc21.bias"])
    # The encoder on the decoder's own expected images.
    h = torch.nn.functional.softplus(torch.cat([probs, labels], 1) @ enc["fc1.weight"].T + enc["fc1.bias"])
    z_loc = h @ enc["fc21.weight"].T + enc["fc21.bias"]
    z_scale = torch.exp(h @ enc["fc22.weight"].T + enc["fc22.bias"])
    return {"torch_version": torch.__version__,
            "z": z.tolist(), "digit": digit.tolist(), "is_handwritten": is_handwritten.tolist(),
            "decoder_probs": probs.tolist(), "encoder_loc": z_loc.tolist(), "encoder_scale": z_scale.tolist()}


def main():
    with open(os.path.join(FIXTURES, "data", "book_split.json"), "w") as f:
        json.dump(split_cases(), f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(FIXTURES, "causal_vae", "book_decoder_outputs.json"), "w") as f:
        json.dump(decoder_cases(), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
