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
    LayeredBernoulli   (logits of layer 1,)        Π_l Π_k Bernoulli(h_{l,k}; σ(α_{l,k})),  α_1 = logits,
                                                   α_l = f_l(h_{l−1}) (a deep SBN's encoder, layer by layer)
    =================  ==========================  ======================================

Every draw takes a random stream ``rng`` (``varinf.streams``: a torch.Generator, None, or a
``Stream(generator, shard)``). Under data parallelism the stream carries the batch shard, and a draw
covers the whole global minibatch and keeps this process's rows, so datapoint i's noise does not
depend on the number of processes.

Shapes: a distribution has batch (B,) and event (K,); ``draw(params, S)`` returns (S, B, K);
``log_prob(params, h)`` maps h (S, B, K) to (S, B); entropies and KLs are (B,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import distributions as D

from varinf.streams import Rng, Stream

__all__ = ["Family", "DiagonalGaussian", "StandardNormal", "FactorialBernoulli", "LayeredBernoulli",
           "LayeredBernoulliDistribution", "TorchDistribution", "GAUSSIAN", "BERNOULLI", "Posterior"]


class Family:
    """What every variational family provides. Parameters are tuples of plain tensors."""

    name = ""
    param_names: tuple[str, ...] = ()
    reparameterizable = False

    def dist(self, *params: torch.Tensor) -> D.Distribution:
        """The torch.distributions object, batch (B,), event (K,)."""
        raise NotImplementedError

    def draw(self, params: tuple[torch.Tensor, ...], num_samples: int,
             generator: Rng) -> torch.Tensor:
        """``num_samples`` draws (S, B, K); differentiable in ``params`` when ``reparameterizable``."""
        raise NotImplementedError

    def log_prob(self, params: tuple[torch.Tensor, ...], h: torch.Tensor) -> torch.Tensor:
        """log q(h|x): (S, B, K) -> (S, B)."""
        return self.dist(*params).log_prob(h)

    def draw_with_log_prob(self, params: tuple[torch.Tensor, ...], num_samples: int,
                           generator: Rng) -> tuple[torch.Tensor, torch.Tensor]:
        """``draw`` and ``log_prob`` of the draws together: h (S, B, K), log q(h|x) (S, B)."""
        h = self.draw(params, num_samples, generator)
        return h, self.log_prob(params, h)

    def entropy(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """H(q) in closed form, (B,)."""
        return self.dist(*params).entropy()

    def entropy_term(self, params: tuple[torch.Tensor, ...], h: torch.Tensor) -> torch.Tensor:
        """The entropy term of a bound estimated from draws h (S, B, K) of q: here H(q) in closed form, (B,).

        A family without a closed-form entropy ([`LayeredBernoulli`][varinf.families.LayeredBernoulli]) returns −(1/S) Σ_s log q(h_s|x).
        """
        return self.entropy(params)

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
        eps = Stream.of(generator).draw(torch.randn, (num_samples, *mu.shape), mu, dim=1)   # the global batch's rows
        # μ and σ as (1, B, K): the backward pass sums their gradients over a draw axis only when S > 1
        # (broadcast from (B, K), torch sums over the new leading axis even when S = 1, two reductions a step)
        return torch.addcmul(mu.unsqueeze(0), log_std.exp().unsqueeze(0), eps), eps

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

    def log_prob(self, params, h) -> torch.Tensor:
        """log N(h; μ, diag σ²) = log N((h − μ)/σ; 0, I) − Σ_k log σ_k: (S, B, K) -> (S, B)."""
        mu, log_std = params
        return self.standard_log_prob((h - mu) * torch.exp(-log_std)) - log_std.sum(-1)

    def entropy(self, params) -> torch.Tensor:
        """H = K/2 (1 + log 2π) + Σ_k log σ_k, (B,)."""
        log_std = params[1]
        return 0.5 * log_std.shape[-1] * (1.0 + math.log(2 * math.pi)) + log_std.sum(-1)

    def kl(self, p_params, q_params) -> torch.Tensor:
        """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = Σ_k [log σ₂ − log σ₁ + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½], (B,)
        (Kingma & Welling 2014 App. B with a standard normal N(μ₂, σ₂²) = N(0, I))."""
        (mu1, log_std1), (mu2, log_std2) = p_params, q_params
        ratio = torch.exp(2 * (log_std1 - log_std2))                                   # σ₁² / σ₂²
        gap = (mu1 - mu2) * torch.exp(-log_std2)                                        # (μ₁ − μ₂) / σ₂
        return 0.5 * (ratio + gap * gap - 1).sum(-1) - (log_std1 - log_std2).sum(-1)

    def kl_to_standard(self, params) -> torch.Tensor:
        """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_k (σ_k² + μ_k² − 1) − Σ_k log σ_k, (B,) (Kingma & Welling 2014, App. B).

        ``kl`` with μ₂ = 0 and log σ₂ = 0, to the bit, values and gradients: the terms it drops
        (− 0, · e⁰) are exact. Four passes over (B, K) fewer, and no zero parameters to build.
        """
        mu, log_std = params
        return 0.5 * (torch.exp(2 * log_std) + mu * mu - 1).sum(-1) - log_std.sum(-1)

    def mean(self, params) -> torch.Tensor:
        return params[0]


class StandardNormal(D.Independent):
    """p(z) = N(0, I_K) as a torch.distributions object that says it is standard.

    ``Posterior.of`` reads it as the Gaussian family's standard member, so a KL against it takes
    [`DiagonalGaussian.kl_to_standard`][varinf.families.DiagonalGaussian.kl_to_standard] (the VAE's prior).
    ``like`` (..., K) gives the shape, device and dtype; its values are not read, so the mean is always 0.
    """

    def __init__(self, like: torch.Tensor):
        zeros = torch.zeros_like(like)
        super().__init__(D.Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "StandardNormal":
        return StandardNormal(self.base_dist.loc.expand(*batch_shape, *self.event_shape))


class FactorialBernoulli(Family):
    """q(h|x) = Π_k Bernoulli(h_k; μ_k), μ = σ(logits) (Hjelm et al. 2015 §5). Not reparameterisable."""

    name = "bernoulli"
    param_names = ("logits",)

    def dist(self, logits: torch.Tensor) -> D.Distribution:
        return D.Independent(D.Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    def draw(self, params, num_samples, generator):
        """h ~ Bernoulli(σ(logits)), (S, B, K); no gradient reaches the logits."""
        rng = Stream.of(generator)
        probs = rng.global_rows(torch.sigmoid(params[0].detach()), fill=0.5)   # all ranks' rows under data parallelism
        return rng.local_rows(torch.bernoulli(probs.expand(num_samples, *probs.shape), generator=rng.generator), dim=1)

    def entropy(self, params) -> torch.Tensor:
        """H = Σ_k −μ_k log μ_k − (1 − μ_k) log(1 − μ_k), written with logits for stability, (B,)."""
        logits = params[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.sigmoid(logits), reduction="none").sum(-1)

    def mean(self, params) -> torch.Tensor:
        return torch.sigmoid(params[0])

    def uniforms(self, like: torch.Tensor, num_samples: int, generator: Rng) -> list[torch.Tensor]:
        """U(0, 1) noise for the one layer, [(S, B, K)], drawn for the whole global batch (ARM, DisARM, Gumbel)."""
        return [Stream.of(generator).draw(torch.rand, (num_samples, *like.shape), like, dim=1)]

    def chain(self, params, sample_layer: Callable[[int, torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One stochastic layer: h = sample_layer(0, α₁) with α₁ = logits; returns (h, [α₁]).

        The one-layer case of [`LayeredBernoulli.chain`][varinf.families.LayeredBernoulli.chain], so an estimator written layer by layer
        (ARM, DisARM, Gumbel-Softmax) runs on one- and multi-layer SBNs alike. ``sample_layer``
        may return relaxed (non-binary) values.
        """
        logits = params[0]
        return sample_layer(0, logits), [logits]


class LayeredBernoulli(Family):
    """A deep SBN's encoder q(h|x) = q(h₁|x) q(h₂|h₁) ⋯ q(h_L|h_{L−1}), each factor factorial Bernoulli.

    h is the concatenation (h₁, …, h_L) of the layers' units, (S, B, K) with K = Σ_l K_l (layer 1
    next to x). The parameters are the logits of layer 1, α₁ = f₁(x), (B, K₁); the logits of layer
    l > 1 are α_l = f_l(h_{l−1}) of the *sampled* layer below, computed by ``upper(l, h_{l−1})`` (the
    model's encoder networks, l = 1, …, L − 1 counting from 0). So q is not factorial given x: it has
    no closed-form entropy or KL, and a bound's entropy term is estimated from the draws
    (`entropy_term`). The inference network of the multi-layer SBNs of Mnih & Gregor (2014),
    Mnih & Rezende (2016) and Yin & Zhou (2019).
    """

    name = "layered-bernoulli"
    param_names = ("logits",)

    def __init__(self, widths: tuple[int, ...], upper: Callable[[int, torch.Tensor], torch.Tensor]):
        self.widths = tuple(widths)
        self.upper = upper

    def split(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The layers (h₁, …, h_L) of a concatenated h (..., K): a list of (..., K_l)."""
        return list(torch.split(h, self.widths, dim=-1))

    def chain(self, params, sample_layer: Callable[[int, torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Walk the layers bottom-up: h_l = sample_layer(l, α_l), α_{l+1} = f_{l+1}(h_l); returns (h, [α_l]).

        ``sample_layer(l, α_l)`` gets layer l's logits (..., K_l) and returns its units (binary draws,
        the given units of a fixed h (teacher forcing), or relaxed values); h is the concatenation.
        """
        alpha, layers, alphas = params[0], [], []
        for l in range(len(self.widths)):
            if l:
                alpha = self.upper(l, layers[-1])
            alphas.append(alpha)
            layers.append(sample_layer(l, alpha))
        return torch.cat(layers, -1), alphas

    def layer_logits(self, params, h: torch.Tensor) -> list[torch.Tensor]:
        """[α₁, …, α_L] of a given h (S, B, K): α₁ = params (broadcast), α_l = f_l(h_{l−1})."""
        layers = self.split(h)
        return self.chain(params, lambda l, alpha: layers[l])[1]

    def uniforms(self, like: torch.Tensor, num_samples: int, generator: Rng) -> list[torch.Tensor]:
        """Independent U(0, 1) noise for every layer, [(S, B, K_l)], drawn for the whole global batch."""
        rng = Stream.of(generator)
        return [rng.draw(torch.rand, (num_samples, like.shape[0], k), like, dim=1) for k in self.widths]

    def draw(self, params, num_samples, generator):
        """Ancestral draw h_l = 1[u_l < σ(α_l)], u_l ~ U(0, 1), layer by layer: (S, B, K); no gradient to φ."""
        u = self.uniforms(params[0], num_samples, generator)
        with torch.no_grad():
            return self.chain((params[0].detach(),), lambda l, alpha: (u[l] < torch.sigmoid(alpha)).to(alpha.dtype))[0]

    def log_prob(self, params, h):
        """log q(h|x) = Σ_l Σ_k log Bernoulli(h_{l,k}; σ(α_{l,k})): (S, B, K) -> (S, B); differentiable in φ."""
        return sum(BERNOULLI.log_prob((alpha,), layer)
                   for alpha, layer in zip(self.layer_logits(params, h), self.split(h)))

    def dist(self, logits: torch.Tensor) -> "LayeredBernoulliDistribution":
        return LayeredBernoulliDistribution(self, logits)

    def entropy(self, params):
        raise NotImplementedError("a layered q(h|x) has no closed-form entropy; use entropy_term(params, h)")

    def entropy_term(self, params, h):
        """−(1/S) Σ_s log q(h_s|x): the entropy term of a bound, estimated from the draws h (S, B, K), (B,)."""
        return -self.log_prob(params, h).mean(0)

    def kl(self, p_params, q_params):
        raise NotImplementedError("a layered q(h|x) has no closed-form KL")

    def mean(self, params):
        raise NotImplementedError("a layered q(h|x) has no closed-form mean")


class LayeredBernoulliDistribution(D.Distribution):
    """q(h|x) of [`LayeredBernoulli`][varinf.families.LayeredBernoulli] as a torch.distributions object: batch (B,), event (K,).

    Exists so that code written for a ``q`` object (``varinf.objectives``' estimators and the k-sample
    evaluation) takes a deep SBN's encoder unchanged; ``Posterior.of`` draws from it through its family.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, family: LayeredBernoulli, logits: torch.Tensor):
        self.family, self.logits = family, logits
        super().__init__(logits.shape[:-1], torch.Size([sum(family.widths)]), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.family.log_prob((self.logits,), value)

    def sample(self, sample_shape=torch.Size()):
        num = int(torch.Size(sample_shape).numel())
        return self.family.draw((self.logits,), num, None).reshape(*sample_shape, *self.batch_shape,
                                                                   *self.event_shape)


class TorchDistribution(Family):
    """Any other torch.distributions object q, taken as it is: its own ``log_prob``, ``entropy`` and mean.

    Drawn with ``q.rsample`` (``q.sample`` if it has none) from the global RNG, so it refuses an explicit
    generator rather than silently ignoring it. The parameters are the empty tuple: q is the family.
    """

    name = "torch"

    def __init__(self, q: D.Distribution):
        self.q = q
        self.reparameterizable = q.has_rsample

    def dist(self, *params):
        return self.q

    def draw(self, params, num_samples, generator):
        if Stream.of(generator).generator is not None:
            raise TypeError(f"varinf cannot draw from a {type(self.q).__name__} with an explicit generator; "
                            "pass generator=None to use the global RNG")
        return self.q.rsample((num_samples,)) if self.q.has_rsample else self.q.sample((num_samples,))

    def __repr__(self) -> str:
        return f"TorchDistribution({self.q!r})"


GAUSSIAN = DiagonalGaussian()
BERNOULLI = FactorialBernoulli()


@dataclass(frozen=True)
class Posterior:
    """q(h|x) as one value: a family and its parameters (each (B, K)), the currency of every estimator.

    ``draw``, ``log_prob``, ``entropy``, ``kl`` and ``mean`` are the family's maths on these parameters;
    a torch.distributions object exists only at the edge (``dist()``, and ``Posterior.of`` for a caller
    who hands one in). A posterior made by ``of`` keeps the caller's object, so ``dist()`` returns it
    unchanged (its densities and KLs are the caller's own, to the last bit).
    """

    family: Family
    params: tuple[torch.Tensor, ...]
    torch_dist: D.Distribution | None = field(default=None, compare=False, repr=False)
    standard: bool = False          # N(0, I) itself: KLs against it take the family's ``kl_to_standard``

    @staticmethod
    def of(q: "Posterior | D.Distribution") -> "Posterior":
        """The Posterior of ``q``: ``q`` itself, or the family and parameters of a torch.distributions object.

        An (Independent) Normal gives [`DiagonalGaussian`][varinf.families.DiagonalGaussian] with (μ, log σ) (a
        [`StandardNormal`][varinf.families.StandardNormal] marked ``standard``), an
        (Independent) Bernoulli [`FactorialBernoulli`][varinf.families.FactorialBernoulli] with (logits,), a deep SBN's
        [`LayeredBernoulliDistribution`][varinf.families.LayeredBernoulliDistribution] its family; any other torch object
        is its own family ([`TorchDistribution`][varinf.families.TorchDistribution], global RNG). The one place varinf
        asks what kind of distribution it was given.
        """
        if isinstance(q, Posterior):
            return q
        if isinstance(q, LayeredBernoulliDistribution):
            return Posterior(q.family, (q.logits,), q)
        base = q
        while isinstance(base, D.Independent):
            base = base.base_dist
        if isinstance(q, StandardNormal):
            return Posterior(GAUSSIAN, (base.loc, base.loc), q, standard=True)         # μ = 0 and log σ = 0
        if isinstance(base, D.Normal):
            return Posterior(GAUSSIAN, (base.loc, base.scale.log()), q)
        if isinstance(base, D.Bernoulli):
            return Posterior(BERNOULLI, (base.logits,), q)
        return Posterior(TorchDistribution(q), (), q)

    @property
    def batch_shape(self) -> torch.Size:
        """(B,): the datapoints q covers."""
        return self.params[0].shape[:-1] if self.params else self.torch_dist.batch_shape

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of q's parameters and draws."""
        return self.params[0].dtype if self.params else self.torch_dist.mean.dtype

    def dist(self) -> D.Distribution:
        """The torch.distributions object (the caller's own if this posterior was made from one)."""
        return self.torch_dist if self.torch_dist is not None else self.family.dist(*self.params)

    def draw(self, num_samples: int = 1, generator: Rng = None,
             reparameterize: bool = True) -> torch.Tensor:
        """``num_samples`` draws (S, B, K) from ``generator``; reparameterised (h = μ + σ ⊙ ε for a Gaussian,
        Hjelm et al. 2015 Eq. 5) unless ``reparameterize`` is false or the family is discrete."""
        h = self.family.draw(self.params, num_samples, generator)
        return h if reparameterize else h.detach()

    def draw_with_log_prob(self, num_samples: int = 1, generator: Rng = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """``draw`` and log q(h|x) of the draws together: (S, B, K), (S, B)."""
        return self.family.draw_with_log_prob(self.params, num_samples, generator)

    def log_prob(self, h: torch.Tensor) -> torch.Tensor:
        """log q(h|x): (S, B, K) -> (S, B) (the caller's torch object's own ``log_prob`` if made by ``of``)."""
        if self.torch_dist is not None:
            return self.torch_dist.log_prob(h)
        return self.family.log_prob(self.params, h)

    def entropy(self) -> torch.Tensor:
        """H(q) in closed form, (B,)."""
        return self.family.entropy(self.params)

    def entropy_term(self, h: torch.Tensor) -> torch.Tensor:
        """The entropy term of a bound from draws h (S, B, K) of q, (B,) (``Family.entropy_term``)."""
        return self.family.entropy_term(self.params, h)

    def kl(self, other: "Posterior") -> torch.Tensor:
        """KL(self ‖ other) in closed form between two members of one family, (B,)."""
        if other.standard and other.family is self.family:
            return self.family.kl_to_standard(self.params)                  # other = N(0, I)
        return self.family.kl(self.params, other.params)

    def mean(self) -> torch.Tensor:
        """E_q[h], (B, K)."""
        return self.family.mean(self.params)

    def detach(self) -> "Posterior":
        """The same q with its parameters cut from the graph."""
        return Posterior(self.family, tuple(p.detach() for p in self.params))
