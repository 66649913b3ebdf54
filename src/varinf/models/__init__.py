"""Latent-variable models: the VAE family, sigmoid belief networks, and the linear-Gaussian reference.

``MODEL_CLASSES[cfg.model]`` is the class a TrainConfig's ``model`` ("mlp" | "cnn" | "sbn") builds;
its ``family`` attribute is the latent family. ``MODEL_KINDS[kind]`` is (model class, config
class) for the kind ("vae" | "sbn") that checkpoints store so ``varinf.training.load_model`` can
rebuild the model.
"""

from varinf.models.linear_gaussian import LinearGaussian
from varinf.models.sbn import SBN, SBNConfig
from varinf.models.vae import VAE, VAEConfig, count_parameters

MODEL_CLASSES = {"mlp": VAE, "cnn": VAE, "sbn": SBN}
MODEL_KINDS = {"vae": (VAE, VAEConfig), "sbn": (SBN, SBNConfig)}


def kind_of(mcfg) -> str:
    """The kind of a model config object."""
    return next(kind for kind, (_, config_cls) in MODEL_KINDS.items() if isinstance(mcfg, config_cls))


__all__ = ["VAE", "VAEConfig", "SBN", "SBNConfig", "LinearGaussian", "count_parameters", "MODEL_CLASSES",
           "MODEL_KINDS", "kind_of"]
