"""Figures of a trained run (``varinf plot``): manifold, samples, reconstructions, curves, latent space."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure        # figures drawn to files only: no pyplot, no backend chosen globally
from matplotlib.ticker import MaxNLocator

from varinf.checkpoint import save_figure
from varinf.data import load_dataset
from varinf.errors import CheckpointError
from varinf.runfiles import read_regular, real_dir, refuse_link

FIGURES = ("manifold.png", "samples.png", "reconstructions.png", "curves.png", "latent.png")
from varinf.models import VAE  # noqa: E402
from varinf.runs import load_model  # noqa: E402


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


def clipping_note(values: np.ndarray) -> str:
    """What a [0, 1] grey scale hides of ``values``: "" when all lie in [0, 1], else a line giving the
    share of values outside, their range, and that they are shown clipped."""
    outside = float(np.mean((values < 0) | (values > 1)))
    if outside == 0:
        return ""
    return (f"\n{100 * outside:.1f}% of pixel values outside [0, 1] (range {values.min():.2g} to "
            f"{values.max():.2g}), shown clipped to [0, 1]")


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=110, bbox_inches="tight")   # atomic, never through a symbolic link


def _grid_ticks(grid: np.ndarray, tile: int, pad: int, every: int) -> tuple[np.ndarray, list[str]]:
    """Pixel centres of every ``every``-th tile of a mosaic and the z value each one shows."""
    idx = np.arange(0, len(grid), every)
    centres = pad + idx * (tile + pad) + (tile - 1) / 2
    return centres, [f"{grid[i]:.2f}" for i in idx]


@torch.no_grad()
def plot_manifold(model, path: Path, shape: tuple[int, int], n: int = 20) -> Path:
    """Decoder means on an n×n grid of standard-normal quantiles (Kingma & Welling Fig. 4; Han Fig. 4).

    Tile (row r, column c) shows E[x|z] at z = (grid[c], grid[n-1-r]): z1 grows to the right and z2
    upwards; the axis ticks give the z values of every other tile.
    """
    from scipy.stats import norm  # quantile function of N(0, 1)

    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    zz = np.array([[gx, gy] for gy in grid[::-1] for gx in grid], dtype=np.float32)   # (n*n, 2)
    means = model.decode_mean(torch.from_numpy(zz)).numpy()
    h, w = shape
    pad = 1
    every = max(1, n // 10)
    fig = Figure(figsize=(7.5, 7.5))
    ax = fig.subplots()
    ax.imshow(_tile(means, n, n, shape, pad), cmap="gray_r", vmin=0, vmax=1)
    xt, xl = _grid_ticks(grid, w, pad, every)
    yt, yl = _grid_ticks(grid[::-1], h, pad, every)
    ax.set_xticks(xt, xl, rotation=90)
    ax.set_yticks(yt, yl)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("learned manifold: E[x|z] on a grid of N(0,1) quantiles" + clipping_note(means))
    return _save(fig, path)


@torch.no_grad()
def plot_samples(model, path: Path, shape: tuple[int, int], n: int = 10, seed: int = 0) -> Path:
    """Decoder means E[x|z] for z ~ p(z) (Patlan Fig. 1) on a [0, 1] grey scale; the title says how many
    pixel values lie outside [0, 1] and are shown clipped (a Gaussian p(x|z)'s means can)."""
    means = model.sample(n * n, generator=torch.Generator().manual_seed(seed)).numpy()
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.imshow(_tile(means, n, n, shape), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("generated: E[x|z], z ~ N(0, I)" + clipping_note(means))
    ax.axis("off")
    return _save(fig, path)


@torch.no_grad()
def plot_reconstructions(model, x: torch.Tensor, path: Path, shape: tuple[int, int], n: int = 10) -> Path:
    """Data (odd rows) above the decoder mean at the encoder mean (even rows)."""
    x = x[:n * n // 2]
    rec = model.decode_mean(_posterior_mean(model, x))
    rows = []
    for r in range(0, x.shape[0], n):
        rows += [x[r:r + n].numpy(), rec[r:r + n].numpy()]
    images = np.concatenate(rows)
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.imshow(_tile(images, len(rows), n, shape), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("data (odd rows) and reconstructions (even rows)" + clipping_note(images))
    ax.axis("off")
    return _save(fig, path)


def plot_curves(history: list[dict], path: Path) -> Path:
    """Train and validation −ELBO per epoch, the best validation epoch marked (Patlan Fig. 2)."""
    epochs = [r["epoch"] for r in history]
    valid = [-r["valid_elbo"] for r in history]
    best = int(np.argmin(valid))
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, [-r["train_elbo"] for r in history], label="train −ELBO")
    ax.plot(epochs, valid, label="valid −ELBO")
    ax.axvline(epochs[best], color="black", ls=":", lw=1,
               label=f"best valid: epoch {epochs[best]}, {valid[best]:.2f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("−ELBO (nats per datapoint)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


@torch.no_grad()
def plot_latent(model, x: torch.Tensor, labels: torch.Tensor, path: Path, split: str = "test") -> Path:
    """Encoder means E_q[z] of labelled data from ``split``, one colour per label; the first two principal
    components when K > 2."""
    pts = _posterior_mean(model, x).numpy()                     # (B, K)
    axes = ("z1", "z2")
    title = f"latent means E_q[z|x], {split} split"
    if pts.shape[1] > 2:
        from sklearn.decomposition import PCA
        pts = PCA(n_components=2).fit_transform(pts)            # (B, 2)
        axes = ("principal component 1 of E_q[z|x]", "principal component 2 of E_q[z|x]")
        title += f" (first two principal components of K = {model.latent_dim})"
    labels = labels.numpy()
    classes = np.unique(labels)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    for i, c in enumerate(classes):
        sel = labels == c
        ax.scatter(pts[sel, 0], pts[sel, 1], color=cmap(i % cmap.N), s=4, alpha=0.7, label=str(c))
    ax.legend(title="label", loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=3, frameon=False)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    return _save(fig, path)


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-epoch records of ``RUN_DIR/metrics.jsonl`` ([] when absent); CheckpointError when unreadable."""
    path = run_dir / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in read_regular(path).decode().splitlines() if line.strip()]
    except FileNotFoundError:
        return []
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); restore it from a copy") from None
    if not all(isinstance(r, dict) and {"epoch", "train_elbo", "valid_elbo"} <= set(r) for r in records):
        raise CheckpointError(f"{path} holds a line that is not a record with epoch, train_elbo and valid_elbo; "
                              "restore it from a copy")
    return records


def plot_run(run_dir: str | Path, *, checkpoint: str = "best", data_dir: str | None = None,
             max_points: int = 2000, seed: int = 0) -> list[Path]:
    """Write every figure that applies to the run into ``RUN_DIR/figures``; returns their paths."""
    run_dir = Path(run_dir)
    model, cfg, _ = load_model(run_dir, checkpoint)       # first: a bad run directory is left as it is
    dataset = load_dataset(cfg.dataset, data_dir or cfg.data_dir, binarize=cfg.binarize)
    history = read_metrics(run_dir)
    out = run_dir / "figures"
    for path in (out, *(out / name for name in FIGURES)):  # a symbolic link is refused before anything is written
        refuse_link(path)
    real_dir(out)
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
    if history:
        paths.append(plot_curves(history, out / "curves.png"))
    labels = dataset.labels.get(split)
    if labels is not None:
        paths.append(plot_latent(model, x, labels[idx], out / "latent.png", split))
    return paths
