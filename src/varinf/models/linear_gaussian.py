"""Linear-Gaussian latent model (factor analysis / probabilistic PCA) with exact inference.

    p(z)   = N(0, I_K)
    p(x|z) = N(W z + b, diag(ψ))

Everything the approximate methods only estimate is closed form here, which makes it
the reference for testing them (Tipping & Bishop 1999; Bishop PRML §12.2):

    log p(x)  = log N(x; b, W Wᵀ + diag ψ)
    p(z|x)    = N(m, S),  S = (I + Wᵀ Ψ⁻¹ W)⁻¹,  m = S Wᵀ Ψ⁻¹ (x − b)
    ELBO(q)   = E_q[log p(x|z)] + E_q[log p(z)] + H(q)   for Gaussian q, in closed form.
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D
from torch import nn


class LinearGaussian(nn.Module):
    """Factor analysis with K latents and D observed dimensions (parameters W, b, log ψ)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, noise_var: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float64).clone())   # (D, K)
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float64).clone())       # (D,)
        self.log_noise = nn.Parameter(torch.as_tensor(noise_var, dtype=torch.float64).log().clone())  # (D,)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, generator: torch.Generator | None = None,
               noise: float = 0.5) -> "LinearGaussian":
        w = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
        b = torch.randn(data_dim, generator=generator, dtype=torch.float64)
        psi = noise * (0.5 + torch.rand(data_dim, generator=generator, dtype=torch.float64))
        return cls(w, b, psi)

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def noise_var(self) -> torch.Tensor:
        return self.log_noise.exp()

    def prior(self) -> D.Distribution:
        zeros = torch.zeros(self.latent_dim, dtype=self.weight.dtype)
        return D.Independent(D.Normal(zeros, torch.ones_like(zeros)), 1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): x (B, D), z (S, B, K) -> (S, B)."""
        mean = z @ self.weight.T + self.bias                                   # (S, B, D)
        return D.Independent(D.Normal(mean, self.noise_var.sqrt()), 1).log_prob(x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x|z) + log p(z): (S, B)."""
        return self.log_likelihood(x, z) + self.prior().log_prob(z)

    # ---- exact quantities -------------------------------------------------------------
    def marginal(self) -> D.MultivariateNormal:
        """p(x) = N(b, W Wᵀ + diag ψ)."""
        cov = self.weight @ self.weight.T + torch.diag(self.noise_var)
        return D.MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x), shape (B,)."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> D.MultivariateNormal:
        """Exact p(z|x) = N(m, S) with S = (I + Wᵀ Ψ⁻¹ W)⁻¹, m = S Wᵀ Ψ⁻¹ (x − b); batch (B,)."""
        w_scaled = self.weight / self.noise_var[:, None]                          # Ψ⁻¹ W  (D, K)
        precision = torch.eye(self.latent_dim, dtype=self.weight.dtype) + self.weight.T @ w_scaled
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ w_scaled @ cov                                   # (B, K)
        return D.MultivariateNormal(mean, covariance_matrix=cov.expand(x.shape[0], -1, -1))

    def exact_elbo(self, x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """Closed-form ELBO for a diagonal Gaussian q = N(mean, diag exp(2 log_std)), shape (B,).

        ```text
        E_q[log p(x|z)] = log N(x; W m + b, Ψ) − ½ Σ_d Σ_k W_dk² s_k² / ψ_d
        E_q[log p(z)]   = −K/2 log 2π − ½ Σ_k (m_k² + s_k²)
        H(q)            = K/2 (1 + log 2π) + Σ_k log s_k
        ```
        """
        var = (2 * log_std).exp()                                                   # (B, K)
        psi = self.noise_var
        resid = x - (mean @ self.weight.T + self.bias)                              # (B, D)
        k = self.latent_dim
        expected_lik = (-0.5 * (math.log(2 * math.pi) * x.shape[-1] + psi.log().sum())
                        - 0.5 * (resid.pow(2) / psi).sum(-1)
                        - 0.5 * (var @ (self.weight.pow(2) / psi[:, None]).T).sum(-1))
        expected_prior = -0.5 * k * math.log(2 * math.pi) - 0.5 * (mean.pow(2) + var).sum(-1)
        entropy = 0.5 * k * (1 + math.log(2 * math.pi)) + log_std.sum(-1)
        return expected_lik + expected_prior + entropy
