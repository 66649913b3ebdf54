"""Importance-weighted autoencoder: encoder and decoder trained on the k-sample bound L_k.

Burda, Grosse & Salakhutdinov (2016), Eq. 8 (the bound) and §3 (its gradient). With k draws
z⁽ⁱ⁾ = μ + σ ⊙ ε⁽ⁱ⁾ from the encoder's q_φ(z|x) and w_i = p(x, z⁽ⁱ⁾) / q_φ(z⁽ⁱ⁾|x),

    L_k(x) = log (1/k) Σ_i w_i,       ∇_{θ,φ} L_k = Σ_i w̃_i ∇_{θ,φ} log w_i,   w̃_i = w_i / Σ_j w_j,

ascended in θ and φ jointly (the gradient is autograd's through the reparameterised draws).
L_1 is the ELBO, so k = 1 is the VAE's SGVB-A update; L_k ≤ L_{k+1} ≤ log p(x) (Burda et al. Thm. 1).
"""

from __future__ import annotations

import torch

from varinf.infer.aevb import AEVB
from varinf.objectives import iwae_bound

__all__ = ["IWAE"]


class IWAE(AEVB):
    """Training method ``iwae``: maximise L_k (Burda et al. 2016 Eq. 8) in encoder and decoder jointly.

    The VAE's update ([`AEVB`][varinf.infer.aevb.AEVB]) with the k-sample bound in place of SGVB-A's
    average (1/k) Σ_i log w_i: both are functions of the same k log weights (``objectives.log_weights``).
    """

    name = "iwae"
    validation_description = "importance-weighted bound L_k of the amortised encoder q_phi (k = the training samples)"

    def __init__(self, model, samples: int = 5):
        super().__init__(model, "A", samples)
        self.estimator = iwae_bound                    # L_k = log (1/k) Σ_i w_i   (Burda et al. 2016 Eq. 8)

    @torch.no_grad()
    def validation_bound(self, x, num_samples, generator):
        """L_k on held-out data with the training k (the objective early stopping follows): (B,)."""
        return self.objective(x, generator, self.samples)
