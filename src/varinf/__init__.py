"""varinf: approximate inference in latent-variable models.

The public surface: the model contract and variational families, objectives (ELBO estimators
and bounds), models, the refiners of Hjelm et al. (2015), training methods, training, evaluation
and the data layer. Classical models live in ``varinf.classical``.
"""

from varinf.config import TrainConfig, make_config
from varinf.contract import AmortizedLatentModel, AmortizedModel, LatentVariableModel, check_amortized
from varinf.errors import CheckpointError, ConfigError, DataError, DatasetNotFoundError, VarinfError
from varinf.families import BERNOULLI, GAUSSIAN, DiagonalGaussian, FactorialBernoulli
from varinf.models import SBN, VAE, LinearGaussian, SBNConfig, VAEConfig
from varinf.objectives import (elbo_and_log_marginal, iwae_bound, kl_to_prior, log_marginal_estimate, log_weights,
                               logmeanexp, score_function_surrogate, sgvb_a, sgvb_b)

__version__ = "0.1.0"


def __getattr__(name):
    # Heavier pieces (data loaders, training loop, plotting) are imported on first use.
    lazy = {
        "load_dataset": ("varinf.data", "load_dataset"),
        "Dataset": ("varinf.data", "Dataset"),
        "train": ("varinf.training", "train"),
        "load_model": ("varinf.runs", "load_model"),
        "load_weights": ("varinf.runs", "load_weights"),
        "load_method": ("varinf.runs", "load_method"),
        "evaluate_run": ("varinf.evaluate", "evaluate_run"),
        "evaluate_model": ("varinf.evaluate", "evaluate_model"),
        "plot_run": ("varinf.plotting", "plot_run"),
        "METHODS": ("varinf.infer", "METHODS"),
        "RefinedEM": ("varinf.infer", "RefinedEM"),
        "GaussianGradient": ("varinf.refinement", "GaussianGradient"),
        "MeanPassGradient": ("varinf.refinement", "MeanPassGradient"),
        "StraightThroughGradient": ("varinf.refinement", "StraightThroughGradient"),
        "AdaptiveImportanceSampling": ("varinf.refinement", "AdaptiveImportanceSampling"),
        "ConvergenceWarning": ("varinf.errors", "ConvergenceWarning"),   # subclasses scikit-learn's
        "enable_logging": ("varinf.logs", "enable_logging"),
    }
    if name in lazy:
        import importlib
        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'varinf' has no attribute {name!r}")


__all__ = [
    "TrainConfig", "make_config", "VAE", "VAEConfig", "SBN", "SBNConfig", "LinearGaussian",
    "LatentVariableModel", "AmortizedLatentModel", "AmortizedModel", "check_amortized",
    "DiagonalGaussian", "FactorialBernoulli", "GAUSSIAN", "BERNOULLI",
    "METHODS", "RefinedEM", "GaussianGradient", "MeanPassGradient", "StraightThroughGradient",
    "AdaptiveImportanceSampling",
    "sgvb_a", "sgvb_b", "kl_to_prior", "iwae_bound", "log_weights", "logmeanexp", "log_marginal_estimate",
    "elbo_and_log_marginal", "score_function_surrogate",
    "load_dataset", "Dataset", "train", "enable_logging", "load_model", "load_method", "load_weights", "evaluate_run", "evaluate_model", "plot_run",
    "VarinfError", "DataError", "DatasetNotFoundError", "CheckpointError", "ConfigError", "ConvergenceWarning",
]
