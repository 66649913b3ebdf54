"""Variance and bias of each binary-latent method's encoder gradient, against the exact gradient.

A small SBN (digits 8x8, K = 8 binary latents, linear, so p(h|x) is enumerable: 256 states) is
first trained for a few epochs with NVIL (so that the posterior is not the prior and NVIL's
baseline is fitted). Then, on one fixed batch of B = 10 test digits, each method's estimate
g of the encoder-parameter gradient is drawn R times and compared with the exact gradient
∇_φ (1/B) Σ_i L(x_i) of the ELBO (``varinf.enumeration.exact_elbo`` + autograd):

    variance  tr Cov(g)         (sum over the encoder's parameters of the per-coordinate variance)
    bias      ‖E[g] − ∇L‖       (E[g] estimated by the mean of the R draws; its noise ≈ √(tr Cov / R))
    cos       cosine(E[g], ∇L)

VIMCO ascends the k-sample bound L_k (k = 2 here): its bias and cosine are against the exact ∇_φ L_2
(``varinf.enumeration.exact_iwae_bound``), not the ELBO's. Gumbel-Softmax (relaxed and straight-through,
τ = ``--temperature``) ascends a relaxed objective: its "bias" is the relaxation's bias in the ELBO gradient.
ARM and DisARM are unbiased for the ELBO gradient. With ``--latent-dim 4,4`` (a two-layer SBN) the one-layer-only
methods (mean-pass, straight-through) are left out and the refined-EM rows refine every layer.

Wake-sleep's sleep phase and AVI's encoder step do not follow the ELBO gradient (they fit q
to p(h|x) under KL(p‖q) on dreams, resp. KL(q̃‖q)): their "bias" is the distance to the ELBO
gradient, reported for comparison. All gradients are of the loss each method *ascends*
(sign-aligned with ∇L).

    .venv/bin/python benchmarks/bench_sbn_variance.py [--reps 200] [--latent-dim 8 | 4,4] [--temperature 0.5]
                                                      [--figure docs/figures/sbn_variance.png]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from varinf.config import make_config
from varinf.data import load_dataset
from varinf.enumeration import exact_encoder_elbo, exact_iwae_bound
from varinf.models import SBN, SBNConfig
from varinf.training import method_for, optimizers_for, train_epoch


def flat_grad(model, objective: torch.Tensor) -> torch.Tensor:
    params = model.inference_parameters()
    grads = torch.autograd.grad(objective, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


class Estimate:
    """One method's encoder gradient, taken through its own update (``method.step``, zero learning rate)."""

    def __init__(self, method):
        self.method = method
        self.groups = method.parameter_groups()
        self.optimizers = {name: torch.optim.SGD(ps, lr=0.0) for name, ps in self.groups.items()}

    def __call__(self, x, g) -> torch.Tensor:
        self.method.step(x, g, self.optimizers)
        return -torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                           for p in self.groups["inference"]])          # the direction φ ascends


def estimators(model, nvil, samples: int, steps: int, refine_samples: int, temperature: float) -> dict:
    """name -> (what φ ascends, Estimate) for every binary-latent method, built as training builds it."""
    def method(name, **kw):
        kw.setdefault("samples", samples)
        cfg = make_config(model="sbn", method=name, dataset="digits", refine_steps=steps,
                          refine_samples=refine_samples, latent_dim=model.config.latent_dim, hidden=(), **kw)
        return Estimate(method_for(cfg, model, model.config.data_dim))

    nvil.state.alpha = 1.0                      # freeze the trained centring and scale while drawing
    new = {
        "vimco (k = 2)": ("L_2 (bias vs exact ∇L_2)", method("vimco", samples=max(2, samples))),
        "arm": ("ELBO", method("arm")),
        "disarm": ("ELBO", method("disarm")),
        f"gumbel τ={temperature:g}": ("relaxed ELBO (biased)", method("gumbel", temperature=temperature)),
        f"gumbel-st τ={temperature:g}": ("ELBO (biased, ST)", method("gumbel-st", temperature=temperature)),
    }
    if len(model.widths) > 1:                   # deep SBN: the one-layer-only methods are left out
        return {
            "reinforce": ("ELBO", method("reinforce")),
            "nvil": ("ELBO", Estimate(nvil)),
            **new,
            f"mpvi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 7 steps, every layer", method("mpvi")),
            f"stvi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 8 steps, every layer", method("stvi")),
            f"avi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 9 steps, γ = 0.1, every layer", method("avi")),
            "wake-sleep": ("sleep: E_p log q", method("wake-sleep")),
        }
    return {
        "reinforce": ("ELBO", method("reinforce")),
        "nvil": ("ELBO", Estimate(nvil)),
        "straight-through": ("ELBO (biased, Eq. 8)", method("straight-through")),
        "mean-pass": ("Eq. 7 (deterministic)", method("mean-pass")),
        f"mpvi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 7 steps", method("mpvi")),
        f"stvi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 8 steps", method("stvi")),
        f"avi{steps}": ("−KL(q̃‖q_φ), q̃ by Eq. 9 steps, γ = 0.1", method("avi")),
        "wake-sleep": ("sleep: E_p log q", method("wake-sleep")),
        **new,
    }


def _widths(text: str):
    widths = tuple(int(t) for t in text.split(",") if t)
    return widths[0] if len(widths) == 1 else widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--latent-dim", type=_widths, default=8, help="K, or layer widths such as 4,4 (deep SBN)")
    parser.add_argument("--temperature", type=float, default=0.5, help="gumbel/gumbel-st temperature τ")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1, help="samples per datapoint in each estimate")
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--figure", default="docs/figures/sbn_variance.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    data = load_dataset("digits")
    cfg = make_config(model="sbn", method="nvil", dataset="digits", hidden=(), latent_dim=args.latent_dim,
                      lr=3e-3, batch_size=20)
    torch.manual_seed(0)
    model = SBN(SBNConfig(data_dim=data.dim, latent_dim=args.latent_dim, hidden=()))
    method = method_for(cfg, model, data.dim)
    optimizers = optimizers_for(cfg, method)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.pretrain_epochs):
        train_epoch(method, optimizers, data.split("train"), cfg.batch_size, gen)
    x = data.split("test")[:args.batch]

    exact = flat_grad(model, exact_encoder_elbo(model, x).mean())
    exact_l2 = flat_grad(model, exact_iwae_bound(model, x, 2).mean())
    rows = []
    for name, (objective, fn) in estimators(model, method, args.samples, 20, 20, args.temperature).items():
        g = torch.Generator().manual_seed(1)
        t = time.perf_counter()
        draws = torch.stack([fn(x, g) for _ in range(args.reps)])
        sec = (time.perf_counter() - t) / args.reps
        mean = draws.mean(0)
        target = exact_l2 if name.startswith("vimco") else exact
        var = draws.var(0, unbiased=True).sum().item()
        bias = (mean - target).norm().item()
        cos = torch.nn.functional.cosine_similarity(mean, target, dim=0).item()
        rows.append(dict(method=name, objective=objective, var=var, bias=bias, noise=math.sqrt(var / args.reps),
                         cos=cos, ms=1e3 * sec))

    arch = "-".join(str(k) for k in model.widths)
    print(f"SBN digits 64-{arch} (linear), batch {args.batch}, {args.samples} sample(s)/datapoint, "
          f"{args.reps} draws per method; ‖∇L exact‖ = {exact.norm().item():.4f}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread\n")
    print("| method | gradient of | tr Cov(g) | ‖E g − ∇L‖ | MC noise of bias | cos(E g, ∇L) | ms/estimate |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['objective']} | {r['var']:.4g} | {r['bias']:.4f} | {r['noise']:.4f} | "
              f"{r['cos']:.3f} | {r['ms']:.2f} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    names = [r["method"] for r in rows]
    axes[0].bar(names, [max(r["var"], 1e-12) for r in rows])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("tr Cov of encoder gradient")
    axes[1].bar(names, [max(r["bias"], 1e-4) for r in rows])
    axes[1].bar(names, [max(r["noise"], 1e-4) for r in rows], color="grey", alpha=0.6, label="MC noise level")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("‖E g − exact gradient‖\n(ELBO; L_2 for vimco)")
    axes[1].legend()
    for ax in axes:
        plt.setp(ax.get_xticklabels(), rotation=55, ha="right")
    fig.suptitle(f"SBN 64-{arch} on digits: encoder-gradient estimators vs exact (enumeration)")
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=120)
    print(f"\nfigure: {args.figure}; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
