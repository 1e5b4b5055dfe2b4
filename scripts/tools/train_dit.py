#!/usr/bin/env python3
"""Train a small class-conditional DiT on Fashion-MNIST (Debian package dataset-fashion-mnist)
and write its weights in the official DiT state-dict layout: the way to get a LESS-trained real
model, to check that caching and EOC results hold beyond the shipped checkpoint.

    train_dit.py -o less-trained.pt --steps 400 [--batch 64] [--depth 12 --hidden 192 --heads 3]
        [--objective eps|flow]

Training follows the official DiT recipe at small scale: adaLN-Zero initialisation, fixed 2-D
sin-cos positions, label dropout 0.1 for classifier-free guidance, linear betas 1e-4..0.02 over
1000 steps, the hybrid loss (noise MSE plus the variational bound that trains the learned
variance range, with a stopped gradient through the mean), AdamW at a constant rate. Images are
28x28 padded to 32x32 with background -1, in [-1, 1]. No EMA: the point is an early model.

--objective flow trains the same network as SiT trains it instead (a flow-matching DiT): SiT's
Linear path x_t = t x1 + (1 - t) x0 between noise x0 (t = 0) and data x1 (t = 1), t uniform in
[0, 1] and fed to the timestep embedder as a float, the velocity x1 - x0 as the target of a plain
mean squared error; no learned sigma (C output channels). The JSON sidecar records the objective.
"""
import argparse
import copy
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# dit_module sits beside this script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_module import DiT, module_to_official  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzip): big-endian dims after a 4-byte magic whose last byte is the rank."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def load_fashion_mnist(data_dir):
    try:
        images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    except (OSError, ValueError, EOFError, IndexError) as e:
        sys.exit(f"train_dit: cannot read Fashion-MNIST from '{data_dir}' ({e}); "
                 "expected train-{images-idx3,labels-idx1}-ubyte.gz there "
                 "(apt-get install dataset-fashion-mnist)")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        sys.exit(f"train_dit: '{data_dir}': images {images.shape} and labels {labels.shape} "
                 "do not pair up as (N, H, W) and (N,)")
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return F.pad(x, (2, 2, 2, 2), value=-1.0), torch.from_numpy(labels.astype(np.int64))


def sincos_2d(dim, side):
    """DiT's fixed 2-D sin-cos position table (side * side, dim), float64: the first half of the
    channels encodes each token's column, the second its row; each half is sin(p w_k) then
    cos(p w_k) for w_k = 10000^(-k / (dim / 4)), k < dim / 4."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    col, row = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
    halves = []
    for pos in (col.reshape(-1), row.reshape(-1)):
        angles = np.outer(pos, omega)
        halves += [np.sin(angles), np.cos(angles)]
    return np.concatenate(halves, axis=1)


def official_init(model):
    """DiT's initialisation: Xavier linears, zeroed adaLN and output layers (adaLN-Zero)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    w = model.x_embedder.proj.weight
    torch.nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    torch.nn.init.zeros_(model.x_embedder.proj.bias)
    torch.nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    torch.nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    torch.nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    zero = [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    zero += [b.adaLN_modulation[-1] for b in model.blocks]
    for m in zero:
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)
    side = model.input_size // model.patch_size
    model.pos_embed.data.copy_(torch.from_numpy(sincos_2d(model.hidden_size, side)).float().unsqueeze(0))


class Diffusion:
    """The terms of DiT's training loss for linear betas over 1000 steps (float64 tables)."""

    def __init__(self, steps=1000):
        betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
        abar = np.cumprod(1.0 - betas)
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.steps = steps
        self.sqrt_abar, self.sqrt_1m_abar = t(np.sqrt(abar)), t(np.sqrt(1.0 - abar))
        self.post_logvar = t(np.log(np.append(post_var[1], post_var[1:])))
        self.log_betas = t(np.log(betas))
        self.coef_x0 = t(betas * np.sqrt(abar_prev) / (1.0 - abar))
        self.coef_xt = t((1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar))

    @staticmethod
    def at(table, t):
        return table[t].view(-1, 1, 1, 1)

    def loss(self, model, x0, y):
        t = torch.randint(0, self.steps, (x0.shape[0],))
        noise = torch.randn_like(x0)
        xt = self.at(self.sqrt_abar, t) * x0 + self.at(self.sqrt_1m_abar, t) * noise
        eps, v = model(xt, t, y).chunk(2, dim=1)
        mse, vb = self.hybrid_terms(x0, xt, t, noise, eps, v)
        return (mse + vb).mean(), mse.mean().item()

    def hybrid_terms(self, x0, xt, t, noise, eps, v):
        """Per image: the noise MSE, and the variational bound in bits per dimension on the
        learned variance only (the mean is formed from the detached noise prediction)."""
        mse = ((eps - noise) ** 2).mean(dim=(1, 2, 3))
        frac = (v + 1) / 2
        logvar = frac * self.at(self.log_betas, t) + (1 - frac) * self.at(self.post_logvar, t)
        x0_hat = (xt - self.at(self.sqrt_1m_abar, t) * eps.detach()) / self.at(self.sqrt_abar, t)
        mean = self.at(self.coef_x0, t) * x0_hat + self.at(self.coef_xt, t) * xt
        true_mean = self.at(self.coef_x0, t) * x0 + self.at(self.coef_xt, t) * xt
        true_logvar = self.at(self.post_logvar, t)
        kl = 0.5 * (-1.0 + logvar - true_logvar + torch.exp(true_logvar - logvar)
                    + (true_mean - mean) ** 2 * torch.exp(-logvar))
        kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_log_likelihood(x0, mean, 0.5 * logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        return mse, torch.where(t == 0, nll, kl)


class FlowMatching:
    """SiT's training loss for a velocity model on its Linear path (transport.training_losses,
    no loss weight): noise x0 = randn_like(x1), then t ~ U(0, 1) (train_eps is 0 for a velocity
    model on this path), x_t = t x1 + (1 - t) x0, target u = x1 - x0, the per-image mean squared
    error averaged over the batch."""

    @staticmethod
    def interpolate(t, x0, x1):
        """x_t and the target velocity for times t (B,)."""
        te = t.view(-1, 1, 1, 1)
        return te * x1 + (1 - te) * x0, x1 - x0

    def loss(self, model, x1, y):
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0])
        xt, ut = self.interpolate(t, x0, x1)
        mse = ((model(xt, t, y) - ut) ** 2).mean(dim=(1, 2, 3)).mean()
        return mse, mse.item()


def discretized_log_likelihood(x, mean, log_scale):
    """log P(x) for 8-bit data in [-1, 1] under N(mean, exp(log_scale)^2), bins of width 2/255."""
    def cdf(z):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
    inv = torch.exp(-log_scale)
    lo, hi = cdf(inv * (x - mean - 1.0 / 255)), cdf(inv * (x - mean + 1.0 / 255))
    log_lo = torch.log(hi.clamp(min=1e-12))
    log_hi = torch.log((1.0 - lo).clamp(min=1e-12))
    mid = torch.log((hi - lo).clamp(min=1e-12))
    return torch.where(x < -0.999, log_lo, torch.where(x > 0.999, log_hi, mid))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True, help="official-layout state dict (.pt)")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ema", type=float, default=None,
                    help="keep an exponential moving average of the weights with this decay "
                         "(as DiT/SiT do, 0.9999 there) and write it instead of the raw weights")
    ap.add_argument("--save-every", type=int, default=0,
                    help="also write the checkpoint every N steps, so that a long CPU run can be "
                         "stopped at any time and keep its last save")
    ap.add_argument("--objective", choices=["eps", "flow"], default="eps",
                    help="eps: DiT's diffusion (noise + learned variance); flow: SiT's velocity "
                         "on the Linear path (no learned sigma)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load_fashion_mnist(a.data)
    learn_sigma = a.objective == "eps"
    model = DiT(32, a.patch, 1, a.hidden, a.depth, a.heads, 10, learn_sigma)
    official_init(model)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    objective = Diffusion() if a.objective == "eps" else FlowMatching()
    ema = copy.deepcopy(model).requires_grad_(False) if a.ema is not None else None
    start = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, x.shape[0], (a.batch,))
        images = torch.where(torch.rand(a.batch, 1, 1, 1) < 0.5, x[idx], x[idx].flip(3))
        labels = torch.where(torch.rand(a.batch) < 0.1, torch.full_like(y[idx], 10), y[idx])
        loss, mse = objective.loss(model, images, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(a.ema).add_(pm, alpha=1.0 - a.ema)
        if step % 25 == 0 or step == a.steps:
            print(f"step {step}/{a.steps}: loss {loss.item():.4f} "
                  f"({'noise' if a.objective == 'eps' else 'velocity'} mse {mse:.4f}), "
                  f"{time.time() - start:.0f} s", file=sys.stderr)
        if step == a.steps or (a.save_every and step % a.save_every == 0):
            save(ema if ema is not None else model, a, step, learn_sigma)


def save(model, a, step, learn_sigma):
    sd = {module_to_official(k): v.detach().clone() for k, v in model.state_dict().items()}
    info = dict(input_size=32, patch_size=a.patch, in_channels=1, hidden_size=a.hidden, depth=a.depth,
                num_heads=a.heads, num_classes=10, learn_sigma=learn_sigma, train_steps=step,
                batch=a.batch, lr=a.lr, ema=a.ema, seed=a.seed, trainer="scripts/tools/train_dit.py",
                dataset="Fashion-MNIST train (60k), horizontal flips, label dropout 0.1",
                objective=a.objective)
    if a.objective == "eps":
        info["parameterization"] = ("DiT diffusion: linear betas 1e-4..0.02 over 1000 steps, "
                                    "integer timesteps, noise prediction + learned variance")
    else:
        info["parameterization"] = ("SiT flow matching: Linear path x_t = t x1 + (1 - t) x0, "
                                    "t in [0, 1] (0 noise, 1 data) as a float, velocity x1 - x0")
    # Each file appears whole or not at all (temporary file, then rename).
    torch.save(sd, a.out + ".tmp")
    os.replace(a.out + ".tmp", a.out)
    meta = os.path.splitext(a.out)[0] + ".json"
    with open(meta + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(meta + ".tmp", meta)


if __name__ == "__main__":
    main()
