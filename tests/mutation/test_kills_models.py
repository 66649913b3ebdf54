"""Tests that kill the surviving mutants of ``varinf.models`` (issue #20; docs/RESULTS.md §17).

The CNN VAE against the architecture of its docstrings written out with torch.nn.functional: a 3×3
convolution, then stride-2 4×4 convolutions while the side stays even and its half ≥ 4 (at most two),
then the MLP head; the decoder its mirror with transposed convolutions and a last 3×3 convolution.
"""

import pytest
import torch
import torch.nn.functional as F

from varinf.errors import ConfigError
from varinf.models import VAE, VAEConfig
from varinf.models.linear_gaussian import LinearGaussian

ACT = {"relu": F.relu, "elu": F.elu, "softplus": F.softplus}


def mlp(layers, h, act):
    """The Linear layers of a varinf MLP with the activation between them (none after the last)."""
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(layers) // 2 + 1
    for i, lin in enumerate(linears):
        h = F.linear(h, lin.weight, lin.bias)
        if i < len(linears) - 1:
            h = act(h)
    return h


@pytest.mark.parametrize("side, n_down, activation", [(28, 2, "relu"), (16, 2, "elu"), (8, 1, "softplus"),
                                                      (12, 1, "relu"), (6, 0, "elu")])
def test_cnn_vae_is_the_documented_network(side, n_down, activation):
    cfg = VAEConfig(data_dim=side * side, latent_dim=2, architecture="cnn", hidden=(7,), activation=activation,
                    image_shape=(side, side), channels=(3, 5))
    torch.manual_seed(0)
    model = VAE(cfg).double()
    act = ACT[activation]
    x = torch.rand(4, side * side, dtype=torch.float64)
    widths = [3] + [5] * n_down                                  # channels after each convolution
    low = side >> n_down
    # encoder
    enc = model.encoder.conv
    assert len(enc) == 2 * (1 + n_down)
    f = act(F.conv2d(x.reshape(-1, 1, side, side), enc[0].weight, enc[0].bias, stride=1, padding=1))
    assert enc[0].weight.shape == (3, 1, 3, 3)
    for j in range(n_down):
        conv = enc[2 + 2 * j]
        assert conv.weight.shape == (widths[j + 1], widths[j], 4, 4)
        f = act(F.conv2d(f, conv.weight, conv.bias, stride=2, padding=1))
    assert f.shape == (4, widths[-1], low, low)
    mu, log_std = mlp(model.encoder.head, f.flatten(1), act).chunk(2, dim=-1)
    got_mu, got_log_std = model.encode(x)
    torch.testing.assert_close(got_mu, mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_log_std, log_std, rtol=1e-12, atol=1e-12)
    # decoder: the mirror
    z = torch.randn(3, 4, 2, dtype=torch.float64)                                      # (S, B, K)
    g = act(mlp(model.decoder.head[0], z.reshape(-1, 2), act)).reshape(-1, widths[-1], low, low)
    dec = model.decoder.deconv
    assert len(dec) == 2 * n_down + 1
    for j in range(n_down):
        conv = dec[2 * j]
        assert conv.weight.shape == (widths[n_down - j], widths[n_down - j - 1], 4, 4)
        g = act(F.conv_transpose2d(g, conv.weight, conv.bias, stride=2, padding=1))
    assert dec[-1].weight.shape == (1, 3, 3, 3)
    g = F.conv2d(g, dec[-1].weight, dec[-1].bias, stride=1, padding=1)
    torch.testing.assert_close(model.decode(z), g.reshape(3, 4, side * side), rtol=1e-12, atol=1e-12)


def test_a_random_linear_gaussian_model_is_drawn_in_float64_with_noise_in_its_range():
    """LinearGaussian.random(D, K, g, noise): W, b ~ N(0, 1) and ψ = noise·(½ + U(0, 1)), in float64 from g."""
    lg = LinearGaussian.random(50, 3, torch.Generator().manual_seed(4), noise=0.2)
    g = torch.Generator().manual_seed(4)
    w = torch.randn(50, 3, generator=g, dtype=torch.float64)
    b = torch.randn(50, generator=g, dtype=torch.float64)
    psi = 0.2 * (0.5 + torch.rand(50, generator=g, dtype=torch.float64))
    assert torch.equal(lg.weight.detach(), w) and torch.equal(lg.bias.detach(), b)
    torch.testing.assert_close(lg.noise_var.detach(), psi, rtol=1e-15, atol=0)
    assert 0.1 <= lg.noise_var.min() < 0.12 and 0.28 < lg.noise_var.max() <= 0.3


def test_a_linear_gaussian_model_holds_float64_parameters_whatever_it_is_given():
    """The exact quantities are computed in float64: float32 (or integer) W, b, ψ are converted."""
    lg = LinearGaussian(torch.ones(4, 2), torch.zeros(4, dtype=torch.float32), torch.full((4,), 2))
    assert [p.dtype for p in lg.parameters()] == [torch.float64] * 3
    assert torch.equal(lg.noise_var.detach(), torch.full((4,), 2.0, dtype=torch.float64))


def test_a_vae_may_have_one_latent_and_non_square_images():
    """latent_dim ≥ 1 (1 allowed, 0 refused); a CNN's image_shape (h, w) must give h·w = data_dim, checked
    with both sides (kills latent_dim < 2 and h·h for h·w)."""
    assert VAEConfig(data_dim=4, latent_dim=1).latent_dim == 1
    with pytest.raises(ConfigError, match="latent_dim must be >= 1, got 0"):
        VAEConfig(data_dim=4, latent_dim=0)
    cfg = VAEConfig(data_dim=28, latent_dim=2, architecture="cnn", image_shape=(4, 7), channels=(2, 3))
    assert VAE(cfg).decode(torch.zeros(1, 2)).shape == (1, 28)
    with pytest.raises(ConfigError, match=r"image_shape \(4, 7\) does not match data_dim 49"):
        VAEConfig(data_dim=49, latent_dim=2, architecture="cnn", image_shape=(4, 7))
