"""Test-set evaluation: ELBO and importance-sampled NLL with standard errors (``varinf eval``).

Protocol (Burda et al. 2016 §5.2; seed 003 §7): for every test datapoint draw k = 5000
samples from the encoder's q(z|x) and report

    test ELBO = mean_x (1/k) Σ_i log w⁽ⁱ⁾        (a bound: negative, in nats)
    test NLL  = −mean_x log (1/k) Σ_i w⁽ⁱ⁾       (positive, in nats)

with the standard error of each mean over datapoints. The binarized-MNIST test split is
ordered by class, so a subset is a uniform random one, never the first N.

Test-time refinement (seed 003 §2; ``--refine-steps T``). Any Gaussian-latent model can be
evaluated a second time with q̃ = the encoder's q refined by T gradient steps on the bound
(``varinf.refinement.refine``, γ = ``--inference-rate``): ``test_elbo_refined`` and
``test_nll_refined`` use q̃ as the ELBO's q and as the importance proposal (same k), and

    amortization_gap = test_elbo_refined − test_elbo     (nats, ≥ 0 up to Monte Carlo error)

is the part of the encoder's gap that T steps recover: a lower bound on the full
amortisation gap max_q L(q) − L(q_φ). ``--refine-sweep 0,1,2,5,...`` adds the mean bound
after every listed T (one refinement to the largest T; the bound of z_t estimated with the
step's N samples and the closed-form entropy) to eval.json and draws
``figures/amortization_gap.png``. The refined numbers use their own generator (seed + 1),
so ``test_elbo``/``test_nll`` are exactly those of an evaluation without refinement.

Sigmoid belief networks (binary latents, ``--model sbn``) are evaluated the same way with
the factorial Bernoulli q; their test-time refinement is adaptive importance sampling
(seed 003 Eq. 9, ``varinf.infer.avi.avi_refine``: T steps of N = ``--refine-samples``
draws); ``refined_posterior`` dispatches on the model. ``--refine-sweep`` is Gaussian-only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from varinf.checkpoint import atomic_write_json
from varinf.data import check_data, load_dataset
from varinf.errors import ConfigError, VarinfError
from varinf.objectives import elbo_and_log_marginal
from varinf.models import SBN
from varinf.refinement import refine
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


def refined_posterior(model, x: torch.Tensor, *, steps: int, rate: float, step_rule: str, refine_samples: int,
                      generator: torch.Generator):
    """The encoder's q refined for ``steps`` steps, by the rule of the model's latents.

    Gaussian latents: gradient steps on (μ, log σ) (``varinf.refinement.refine``, Eq. 4);
    binary latents (SBN): adaptive importance sampling (``varinf.infer.avi.avi_refine``, Eq. 9,
    ``refine_samples`` samples per step, ``rate`` = its step γ; ``step_rule`` does not apply).
    """
    if isinstance(model, SBN):
        from varinf.infer.avi import refined_q
        return refined_q(model, x, steps, refine_samples, generator, rate)
    with torch.no_grad():
        mu0, log_std0 = model.encode(x)
    r = refine(model.log_joint, x, mu0, log_std0, steps=steps, rate=rate, num_samples=refine_samples,
               generator=generator, step_rule=step_rule)
    return model.q(r.mu, r.log_std)


def evaluate_refined(model, x: torch.Tensor, *, steps: int, rate: float, step_rule: str = "sgd",
                     refine_samples: int = 20, nll_samples: int = 5000, batch_size: int = 100,
                     chunk_size: int | None = None, sweep: tuple[int, ...] = (), seed: int = 0,
                     progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-datapoint ELBO and log p̂(x) with q̃ = the encoder's q refined by ``steps`` steps.

    Returns {"elbo": (N,), "log_px": (N,), "sweep": (len(sweep), N) bound after each T in
    ``sweep``} (the last only when ``sweep`` is given).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    if chunk_size is None:
        chunk_size = max(1, min(nll_samples, 40_000_000 // max(1, batch_size * x.shape[1])))
    sweep = tuple(sorted(set(int(t) for t in sweep)))
    elbos, log_px, traces = [], [], []
    starts = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"eval (refined, T={steps})", leave=False)
    for i in starts:
        xb = x[i:i + batch_size].to(device)
        q = refined_posterior(model, xb, steps=steps, rate=rate, step_rule=step_rule, refine_samples=refine_samples,
                              generator=gen)
        e, l = elbo_and_log_marginal(model, q, xb, nll_samples, chunk_size, gen)
        elbos.append(e.cpu())
        log_px.append(l.cpu())
        if sweep:
            with torch.no_grad():
                mu0, log_std0 = model.encode(xb)
            tr = refine(model.log_joint, xb, mu0, log_std0, steps=max(sweep), rate=rate,
                        num_samples=refine_samples, generator=gen, step_rule=step_rule, return_trace=True).trace
            traces.append(tr[list(sweep)].cpu())
    out = {"elbo": torch.cat(elbos), "log_px": torch.cat(log_px)}
    if sweep:
        out["sweep"] = torch.cat(traces, dim=1)
    return out


def plot_amortization_gap(table: list[dict], path: Path, title: str = "") -> Path:
    """Test bound against the number of refinement steps T (mean ± 2 s.e.): the amortisation gap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["steps"] for r in table]
    mean = [r["test_elbo"] for r in table]
    err = [2 * r["test_elbo_stderr"] for r in table]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [max(t, 0.5) for t in steps]   # T = 0 drawn at 0.5 on the log axis
    ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3)
    ax.axhline(mean[0], color="grey", lw=0.8, ls="--", label="encoder only (T = 0)")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(t) for t in steps])
    ax.set_xlabel("refinement steps T")
    ax.set_ylabel("test ELBO (nats)")
    ax.set_title(title or "amortisation gap")
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_run(run_dir: str | Path, *, nll_samples: int = 5000, subset: int | None = None,
                 batch_size: int = 100, checkpoint: str = "best", device: str = "cpu", seed: int = 0,
                 data_dir: str | None = None, progress: bool = False, write: bool = True,
                 refine_steps: int | None = None, inference_rate: float | None = None,
                 refine_optimizer: str | None = None, refine_samples: int | None = None,
                 refine_sweep: tuple[int, ...] | None = None, output: str | Path | None = None) -> dict:
    """Evaluate a trained run on its dataset's test split and write ``RUN_DIR/eval.json`` (or ``output``).

    With ``output`` the result goes there and the sweep's figure beside it
    (``<output stem>_amortization_gap.png``), so an earlier ``eval.json`` is kept.

    The refinement settings default to the run's own (``refine_steps`` 0 for a ``vae`` run,
    T for ``gbvi``/``savae``; its ``inference_rate``, ``refine_optimizer``, ``refine_samples``).
    """
    if nll_samples < 1:
        raise ConfigError(f"--nll-samples must be >= 1, got {nll_samples}")
    if refine_steps is not None and refine_steps < 0:
        raise ConfigError(f"--refine-steps must be >= 0, got {refine_steps}")
    if inference_rate is not None and not inference_rate > 0:
        raise ConfigError(f"--inference-rate must be > 0, got {inference_rate}")
    if refine_samples is not None and refine_samples < 1:
        raise ConfigError(f"--refine-samples must be >= 1, got {refine_samples}")
    if refine_optimizer is not None and refine_optimizer not in ("sgd", "adam"):
        raise ConfigError(f"--refine-optimizer must be sgd or adam, got {refine_optimizer!r}")
    if refine_sweep is not None and any(t < 0 for t in refine_sweep):
        raise ConfigError(f"--refine-sweep steps must be >= 0, got {list(refine_sweep)}")
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / "eval.json"
    figure = (run_dir / "figures" / "amortization_gap.png" if output == run_dir / "eval.json"
              else output.with_name(f"{output.stem}_amortization_gap.png"))
    t0 = time.perf_counter()
    model, cfg, meta = load_model(run_dir, checkpoint, device)
    if refine_sweep and isinstance(model, SBN):
        raise ConfigError("--refine-sweep traces gradient refinement of Gaussian latents; for a sigmoid belief "
                          "network use --refine-steps T (adaptive importance sampling, seed 003 Eq. 9)")
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
    steps = cfg.refine_steps if refine_steps is None else refine_steps
    run_rate = cfg.avi_rate if isinstance(model, SBN) else cfg.inference_rate     # AVI's γ for an SBN
    rate = run_rate if inference_rate is None else inference_rate
    if isinstance(model, SBN) and not rate <= 1:
        raise ConfigError(f"--inference-rate is AVI's step γ for a sigmoid belief network and must be in (0, 1], "
                          f"got {rate}")
    rule = refine_optimizer or cfg.refine_optimizer
    n_refine = refine_samples or cfg.refine_samples
    sweep = tuple(sorted(set(refine_sweep or ())))
    result.update(refine_steps=steps, inference_rate=rate, refine_optimizer=rule, refine_samples=n_refine)
    if steps == 0 and not sweep:
        result.update(test_elbo_refined=elbo_mean, test_elbo_refined_stderr=elbo_se, test_nll_refined=-lpx_mean,
                      test_nll_refined_stderr=lpx_se, amortization_gap=0.0, amortization_gap_stderr=0.0)
    else:
        ref = evaluate_refined(model, x, steps=steps, rate=rate, step_rule=rule, refine_samples=n_refine,
                               nll_samples=nll_samples, batch_size=batch_size, sweep=sweep, seed=seed,
                               progress=progress)
        bad = int((~torch.isfinite(ref["elbo"]) | ~torch.isfinite(ref["log_px"])).sum())
        if bad:
            raise VarinfError(
                f"test-time refinement diverged: non-finite bound for {bad} of {x.shape[0]} test points after "
                f"{steps} {rule} steps with inference rate {rate:g}; use a smaller --inference-rate"
                + (" or --refine-optimizer adam" if rule == "sgd" else ""))
        r_elbo, r_elbo_se = _mean_and_stderr(ref["elbo"])
        r_lpx, r_lpx_se = _mean_and_stderr(ref["log_px"])
        gap, gap_se = _mean_and_stderr(ref["elbo"] - elbo)       # paired over datapoints
        result.update(test_elbo_refined=r_elbo, test_elbo_refined_stderr=r_elbo_se, test_nll_refined=-r_lpx,
                      test_nll_refined_stderr=r_lpx_se, amortization_gap=gap, amortization_gap_stderr=gap_se)
        if sweep:
            table = []
            for t, row in zip(sweep, ref["sweep"]):
                m, se = _mean_and_stderr(row)
                table.append({"steps": t, "test_elbo": m, "test_elbo_stderr": se})
            for row in table:
                row["gap"] = row["test_elbo"] - table[0]["test_elbo"] if sweep[0] == 0 else None
            result["refine_sweep"] = table
            result["refine_sweep_note"] = (f"bound of q~ after T steps, each estimated with the step's "
                                           f"{n_refine} samples + closed-form entropy; gap relative to T = 0")
            if write:
                path = plot_amortization_gap(table, figure,
                                             f"{dataset.name}, {cfg.method}: {rule} γ={rate:g}, N={n_refine}")
                result["amortization_gap_figure"] = str(path)
    result["seconds"] = time.perf_counter() - t0
    if write:
        atomic_write_json(output, result)
    return result
