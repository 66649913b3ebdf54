"""Variational objectives as small pure functions returning per-datapoint tensors.

Every per-datapoint bound takes ``(model, q, x, num_samples, generator)`` and returns a tensor of
shape ``(B,)``: one bound (or surrogate) per datapoint — the ELBO estimators, IWAE, the entropy bound
that the refiners report, the mean-pass and straight-through objectives they ascend (Hjelm et al.
2015 Eqs. 3, 7, 8), the score-function surrogate, and the chunked log-weight summaries of the
k-sample evaluation. ``generator`` is a random stream (``varinf.streams``: a torch.Generator, None or
a ``Stream`` carrying a batch shard). Averaging over a batch and
negating for a loss is the caller's business.

Symbols (Goodfellow, Bengio & Courville 2016 §19.1; Hjelm et al. 2015 §2):

    x : visible data v,                 shape (B, D)
    z : latent h, drawn from q,         shape (S, B, K)   (S = samples per datapoint)
    q : q(z|x), a varinf.families.Posterior (family, params), batch (B,), event (K,); a
        torch.distributions object is accepted and converted once (Posterior.of)
    model.log_joint(x, z)      = log p(x, z)          -> (S, B)
    model.log_likelihood(x, z) = log p(x | z)         -> (S, B)
    model.prior()              = p(z), batch_shape (), event_shape (K,)

The ELBO (Goodfellow et al. 2016 Eqs. 19.1–19.3; Han Eq. 7):

    L(x, θ, q) = log p(x) − KL(q(z|x) ‖ p(z|x)) = E_q[log p(x, z)] + H(q).
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D

from varinf.contract import log_joint as _log_joint
from varinf.errors import ConfigError, DataError
from varinf.families import Posterior
from varinf.likelihoods import bernoulli_log_likelihood  # noqa: F401  (re-exported: its home is likelihoods)
from varinf.streams import Rng

__all__ = [
    "log_weights",
    "sgvb_a",
    "sgvb_b",
    "kl_to_prior",
    "iwae_bound",
    "log_marginal_estimate",
    "elbo_and_log_marginal",
    "chunk_summaries",
    "combine_chunks",
    "score_function_surrogate",
    "score_function_terms",
    "logmeanexp",
    "entropy_bound",
    "mean_pass_objective",
    "straight_through_objective",
    "layered_mean_pass_objective",
    "layered_straight_through_objective",
]


def _samples(num_samples) -> int:
    """``num_samples`` checked: an integer >= 1 (a one-line error instead of a torch traceback)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    return num_samples


def _in_support(model, x: torch.Tensor) -> torch.Tensor:
    """``x`` checked against a Bernoulli likelihood's support [0, 1] (a one-line DataError, not a garbage bound).

    Checked on CPU tensors only: on an accelerator the two reductions would force a host sync in every
    training step, and training data was already checked when it was loaded.
    """
    if getattr(getattr(model, "likelihood", None), "binary_data", False) and x.device.type == "cpu" and x.numel():
        lo, hi = (v.item() for v in torch.aminmax(x))                    # one pass over x
        if lo < 0 or hi > 1:
            raise DataError(f"x has values in [{lo:g}, {hi:g}] but {type(model).__name__}'s Bernoulli likelihood "
                            "needs data in [0, 1]; scale grey levels first (e.g. x / 255)")
    return x


def logmeanexp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log( (1/n) Σ_i exp a_i ) along ``dim``, computed stably."""
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


def log_weights(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 1,
                generator: Rng = None) -> torch.Tensor:
    """Log importance weights log w = log p(x, z) − log q(z|x), z ~ q: shape (S, B).

    The per-sample quantity that SGVB-A, the IWAE bound and the marginal-likelihood
    estimate are all built on (Hjelm et al. 2015 Eq. 1, the summand).
    """
    z, log_q = Posterior.of(q).draw_with_log_prob(_samples(num_samples), generator)   # (S, B, K), (S, B)
    return _log_joint(model, _in_support(model, x), z) - log_q             # (S, B)


def sgvb_a(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 1,
           generator: Rng = None) -> torch.Tensor:
    """SGVB estimator A (Patlan §IV; Kingma & Welling 2014, Eq. 6): shape (B,).

        L̂ᴬ(x) = (1/L) Σ_l [ log p(x, z⁽ˡ⁾) − log q(z⁽ˡ⁾|x) ],   z⁽ˡ⁾ = g(ε⁽ˡ⁾, x), ε⁽ˡ⁾ ~ p(ε).

    Unbiased for the ELBO; differentiable in q's parameters through the
    reparameterisation (``Posterior.draw``).
    """
    return log_weights(model, q, x, num_samples, generator).mean(0)


def kl_to_prior(q: Posterior | D.Distribution, prior: D.Distribution, num_samples: int = 1,
                generator: Rng = None) -> torch.Tensor:
    """KL(q(z|x) ‖ p(z)) per datapoint, shape (B,).

    In closed form where one exists: the family's own KL when p(z) is of q's family (diagonal
    Gaussians: −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²) for p = N(0, I), Kingma & Welling App. B;
    factorial Bernoullis), else ``torch.distributions.kl_divergence`` where it has a rule;
    otherwise the Monte Carlo estimate (1/L) Σ_l [log q(z⁽ˡ⁾) − log p(z⁽ˡ⁾)].
    """
    q, p = Posterior.of(q), Posterior.of(prior)
    try:
        if p.family is q.family:
            return q.kl(p)                                               # (B,)
        return D.kl_divergence(q.dist(), prior)                          # the edge: p(z) is some other torch object
    except NotImplementedError:
        z = q.draw(num_samples, generator)
        return (q.log_prob(z) - prior.log_prob(z)).mean(0)


def sgvb_b(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 1,
           generator: Rng = None) -> torch.Tensor:
    """SGVB estimator B (Patlan §IV; Kingma & Welling 2014, Eq. 7): shape (B,).

        L̂ᴮ(x) = (1/L) Σ_l log p(x | z⁽ˡ⁾) − KL(q(z|x) ‖ p(z)).

    The expected reconstruction term is estimated by sampling; the KL term is exact
    when torch.distributions knows it (lower variance than estimator A).
    """
    q = Posterior.of(q)
    z = q.draw(_samples(num_samples), generator)                         # (S, B, K)
    reconstruction = model.log_likelihood(_in_support(model, x), z).mean(0)   # E_q[log p(x|z)]  (B,)
    kl = kl_to_prior(q, model.prior(), num_samples, generator)           # KL(q ‖ p(z))     (B,)
    return reconstruction - kl


def iwae_bound(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 5,
               generator: Rng = None) -> torch.Tensor:
    """Importance-weighted bound L_k (Burda et al. 2016, Eq. 8): shape (B,).

        L_k(x) = E[ log (1/k) Σ_i p(x, z⁽ⁱ⁾) / q(z⁽ⁱ⁾|x) ],   z⁽ⁱ⁾ ~ q.

    L_1 is the ELBO; L_k ≤ L_{k+1} ≤ log p(x) and L_k → log p(x) as k → ∞ (Thm. 1).
    """
    return logmeanexp(log_weights(model, q, x, num_samples, generator), dim=0)


@torch.no_grad()
def elbo_and_log_marginal(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 5000,
                          chunk_size: int = 500, generator: Rng = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO and importance-sampling log p(x) from the same k draws z⁽ⁱ⁾ ~ q(z|x): two (B,) tensors.

        ELBO     ≈ (1/k) Σ_i log w⁽ⁱ⁾                      (SGVB-A with L = k)
        log p̂(x) = log (1/k) Σ_i w⁽ⁱ⁾,  w⁽ⁱ⁾ = p(x, z⁽ⁱ⁾) / q(z⁽ⁱ⁾|x)   (L_k, Burda et al. 2016 Eq. 8)

    Samples are drawn ``chunk_size`` at a time ([`chunk_summaries`][varinf.objectives.chunk_summaries]) and combined by a running
    sum and a running log-sum-exp ([`combine_chunks`][varinf.objectives.combine_chunks]), so memory is O(chunk_size · B · D)
    whatever k is.
    """
    return combine_chunks(chunk_summaries(model, q, x, num_samples, chunk_size, generator), num_samples)


@torch.no_grad()
def chunk_summaries(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 5000, chunk_size: int = 500,
                    generator: Rng = None, share: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """(log Σ_{i∈c} w⁽ⁱ⁾, Σ_{i∈c} log w⁽ⁱ⁾) for each chunk c of the k draws z⁽ⁱ⁾ ~ q(z|x): (C, 2, B).

    Chunk c holds draws c·chunk_size, ..., drawn in order from ``generator``. With ``share`` = (r, N)
    only the chunks c ≡ r (mod N) are evaluated and the others left zero, yet every chunk is
    drawn, so chunk c's draws do not depend on which process evaluates it: the sum of the N
    processes' tensors is the single process's tensor exactly (k split across processes).
    """
    _samples(num_samples)
    q = Posterior.of(q)                                            # once, outside the chunk loop
    rank, processes = share
    sizes = [min(chunk_size, num_samples - start) for start in range(0, num_samples, chunk_size)]
    out = torch.zeros(len(sizes), 2, *q.batch_shape, dtype=q.dtype, device=x.device)   # (C, 2, B)
    for c, s in enumerate(sizes):
        if c % processes != rank:
            q.draw(s, generator)                                   # another process's chunk: advance the stream
            continue
        lw = log_weights(model, q, x, s, generator)                # (s, B)
        out[c, 0], out[c, 1] = torch.logsumexp(lw, dim=0), lw.sum(0)
    return out


def combine_chunks(summaries: torch.Tensor, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO and log p̂(x), (B,) each, from [`chunk_summaries`][varinf.objectives.chunk_summaries] (C, 2, B), combined in chunk order."""
    lse, total = summaries[0, 0], summaries[0, 1]
    for c in range(1, summaries.shape[0]):
        lse, total = torch.logaddexp(lse, summaries[c, 0]), total + summaries[c, 1]
    return total / num_samples, lse - math.log(num_samples)


def log_marginal_estimate(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 5000,
                          chunk_size: int = 500, generator: Rng = None) -> torch.Tensor:
    """Importance-sampling estimate of log p(x) with proposal q, shape (B,).

        log p̂(x) = log (1/k) Σ_{i=1..k} p(x, z⁽ⁱ⁾) / q(z⁽ⁱ⁾|x),   z⁽ⁱ⁾ ~ q(z|x),

    i.e. L_k with k = ``num_samples`` (5000 by default, the protocol of Burda et al.
    2016 §5.2; report NLL = −log p̂(x)), computed in chunks (see ``elbo_and_log_marginal``).
    """
    return elbo_and_log_marginal(model, q, x, num_samples, chunk_size, generator)[1]


def score_function_terms(log_joint: torch.Tensor, log_q: torch.Tensor, baseline: torch.Tensor | float = 0.0,
                         scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Per-sample score-function surrogate (S, B) from log p(x, z) and log q(z|x) at z ~ q (z held fixed).

        value     l = log p(x, z) − log q(z|x)                     (the ELBO's summand)
        gradient  ∇ log p(x, z) + ((l − b) / s) ∇ log q(z|x)         (Ranganath et al. 2014 Eq. 3;
                                                                    Mnih & Gregor 2014 §3.3)

    ``baseline`` b (scalar, (B,) or (S, B)) and ``scale`` s > 0 are constants: E_q[∇ log q] = 0, so b
    leaves the gradient unbiased and s rescales it. With b = 0, s = 1 this is plain REINFORCE.
    """
    signal = (log_joint - log_q).detach()                                         # l
    b = baseline.detach() if torch.is_tensor(baseline) else baseline
    s = scale.detach() if torch.is_tensor(scale) else scale
    score = ((signal - b) / s) * log_q                                            # ∇ gives ((l − b)/s) ∇ log q
    return log_joint + score - score.detach() - log_joint.detach() + signal


def score_function_surrogate(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 1,
                             generator: Rng = None,
                             baseline: torch.Tensor | float | None = None) -> torch.Tensor:
    """Score-function (REINFORCE) surrogate of the ELBO, shape (B,) (Patlan Eqs. 1–2; Ranganath et al. 2014).

    z is drawn *without* reparameterisation, so it works for discrete latents. The value is the
    plain ELBO estimate (1/S) Σ_s [log p(x, z_s) − log q(z_s|x)]; the gradient is
    (1/S) Σ_s [∇ log p(x, z_s) + (l_s − b) ∇ log q(z_s|x)] ([`score_function_terms`][varinf.objectives.score_function_terms]).
    ``baseline`` b (a scalar or a (B,) tensor, e.g. NVIL's learned baseline) is treated as a constant.
    """
    q = Posterior.of(q)
    z = q.draw(_samples(num_samples), generator, reparameterize=False).detach()    # (S, B, K)
    terms = score_function_terms(_log_joint(model, x, z), q.log_prob(z), 0.0 if baseline is None else baseline)
    return terms.mean(0)                                                            # (B,)


# ---- the bounds the refiners ascend (Hjelm et al. 2015 Eqs. 3, 7, 8), same signature ---------------------
def entropy_bound(model, q: Posterior | D.Distribution, x: torch.Tensor, num_samples: int = 1,
                  generator: Rng = None) -> torch.Tensor:
    """L̂(x, z) = (1/N) Σ_n log p(x, h⁽ⁿ⁾) + H(q_z), h⁽ⁿ⁾ ~ q_z (reparameterised where possible): (B,).

    Hjelm et al. 2015 Eq. 3 with the closed-form entropy in place of the sampled −log q̃ (same
    gradient for a Gaussian, lower variance); for any family an unbiased estimate of the ELBO. A family
    with no closed-form entropy (a deep SBN's layered q) uses the sampled −(1/N) Σ_n log q(h⁽ⁿ⁾|x)
    (``Family.entropy_term``).
    """
    q = Posterior.of(q)
    h = q.draw(_samples(num_samples), generator)                             # (N, B, K)
    return _log_joint(model, x, h).mean(0) + q.entropy_term(h)                # E_q̃[log p(x,h)] + H(q̃)


def _bernoulli_kl_to_prior(model, q: Posterior) -> torch.Tensor:
    """KL(q̃ ‖ p(h)) = −E_q̃[log p(h)] − H(q̃) for a factorial Bernoulli q̃ and prior, in closed form: (B,)."""
    return kl_to_prior(q, model.prior().expand(q.batch_shape))


def mean_pass_objective(model, q: Posterior, x: torch.Tensor, num_samples: int = 1,
                        generator: Rng = None) -> torch.Tensor:
    """−L_e of Hjelm et al. 2015 Eq. 7, per datapoint (B,): the decoder sees the centres μ = σ(z) of q̃ = Bernoulli(σ(z)).

        −L_e = log p(x | μ) + E_q̃[log p(h)] + H(q̃) = log p(x | μ) − KL(q̃ ‖ p(h))

    The prior and entropy terms are exact (a closed-form KL for a factorial Bernoulli prior).
    Deterministic and differentiable in z (``num_samples`` and ``generator`` are not used); not a bound
    on log p(x) (log p(x|μ) ≠ E_q̃ log p(x|h)).
    """
    reconstruction = model.log_likelihood(x, q.mean().unsqueeze(0))[0]           # log p(x|μ)    (B,)
    return reconstruction - _bernoulli_kl_to_prior(model, q)                      # − KL(q̃ ‖ p(h)) (B,)


def straight_through_objective(model, q: Posterior, x: torch.Tensor, num_samples: int = 1,
                               generator: Rng = None) -> torch.Tensor:
    """Surrogate whose z-gradient is Hjelm et al. 2015 Eq. 8 (negated), per datapoint (B,), q̃ = Bernoulli(σ(z)).

        ∂(−L_e)/∂z = (1/N) Σ_n ∂/∂h log p(x | h⁽ⁿ⁾) + ∂/∂z (E_q̃[log p(h)] + H(q̃)),   h⁽ⁿ⁾ ~ Bernoulli(σ(z))

    As printed, the gradient of the conditional term with respect to the sample h⁽ⁿ⁾ is passed
    *straight* to z (∂h/∂z taken as the identity: h_st = z + (h − z) held constant; Bengio, Léonard
    & Courville 2013). The value is the unbiased ELBO estimate (1/N) Σ_n log p(x|h⁽ⁿ⁾) − KL(q̃ ‖ p(h)).
    """
    logits = q.params[0]
    h = q.draw(_samples(num_samples), generator)                                  # (N, B, K), no gradient
    h_st = logits + (h - logits).detach()                                         # forward h, backward identity
    reconstruction = model.log_likelihood(x, h_st).mean(0)                        # (1/N) Σ log p(x|h)   (B,)
    return reconstruction - _bernoulli_kl_to_prior(model, q)                      # − KL(q̃ ‖ p(h))     (B,)


def layered_mean_pass_objective(model, q: Posterior, x: torch.Tensor, num_samples: int = 1,
                                generator: Rng = None) -> torch.Tensor:
    """−L_e of Hjelm et al. 2015 Eq. 7 on every layer of a deep SBN, per datapoint (B,), μ = σ(z):

        −L_e = log p(x | μ₁) + Σ_{l<L} log p(μ_l | μ_{l+1}) + log p(μ_L) + H(q̃)

    each Bernoulli mass function extended linearly to μ ∈ (0, 1) (``model.log_joint`` at the means): a layer's
    expectation over its own units is exact (the mass is linear in the child), its parent is replaced by its mean —
    Eq. 7's "the decoder sees μ", applied to every conditional. With one layer this is Eq. 7 exactly
    (log p(μ) = E_q̃ log p(h) for a factorial prior, so it equals [`mean_pass_objective`][varinf.objectives.mean_pass_objective]).
    q̃ = Π Bernoulli(σ(z)) over all units of all layers; deterministic (``num_samples``, ``generator`` not used).
    """
    return model.log_joint(x, q.mean().unsqueeze(0))[0] + q.entropy()              # log p(x, μ) + H(q̃)


def layered_straight_through_objective(model, q: Posterior, x: torch.Tensor, num_samples: int = 1,
                                       generator: Rng = None) -> torch.Tensor:
    """Surrogate of Hjelm et al. 2015 Eq. 8 on every layer of a deep SBN, per datapoint (B,):

        (1/N) Σ_n log p(x, h⁽ⁿ⁾) + H(q̃),   h⁽ⁿ⁾ ~ q̃ = Π Bernoulli(σ(z)),   ∂/∂h⁽ⁿ⁾ passed straight to z

    every term of log p(x, h) (the top layer's prior included) gets the straight-through gradient; H(q̃) is exact.
    (The one-layer [`straight_through_objective`][varinf.objectives.straight_through_objective] keeps the prior term
    exact instead.) The value is an unbiased ELBO estimate of q̃.
    """
    logits = q.params[0]
    h = q.draw(_samples(num_samples), generator)                                  # (N, B, K), no gradient
    h_st = logits + (h - logits).detach()                                         # forward h, backward identity
    return _log_joint(model, x, h_st).mean(0) + q.entropy()
