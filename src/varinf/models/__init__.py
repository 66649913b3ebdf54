"""Latent-variable models: the VAE family and the exactly solvable linear-Gaussian reference."""

from varinf.models.linear_gaussian import LinearGaussian
from varinf.models.vae import VAE, VAEConfig, count_parameters

__all__ = ["VAE", "VAEConfig", "LinearGaussian", "count_parameters"]
