#!/usr/bin/env python3
"""Writes Ember's bundled digits (data/) as a CSV in the book's layout: a header, then per row
an index, is_handwritten, label and 784 pixels (0-255), handwritten rows first.

    python3 scripts/write_book_csv.py bundled-book-layout.csv

Used to compare `causal-vae train` with the book's Pyro code (scripts/book_pyro_reference.py)
on the same file.
"""
import gzip
import os
import sys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def read(name, header):
    with gzip.open(os.path.join(DATA, name)) as f:
        return f.read()[header:]


def main():
    out = sys.argv[1]
    parts = [(1, read("handwritten-images-idx3-ubyte.gz", 16), read("handwritten-labels-idx1-ubyte.gz", 8)),
             (0, read("typed-images-idx3-ubyte.gz", 16), read("typed-labels-idx1-ubyte.gz", 8))]
    with open(out, "w") as f:
        f.write(",is_handwritten,label," + ",".join(str(i) for i in range(784)) + "\n")
        row = 0
        for style, images, labels in parts:
            for i, label in enumerate(labels):
                pixels = images[i * 784:(i + 1) * 784]
                f.write(f"{row},{style},{label}," + ",".join(map(str, pixels)) + "\n")
                row += 1


if __name__ == "__main__":
    main()
