"""ARM: the augment-REINFORCE-merge gradient for binary latents (Yin & Zhou 2019), one- and multi-layer.

For q(h|x) = Π_k Bernoulli(σ(α_k)) and f(h) = log p(x, h) − log q(h|x) (q's parameters held fixed in f,
E_q[∇_φ log q] = 0), one uniform vector u ~ U(0, 1)^K gives the antithetic pair

    b = 1[u < σ(α)],   b̃ = 1[1 − u < σ(α)]  (= 1[u > σ(−α)])          (both ~ q)

and the unbiased estimate of ∇_α E_q[f(h)] (Yin & Zhou 2019 Theorem 1, the merged estimator)

    g_ARM = (f(b̃) − f(b)) (u − ½),                                      (K,), one coefficient per unit

chained into φ as Σ_k g_k ∇_φ α_k. No learned baseline: the pair is its own control variate.

Multi-layer SBNs (q(h|x) = Π_l q(h_l|h_{l−1}), ``varinf.families.LayeredBernoulli``). The gradient splits
over layers, ∇_φ E_q f = Σ_l E_{h<l}[ ∇_{α_l} E_{h_l|h<l}[ F_l(h≤l) ] ∇_φ α_l ] with F_l the expectation of f
over the layers above. varinf's estimator, per draw of uniforms u₁…u_L (one per layer):

    base chain     h_l = 1[u_l < σ(α_l)], α_l = f_l(h_{l−1}) (h₀ = x)             one evaluation f(h)
    layer l pair   b_l = h_l (the base chain itself), b̃_l = 1[1 − u_l < σ(α_l)] with the same h<l; the
                   layers above b̃_l are redrawn from the *same* u_{>l}: h̃⁽ˡ⁾ = (h<l, b̃_l, h̃>l)   one evaluation
    layer l grad   g_l = coefficient(f(h̃⁽ˡ⁾), f(h), u_l, α_l) chained into φ through α_l

— L + 1 evaluations of f for L layers. F_l's one-sample estimates f(h) and f(h̃⁽ˡ⁾) depend on u_{>l} only,
which is independent of u_l, so each layer's estimate stays unbiased (tested by enumeration). This is the
layer-wise treatment of the multi-layer experiments of Yin & Zhou (2019) and Dong, Mnih & Tucker (2020),
except that their code (google-research ``disarm/binary/networks.py``) draws both members of each pair
afresh (2L evaluations): here the base chain is one member of every pair and the antithetic continuations
share the base chain's uniforms.

θ's gradient is the average of ∇_θ log p(x, h) over the L + 1 chains (each chain is a draw from q).
"""

from __future__ import annotations

import torch

from varinf.contract import log_joint
from varinf.infer._base import Losses, Method

__all__ = ["ARM", "Antithetic", "antithetic_chains", "arm_coefficient"]


def arm_coefficient(f_anti: torch.Tensor, f_base: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor,
                    base: torch.Tensor, anti: torch.Tensor) -> torch.Tensor:
    """g = (f(b̃) − f(b)) (u − ½), Yin & Zhou (2019) Theorem 1 (ARM): f (S, B), u, α, b, b̃ (S, B, K) -> (S, B, K)."""
    return (f_anti - f_base).unsqueeze(-1) * (u - 0.5)


def antithetic_chains(family, params, u: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                          list[torch.Tensor]]:
    """The base chain h (S, B, K), its logits [α_l] (differentiable in φ) and the L antithetic chains [h̃⁽ˡ⁾].

    h_l = 1[u_l < σ(α_l)]; h̃⁽ˡ⁾ keeps h<l, sets layer l to b̃_l = 1[1 − u_l < σ(α_l)] and continues above
    with 1[u_m < σ(α_m)], m > l (see the module docstring).
    """
    h, alphas = family.chain(params, lambda l, a: (u[l] < torch.sigmoid(a.detach())).to(a.dtype))
    layers = list(torch.split(h, [v.shape[-1] for v in u], dim=-1))
    fixed = (params[0].detach(),)
    anti = []
    with torch.no_grad():
        for j in range(len(u)):
            def layer(l, a, j=j):
                if l < j:
                    return layers[l]                                                  # shared h<l
                threshold = 1 - u[l] if l == j else u[l]                              # b̃_j, then the same u above
                return (threshold < torch.sigmoid(a)).to(a.dtype)
            anti.append(family.chain(fixed, layer)[0])
    return h, alphas, anti


class Antithetic(Method):
    """The antithetic estimators' shared update: one base chain + one antithetic chain per layer, no baseline.

    Subclasses give the per-unit coefficient (:func:`arm_coefficient`, DisARM's). ``samples`` = S
    independent draws of the uniforms, averaged.
    """

    families = ("bernoulli", "layered-bernoulli")
    coefficient = staticmethod(arm_coefficient)

    def __init__(self, model, samples: int = 1):
        super().__init__(model)
        self.samples = samples

    def losses(self, x, generator):
        params = self.model.encode(x)                                                 # α₁ = f₁(x)   (B, K₁)
        u = self.family.uniforms(params[0], self.samples, generator)                  # [(S, B, K_l)]
        h, alphas, anti = antithetic_chains(self.family, params, u)
        chains = torch.stack([h, *anti])                                              # (L+1, S, B, K)
        lj = log_joint(self.model, x, chains.flatten(0, 1)).unflatten(0, chains.shape[:2])   # (L+1, S, B)
        with torch.no_grad():
            log_q = self.family.log_prob(tuple(p.detach() for p in params), chains.flatten(0, 1))
            f = lj.detach() - log_q.unflatten(0, chains.shape[:2])                   # f = log p − log q  (L+1, S, B)
        layers = list(torch.split(h, [v.shape[-1] for v in u], dim=-1))
        anti_layers = [torch.split(a, [v.shape[-1] for v in u], dim=-1)[l] for l, a in enumerate(anti)]
        surrogate = sum((self.coefficient(f[l + 1], f[0], u[l], alphas[l].detach(), layers[l], anti_layers[l])
                         * alphas[l]).sum(-1)                                         # Σ_k g_{l,k} α_{l,k}  (S, B)
                        for l in range(len(u))).mean(0)                               # (B,)
        theta = lj.mean((0, 1))                                                       # (1/(L+1)S) Σ log p   (B,)
        return Losses({"generative": -theta.mean(), "inference": -surrogate.mean()}, f[0].mean(0))


class ARM(Antithetic):
    """Training method ``arm``: the ARM estimator (Yin & Zhou 2019), layer by layer on a deep SBN."""

    name = "arm"
    coefficient = staticmethod(arm_coefficient)
