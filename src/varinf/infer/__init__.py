"""Inference and learning algorithms, one module each, and the registry ``varinf train --method`` reads.

A registry entry names a method, the latent families it trains, its default settings (filled into
the run's settings where the user gave none), and how the run's settings become the method's few
numbers. The refined-EM rows of Hjelm et al. (2015) are one method (``RefinedEM``) with four refiners:

    gbvi  = RefinedEM + GaussianGradient          (Eqs. 3–5)
    mpvi  = RefinedEM + MeanPassGradient          (Eq. 7)
    stvi  = RefinedEM + StraightThroughGradient   (Eq. 8)
    avi   = RefinedEM + AdaptiveImportanceSampling (Eq. 9)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from varinf.infer._base import (GroupOptimizer, Losses, Method, add_linear_warmup, apply_losses, make_optimizer,
                               make_optimizers)
from varinf.infer.aevb import AEVB
from varinf.infer.arm import ARM
from varinf.infer.disarm import DisARM
from varinf.infer.gumbel import GUMBEL_DEFAULT_TEMPERATURE, GumbelSoftmax
from varinf.infer.hvi import HVI
from varinf.infer.iwae import IWAE
from varinf.infer.mean_pass import MeanPass
from varinf.infer.nvil import NVIL
from varinf.infer.refined_em import RefinedEM
from varinf.infer.reinforce import Reinforce
from varinf.infer.savae import SAVAE
from varinf.infer.straight_through import StraightThrough
from varinf.infer.vimco import VIMCO
from varinf.infer.wake_sleep import WakeSleep
from varinf.refinement import (AVI_DEFAULT_RATE, AdaptiveImportanceSampling, GaussianGradient, MeanPassGradient,
                               Refiner, StraightThroughGradient)

# Step sizes of the gradient refiners on the logits (not given in the paper): the best of 0.003…10 by the
# refined q̃'s bound after T = 20 steps (docs/RESULTS.md, ``benchmarks/refine_rate.py``).
MPVI_DEFAULT_RATE = 1.0
STVI_DEFAULT_RATE = 0.01

REFINED = dict(refine_steps=20, refine_samples=20, samples=20)        # the paper's T = N = 20 and M-step N = 20


@dataclass(frozen=True)
class MethodSpec:
    """A registered training method: its name, latent families, default settings and builder."""

    name: str
    summary: str
    families: tuple[str, ...]
    build: Callable[[Any, Any, int], Method]       # (model, settings with every field filled, data dim)
    defaults: dict = field(default_factory=dict)
    refiner: Callable[[Any], Refiner] | None = None     # settings -> the refiner (refining methods only)


def _gaussian(s) -> Refiner:
    return GaussianGradient(s.refine_steps, s.inference_rate, s.refine_optimizer, s.refine_samples)


def _mean_pass(s) -> Refiner:
    return MeanPassGradient(s.refine_steps, s.inference_rate, s.refine_optimizer)


def _straight_through(s) -> Refiner:
    return StraightThroughGradient(s.refine_steps, s.inference_rate, s.refine_optimizer, s.refine_samples)


def _avi(s) -> Refiner:
    return AdaptiveImportanceSampling(s.refine_steps, s.refine_samples, s.avi_rate)


def _refined(name: str, refiner: Callable, refiner_cls: type[Refiner], summary: str, **defaults) -> MethodSpec:
    return MethodSpec(name, summary, refiner_cls.families(),
                      lambda m, s, d: RefinedEM(m, refiner(s), s.samples, s.valid_refine_steps, name=name),
                      {**REFINED, **defaults}, refiner)


_SPECS = [
    MethodSpec("vae", "SGVB estimator A or B with reparameterisation (Kingma & Welling 2014)", AEVB.families,
               lambda m, s, d: AEVB(m, s.estimator, s.samples), {"samples": 1}),
    _refined("gbvi", _gaussian, GaussianGradient, "EM with gradient refinement of q (Hjelm et al. 2015 Eqs. 3-6)",
             inference_rate=5e-3, refine_optimizer="sgd", valid_refine_steps=None),
    MethodSpec("savae", "encoder trained through the refinement steps (Kim et al. 2018)", SAVAE.families,
               lambda m, s, d: SAVAE(m, _gaussian(s), s.samples, s.valid_refine_steps),
               {**REFINED, "inference_rate": 5e-3, "refine_optimizer": "sgd"}, _gaussian),
    _refined("mpvi", _mean_pass, MeanPassGradient, "EM with mean-pass gradient refinement (Hjelm et al. 2015 Eq. 7)",
             inference_rate=MPVI_DEFAULT_RATE, refine_optimizer="sgd", valid_refine_steps=0),
    _refined("stvi", _straight_through, StraightThroughGradient,
             "EM with straight-through gradient refinement (Hjelm et al. 2015 Eq. 8)", inference_rate=STVI_DEFAULT_RATE, refine_optimizer="sgd", valid_refine_steps=0),
    _refined("avi", _avi, AdaptiveImportanceSampling,
             "EM with adaptive importance sampling refinement (Hjelm et al. 2015 Eq. 9)", valid_refine_steps=0),
    MethodSpec("mean-pass", "Eq. 7 of Hjelm et al. 2015 as an amortised training loss", MeanPass.families,
               lambda m, s, d: MeanPass(m), {"samples": 1}),
    MethodSpec("straight-through", "Eq. 8 of Hjelm et al. 2015 as an amortised training loss", StraightThrough.families,
               lambda m, s, d: StraightThrough(m, s.samples), {"samples": 1}),
    MethodSpec("wake-sleep", "wake-sleep (Hinton, Dayan, Frey & Neal 1995)", WakeSleep.families,
               lambda m, s, d: WakeSleep(m, s.samples), {"samples": 1}),
    MethodSpec("nvil", "score function with learned baseline (Mnih & Gregor 2014)", NVIL.families,
               lambda m, s, d: NVIL(m, d, s.samples, s.seed), {"samples": 1}),
    MethodSpec("iwae", "importance-weighted bound L_k with k = samples (Burda, Grosse & Salakhutdinov 2016)",
               IWAE.families, lambda m, s, d: IWAE(m, s.samples), {"samples": 5}),
    MethodSpec("hvi", "Hamiltonian variational inference with K = leapfrog-steps (Salimans et al. 2015)",
               HVI.families, lambda m, s, d: HVI(m, d, s.leapfrog_steps, s.samples, s.hidden, s.activation, s.seed),
               {"samples": 1, "leapfrog_steps": 5}),
    MethodSpec("reinforce", "plain score-function gradient (Williams 1992)", Reinforce.families,
               lambda m, s, d: Reinforce(m, s.samples), {"samples": 1}),
    MethodSpec("vimco", "k-sample bound with leave-one-out baselines, k = samples (Mnih & Rezende 2016)",
               VIMCO.families, lambda m, s, d: VIMCO(m, s.samples), {"samples": 5}),
    MethodSpec("arm", "augment-REINFORCE-merge, antithetic and unbiased (Yin & Zhou 2019)", ARM.families,
               lambda m, s, d: ARM(m, s.samples), {"samples": 1}),
    MethodSpec("disarm", "ARM with the augmentation integrated out (Dong, Mnih & Tucker 2020)", DisARM.families,
               lambda m, s, d: DisARM(m, s.samples), {"samples": 1}),
    MethodSpec("gumbel", "Gumbel-Softmax/Concrete relaxation at temperature τ, biased (Jang et al. 2017; "
               "Maddison et al. 2017)", GumbelSoftmax.families,
               lambda m, s, d: GumbelSoftmax(m, s.samples, s.temperature), {"samples": 1,
                                                                            "temperature": GUMBEL_DEFAULT_TEMPERATURE}),
    MethodSpec("gumbel-st", "straight-through Gumbel-Softmax: hard forward, relaxed backward, biased (Jang et al. "
               "2017)", GumbelSoftmax.families,
               lambda m, s, d: GumbelSoftmax(m, s.samples, s.temperature, hard=True),
               {"samples": 1, "temperature": GUMBEL_DEFAULT_TEMPERATURE}),
]
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

# Test-time refinement of a model whose run has no refiner of its own: the family's natural operator.
DEFAULT_REFINERS = {"gaussian": _gaussian, "bernoulli": _avi, "layered-bernoulli": _avi}

__all__ = ["METHODS", "MethodSpec", "DEFAULT_REFINERS", "AVI_DEFAULT_RATE", "Method", "Losses", "apply_losses",
           "make_optimizer", "make_optimizers", "GroupOptimizer", "add_linear_warmup", "AEVB", "RefinedEM", "SAVAE",
           "MeanPass", "StraightThrough", "WakeSleep", "NVIL", "Reinforce", "IWAE", "HVI", "VIMCO", "ARM", "DisARM",
           "GumbelSoftmax"]
