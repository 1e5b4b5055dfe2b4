#!/usr/bin/env python3
"""FID for the project's Fashion-MNIST models: the Fréchet distance between the features of
generated images and those of the 10,000 Fashion-MNIST test images, where the features are the
penultimate layer (64 values after a ReLU) of a small CNN classifier trained here, not
Inception-v3's pool3. Numbers are comparable only with each other (same classifier, same
reference set, same sample count: FID is biased upward at small counts), never with published
FIDs.

    fmnist_fid.py train [-o third_party/models/fmnist-classifier.pt] [--epochs 4]
    fmnist_fid.py fid samples.npy [--classifier third_party/models/fmnist-classifier.pt]

`train` fits the classifier on the 60,000 training images (Debian package dataset-fashion-mnist,
read as scripts/tools/train_dit.py reads it: 28x28 padded to 32x32 with background -1, values
in [-1, 1]; random horizontal flips, as the DiTs were trained), seed 0, one thread, and writes
its float32 state dict and a JSON sidecar (architecture, epochs, measured test accuracy, the
command). `fid` prints the FID of an .npy of samples as `eoc sample --out-raw` writes them
((N, 1, 32, 32) float32, nominally in [-1, 1]) against the test set.

As a module (scripts/bench/bench_frontier.py uses it): load_classifier(path),
features(model, images), frechet_distance(feat_a, feat_b), reference_stats(model).
features() first clamps the samples to [-1, 1] and quantises them to 8 bits exactly as `eoc`
writes a PNG (floor(clamp(127.5 x + 128, 0, 255))), then maps the levels back with the training
data's own map (level / 127.5 - 1): the score is that of the images a user would save.
"""
import argparse
import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "tools"))
from train_dit import DATA, read_idx  # noqa: E402  (the one IDX reader of the project)

DEFAULT_CLASSIFIER = os.path.join(REPO, "third_party", "models", "fmnist-classifier.pt")
FEATURE_DIM = 64
ARCHITECTURE = ("input 1x32x32 in [-1, 1]; 3 x [conv 3x3 pad 1, batch norm, ReLU, max-pool 2] with "
                "16, 32, 64 channels (-> 64x4x4); flatten; linear 1024->64, ReLU (the features); "
                "linear 64->10")


class Classifier(nn.Module):
    """A small CNN; `features` is its penultimate layer (the FID features)."""

    def __init__(self, widths=(16, 32, 64), feature_dim=FEATURE_DIM, classes=10):
        super().__init__()
        layers, cin = [], 1
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            cin = w
        side = 32 // 2 ** len(widths)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, feature_dim),
                                  nn.ReLU())
        self.head = nn.Linear(feature_dim, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def load_split(split, data_dir=DATA):
    """(images uint8 (N, 32, 32) padded with level 0 = value -1, labels int64 (N,)) of the
    "train" or "test" split."""
    prefix = {"train": "train", "test": "t10k"}[split]
    try:
        images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    except (OSError, ValueError, EOFError, IndexError) as e:
        sys.exit(f"fmnist_fid: cannot read Fashion-MNIST {split} from '{data_dir}' ({e}) "
                 "(apt-get install dataset-fashion-mnist)")
    return np.pad(images, ((0, 0), (2, 2), (2, 2))), labels.astype(np.int64)


def levels_to_values(levels):
    """8-bit levels -> float32 values in [-1, 1], train_dit.py's map (level / 127.5 - 1)."""
    return levels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def quantise(images):
    """Float samples -> the uint8 levels of eoc's PNGs: floor(clamp(127.5 x + 128, 0, 255)),
    in float32 as eoc computes it (equal to round-half-up of (clamp(x) + 1) * 127.5)."""
    x = np.asarray(images, dtype=np.float32)
    y = np.clip(x * np.float32(127.5) + np.float32(128.0), 0.0, 255.0)
    return np.floor(np.nan_to_num(y, nan=0.0)).astype(np.uint8)


def load_classifier(path=DEFAULT_CLASSIFIER):
    """The classifier in eval mode; `model.sha256` is the file's hash (names cached stats)."""
    with open(path, "rb") as f:
        blob = f.read()
    model = Classifier()
    model.load_state_dict(torch.load(path, map_location="cpu"))
    model.eval()
    model.sha256 = hashlib.sha256(blob).hexdigest()
    return model


@torch.no_grad()
def features(model, images, batch=500):
    """Penultimate-layer features (N, 64) float64 of images (N, 1, 32, 32) float in [-1, 1],
    after clamping and 8-bit quantisation (quantise); uint8 input is taken as levels already."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (1, 32, 32):
        raise ValueError(f"expected images of shape (N, 1, 32, 32), got {images.shape}")
    levels = images if images.dtype == np.uint8 else quantise(images)
    out = [model.features(torch.from_numpy(levels_to_values(levels[i:i + batch]))).double().numpy()
           for i in range(0, len(levels), batch)]
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def statistics(feat):
    """(mean, covariance with N - 1) of features (N, D), float64."""
    feat = np.asarray(feat, dtype=np.float64)
    if feat.ndim != 2 or feat.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got {feat.shape}")
    return feat.mean(axis=0), np.cov(feat, rowvar=False)


def _psd_sqrt(c):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0,
    rounding only, set to 0)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_from_stats(mu_a, cov_a, mu_b, cov_b):
    """|mu_a - mu_b|^2 + tr(Ca) + tr(Cb) - 2 tr((Ca Cb)^(1/2)).

    tr((Ca Cb)^(1/2)) is taken as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix Ca^(1/2) Cb Ca^(1/2), which has the same eigenvalues as Ca Cb. This
    needs no general (non-symmetric) matrix square root, so it stays real and exact when the
    covariances are singular (fewer samples than feature dimensions, dead ReLU units), where
    scipy.linalg.sqrtm(Ca @ Cb) returns complex parts or inaccurate values (pytorch-fid works
    around that by adding eps * I). The result is clipped at 0 (rounding)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    s = _psd_sqrt(cov_a)
    m = s @ cov_b @ s
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    d = mu_a - mu_b
    return max(0.0, float(d @ d + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt))


def frechet_distance(feat_a, feat_b):
    """The Fréchet distance between Gaussians fitted to two feature sets (N, D)."""
    return frechet_from_stats(*statistics(feat_a), *statistics(feat_b))


_REFERENCE = {}


def reference_stats(model, cache_dir=None, data_dir=DATA):
    """(mean, covariance) of the features of the 10,000 test images: kept in memory per
    classifier, and in cache_dir (when given) as fmnist-test-stats-<classifier sha256[:16]>.npz."""
    key = getattr(model, "sha256", None) or id(model)
    if key in _REFERENCE:
        return _REFERENCE[key]
    path = None
    if cache_dir and isinstance(key, str):
        path = os.path.join(cache_dir, f"fmnist-test-stats-{key[:16]}.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                _REFERENCE[key] = (z["mu"], z["cov"])
            return _REFERENCE[key]
    images, _ = load_split("test", data_dir)
    stats = statistics(features(model, images[:, None]))
    if path:
        tmp = path + ".tmp.npz"
        np.savez(tmp, mu=stats[0], cov=stats[1])
        os.replace(tmp, path)
    _REFERENCE[key] = stats
    return stats


def fid(model, images, cache_dir=None):
    """FID of samples (N, 1, 32, 32) against the test set, with this project's classifier."""
    mu, cov = statistics(features(model, images))
    return frechet_from_stats(mu, cov, *reference_stats(model, cache_dir))


def train(a):
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    x_train, y_train = load_split("train", a.data)
    x_test, y_test = load_split("test", a.data)
    x = torch.from_numpy(levels_to_values(x_train)).unsqueeze(1)
    y = torch.from_numpy(y_train)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    per_epoch = (len(x) + a.batch - 1) // a.batch
    total = a.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * i / total)))
    start = time.time()
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(per_epoch):
            idx = order[i * a.batch:(i + 1) * a.batch]
            flip = torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5
            xb = torch.where(flip, x[idx].flip(3), x[idx])
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{a.epochs}: last loss {loss.item():.4f}, test accuracy {acc:.4f}, "
              f"{time.time() - start:.0f} s", file=sys.stderr)
    seconds = time.time() - start
    sd = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    # Each file appears whole or not at all (temporary file, then rename).
    torch.save(sd, a.out + ".tmp")
    os.replace(a.out + ".tmp", a.out)
    info = dict(what="Fashion-MNIST classifier whose penultimate layer gives this project's FID "
                     "features (scripts/bench/fmnist_fid.py)",
                architecture=ARCHITECTURE, feature_dim=FEATURE_DIM,
                parameters=sum(p.numel() for p in model.parameters()),
                dataset="Fashion-MNIST train (60k), padded 28->32 with -1, values in [-1, 1], "
                        "random horizontal flips",
                epochs=a.epochs, batch=a.batch, lr=a.lr, schedule="Adam, cosine decay to 0",
                seed=a.seed, threads=1, test_accuracy=round(acc, 4), train_seconds=round(seconds, 1),
                torch=torch.__version__,
                command=shlex.join(["scripts/bench/fmnist_fid.py", *sys.argv[1:]]))
    meta = os.path.splitext(a.out)[0] + ".json"
    with open(meta + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    os.replace(meta + ".tmp", meta)
    print(f"wrote {a.out} and {meta}: test accuracy {acc:.4f}, {seconds:.0f} s", file=sys.stderr)


@torch.no_grad()
def accuracy(model, levels, labels):
    model.eval()
    pred = [model(torch.from_numpy(levels_to_values(levels[i:i + 1000])).unsqueeze(1)).argmax(1)
            for i in range(0, len(levels), 1000)]
    return float((torch.cat(pred).numpy() == labels).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the classifier")
    t.add_argument("-o", "--out", default=DEFAULT_CLASSIFIER)
    t.add_argument("--data", default=DATA)
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("fid", help="FID of an .npy of samples against the test set")
    f.add_argument("samples", help=".npy (N, 1, 32, 32) float32, as eoc sample --out-raw writes")
    f.add_argument("--classifier", default=DEFAULT_CLASSIFIER)
    f.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        return train(a)
    torch.set_num_threads(a.threads)
    try:
        images = np.load(a.samples)
        model = load_classifier(a.classifier)
        score = fid(model, images)
    except (OSError, ValueError) as e:
        sys.exit(f"fmnist_fid: {e}")
    print(f"FID {score:.4f} ({len(images)} samples vs the 10,000 test images; "
          f"features: {os.path.basename(a.classifier)}, not Inception)")


if __name__ == "__main__":
    main()
