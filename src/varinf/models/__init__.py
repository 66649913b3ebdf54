"""Latent-variable models: the VAE family, sigmoid belief networks, and the linear-Gaussian reference.

``model_kind(cfg.model)`` maps a TrainConfig's ``model`` ("mlp" | "cnn" | "sbn") to a model
kind ("vae" | "sbn"); ``MODEL_KINDS[kind]`` is (model class, config class); checkpoints store
the kind so ``varinf.training.load_model`` can rebuild the model.
"""

from varinf.models.linear_gaussian import LinearGaussian
from varinf.models.sbn import SBN, SBNConfig
from varinf.models.vae import VAE, VAEConfig, count_parameters

MODEL_KINDS = {"vae": (VAE, VAEConfig), "sbn": (SBN, SBNConfig)}


def model_kind(model: str) -> str:
    """"sbn" for a sigmoid belief network, "vae" for the mlp/cnn VAE architectures."""
    return "sbn" if model == "sbn" else "vae"


def kind_of(mcfg) -> str:
    """The kind of a model config object."""
    return "sbn" if isinstance(mcfg, SBNConfig) else "vae"


__all__ = ["VAE", "VAEConfig", "SBN", "SBNConfig", "LinearGaussian", "count_parameters", "MODEL_KINDS",
           "model_kind", "kind_of"]
