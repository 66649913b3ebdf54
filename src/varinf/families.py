"""Variational families: the per-sample maths of q(h|x), written once.

A family turns a tuple of plain parameter tensors (what an encoder outputs and what a refiner
moves) into a distribution and owns everything computed from it: drawing with an explicit
generator (reparameterised where the family allows it), ``log_prob``, the entropy, the
closed-form KL between two members, and the mean. Every estimator, refiner and training
method goes through a family, so no other module writes a Gaussian draw or a Bernoulli KL.

    =================  ==========================  ======================================
    family             parameters (each (B, K))    q(h|x)
    =================  ==========================  ======================================
    DiagonalGaussian   (mu, log_std)               N(μ, diag σ²),  σ = exp(log σ)
    FactorialBernoulli (logits,)                   Π_k Bernoulli(h_k; σ(logit_k))
    =================  ==========================  ======================================

Under data parallelism (``varinf.distributed``) a draw covers the whole global minibatch and
keeps this process's rows, so datapoint i's noise does not depend on the number of processes.

Shapes: a distribution has batch (B,) and event (K,); ``draw(params, S)`` returns (S, B, K);
``log_prob(params, h)`` maps h (S, B, K) to (S, B); entropies and KLs are (B,).
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D

from varinf.distributed import global_rows, global_shape, local_rows

__all__ = ["Family", "DiagonalGaussian", "FactorialBernoulli", "GAUSSIAN", "BERNOULLI", "family_of"]


class Family:
    """What every variational family provides. Parameters are tuples of plain tensors."""

    name = ""
    param_names: tuple[str, ...] = ()
    reparameterizable = False

    def dist(self, *params: torch.Tensor) -> D.Distribution:
        """The torch.distributions object, batch (B,), event (K,)."""
        raise NotImplementedError

    def draw(self, params: tuple[torch.Tensor, ...], num_samples: int,
             generator: torch.Generator | None) -> torch.Tensor:
        """``num_samples`` draws (S, B, K); differentiable in ``params`` when ``reparameterizable``."""
        raise NotImplementedError

    def log_prob(self, params: tuple[torch.Tensor, ...], h: torch.Tensor) -> torch.Tensor:
        """log q(h|x): (S, B, K) -> (S, B)."""
        return self.dist(*params).log_prob(h)

    def draw_with_log_prob(self, params: tuple[torch.Tensor, ...], num_samples: int,
                           generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``draw`` and ``log_prob`` of the draws together: h (S, B, K), log q(h|x) (S, B)."""
        h = self.draw(params, num_samples, generator)
        return h, self.log_prob(params, h)

    def entropy(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """H(q) in closed form, (B,)."""
        return self.dist(*params).entropy()

    def kl(self, p_params: tuple[torch.Tensor, ...], q_params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """KL(p ‖ q) between two members of the family in closed form, (B,)."""
        return D.kl_divergence(self.dist(*p_params), self.dist(*q_params))

    def mean(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """E_q[h], (B, K)."""
        return self.dist(*params).mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DiagonalGaussian(Family):
    """q(h|x) = N(μ, diag σ²) with parameters (μ, log σ) (Kingma & Welling 2014; Hjelm et al. 2015 §3)."""

    name = "gaussian"
    param_names = ("mu", "log_std")
    reparameterizable = True

    def dist(self, mu: torch.Tensor, log_std: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Normal(mu, log_std.exp(), validate_args=False), 1, validate_args=False)

    def draw(self, params, num_samples, generator):
        """h = μ + σ ⊙ ε, ε ~ N(0, I) (Hjelm et al. 2015 Eq. 5; Kingma & Welling 2014 Eq. 10): (S, B, K)."""
        return self.draw_with_noise(params, num_samples, generator)[0]

    def draw_with_noise(self, params, num_samples, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, ε) of ``draw``, both (S, B, K)."""
        mu, log_std = params
        shape = global_shape((num_samples, *mu.shape), dim=1)       # all ranks' rows under data parallelism
        eps = local_rows(torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device), dim=1)
        return torch.addcmul(mu, log_std.exp(), eps), eps

    def draw_with_log_prob(self, params, num_samples, generator):
        """h = μ + σ ⊙ ε and, from the same ε, log q(h|x) = log N(ε; 0, I) − Σ_k log σ_k (change of variables).

        Equal to ``log_prob(params, h)`` as a function of (μ, log σ, ε), gradients included, but
        one pass over ε instead of the five of the generic ((h − μ)/σ)² form (with the prior's
        ``standard_log_prob``: a k = 5000 evaluation ≈ 10% faster, docs/RESULTS.md §14.2).
        """
        h, eps = self.draw_with_noise(params, num_samples, generator)                  # (S, B, K)
        return h, self.standard_log_prob(eps) - params[1].sum(-1)                    # (S, B)

    @staticmethod
    def standard_log_prob(h: torch.Tensor) -> torch.Tensor:
        """log N(h; 0, I_K) = −½ ‖h‖² − (K/2) log 2π: (..., K) -> (...)."""
        return -0.5 * torch.linalg.vecdot(h, h) - 0.5 * h.shape[-1] * math.log(2 * math.pi)

    def entropy(self, params) -> torch.Tensor:
        """H = K/2 (1 + log 2π) + Σ_k log σ_k, (B,)."""
        log_std = params[1]
        return 0.5 * log_std.shape[-1] * (1.0 + math.log(2 * math.pi)) + log_std.sum(-1)

    def mean(self, params) -> torch.Tensor:
        return params[0]


class FactorialBernoulli(Family):
    """q(h|x) = Π_k Bernoulli(h_k; μ_k), μ = σ(logits) (Hjelm et al. 2015 §5). Not reparameterisable."""

    name = "bernoulli"
    param_names = ("logits",)

    def dist(self, logits: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    def draw(self, params, num_samples, generator):
        """h ~ Bernoulli(σ(logits)), (S, B, K); no gradient reaches the logits."""
        probs = global_rows(torch.sigmoid(params[0].detach()), fill=0.5)   # all ranks' rows (varinf.distributed)
        return local_rows(torch.bernoulli(probs.expand(num_samples, *probs.shape), generator=generator), dim=1)

    def entropy(self, params) -> torch.Tensor:
        """H = Σ_k −μ_k log μ_k − (1 − μ_k) log(1 − μ_k), written with logits for stability, (B,)."""
        logits = params[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.sigmoid(logits), reduction="none").sum(-1)

    def mean(self, params) -> torch.Tensor:
        return torch.sigmoid(params[0])

    @staticmethod
    def logits_of(probs: torch.Tensor, clamp: float) -> torch.Tensor:
        """The logits of probabilities clamped to [ε, 1 − ε] (keeps every state possible, see AVI)."""
        return torch.logit(probs.clamp(clamp, 1 - clamp))


GAUSSIAN = DiagonalGaussian()
BERNOULLI = FactorialBernoulli()


def family_of(q: D.Distribution) -> Family | None:
    """The varinf family of a torch.distributions object (an Independent Normal or Bernoulli), else None."""
    base = q.base_dist if isinstance(q, D.Independent) else q
    if isinstance(base, D.Normal):
        return GAUSSIAN
    if isinstance(base, D.Bernoulli):
        return BERNOULLI
    return None
