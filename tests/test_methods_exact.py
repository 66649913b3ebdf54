"""Every training method's update against the exact gradient of its stated objective.

Gradients are taken through the code path training runs: ``method.step(x, generator, optimizers)``
(``varinf.infer._base.apply_losses``) with zero-learning-rate SGD optimizers, which leaves each
parameter's ``.grad`` set to the method's gradient. Their average over many draws is compared
with the exact gradient: closed form for a linear-Gaussian model with a linear encoder, and
enumeration of all 2^K latent states for a small sigmoid belief network (``varinf.enumeration``).
"""

import math

import pytest
import torch
from torch import nn

from varinf.contract import AmortizedModel
from varinf.enumeration import all_binary, exact_elbo, exact_log_joint, exact_posterior
from varinf.families import BERNOULLI, GAUSSIAN, Posterior
from varinf.infer import AEVB, NVIL, SAVAE, MeanPass, RefinedEM, Reinforce, StraightThrough, WakeSleep
from varinf.models import SBN, LinearGaussian, SBNConfig
from varinf.refinement import (AdaptiveImportanceSampling, GaussianGradient, MeanPassGradient,
                               StraightThroughGradient)

torch.set_num_threads(1)


# ---- models ---------------------------------------------------------------------------------------
class AmortizedLinearGaussian(AmortizedModel):
    """Factor analysis (exact ELBO in closed form) with a linear Gaussian encoder: a model defined in a test."""

    family = GAUSSIAN

    def __init__(self, data_dim=5, latent_dim=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lg = LinearGaussian.random(data_dim, latent_dim, g)
        self.encoder = nn.Linear(data_dim, 2 * latent_dim).double()
        with torch.no_grad():
            self.encoder.weight.copy_(0.3 * torch.randn(2 * latent_dim, data_dim, generator=g, dtype=torch.float64))
        self.latent_dim = latent_dim

    def encode(self, x):
        mu, log_std = self.encoder(x).chunk(2, dim=-1)
        return mu, log_std

    def prior(self):
        return self.lg.prior()

    def log_likelihood(self, x, h):
        return self.lg.log_likelihood(x, h)


def linear_gaussian(seed=0):
    """The model and 4 draws of x from it, the same whatever ran before (the encoder's bias and x come from
    torch's global generator: seeded here, and the caller's stream left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AmortizedLinearGaussian(seed=seed)
        x = model.lg.marginal().sample((4,))
    return model, x


def tiny_sbn(k=4, d=6, hidden=(), seed=0):
    torch.manual_seed(seed)
    model = SBN(SBNConfig(data_dim=d, latent_dim=k, hidden=hidden)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
        model.prior_logits.copy_(torch.randn(k, generator=torch.Generator().manual_seed(seed + 1)))
    x = torch.bernoulli(torch.full((3, d), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(seed))
    return model, x


# ---- the method's own gradients, and exact references ----------------------------------------------
def method_grads(method, x, gen):
    """One ``method.step`` with lr = 0: the gradient it applies to each parameter group (flattened)."""
    groups = method.parameter_groups()
    for params in groups.values():
        for p in params:
            p.grad = None
    optimizers = {name: torch.optim.SGD(params, lr=0.0) for name, params in groups.items()}
    method.step(x, gen, optimizers)
    return {name: torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
            for name, params in groups.items()}


def exact_grads(method, loss):
    """d loss / d group, flattened, for every parameter group of ``method``."""
    groups = method.parameter_groups()
    out = {}
    for name, params in groups.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                               for g, p in zip(grads, params)])
    return out


def average(method, x, draws, seed=0):
    gen = torch.Generator().manual_seed(seed)
    runs = [method_grads(method, x, gen) for _ in range(draws)]
    return {name: torch.stack([r[name] for r in runs]) for name in runs[0]}


def assert_unbiased(samples, exact, k=4.5, slack=1e-6):
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    assert ((mean - exact).abs() <= k * se + slack).all(), (mean, exact, se)


def sbn_elbo_loss(model, x):
    """−(1/B) Σ_i L(x_i, θ, q_φ) by enumeration."""
    return -exact_elbo(model, model.encode(x)[0], x).mean()


# ---- amortised methods -----------------------------------------------------------------------------
def test_vae_update_is_the_exact_elbo_gradient_on_a_linear_gaussian_model():
    model, x = linear_gaussian()
    method = AEVB(model, "B", samples=2)
    exact = exact_grads(method, -model.lg.exact_elbo(x, *model.encode(x)).mean())
    draws = average(method, x, 600)
    for name in ("generative", "inference"):
        assert_unbiased(draws[name], exact[name])


@pytest.mark.parametrize("method_cls", [Reinforce, NVIL])
def test_score_function_methods_are_unbiased_for_the_exact_elbo_gradient(method_cls):
    model, x = tiny_sbn()
    method = method_cls(model, samples=4) if method_cls is Reinforce else NVIL(model, x.shape[1], samples=4)
    if method_cls is NVIL:
        method.state.double()
        method.state.alpha = 1.0          # freeze c = 0, v = 1: the centring is the baseline b_ψ(x) alone
    exact = exact_grads(method, sbn_elbo_loss(model, x))
    draws = average(method, x, 1500)
    for name in ("generative", "inference"):
        assert_unbiased(draws[name], exact[name])
    if method_cls is NVIL:                 # ψ descends E_q (l − c − b_ψ(x))², exactly −2 (L − c − b) ∇b
        b = method.state(x)
        target = ((exact_elbo(model, model.encode(x)[0], x).detach() - b) ** 2).mean()
        assert_unbiased(draws["baseline"], exact_grads(method, target)["baseline"], slack=1e-4)


def test_a_sign_error_in_an_update_would_be_caught():
    """The test above can fail: a method ascending −ELBO in φ is far from the exact gradient."""
    model, x = tiny_sbn()
    method = Reinforce(model, samples=4)
    exact = exact_grads(method, sbn_elbo_loss(model, x))
    draws = average(method, x, 300)
    flipped = -draws["inference"]
    with pytest.raises(AssertionError):
        assert_unbiased(flipped, exact["inference"])


def test_mean_pass_update_is_the_gradient_of_eq7_with_exact_prior_and_entropy():
    model, x = tiny_sbn()
    method = MeanPass(model)
    logits = model.encode(x)[0]
    mu = torch.sigmoid(logits)
    h = all_binary(4, torch.float64)[:, None, :]                                  # (16, 1, K)
    log_q = BERNOULLI.log_prob((logits,), h)                                      # (16, B)
    prior_and_entropy = (log_q.exp() * (model.prior().log_prob(h) - log_q)).sum(0)  # E_q log p(h) + H(q)
    reference = -(model.log_likelihood(x, mu[None])[0] + prior_and_entropy).mean()
    exact = exact_grads(method, reference)
    got = method_grads(method, x, torch.Generator().manual_seed(0))
    for name in exact:
        torch.testing.assert_close(got[name], exact[name])


def test_straight_through_update_passes_dh_straight_to_the_logits():
    """Eq. 8: E[∂/∂z] = Σ_h q(h) ∂/∂h log p(x|h) − ∂ KL(q‖p)/∂z; θ gets the exact ELBO gradient."""
    model, x = tiny_sbn()
    method = StraightThrough(model, samples=4)
    logits = model.encode(x)[0]
    states = all_binary(4, torch.float64)[:, None, :].expand(-1, x.shape[0], -1).clone().requires_grad_()
    dll_dh = torch.autograd.grad(model.log_likelihood(x, states).sum(), states)[0]       # (16, B, K)
    q = BERNOULLI.log_prob((logits.detach(),), states.detach()).exp()                    # (16, B)
    expected_dz = (q.unsqueeze(-1) * dll_dh).sum(0)                                      # (B, K)
    kl = torch.distributions.kl_divergence(BERNOULLI.dist(logits), model.prior().expand((x.shape[0],)))
    reference_phi = -((expected_dz * logits).sum() - kl.sum()) / x.shape[0]
    exact = exact_grads(method, reference_phi)
    exact_theta = exact_grads(method, sbn_elbo_loss(model, x))["generative"]
    draws = average(method, x, 1500)
    assert_unbiased(draws["inference"], exact["inference"])
    assert_unbiased(draws["generative"], exact_theta)


def test_wake_sleep_updates_are_the_exact_wake_and_sleep_gradients():
    model, x = tiny_sbn(k=3, d=4)
    method = WakeSleep(model, samples=3)
    logits = model.encode(x)[0].detach()
    h = all_binary(3, torch.float64)[:, None, :]
    q = BERNOULLI.log_prob((logits,), h).exp()                                          # q(h|x) fixed (8, B)
    wake = -(q * model.log_joint(x, h.expand(-1, x.shape[0], -1))).sum(0).mean()
    xs = all_binary(4, torch.float64)                                                   # every visible vector
    joint = exact_log_joint(model, xs).exp().detach()                                   # p(x, h) (8, 16)
    log_q_all = BERNOULLI.log_prob(model.encode(xs), h.expand(-1, 16, -1))              # (8, 16)
    sleep = -(joint * log_q_all).sum()                                                  # −E_p(h,x) log q(h|x)
    exact_wake, exact_sleep = exact_grads(method, wake), exact_grads(method, sleep)
    draws = average(method, x, 1500)
    assert_unbiased(draws["generative"], exact_wake["generative"])
    assert_unbiased(draws["inference"], exact_sleep["inference"])


# ---- refined EM with each refiner ------------------------------------------------------------------
REFINERS = {
    "mpvi": lambda: MeanPassGradient(3, 0.5),
    "stvi": lambda: StraightThroughGradient(3, 0.05, samples=4),
    "avi": lambda: AdaptiveImportanceSampling(3, samples=8, rate=0.5),
}


def check_refined_em(method, x, exact_m_step, draws):
    """Given each draw's q̃ (replayed from the generator state): φ's update is exactly ∇φ KL(q̃ ‖ q_φ) (Eq. 6)
    and θ's equals −∇θ E_q̃[log p(x, h)] (``exact_m_step(q̃)``) on average."""
    gen = torch.Generator().manual_seed(0)
    got_theta, want_theta = [], []
    for _ in range(draws):
        state = gen.get_state()
        refined = method.e_step(x, torch.Generator().set_state(state))
        grads = method_grads(method, x, gen)                    # the same stream: the same q̃
        kl = refined.kl(Posterior(method.family, method.model.encode(x))).mean()
        torch.testing.assert_close(grads["inference"], exact_grads(method, kl)["inference"])
        got_theta.append(grads["generative"])
        want_theta.append(exact_grads(method, exact_m_step(refined))["generative"])
    diff = torch.stack(got_theta) - torch.stack(want_theta)
    assert_unbiased(diff, torch.zeros_like(diff[0]))


@pytest.mark.parametrize("name", sorted(REFINERS))
def test_refined_em_on_binary_latents_against_enumeration(name):
    model, x = tiny_sbn()
    method = RefinedEM(model, REFINERS[name](), samples=4, name=name)

    def m_step(refined):                                        # −E_q̃ log p(x, h) by enumeration
        q = refined.log_prob(all_binary(4, torch.float64)[:, None, :]).exp()                     # (16, B)
        return -(q * exact_log_joint(model, x)).sum(0).mean()
    check_refined_em(method, x, m_step, 600)


def test_gbvi_against_the_closed_form_on_a_linear_gaussian_model():
    # seed 2: the encoder starts at log σ <= 0.8; at seed 0 (log σ up to 3.7, so σ² ~ 1500) the bound's
    # curvature in log σ is ~10⁴ and the step 0.05 diverges in the first refinement
    model, x = linear_gaussian(seed=2)
    method = RefinedEM(model, GaussianGradient(4, 0.05, samples=3), samples=3, name="gbvi")
    # E_q̃ log p(x,h) + H(q̃) in closed form; H has no θ
    check_refined_em(method, x, lambda refined: -model.lg.exact_elbo(x, *refined.params).mean(), 500)


def test_refined_em_with_zero_steps_is_the_plain_amortised_theta_update():
    """T = 0: q̃ = q_φ, so θ moves exactly as the amortised method's θ (same draws) and φ not at all."""
    model, x = linear_gaussian()
    em = method_grads(RefinedEM(model, GaussianGradient(0, 0.05), samples=2), x, torch.Generator().manual_seed(5))
    vae = method_grads(AEVB(model, "A", samples=2), x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(em["generative"], vae["generative"])
    assert em["inference"].abs().max() < 1e-12
    model, x = tiny_sbn()
    em = method_grads(RefinedEM(model, MeanPassGradient(0, 0.5), samples=2), x, torch.Generator().manual_seed(5))
    sf = method_grads(Reinforce(model, samples=2), x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(em["generative"], sf["generative"])
    assert em["inference"].abs().max() < 1e-12


def test_savae_encoder_gradient_goes_through_the_refinement_steps():
    """φ's gradient equals the finite-difference derivative of the refined bound (common random numbers)."""
    model, x = linear_gaussian()
    refiner = GaussianGradient(3, 0.05, samples=2)
    method = SAVAE(model, refiner, samples=2)
    seed = 7
    got = method_grads(method, x, torch.Generator().manual_seed(seed))["inference"]
    from varinf.infer.savae import semi_amortized_bound

    def loss():
        with torch.no_grad():
            return -semi_amortized_bound(model, x, refiner, torch.Generator().manual_seed(seed))[0].mean()
    w = model.encoder.weight
    eps, fd = 1e-6, torch.zeros_like(w)
    for idx in [(0, 0), (1, 2), (3, 4)]:
        with torch.no_grad():
            w[idx] += eps
            up = loss()
            w[idx] -= 2 * eps
            down = loss()
            w[idx] += eps
        fd[idx] = (up - down) / (2 * eps)
    n_w = w.numel()
    for idx in [(0, 0), (1, 2), (3, 4)]:
        flat = idx[0] * w.shape[1] + idx[1]
        assert abs(got[:n_w][flat] - fd[idx]) < 1e-5 * (1 + abs(fd[idx])), (idx, got[:n_w][flat], fd[idx])


# ---- refiners on their own -------------------------------------------------------------------------
@pytest.mark.parametrize("refiner", [MeanPassGradient(20, 0.5), StraightThroughGradient(20, 0.02, samples=50)],
                         ids=["mpvi", "stvi"])
def test_binary_gradient_refiners_raise_the_exact_bound(refiner):
    model, x = tiny_sbn(k=5, d=8, seed=2)
    logits0 = model.encode(x)[0].detach()
    refined = refiner.refine(model, Posterior(BERNOULLI, (logits0,)), x, torch.Generator().manual_seed(0)).params[0]
    before, after = exact_elbo(model, logits0, x), exact_elbo(model, refined, x)
    assert (after > before).all(), (before, after)


def test_avi_refiner_moves_q_towards_the_posterior_marginals():
    model, x = tiny_sbn(k=5, d=8, seed=2)
    logits0 = model.encode(x)[0].detach()
    marginals = exact_posterior(model, x) @ all_binary(5, torch.float64)
    refined = AdaptiveImportanceSampling(30, samples=4000, rate=0.3).refine(model, Posterior(BERNOULLI, (logits0,)), x,
                                                                            torch.Generator().manual_seed(0)).params[0]
    err0 = (torch.sigmoid(logits0) - marginals).abs().mean()
    err = (torch.sigmoid(refined) - marginals).abs().max()
    assert err < 0.05 and err < err0


def test_refiners_refuse_a_model_of_the_wrong_family():
    from varinf.errors import ConfigError
    model, _ = tiny_sbn()
    with pytest.raises(ConfigError, match="gaussian latents; SBN has bernoulli"):
        GaussianGradient(2, 0.1).check(model)
    with pytest.raises(ConfigError, match="bernoulli latents; AmortizedLinearGaussian has gaussian"):
        RefinedEM(linear_gaussian()[0], AdaptiveImportanceSampling(2))
