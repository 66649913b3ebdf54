"""Test-set evaluation: ELBO and importance-sampled NLL with standard errors (``varinf eval``).

Protocol (Burda et al. 2016 §5.2; seed 003 §7): for every test datapoint draw k = 5000
samples from the encoder's q(z|x) and report

    test ELBO = mean_x (1/k) Σ_i log w⁽ⁱ⁾        (a bound: negative, in nats)
    test NLL  = −mean_x log (1/k) Σ_i w⁽ⁱ⁾       (positive, in nats)

with the standard error of each mean over datapoints. The binarized-MNIST test split is
ordered by class, so a subset is a uniform random one, never the first N.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from varinf.checkpoint import atomic_write_json
from varinf.data import check_data, load_dataset
from varinf.errors import ConfigError
from varinf.objectives import elbo_and_log_marginal
from varinf.training import load_model


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    mean = values.mean().item()
    stderr = values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return mean, stderr


@torch.no_grad()
def evaluate_model(model, x: torch.Tensor, *, nll_samples: int = 5000, batch_size: int = 100,
                   chunk_size: int | None = None, seed: int = 0, progress: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-datapoint (ELBO, log p̂(x)) for every row of ``x`` (N, D), with q the model's encoder."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    if chunk_size is None:   # keep a chunk's decoder output near 40M floats
        chunk_size = max(1, min(nll_samples, 40_000_000 // max(1, batch_size * x.shape[1])))
    elbos, log_px = [], []
    starts = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="eval", leave=False)
    for i in starts:
        xb = x[i:i + batch_size].to(device)
        q = model.q(*model.encode(xb))
        e, l = elbo_and_log_marginal(model, q, xb, nll_samples, chunk_size, gen)
        elbos.append(e.cpu())
        log_px.append(l.cpu())
    return torch.cat(elbos), torch.cat(log_px)


def evaluate_run(run_dir: str | Path, *, nll_samples: int = 5000, subset: int | None = None,
                 batch_size: int = 100, checkpoint: str = "best", device: str = "cpu", seed: int = 0,
                 data_dir: str | None = None, progress: bool = False, write: bool = True) -> dict:
    """Evaluate a trained run on its dataset's test split and write ``RUN_DIR/eval.json``."""
    if nll_samples < 1:
        raise ConfigError(f"--nll-samples must be >= 1, got {nll_samples}")
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    model, cfg, meta = load_model(run_dir, checkpoint, device)
    dataset = load_dataset(cfg.dataset, data_dir or cfg.data_dir, binarize=cfg.binarize)
    x = dataset.split("test")
    if dataset.dynamic_binarize:   # a fixed binarization of the test set, drawn once from the seed
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(seed + 12345))
    x = check_data(x, what=f"{dataset.name} test split", require_binary=True, dim=model.config.data_dim)
    n_total = x.shape[0]
    if subset is not None and subset < n_total:
        if subset < 1:
            raise ConfigError(f"--subset must be >= 1, got {subset}")
        idx = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:subset]
        x = x[idx]
    elbo, log_px = evaluate_model(model, x, nll_samples=nll_samples, batch_size=batch_size, seed=seed,
                                  progress=progress)
    elbo_mean, elbo_se = _mean_and_stderr(elbo)
    lpx_mean, lpx_se = _mean_and_stderr(log_px)
    result = {
        "dataset": dataset.name,
        "checkpoint": checkpoint,
        "checkpoint_epoch": meta["epoch"] + 1,
        "test_points": int(x.shape[0]),
        "test_points_total": int(n_total),
        "nll_samples": nll_samples,
        "test_elbo": elbo_mean,
        "test_elbo_stderr": elbo_se,
        "test_nll": -lpx_mean,
        "test_nll_stderr": lpx_se,
        "seconds": time.perf_counter() - t0,
        "device": str(device),
        "seed": seed,
    }
    if write:
        atomic_write_json(run_dir / "eval.json", result)
    return result
