"""Bring your own model: a VAE defined here (not in varinf), trained with GBVI, evaluated with refinement.

The model is a two-layer Gaussian VAE with a *Gaussian* decoder p(x|h) = N(f_θ(h), σ²I) (learned global σ),
fitted to scikit-learn's 8×8 digits as grey levels in [0, 1]. It meets varinf's model contract
(``varinf.contract``): ``prior()``, ``log_likelihood(x, h)`` (so ``log_joint``), ``encode(x)`` returning plain
tensors, ``family`` and the θ/φ split (here by the ``AmortizedModel`` base: φ = ``self.encoder``). Then:

    varinf.train(cfg, run_dir, model=model, data=dataset)      # the same loop as ``varinf train``
    varinf.evaluate_model(model, x_test, refiner=...)           # test bound, refined bound, IS log-likelihood

Run: ``python examples/custom_model.py`` (about a minute on 2 CPU cores; ``--epochs 3`` for a smoke run).
Values are log-densities of grey levels (nats, continuous data): not comparable with Bernoulli models.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import torch
from sklearn.datasets import load_digits
from torch import distributions as D
from torch import nn

import varinf
from varinf.contract import AmortizedModel
from varinf.data import Dataset
from varinf.evaluate import run_refiner
from varinf.families import GAUSSIAN


class GaussianDecoderVAE(AmortizedModel):
    """q_φ(h|x) = N(μ_φ(x), σ_φ(x)²), p(h) = N(0, I), p_θ(x|h) = N(f_θ(h), exp(2 log s) I)."""

    family = GAUSSIAN

    def __init__(self, data_dim: int, latent_dim: int = 4, hidden: int = 64):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden), nn.Softplus(), nn.Linear(hidden, hidden),
                                     nn.Softplus(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Softplus(), nn.Linear(hidden, hidden),
                                     nn.Softplus(), nn.Linear(hidden, data_dim))
        self.log_scale = nn.Parameter(torch.tensor(-1.0))              # θ: the decoder's global log σ
        self.register_buffer("zero", torch.zeros(latent_dim), persistent=False)

    def encode(self, x):
        mu, log_std = self.encoder(x).chunk(2, dim=-1)                   # (B, K) each
        return mu, log_std

    def prior(self):
        return D.Independent(D.Normal(self.zero, torch.ones_like(self.zero)), 1)

    def log_likelihood(self, x, h):                                       # x (B, D), h (S, B, K) -> (S, B)
        scale = self.log_scale.clamp(min=-4.0).exp()                      # floor: the density stays finite
        return D.Independent(D.Normal(self.decoder(h), scale), 1).log_prob(x)


def digits_grey_levels(seed: int = 0) -> Dataset:
    """scikit-learn's digits as grey levels in [0, 1], shuffled and split 1197 / 300 / 300."""
    x = torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)
    x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))]
    return Dataset(name="digits-grey", train=x[:1197], valid=x[1197:1497], test=x[1497:], image_shape=(8, 8))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--refine-steps", type=int, default=20, help="T, refinement steps in training and at test")
    ap.add_argument("--nll-samples", type=int, default=500, help="importance samples per test point")
    ap.add_argument("--out", help="run directory (default: a temporary one)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    data = digits_grey_levels()
    model = GaussianDecoderVAE(data.dim)
    cfg = varinf.make_config(model="custom", method="gbvi", refine_steps=args.refine_steps, refine_samples=5,
                             samples=5, inference_rate=1e-3, refine_optimizer="adam", epochs=args.epochs,
                             batch_size=100, lr=3e-3, patience=0, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.out or tmp
        result = varinf.train(cfg, run, model=model, data=data, progress=False)
        varinf.load_weights(model, run)                                  # the best-validation checkpoint
    model.eval()
    test = data.split("test")
    refiner = run_refiner(cfg, model.family.name)                        # the run's own: GBVI's gradient steps
    plain = varinf.evaluate_model(model, test, nll_samples=args.nll_samples)
    refined = varinf.evaluate_model(model, test, nll_samples=args.nll_samples, refiner=refiner)

    def mean_se(v):
        return v.mean().item(), v.std().item() / math.sqrt(v.numel())

    summary = {
        "epochs": result.epochs_run, "best_epoch": result.best_epoch,
        "test_bound": mean_se(plain["elbo"]), "test_bound_refined": mean_se(refined["elbo"]),
        "test_nll": mean_se(-plain["log_px"]), "test_nll_refined": mean_se(-refined["log_px"]),
        "amortization_gap": mean_se(refined["elbo"] - plain["elbo"]),
    }
    print(f"{type(model).__name__} on {data.name}: {summary['epochs']} epochs of gbvi (T = {args.refine_steps}), "
          f"best epoch {summary['best_epoch']}")
    for key in ("test_bound", "test_bound_refined", "test_nll", "test_nll_refined", "amortization_gap"):
        m, se = summary[key]
        print(f"  {key:20s} {m:9.3f} ± {se:.3f} nats")
    return summary


if __name__ == "__main__":
    main()
