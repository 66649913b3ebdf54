"""Classical approximate inference: EM, MAP inference and sparse coding, mean-field CAVI.

* [`GaussianMixture`][varinf.classical.GaussianMixture] - expectation-maximisation (EM, Neal-Hinton view; ``em.py``);
* [`SparseCoding`][varinf.classical.SparseCoding], [`fista`][varinf.classical.fista], [`ista`][varinf.classical.ista] - MAP inference and sparse coding
  (``sparse_coding.py``);
* [`MeanFieldCAVI`][varinf.classical.MeanFieldCAVI], [`BayesianGaussianMixture`][varinf.classical.BayesianGaussianMixture] - mean-field coordinate ascent
  variational inference (CAVI; ``cavi.py``);
* [`fit_bbvi`][varinf.classical.fit_bbvi], [`score_function_gradient`][varinf.classical.score_function_gradient], [`reparameterization_gradient`][varinf.classical.reparameterization_gradient] - black-box VI
  with Rao-Blackwellisation and control variates (``bbvi.py``);
* [`BinaryLatentFactorModel`][varinf.classical.BinaryLatentFactorModel], [`MeanFieldLatentFactor`][varinf.classical.MeanFieldLatentFactor], [`fit_amortised`][varinf.classical.fit_amortised] - binary
  latent-factor model, mean-field and amortised (``latent_factor.py``);
* [`FactorialHMM`][varinf.classical.FactorialHMM] - factorial HMM, exact and mean-field E-steps (``fhmm.py``);
  [`factorised_mean_field_posterior`][varinf.classical.factorised_mean_field_posterior] (fully factorised CAVI), [`FHMMInferenceNetwork`][varinf.classical.FHMMInferenceNetwork] and
  [`fit_fhmm_inference_network`][varinf.classical.fit_fhmm_inference_network] (amortised);
* [`BayesianLogLinear`][varinf.classical.BayesianLogLinear] - Bayesian multinomial logistic regression, Gaussian q (``loglinear.py``);
* [`CoordinateAscent`][varinf.classical.CoordinateAscent] - the loop all of them share (``_base.py``).
"""

from ._base import CoordinateAscent
from .cavi import BayesianGaussianMixture, MeanFieldCAVI, UnivariateGaussianCAVI
from .bbvi import (MeanFieldBernoulli, MeanFieldNormal, elbo_estimate, fit_bbvi, reparameterization_gradient,
                   score_function_gradient)
from .datasets import make_gaussian_mixture
from .em import GaussianMixture
from .fhmm import FactorialHMM, FHMMParams, exact_posterior, mean_field_posterior
from .fhmm import (FHMMInferenceNetwork, factorised_elbo_terms, factorised_mean_field_posterior,
                   fit_fhmm_inference_network)
from .latent_factor import AmortisedMeanField, BinaryLatentFactorModel, MeanFieldLatentFactor, fit_amortised
from .loglinear import BayesianLogLinear
from .sparse_coding import SparseCoding, fista, ista, sparse_coding_objective

__all__ = [
    "CoordinateAscent",
    "make_gaussian_mixture",
    "GaussianMixture",
    "SparseCoding",
    "fista",
    "ista",
    "sparse_coding_objective",
    "MeanFieldCAVI",
    "BayesianGaussianMixture",
    "UnivariateGaussianCAVI",
    "MeanFieldNormal",
    "MeanFieldBernoulli",
    "score_function_gradient",
    "reparameterization_gradient",
    "elbo_estimate",
    "fit_bbvi",
    "BinaryLatentFactorModel",
    "MeanFieldLatentFactor",
    "AmortisedMeanField",
    "fit_amortised",
    "FactorialHMM",
    "FHMMParams",
    "exact_posterior",
    "mean_field_posterior",
    "factorised_mean_field_posterior",
    "factorised_elbo_terms",
    "FHMMInferenceNetwork",
    "fit_fhmm_inference_network",
    "BayesianLogLinear",
]
