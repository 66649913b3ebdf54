"""Drawing from torch.distributions objects with an explicit ``torch.Generator``.

torch.distributions' ``sample``/``rsample`` use the global RNG. Every estimator in
varinf takes a generator instead, so that a training run is a pure function of its
seed and a resumed run continues the exact random stream of an uninterrupted one.
This module is the one place that maps a distribution to its reparameterised
draw with a given generator; the densities themselves stay torch.distributions'.
"""

from __future__ import annotations

import torch
from torch import distributions as D


def _normal_noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def draw(q: D.Distribution, num_samples: int = 1, generator: torch.Generator | None = None,
         reparameterize: bool = True) -> torch.Tensor:
    """Draw ``num_samples`` samples from ``q``: shape ``(num_samples, *q.batch_shape, *q.event_shape)``.

    Normal (and ``Independent`` wrappers of it) is drawn by the reparameterisation
    h = μ + σ ⊙ ε, ε ~ N(0, I) (Kingma & Welling 2014, Eq. 10; seed 003 Eq. 5), so
    gradients flow to μ and σ when ``reparameterize`` is true. Bernoulli draws are
    not differentiable (score-function estimators handle them). Other families
    fall back to ``q.rsample``/``q.sample`` with the global RNG, and refuse a
    generator rather than silently ignoring it.
    """
    base, _ = _unwrap(q)
    shape = torch.Size((num_samples,)) + q.batch_shape + q.event_shape
    if isinstance(base, D.Normal):
        loc, scale = base.loc, base.scale
        eps = _normal_noise(shape, loc, generator)
        z = loc + scale * eps
        return z if reparameterize else z.detach()
    if isinstance(base, D.Bernoulli):
        probs = base.probs.detach().expand(shape)
        return torch.bernoulli(probs, generator=generator)
    if generator is not None:
        raise TypeError(
            f"varinf.sampling.draw cannot use an explicit generator with {type(base).__name__}; "
            "pass generator=None to use the global RNG"
        )
    if reparameterize and q.has_rsample:
        return q.rsample((num_samples,))
    return q.sample((num_samples,))


def _unwrap(q: D.Distribution) -> tuple[D.Distribution, int]:
    """Strip ``Independent`` wrappers; return the base distribution and the reinterpreted dims."""
    dims = 0
    while isinstance(q, D.Independent):
        dims += q.reinterpreted_batch_ndims
        q = q.base_dist
    return q, dims
