"""Iterative refinement of the approximate posterior (Hjelm et al. 2015, §2–5): four refiners.

Start from the encoder's variational parameters z₀ = q_φ(x) and improve them for each datapoint
with an operator applied T times; the result z_T defines q̃(h|x). A refiner is a small object

    refiner.start(model, x)                   -> q_0                   (a Posterior: the encoder's q_φ(h|x))
    refiner.refine(model, q0, x, generator)   -> q_T                   (Posterior -> Posterior)
    refiner.iterate(model, q0, x, generator)  -> q_0, q_1, …, q_T      (a generator; traces, sweeps)
    refiner.check(model)                      one-line ConfigError if the model's family does not fit

with four implementations, one per operator of the paper:

    ==========================  ========================  =====================================================
    refiner                     latent family             operator
    ==========================  ========================  =====================================================
    GaussianGradient            DiagonalGaussian          z ← z + γ ∇_z L̂(x, z), L̂ of Eqs. 3 and 5 (GBVI, Eq. 4)
    MeanPassGradient            FactorialBernoulli        z ← z − γ ∇_z L_e, L_e of Eq. 7 (decoder sees μ = σ(z))
    StraightThroughGradient     FactorialBernoulli        z ← z − γ ∂L_e/∂z of Eq. 8 (∂/∂h passed straight to z)
    AdaptiveImportanceSampling  FactorialBernoulli        μ ← (1 − γ) μ + γ Σ_n w̃⁽ⁿ⁾ h⁽ⁿ⁾ (Eq. 9 is γ = 1; default 0.1)
    ==========================  ========================  =====================================================

Gradient refiners share one loop ([`GradientRefiner.iterate`][varinf.refinement.GradientRefiner.iterate]) and differ only in the
objective they ascend (``objective(model, q, x, generator) -> (B,)``, one of ``varinf.objectives``' bounds). The loop ascends the
*sum* over the batch: datapoint i's parameters enter only its own term, so each gets exactly its
own gradient with one forward and one backward pass per step (refining a batch equals refining
each datapoint alone with the same noise — tested). The gradient is taken with
``torch.autograd.grad`` with respect to z only, so the model's parameters get no ``.grad``. With
``create_graph=True`` the steps stay differentiable (semi-amortised training, Kim et al. 2018).

Step rules for gradient refiners: [`GradientStep`][varinf.refinement.GradientStep] (plain ascent, Eq. 4, as in the paper)
and [`AdamStep`][varinf.refinement.AdamStep] (per-parameter adaptive steps, an option beyond the paper). Both are
written without in-place updates so that ``create_graph`` can differentiate through them.

Which estimator of the Gaussian bound. Eq. 3 writes the entropy term as the sampled −log q̃(h⁽ⁿ⁾);
here it is the closed-form entropy. For a diagonal Gaussian both have the same gradient in
(μ, log σ) for every ε (−log q̃(μ + σε) = Σ log σ + ½‖ε‖² + const), so the steps are exactly
Eq. 4's; only the reported value has lower variance.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch

from varinf.contract import log_joint as _log_joint
from varinf.errors import ConfigError
from varinf.families import BERNOULLI, GAUSSIAN, Family, Posterior
from varinf.objectives import (entropy_bound, layered_mean_pass_objective, layered_straight_through_objective,
                               mean_pass_objective, straight_through_objective)
from varinf.streams import Rng

__all__ = ["LayeredMeanPassGradient", "LayeredStraightThroughGradient", "LayeredAdaptiveImportanceSampling",
           "mean_field_logits",
           "Refiner", "GradientRefiner", "GaussianGradient", "MeanPassGradient", "StraightThroughGradient",
           "AdaptiveImportanceSampling", "GradientStep", "AdamStep", "STEP_RULES", "make_step_rule",
           "avi_step", "AVI_CLAMP",
           "AVI_DEFAULT_RATE"]

Params = tuple[torch.Tensor, ...]


# ---- step rules ---------------------------------------------------------------------------------
class GradientStep:
    """Plain gradient ascent z ← z + γ ∇_z L (Hjelm et al. 2015 Eq. 4)."""

    name = "sgd"

    def __init__(self, rate: float):
        self.rate = rate

    def init(self, params: Params) -> tuple:
        return ()

    def __call__(self, params, grads, state, t: int):
        return tuple(p + self.rate * g for p, g in zip(params, grads)), state


class AdamStep:
    """Adaptive per-parameter ascent (Adam, Kingma & Ba 2015) on the variational parameters.

        m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
        z ← z + γ m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ).

    Each datapoint's state is its own (elementwise), so batching stays exact.
    """

    name = "adam"

    def __init__(self, rate: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.rate, self.betas, self.eps = rate, betas, eps

    def init(self, params):
        return tuple((torch.zeros_like(p), torch.zeros_like(p)) for p in params)

    def __call__(self, params, grads, state, t: int):
        b1, b2 = self.betas
        new_params, new_state = [], []
        for p, g, (m, v) in zip(params, grads, state):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            new_params.append(p + self.rate * m_hat / (v_hat.sqrt() + self.eps))
            new_state.append((m, v))
        return tuple(new_params), tuple(new_state)


STEP_RULES = {GradientStep.name: GradientStep, AdamStep.name: AdamStep}


def make_step_rule(name: str, rate: float):
    """The step rule called ``name`` ("sgd" or "adam") with inference rate γ = ``rate``."""
    try:
        return STEP_RULES[name](rate)
    except KeyError:
        raise ConfigError(f"refine_optimizer must be one of {sorted(STEP_RULES)}, got {name!r}") from None


# ---- refiners ---------------------------------------------------------------------------------------
class Refiner:
    """An operator applied T times to the variational parameters, from the encoder's output."""

    name = ""
    family: Family = GAUSSIAN
    equation = ""
    reads: tuple[str, ...] = ("refine_steps",)      # the run settings this refiner is built from

    def __init__(self, steps: int):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ConfigError(f"refine_steps must be an integer >= 0, got {steps!r}")
        self.steps = steps

    layered: type["Refiner"] | None = None     # this operator on every layer of a deep SBN (its subclass)

    @classmethod
    def families(cls) -> tuple[str, ...]:
        """The latent families of the models this refiner works on: its own, and a deep SBN's if it has a layered twin."""
        return (cls.family.name,) + (("layered-bernoulli",) if cls.layered is not None else ())

    def for_model(self, model) -> "Refiner":
        """This refiner, or its layer-wise twin (``layered``) when ``model`` is a deep SBN (layered latents)."""
        fam = getattr(getattr(model, "family", None), "name", None)
        if fam == "layered-bernoulli" and self.layered is not None and not isinstance(self, self.layered):
            other = copy.copy(self)
            other.__class__ = self.layered
            return other
        return self

    def start(self, model, x: torch.Tensor) -> Posterior:
        """q₀, the q refinement starts from: the encoder's q_φ(h|x) (a layered refiner: its mean-field pass)."""
        return Posterior(self.family, model.encode(x))

    def encoder_loss(self, model, refined: Posterior, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """C_q(φ) = KL(q̃(h|x) ‖ q_φ(h|x)) per datapoint (Hjelm et al. 2015 Eq. 6) in closed form, (B,); q̃ constant."""
        return refined.detach().kl(Posterior(self.family, model.encode(x)))

    def check(self, model) -> None:
        """One-line ConfigError unless the model's latent family is one this refiner works on (``families``):
        the check of evaluation; a training method checks its own (``Method``)."""
        fam = getattr(getattr(model, "family", None), "name", None)
        fits = self.families()
        if fam not in fits:
            raise ConfigError(f"refiner {self.name} ({self.equation}) works on {' or '.join(fits)} latents; "
                              f"{type(model).__name__} has {fam or 'none declared'} latents")

    def iterate(self, model, q0: Posterior, x: torch.Tensor, generator: Rng,
                create_graph: bool = False) -> Iterator[Posterior]:
        raise NotImplementedError

    def refine(self, model, q0: Posterior, x: torch.Tensor, generator: Rng, create_graph: bool = False) -> Posterior:
        """q_T after ``steps`` applications of the operator to q0; detached unless ``create_graph``."""
        q = q0
        for q in self.iterate(model, q0, x, generator, create_graph):
            pass
        return q

    __call__ = refine

    def with_steps(self, steps: int) -> "Refiner":
        """The same operator applied ``steps`` times (a copy)."""
        other = copy.copy(self)
        other.steps = Refiner(steps).steps
        return other

    def settings(self) -> dict:
        return {"refiner": self.name, "steps": self.steps}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "refiner")
        return f"{type(self).__name__}({inner})"


class GradientRefiner(Refiner):
    """T steps z_t = z_{t−1} + step(∇_z Σ_i objective_i(z_{t−1})) of a per-datapoint objective (B,)."""

    reads = ("refine_steps", "inference_rate", "refine_optimizer", "refine_samples")

    def __init__(self, steps: int, rate: float, step_rule: str = "sgd", samples: int = 1):
        super().__init__(steps)
        if not rate > 0 or rate != rate or rate == float("inf"):
            raise ConfigError(f"inference_rate must be a finite number > 0, got {rate!r}")
        if not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"refine_samples must be an integer >= 1, got {samples!r}")
        self.rate, self.samples = rate, samples
        self.rule_name = step_rule
        self.step_rule = make_step_rule(step_rule, rate)

    # the per-datapoint bound ascended: one of varinf.objectives' f(model, q, x, num_samples, generator) -> (B,)
    bound = staticmethod(entropy_bound)

    def objective(self, model, q: Posterior, x: torch.Tensor, generator: Rng) -> torch.Tensor:
        """The refiner's ``bound`` at q with N = ``samples`` draws, (B,)."""
        return self.bound(model, q, x, self.samples, generator)

    def iterate(self, model, q0, x, generator, create_graph=False):
        """Yield q_0, …, q_T. Works under ``torch.no_grad()`` too (gradients are enabled inside)."""
        family = q0.family
        with torch.enable_grad():
            if create_graph:
                params = tuple(p if p.requires_grad else p.detach().requires_grad_() for p in q0.params)
            else:
                params = tuple(p.detach() for p in q0.params)
            yield Posterior(family, params)
            state = self.step_rule.init(params)
            for t in range(self.steps):
                if not create_graph:
                    params = tuple(p.detach().requires_grad_() for p in params)
                value = self.objective(model, Posterior(family, params), x, generator)     # (B,)
                grads = torch.autograd.grad(value.sum(), params, create_graph=create_graph)  # ∇_z Σ_i L_i
                params, state = self.step_rule(params, grads, state, t + 1)
                if not create_graph:
                    params = tuple(p.detach() for p in params)
                    state = tuple(tuple(s.detach() for s in pair) for pair in state)
                yield Posterior(family, params)

    def settings(self) -> dict:
        return {**super().settings(), "rate": self.rate, "step_rule": self.rule_name, "samples": self.samples}


class GaussianGradient(GradientRefiner):
    """GBVI's refinement (Hjelm et al. 2015 §3, Eqs. 3–5): gradient ascent on the bound in (μ, log σ)."""

    name = "gaussian-gradient"
    family = GAUSSIAN
    equation = "Hjelm et al. 2015 Eqs. 3-5"

    # L̂(x, z) = (1/N) Σ_n log p(x, μ + σ ⊙ ε⁽ⁿ⁾) + H(q̃_z), Eqs. 3 and 5
    bound = staticmethod(entropy_bound)


class MeanPassGradient(GradientRefiner):
    """MPVI's refinement (Hjelm et al. 2015 Eq. 7): gradient steps on the logits with the mean-pass loss."""

    name = "mean-pass"
    family = BERNOULLI
    equation = "Hjelm et al. 2015 Eq. 7"
    reads = ("refine_steps", "inference_rate", "refine_optimizer")

    def __init__(self, steps: int, rate: float, step_rule: str = "sgd", samples: int = 1):
        super().__init__(steps, rate, step_rule, samples)     # deterministic: ``samples`` is not used

    bound = staticmethod(mean_pass_objective)            # −L_e(x, z) of Eq. 7


class StraightThroughGradient(GradientRefiner):
    """STVI's refinement (Hjelm et al. 2015 Eq. 8): straight-through gradient steps on the logits."""

    name = "straight-through"
    family = BERNOULLI
    equation = "Hjelm et al. 2015 Eq. 8"

    bound = staticmethod(straight_through_objective)     # the surrogate of Eq. 8, N = ``samples`` draws


AVI_CLAMP = 1e-3
# varinf's default AVI step γ (not the paper's: Eq. 9 as printed is γ = 1), for every AVI refiner, at
# training and at test time whatever method trained the run: the best of {1, 0.3, 0.1} by the refined
# q̃'s bound (docs/RESULTS.md §6, ``benchmarks/avi_rate.py``).
AVI_DEFAULT_RATE = 0.1


def avi_step(model, x: torch.Tensor, probs: torch.Tensor, num_samples: int, generator: Rng,
             rate: float) -> torch.Tensor:
    """One adaptive-importance-sampling step (Hjelm et al. 2015 Eq. 9), damped by γ = ``rate``: (B, K).

        h⁽ⁿ⁾ ~ Bernoulli(μ_t),  w⁽ⁿ⁾ = p(x, h⁽ⁿ⁾) / q_t(h⁽ⁿ⁾|x),  w̃⁽ⁿ⁾ = w⁽ⁿ⁾ / Σ_m w⁽ᵐ⁾
        μ_{t+1} = (1 − γ) μ_t + γ Σ_n w̃⁽ⁿ⁾ h⁽ⁿ⁾          (γ = 1: Eq. 9 as printed)

    The damped step is the "adaptive importance refinement" of Hjelm et al. 2016 (NeurIPS).
    """
    params = (torch.logit(probs),)
    h = BERNOULLI.draw(params, num_samples, generator)                          # (N, B, K)
    log_w = _log_joint(model, x, h) - BERNOULLI.log_prob(params, h)             # log w⁽ⁿ⁾     (N, B)
    w = torch.softmax(log_w, dim=0)                                             # w̃⁽ⁿ⁾         (N, B)
    target = (w.unsqueeze(-1) * h).sum(0)                                       # Σ_n w̃ h      (B, K)
    return target if rate == 1.0 else torch.lerp(probs, target, rate)


class AdaptiveImportanceSampling(Refiner):
    """AVI's refinement (Hjelm et al. 2015 Eq. 9): T adaptive-importance-sampling steps of N samples.

    Clamp: a weighted mean of N binary samples is exactly 0 or 1 in a unit where all samples
    agree; q̃ would then give probability 0 to states the posterior allows (log q̃ = −∞ there,
    importance sampling with q̃ inconsistent). Every μ_t is clamped to [ε, 1 − ε], ε = ``clamp``.
    With K = 200 latents and N ≈ 10–20 samples the normalised weights are nearly one-hot, so the
    undamped step (γ = 1) moves μ onto one sample; γ < 1 keeps part of the encoder's q.
    """

    name = "avi"
    family = BERNOULLI
    equation = "Hjelm et al. 2015 Eq. 9"
    reads = ("refine_steps", "refine_samples", "avi_rate")

    def __init__(self, steps: int, samples: int = 20, rate: float = AVI_DEFAULT_RATE, clamp: float = AVI_CLAMP):
        super().__init__(steps)
        if not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"refine_samples must be an integer >= 1, got {samples!r}")
        if not 0 < rate <= 1:
            raise ConfigError(f"avi_rate (AVI's step γ) must be in (0, 1], got {rate!r}")
        if not 0 < clamp < 0.5:
            raise ConfigError(f"AVI clamp must be in (0, 0.5), got {clamp!r}")
        self.samples, self.rate, self.clamp = samples, rate, clamp

    @torch.no_grad()
    def _steps(self, model, q0, x, generator):
        probs = torch.sigmoid(q0.params[0].detach()).clamp(self.clamp, 1 - self.clamp)
        yield Posterior(BERNOULLI, (torch.logit(probs),))
        for _ in range(self.steps):
            probs = avi_step(model, x, probs, self.samples, generator, self.rate).clamp(self.clamp, 1 - self.clamp)
            yield Posterior(BERNOULLI, (torch.logit(probs),))

    def iterate(self, model, q0, x, generator, create_graph=False):
        """Yield q_0, …, q_T, factorial Bernoulli with the logits of the clamped centres (not differentiable)."""
        if create_graph:
            raise ConfigError("adaptive importance sampling (Eq. 9) is not differentiable; it cannot be "
                              "used for semi-amortised training")
        yield from self._steps(model, q0, x, generator)

    def settings(self) -> dict:
        return {**super().settings(), "samples": self.samples, "rate": self.rate, "clamp": self.clamp}


# ---- the refiners on every layer of a deep SBN ------------------------------------------------------------
def mean_field_logits(model, x: torch.Tensor) -> torch.Tensor:
    """z₀ of a deep SBN's refinement: the encoder's layers applied to the means, (B, K₁ + … + K_L).

        z₁ = f₁(x),   z_l = f_l(σ(z_{l−1}))   (the layered encoder with each sampled layer replaced by its mean)

    q̃(h|x) = Π_l Π_k Bernoulli(σ(z_{l,k})) is factorial over every unit of every layer; the refiners move all of z.
    """
    alphas = model.family.chain(model.encode(x), lambda l, alpha: torch.sigmoid(alpha))[1]   # [z_l]
    return torch.cat(alphas, -1)


class _Layered:
    """What the three refiners change on a deep SBN (mixed into their layer-wise subclasses).

    q̃ is factorial over all K₁ + … + K_L units, started from [`mean_field_logits`][varinf.refinement.mean_field_logits]; Eq. 6's encoder loss
    KL(q̃ ‖ q_φ) has no closed form against the layered q_φ, so it is estimated from the M-step's N draws of q̃:

        C_q(φ) ≈ −H(q̃) − (1/N) Σ_n log q_φ(h⁽ⁿ⁾|x),   h⁽ⁿ⁾ ~ q̃        (unbiased, and so is its φ-gradient)
    """

    family = BERNOULLI

    @classmethod
    def families(cls) -> tuple[str, ...]:
        return ("layered-bernoulli",)                 # q̃ is factorial Bernoulli over the layers of a deep SBN

    def start(self, model, x):
        return Posterior(BERNOULLI, (mean_field_logits(model, x),))

    def encoder_loss(self, model, refined, x, h):
        log_q = model.family.log_prob(model.encode(x), h.detach())                   # log q_φ(h⁽ⁿ⁾|x)   (N, B)
        return -refined.detach().entropy() - log_q.mean(0)


class LayeredMeanPassGradient(_Layered, MeanPassGradient):
    """MPVI's refinement on every layer of a deep SBN ([`layered_mean_pass_objective`][varinf.objectives.layered_mean_pass_objective])."""

    bound = staticmethod(layered_mean_pass_objective)


class LayeredStraightThroughGradient(_Layered, StraightThroughGradient):
    """STVI's refinement on every layer of a deep SBN ([`layered_straight_through_objective`][varinf.objectives.layered_straight_through_objective])."""

    bound = staticmethod(layered_straight_through_objective)


class LayeredAdaptiveImportanceSampling(_Layered, AdaptiveImportanceSampling):
    """AVI's refinement on every layer of a deep SBN: Eq. 9's step on all K₁ + … + K_L means at once.

    [`avi_step`][varinf.refinement.avi_step] unchanged: h⁽ⁿ⁾ ~ q̃ (all layers), w⁽ⁿ⁾ = p(x, h⁽ⁿ⁾)/q̃(h⁽ⁿ⁾) with the deep SBN's joint, and
    μ ← (1 − γ) μ + γ Σ_n w̃⁽ⁿ⁾ h⁽ⁿ⁾ for every unit of every layer with the same normalised weights.
    """


MeanPassGradient.layered = LayeredMeanPassGradient
StraightThroughGradient.layered = LayeredStraightThroughGradient
AdaptiveImportanceSampling.layered = LayeredAdaptiveImportanceSampling
