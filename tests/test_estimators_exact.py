"""VIMCO, ARM, DisARM and Gumbel-Softmax (relaxed and straight-through), and refined EM on deep SBNs, against
the exact gradient by enumeration of every latent state, through the code path training runs (``method.step``).

Small SBNs with one layer (K = 3) and two layers (K = 2 + 2): the exact ELBO, the exact k-sample bound L_k
(``varinf.enumeration.exact_iwae_bound``) and their gradients are finite sums. Unbiased estimators pass at their
own standard error (``assert_unbiased``: every coordinate within 4.5 s.e. of the exact value); the biased ones
(Gumbel-Softmax) have their bias against the ELBO gradient measured and bounded, and the relaxed estimator is
checked to be unbiased for the gradient of its own relaxed objective (computed by quadrature over the noise).
"""

import math

import pytest
import torch

from test_methods_exact import assert_unbiased, average, exact_grads, method_grads
from varinf.enumeration import all_binary, exact_elbo, exact_encoder_elbo, exact_iwae_bound
from varinf.families import BERNOULLI, Posterior
from varinf.infer import ARM, VIMCO, DisARM, GumbelSoftmax, RefinedEM
from varinf.infer.arm import arm_coefficient
from varinf.infer.disarm import disarm_coefficient
from varinf.infer.gumbel import relaxed_objective, relaxed_units
from varinf.infer.vimco import leave_one_out_bounds
from varinf.models import SBN, SBNConfig
from varinf.objectives import layered_mean_pass_objective, mean_pass_objective
from varinf.refinement import AdaptiveImportanceSampling, MeanPassGradient, StraightThroughGradient, mean_field_logits

torch.set_num_threads(1)

WIDTHS = {"one-layer": 3, "two-layer": (2, 2)}


def tiny_sbn(widths, d=6, seed=0):
    torch.manual_seed(seed)
    model = SBN(SBNConfig(data_dim=d, latent_dim=widths, hidden=())).double()
    with torch.no_grad():                       # a model with a non-trivial posterior
        for p in model.parameters():
            p.mul_(1.5)
        model.prior_logits.copy_(torch.randn(model.prior_logits.shape,
                                             generator=torch.Generator().manual_seed(seed + 1)))
    x = torch.bernoulli(torch.full((3, d), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(seed))
    return model, x


def elbo_loss(model, x):
    return -exact_encoder_elbo(model, x).mean()


# ---- the estimators' formulas, by hand ------------------------------------------------------------------
def test_vimco_leave_one_out_bound_by_hand():
    log_f = torch.tensor([[0.0], [1.0], [-2.0]], dtype=torch.float64)            # k = 3, B = 1
    f = log_f.exp().squeeze(-1)
    want = []
    for i in range(3):                                                          # f_i → geometric mean of the others
        others = [j for j in range(3) if j != i]
        g = math.exp(sum(log_f[j, 0].item() for j in others) / 2)
        want.append(math.log((f[others].sum().item() + g) / 3))
    torch.testing.assert_close(leave_one_out_bounds(log_f)[:, 0], torch.tensor(want, dtype=torch.float64))


def test_arm_and_disarm_coefficients_by_hand():
    u = torch.tensor([[[0.2, 0.6]]])
    alpha = torch.tensor([[[0.0, 1.0]]])                     # σ(α) = 0.5, 0.731
    base = (u < torch.sigmoid(alpha)).float()                # b = (1, 1)
    anti = (1 - u < torch.sigmoid(alpha)).float()            # b̃ = (0, 1)
    assert base.tolist() == [[[1.0, 1.0]]] and anti.tolist() == [[[0.0, 1.0]]]
    f_base, f_anti = torch.tensor([[1.0]]), torch.tensor([[3.0]])
    torch.testing.assert_close(arm_coefficient(f_anti, f_base, u, alpha, base, anti),
                               torch.tensor([[[2.0 * (0.2 - 0.5), 2.0 * (0.6 - 0.5)]]]))
    # ½ (f(b̃) − f(b)) (−1)^b 1[b ≠ b̃] σ(|α|): unit 1 differs (b = 1), unit 2 agrees
    torch.testing.assert_close(disarm_coefficient(f_anti, f_base, u, alpha, base, anti),
                               torch.tensor([[[0.5 * 2.0 * -1.0 * 0.5, 0.0]]]))


def test_binary_concrete_units_by_hand():
    alpha, u = torch.tensor([0.3]), torch.tensor([0.8])
    z = 0.3 + math.log(0.8 / 0.2)
    torch.testing.assert_close(relaxed_units(alpha, u, 0.5, hard=False), torch.tensor([1 / (1 + math.exp(-z / 0.5))]))
    torch.testing.assert_close(relaxed_units(alpha, u, 0.5, hard=True), torch.tensor([1.0]))


# ---- unbiased estimators against the exact gradient -------------------------------------------------------
UNBIASED = {
    "vimco": (lambda m: VIMCO(m, samples=3), lambda m, x: -exact_iwae_bound(m, x, 3).mean()),
    "arm": (lambda m: ARM(m, samples=2), elbo_loss),
    "disarm": (lambda m: DisARM(m, samples=2), elbo_loss),
}


@pytest.mark.parametrize("depth", sorted(WIDTHS))
@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_unbiased_estimators_match_the_exact_gradient(name, depth):
    """θ and φ updates of ``method.step`` average to the exact gradient of the stated objective (L_3 for VIMCO)."""
    model, x = tiny_sbn(WIDTHS[depth])
    build, objective = UNBIASED[name]
    method = build(model)
    exact = exact_grads(method, objective(model, x))
    draws = average(method, x, 800)
    for group in ("generative", "inference"):
        assert_unbiased(draws[group], exact[group])


@pytest.mark.parametrize("depth", sorted(WIDTHS))
def test_vimco_reported_bound_is_the_exact_iwae_bound_in_expectation(depth):
    model, x = tiny_sbn(WIDTHS[depth])
    method = VIMCO(model, samples=3)
    gen = torch.Generator().manual_seed(0)
    bounds = torch.stack([method.losses(x, gen).bound for _ in range(1000)])          # (R, B)
    assert_unbiased(bounds, exact_iwae_bound(model, x, 3).detach())
    with torch.no_grad():                                                            # and the validation bound too
        valid = torch.stack([method.validation_bound(x, 1, gen) for _ in range(1000)])
    assert_unbiased(valid, exact_iwae_bound(model, x, 3).detach())


def test_a_planted_bias_in_the_disarm_coefficient_is_caught():
    """The unbiasedness test can fail: DisARM's estimate scaled by 1.2 (e.g. a ½ lost to 0.6) is rejected."""
    model, x = tiny_sbn(WIDTHS["two-layer"])
    method = DisARM(model, samples=2)
    exact = exact_grads(method, elbo_loss(model, x))
    draws = average(method, x, 800)
    with pytest.raises(AssertionError):
        assert_unbiased(1.2 * draws["inference"], exact["inference"])


def test_disarm_has_lower_variance_than_arm_on_the_same_model():
    """Dong et al. (2020): integrating the augmentation out never raises the variance."""
    model, x = tiny_sbn(WIDTHS["two-layer"])
    var = {}
    for cls in (ARM, DisARM):
        var[cls.name] = average(cls(model, samples=1), x, 400)["inference"].var(0).sum()
    assert var["disarm"] < var["arm"]


# ---- Gumbel-Softmax: biased; its bias measured, its own objective's gradient exact -----------------------
def relaxed_gradient_by_quadrature(method, model, x, n=400):
    """∇ E_u[log p(x, h̃) − log q(h̃|x)] of a one-layer SBN with K = 2, by the midpoint rule on an n × n grid of u."""
    grid = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.cartesian_prod(grid, grid)                                             # (n², 2)
    u = u[:, None, :].expand(-1, x.shape[0], -1)                                     # (n², B, 2)
    objective = relaxed_objective(model, x, model.encode(x), [u], method.temperature, method.hard)[0]
    return exact_grads(method, -objective.mean(0).mean())


@pytest.mark.parametrize("hard", [False, True], ids=["gumbel", "gumbel-st"])
def test_gumbel_is_unbiased_for_its_relaxed_objective_and_biased_for_the_elbo(hard):
    model, x = tiny_sbn(2)
    method = GumbelSoftmax(model, samples=2, temperature=0.5, hard=hard)
    draws = average(method, x, 800)
    relaxed = relaxed_gradient_by_quadrature(method, model, x)
    exact = exact_grads(method, elbo_loss(model, x))
    for group in ("generative", "inference"):
        assert_unbiased(draws[group], relaxed[group], slack=1e-3)                    # quadrature error ≪ s.e.
    # against the ELBO gradient: the unbiasedness test fails (a real bias), and the bias is bounded (τ = 0.5)
    with pytest.raises(AssertionError):
        assert_unbiased(draws["inference"], exact["inference"])
    bias = (draws["inference"].mean(0) - exact["inference"]).norm()
    assert bias < 0.5 * exact["inference"].norm()


def test_gumbel_bias_shrinks_with_the_temperature_on_a_deep_sbn():
    """The relaxation's bias in the ELBO gradient: ‖E g − ∇L‖ at τ = 0.1 below τ = 1 (two-layer SBN)."""
    model, x = tiny_sbn(WIDTHS["two-layer"])
    exact = exact_grads(GumbelSoftmax(model), elbo_loss(model, x))
    bias = {}
    for tau in (0.1, 1.0):
        draws = average(GumbelSoftmax(model, samples=4, temperature=tau), x, 500)
        bias[tau] = torch.cat([(draws[g].mean(0) - exact[g]) for g in ("generative", "inference")]).norm()
    assert bias[0.1] < 0.5 * bias[1.0]


# ---- refined EM on every layer of a deep SBN -------------------------------------------------------------
DEEP_REFINERS = {
    "mpvi": lambda: MeanPassGradient(3, 0.5),
    "stvi": lambda: StraightThroughGradient(3, 0.05, samples=4),
    "avi": lambda: AdaptiveImportanceSampling(3, samples=8, rate=0.5),
}


@pytest.mark.parametrize("name", sorted(DEEP_REFINERS))
def test_refined_em_on_a_deep_sbn_against_enumeration(name):
    """Given each draw's q̃ (replayed): θ's update averages to −∇θ E_q̃ log p(x, h) and φ's to ∇φ KL(q̃ ‖ q_φ),
    both by enumeration over the 16 states of the two-layer SBN (the deep KL has no closed form: estimated)."""
    model, x = tiny_sbn(WIDTHS["two-layer"])
    method = RefinedEM(model, DEEP_REFINERS[name](), samples=4, name=name)
    states = all_binary(4, torch.float64)[:, None, :].expand(-1, x.shape[0], -1)        # (16, B, 4)
    gen = torch.Generator().manual_seed(0)
    diffs = {"generative": [], "inference": []}
    for _ in range(500):
        refined = method.e_step(x, torch.Generator().set_state(gen.get_state()))
        got = method_grads(method, x, gen)                                               # the same stream: same q̃
        q = refined.log_prob(states).exp()                                                # q̃(h)   (16, B)
        m_step = -(q * model.log_joint(x, states)).sum(0).mean()
        kl = (q * (q.log() - model.family.log_prob(model.encode(x), states))).sum(0).mean()
        want = {"generative": exact_grads(method, m_step)["generative"],
                "inference": exact_grads(method, kl)["inference"]}
        for g in diffs:
            diffs[g].append(got[g] - want[g])
    for g in diffs:
        d = torch.stack(diffs[g])
        assert_unbiased(d, torch.zeros_like(d[0]))


def test_layered_mean_pass_is_eq7_on_one_layer_and_refinement_raises_the_deep_bound():
    one, x = tiny_sbn(3)
    logits = torch.randn(3, 3, dtype=torch.float64)
    q = Posterior(BERNOULLI, (logits,))
    torch.testing.assert_close(layered_mean_pass_objective(one, q, x), mean_pass_objective(one, q, x))
    model, x = tiny_sbn(WIDTHS["two-layer"], seed=2)
    z0 = mean_field_logits(model, x).detach()
    a1 = model.encode(x)[0]
    torch.testing.assert_close(z0, torch.cat([a1, model.upper_encoders[0](torch.sigmoid(a1))], -1).detach())
    for refiner in (MeanPassGradient(20, 0.5), StraightThroughGradient(20, 0.02, samples=50)):
        refined = refiner.for_model(model).refine(model, Posterior(BERNOULLI, (z0,)), x,
                                                  torch.Generator().manual_seed(0)).params[0]
        assert (exact_elbo(model, refined, x) > exact_elbo(model, z0, x)).all()
