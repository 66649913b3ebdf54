"""Plain REINFORCE: the score-function ELBO gradient with no variance reduction.

    ∇_φ L ≈ (1/S) Σ_s (log p(x, h_s) − log q(h_s|x)) ∇_φ log q(h_s|x),   h_s ~ q_φ(h|x),
    ∇_θ L ≈ (1/S) Σ_s ∇_θ log p(x, h_s)

(``varinf.objectives.score_function_surrogate`` with no baseline; Williams 1992, Ranganath,
Gerrish & Blei 2014). Unbiased for any family, and the naive reference the other binary-latent
methods are compared with.
"""

from __future__ import annotations

from varinf.contract import posterior
from varinf.infer._base import Losses, Method
from varinf.objectives import score_function_surrogate

__all__ = ["Reinforce"]


class Reinforce(Method):
    """Training method ``reinforce``: score-function gradient, ``samples`` draws per datapoint."""

    name = "reinforce"
    families = ("bernoulli", "layered-bernoulli", "gaussian")

    def __init__(self, model, samples: int = 1):
        super().__init__(model)
        self.samples = samples

    def losses(self, x, generator):
        q = posterior(self.model, x)
        surrogate = score_function_surrogate(self.model, q, x, self.samples, generator)     # (B,)
        loss = -surrogate.mean()
        return Losses({"generative": loss, "inference": loss}, surrogate.detach())
