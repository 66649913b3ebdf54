"""The model contract: what a latent-variable model gives varinf, written once.

A **latent-variable model** p_θ(x, h) provides

    prior()            p(h): a torch.distributions object, event shape (K,)
    log_joint(x, h)    log p(x, h): x (B, D), h (S, B, K) -> (S, B)
    latent_dim         K

(``log_likelihood(x, h)`` = log p(x|h) is optional; SGVB estimator B needs it. A model that has
``log_likelihood`` and ``prior`` but no ``log_joint`` gets log p(x|h) + log p(h) from
[`log_joint`][varinf.contract.log_joint].)

An **amortised** model adds the inference network q_φ(h|x):

    family                         a varinf.families.Family (DiagonalGaussian, FactorialBernoulli)
    encode(x)                      the variational parameters as a tuple of plain tensors, each (B, K)
    generative_parameters()        θ: the parameters the M-step moves
    inference_parameters()         φ: the encoder's parameters

and q(h|x) is the [`Posterior`][varinf.families.Posterior] ``(model.family, model.encode(x))``, what
[`posterior`][varinf.contract.posterior]``(model, x)`` returns (and ``AmortizedModel.posterior(x)``). θ and φ are declared by these two methods
for every model; together they must cover every trainable parameter exactly once (checked by
[`check_amortized`][varinf.contract.check_amortized]). [`AmortizedModel`][varinf.contract.AmortizedModel] is a small ``nn.Module`` base that implements
``log_joint`` from ``log_likelihood`` + ``prior`` and splits θ/φ by a submodule named ``encoder``;
subclass it, or write the methods yourself — only the protocol matters.

A complete worked example (a two-layer Gaussian VAE with a Gaussian decoder, defined outside the
library, trained with GBVI and evaluated with refinement) is ``examples/custom_model.py``.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

import torch
from torch import distributions as D
from torch import nn

from varinf.errors import ConfigError
from varinf.families import Family, Posterior

__all__ = ["LatentVariableModel", "AmortizedLatentModel", "AmortizedModel", "log_joint", "check_amortized",
           "posterior", "split_parameters"]


@runtime_checkable
class LatentVariableModel(Protocol):
    """p_θ(x, h): the prior and the log joint density (see the module docstring)."""

    latent_dim: int

    def prior(self) -> D.Distribution: ...

    def log_joint(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class AmortizedLatentModel(LatentVariableModel, Protocol):
    """A latent-variable model with an inference network q_φ(h|x) of a declared family."""

    family: Family

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def generative_parameters(self) -> Iterable[nn.Parameter]: ...

    def inference_parameters(self) -> Iterable[nn.Parameter]: ...


class AmortizedModel(nn.Module):
    """Convenience base: log p(x, h) = log p(x|h) + log p(h); φ = ``self.encoder``'s parameters, θ = the rest.

    Subclasses set ``family`` and ``latent_dim`` and define ``encoder`` (an ``nn.Module``),
    ``encode(x)``, ``prior()`` and ``log_likelihood(x, h)``.
    """

    family: Family

    def log_likelihood(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_joint(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x, h) = log p(x|h) + log p(h): (S, B)."""
        return self.log_likelihood(x, h) + self.prior().log_prob(h)

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """Set parameters from the training data x (N, D) before training; nothing unless a model says so."""

    def q(self, *params: torch.Tensor) -> D.Distribution:
        """q(h|x) for variational parameters ``params`` (the family's distribution)."""
        return self.family.dist(*params)

    def posterior(self, x: torch.Tensor) -> Posterior:
        """q_φ(h|x) as a [`Posterior`][varinf.families.Posterior] (family, ``encode(x)``)."""
        return posterior(self, x)

    def inference_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def generative_parameters(self) -> list[nn.Parameter]:
        phi = {id(p) for p in self.inference_parameters()}
        return [p for p in self.parameters() if id(p) not in phi]


def log_joint(model, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """log p(x, h), (S, B): ``model.log_joint`` when defined, else log p(x|h) + log p(h)."""
    fn = getattr(model, "log_joint", None)
    if fn is not None:
        return fn(x, h)
    return model.log_likelihood(x, h) + model.prior().log_prob(h)


def posterior(model, x: torch.Tensor) -> Posterior:
    """q_φ(h|x) of an amortised model as a [`Posterior`][varinf.families.Posterior]: its family and ``encode(x)``."""
    return Posterior(model.family, tuple(model.encode(x)))


def split_parameters(model) -> dict[str, list[nn.Parameter]]:
    """{"generative": θ, "inference": φ} as the model declares them (trainable parameters only)."""
    return {"generative": [p for p in model.generative_parameters() if p.requires_grad],
            "inference": [p for p in model.inference_parameters() if p.requires_grad]}


def check_amortized(model, what: str = "model") -> None:
    """Raise a one-line ConfigError unless ``model`` meets [`AmortizedLatentModel`][varinf.contract.AmortizedLatentModel]."""
    missing = [name for name in ("prior", "encode", "generative_parameters", "inference_parameters", "family")
               if not hasattr(model, name)]
    if not hasattr(model, "log_joint") and not hasattr(model, "log_likelihood"):
        missing.append("log_joint (or log_likelihood)")
    if missing:
        raise ConfigError(f"{what} {type(model).__name__} does not meet varinf's amortised-model contract: "
                          f"missing {', '.join(missing)} (see varinf.contract)")
    if not isinstance(model.family, Family):
        raise ConfigError(f"{what} {type(model).__name__}.family is {model.family!r}; expected a "
                          "varinf.families.Family such as DiagonalGaussian() or FactorialBernoulli()")
    groups = split_parameters(model)
    theta, phi = {id(p) for p in groups["generative"]}, {id(p) for p in groups["inference"]}
    if theta & phi:
        raise ConfigError(f"{what} {type(model).__name__}: {len(theta & phi)} parameter(s) are declared both "
                          "generative (θ) and inference (φ); each parameter belongs to exactly one")
    if isinstance(model, nn.Module):
        loose = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in theta | phi]
        if loose:
            raise ConfigError(f"{what} {type(model).__name__}: parameter(s) {loose[:3]} are neither in "
                              "generative_parameters() nor in inference_parameters(); declare every one")
