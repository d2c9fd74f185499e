#!/usr/bin/python3
"""Writes small state_dicts of the book's causal VAE (z_dim 4, hidden 8) for tests/test_causal_vae.cpp.

Run with Debian's python3-torch:  /usr/bin/python3 scripts/gen_causal_vae_fixtures.py
The networks follow the book's listings: Encoder fc1/fc21/fc22, Decoder fc1/fc2, held by a
VAE module as `encoder` and `decoder`, saved with torch.save(vae.state_dict(), path).
"""
import json
import os

import torch
from torch import nn

Z, HIDDEN, IMG, DIGITS, STYLE = 4, 8, 784, 10, 1


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(IMG + DIGITS + STYLE, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, Z)
        self.fc22 = nn.Linear(HIDDEN, Z)
        self.softplus = nn.Softplus()

    def forward(self, img, digit, style):
        hidden = self.softplus(self.fc1(torch.cat([img, digit, style], dim=1)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(Z + DIGITS + STYLE, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, IMG)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z, digit, style):
        return self.sigmoid(self.fc2(self.softplus(self.fc1(torch.cat([z, digit, style], dim=1)))))


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()


def main():
    torch.manual_seed(5)
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "causal_vae")
    os.makedirs(out, exist_ok=True)
    vae = VAE()
    torch.save(vae.state_dict(), os.path.join(out, "vae_z4_h8.pt"))
    # A state_dict whose decoder is too wide for z_dim 4 (fc1 expects 4 + 11 inputs).
    bad = VAE()
    bad.decoder.fc1 = nn.Linear(Z + 1 + DIGITS + STYLE, HIDDEN)
    torch.save(bad.state_dict(), os.path.join(out, "vae_bad_shape.pt"))
    z = torch.linspace(-1, 1, Z).unsqueeze(0)
    digit = torch.zeros(1, DIGITS)
    digit[0, 3] = 1
    style = torch.ones(1, 1)
    img = torch.linspace(0, 1, IMG).unsqueeze(0)
    with torch.no_grad():
        probs = vae.decoder(z, digit, style)
        loc, scale = vae.encoder(img, digit, style)
    expected = {
        "z": z[0].tolist(),
        "digit": 3,
        "is_handwritten": 1,
        "decoder_probs_first10": probs[0, :10].tolist(),
        "encoder_loc": loc[0].tolist(),
        "encoder_scale": scale[0].tolist(),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
