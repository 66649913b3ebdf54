"""Drawing from torch.distributions objects with an explicit ``torch.Generator``.

torch.distributions' ``sample``/``rsample`` use the global RNG. Every estimator in
varinf takes a generator instead, so that a training run is a pure function of its
seed and a resumed run continues the exact random stream of an uninterrupted one.
This module maps a torch.distributions object to its varinf family
(``varinf.families``), which owns the draw; the densities stay torch.distributions'.
"""

from __future__ import annotations

import torch
from torch import distributions as D


def draw(q: D.Distribution, num_samples: int = 1, generator: torch.Generator | None = None,
         reparameterize: bool = True) -> torch.Tensor:
    """Draw ``num_samples`` samples from ``q``: shape ``(num_samples, *q.batch_shape, *q.event_shape)``.

    Normal (and ``Independent`` wrappers of it) is drawn by the reparameterisation
    h = μ + σ ⊙ ε, ε ~ N(0, I) (Kingma & Welling 2014, Eq. 10; Hjelm et al. 2015 Eq. 5), so
    gradients flow to μ and σ when ``reparameterize`` is true. Bernoulli draws are
    not differentiable (score-function estimators handle them). Other families
    fall back to ``q.rsample``/``q.sample`` with the global RNG, and refuse a
    generator rather than silently ignoring it.
    """
    from varinf.families import family_of
    family = family_of(q)
    if family is not None:
        params = _params_of(q)
        z = family.draw(params, num_samples, generator)
        return z if reparameterize else z.detach()
    if generator is not None:
        raise TypeError(
            f"varinf.sampling.draw cannot use an explicit generator with {type(_unwrap(q)[0]).__name__}; "
            "pass generator=None to use the global RNG"
        )
    if reparameterize and q.has_rsample:
        return q.rsample((num_samples,))
    return q.sample((num_samples,))


def draw_with_log_prob(q: D.Distribution, num_samples: int = 1, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw(q, num_samples, generator)`` and ``q.log_prob`` of the draws: (S, *batch, *event), (S, *batch).

    A varinf family computes both in one go (a Gaussian's log q from its noise ε,
    ``DiagonalGaussian.draw_with_log_prob``); any other distribution draws, then evaluates.
    """
    from varinf.families import family_of
    family = family_of(q)
    if family is not None:
        return family.draw_with_log_prob(_params_of(q), num_samples, generator)
    h = draw(q, num_samples, generator)
    return h, q.log_prob(h)


def _params_of(q: D.Distribution) -> tuple[torch.Tensor, ...]:
    """The varinf family parameters of an (Independent) Normal or Bernoulli: (μ, log σ) or (logits,)."""
    base, _ = _unwrap(q)
    if isinstance(base, D.Normal):
        return base.loc, base.scale.log()
    return (base.logits,)


def _unwrap(q: D.Distribution) -> tuple[D.Distribution, int]:
    """Strip ``Independent`` wrappers; return the base distribution and the reinterpreted dims."""
    dims = 0
    while isinstance(q, D.Independent):
        dims += q.reinterpreted_batch_ndims
        q = q.base_dist
    return q, dims
