"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995).

    wake   h ~ q_φ(h|x) for the data x;        θ ← θ + η ∇_θ log p_θ(x, h)
    sleep  (h, x) ~ p_θ(h) p_θ(x|h), B pairs;  φ ← φ + η ∇_φ log q_φ(h|x)

The sleep phase fits q to the model's own "dreams": it minimises KL(p(h|x) ‖ q(h|x)) on
x ~ p(x), not the ELBO's KL(q ‖ p). Needs a model that can draw (h, x) from p_θ
(``sample_joint(num, generator)``). The reported bound is the ELBO estimate from the wake samples.
"""

from __future__ import annotations

import torch

from varinf.contract import log_joint
from varinf.errors import ConfigError
from varinf.infer._base import Losses, Method
from varinf.streams import Stream

__all__ = ["WakeSleep", "wake_objective", "sleep_objective"]


def wake_objective(model, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/S) Σ_s log p_θ(x, h_s), h_s ~ q_φ (no gradient to φ), and the ELBO estimate: two (B,) tensors."""
    with torch.no_grad():
        params = model.encode(x)
        h = model.family.draw(params, num_samples, generator)                    # (S, B, K)
        log_q = model.family.log_prob(params, h)                                 # (S, B)
    lj = log_joint(model, x, h)                                                  # (S, B)
    return lj.mean(0), (lj.detach() - log_q).mean(0)


def sleep_objective(model, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """log q_φ(h|x) on ``num`` ancestral samples (h, x) ~ p_θ: (num,).

    Under data parallelism (a ``generator`` that is a ``Stream`` with a batch shard, ``varinf.streams``)
    every process draws the dreams of the whole global batch from the shared generator and keeps its own
    rows, so N processes dream exactly what one process does.
    """
    rng = Stream.of(generator)
    h, x = model.sample_joint(rng.global_shape((num,))[0], rng.generator)   # (B_global, K), (B_global, D)
    h, x = rng.local_rows(h), rng.local_rows(x)
    return model.family.log_prob(model.encode(x), h)


class WakeSleep(Method):
    """Training method ``wake-sleep``: a wake step on θ and a sleep step on φ per minibatch."""

    name = "wake-sleep"
    families = ("bernoulli", "layered-bernoulli", "gaussian")

    def __init__(self, model, samples: int = 1):
        super().__init__(model)
        if not hasattr(model, "sample_joint"):
            raise ConfigError(f"wake-sleep needs a model that draws (h, x) from p(h) p(x|h): "
                              f"{type(model).__name__} has no sample_joint(num, generator)")
        self.samples = samples

    def losses(self, x, generator):
        wake, bound = wake_objective(self.model, x, self.samples, generator)
        sleep = sleep_objective(self.model, x.shape[0], generator)
        return Losses({"generative": -wake.mean(), "inference": -sleep.mean()}, bound)
