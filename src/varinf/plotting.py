"""Figures of a trained run (``varinf plot``): manifold, samples, reconstructions, curves, latent space."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on these machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from varinf.data import load_dataset  # noqa: E402
from varinf.models import VAE  # noqa: E402
from varinf.training import load_model  # noqa: E402


def _tile(images: np.ndarray, rows: int, cols: int, shape: tuple[int, int], pad: int = 1) -> np.ndarray:
    """(rows*cols, H*W) -> one (rows*(H+pad), cols*(W+pad)) mosaic."""
    h, w = shape
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.2)  # light grey gutters
    for k, img in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = \
            img.reshape(h, w)
    return canvas


def _image_shape(model, dataset) -> tuple[int, int]:
    if dataset.image_shape is not None:
        return dataset.image_shape
    side = int(round(model.config.data_dim ** 0.5))
    return (side, side) if side * side == model.config.data_dim else (1, model.config.data_dim)


def _posterior_mean(model, x: torch.Tensor) -> torch.Tensor:
    """E_q[z] of the encoder's q(z|x): μ for Gaussian latents, the Bernoulli probabilities for binary ones."""
    return model.q(*model.encode(x)).mean


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


@torch.no_grad()
def plot_manifold(model, path: Path, shape: tuple[int, int], n: int = 20) -> Path:
    """Decoder means on an n×n grid of standard-normal quantiles (Kingma & Welling Fig. 4; seed 000 Fig. 4)."""
    from scipy.stats import norm  # quantile function of N(0, 1)

    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    zz = np.array([[gx, gy] for gy in grid[::-1] for gx in grid], dtype=np.float32)
    means = torch.sigmoid(model.decode(torch.from_numpy(zz))).numpy()
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(_tile(means, n, n, shape), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("learned manifold: E[x|z] on a grid of N(0,1) quantiles")
    ax.axis("off")
    return _save(fig, path)


@torch.no_grad()
def plot_samples(model, path: Path, shape: tuple[int, int], n: int = 10, seed: int = 0) -> Path:
    """Decoder means E[x|z] for z ~ p(z) (seed 002 Fig. 1)."""
    means = model.sample(n * n, generator=torch.Generator().manual_seed(seed)).numpy()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(_tile(means, n, n, shape), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("generated: E[x|z], z ~ N(0, I)")
    ax.axis("off")
    return _save(fig, path)


@torch.no_grad()
def plot_reconstructions(model, x: torch.Tensor, path: Path, shape: tuple[int, int], n: int = 10) -> Path:
    """Data (odd rows) above the decoder mean at the encoder mean (even rows)."""
    x = x[:n * n // 2]
    rec = torch.sigmoid(model.decode(_posterior_mean(model, x)))
    rows = []
    for r in range(0, x.shape[0], n):
        rows += [x[r:r + n].numpy(), rec[r:r + n].numpy()]
    images = np.concatenate(rows)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(_tile(images, len(rows), n, shape), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("data (odd rows) and reconstructions (even rows)")
    ax.axis("off")
    return _save(fig, path)


def plot_curves(history: list[dict], path: Path) -> Path:
    """Train and validation −ELBO per epoch (seed 002 Fig. 2)."""
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [-r["train_elbo"] for r in history], label="train −ELBO")
    ax.plot(epochs, [-r["valid_elbo"] for r in history], label="valid −ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("−ELBO (nats per datapoint)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


@torch.no_grad()
def plot_latent(model, x: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """Encoder means of labelled data; the first two principal components when K > 2."""
    pts = _posterior_mean(model, x).numpy()
    title = "latent means"
    if pts.shape[1] > 2:
        from sklearn.decomposition import PCA
        pts = PCA(n_components=2).fit_transform(pts)
        title += " (first two principal components)"
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=labels.numpy(), cmap="tab10", s=4, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="label")
    ax.set_title(title)
    return _save(fig, path)


def plot_run(run_dir: str | Path, *, checkpoint: str = "best", data_dir: str | None = None,
             max_points: int = 2000, seed: int = 0) -> list[Path]:
    """Write every figure that applies to the run into ``RUN_DIR/figures``; returns their paths."""
    run_dir = Path(run_dir)
    out = run_dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    model, cfg, _ = load_model(run_dir, checkpoint)
    dataset = load_dataset(cfg.dataset, data_dir or cfg.data_dir, binarize=cfg.binarize)
    shape = _image_shape(model, dataset)
    split = "test" if dataset.test is not None else "valid"
    x = dataset.split(split)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=gen)[:max_points]   # the test split may be ordered by class
    x = x[idx]
    if dataset.dynamic_binarize:
        x = torch.bernoulli(x, generator=gen)
    paths = []
    if model.latent_dim == 2 and isinstance(model, VAE):   # a continuous 2-D latent space
        paths.append(plot_manifold(model, out / "manifold.png", shape))
    paths.append(plot_samples(model, out / "samples.png", shape, seed=seed))
    paths.append(plot_reconstructions(model, x, out / "reconstructions.png", shape))
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if history:
        paths.append(plot_curves(history, out / "curves.png"))
    labels = dataset.labels.get(split)
    if labels is not None:
        paths.append(plot_latent(model, x, labels[idx], out / "latent.png"))
    return paths
