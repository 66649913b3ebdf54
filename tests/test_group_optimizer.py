"""The loop's optimizer: one update over all of a method's parameter groups, seen as one optimizer per group.

``make_optimizers`` builds one torch optimizer over every group and hands each group a
``GroupOptimizer`` view. These tests pin that this is the per-group optimizers of earlier releases
bit for bit: the same parameters after the same steps (Adam and RMSprop, with and without warm-up),
the same per-group state in the same checkpoint layout, the same resumed run, one optimizer call per
step, and a group without a loss left where it was.
"""

import copy

import pytest
import torch

from varinf.config import make_config
from varinf.infer import Losses, apply_losses, make_optimizer, make_optimizers
from varinf.infer._base import optimizer_groups
from varinf.models import SBN, VAE, SBNConfig, VAEConfig
from varinf.training import method_for

torch.set_num_threads(1)

X = (torch.rand(12, 10, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def vae_method():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=10, hidden=(6,), latent_dim=3))
    return method_for(make_config(method="vae"), model, 10)


def nvil_method():
    torch.manual_seed(0)
    model = SBN(SBNConfig(data_dim=10, latent_dim=(4,), hidden=()))
    return method_for(make_config(method="nvil", model="sbn"), model, 10)


def per_group(method, rule, lr, warmup):
    """The layout of earlier releases: a torch optimizer of its own for every group."""
    return {name: make_optimizer(params, rule, lr, warmup) for name, params in method.parameter_groups().items()}


def run_steps(method, optimizers, steps, seed=5):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        method.step(X, gen, optimizers)


def same_state(a: dict, b: dict) -> None:
    """Two torch optimizer state dicts hold the same numbers and the same groups."""
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for idx in a["state"]:
        assert a["state"][idx].keys() == b["state"][idx].keys()
        for key, value in a["state"][idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key])), (idx, key)


@pytest.mark.parametrize("make_method", [vae_method, nvil_method], ids=["vae", "nvil"])
@pytest.mark.parametrize("rule,warmup", [("adam", 0), ("adam", 3), ("rmsprop", 0), ("rmsprop", 3)])
def test_one_update_over_all_groups_is_the_per_group_updates_bit_for_bit(make_method, rule, warmup):
    shared_method, own_method = make_method(), make_method()
    shared = make_optimizers(shared_method, rule, 1e-2, warmup)
    own = per_group(own_method, rule, 1e-2, warmup)
    run_steps(shared_method, shared, 5)
    run_steps(own_method, own, 5)
    for p, q in zip(shared_method.model.parameters(), own_method.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert shared.keys() == own.keys()
    for name in own:                                   # the checkpoints' layout: one optimizer state per group
        same_state(shared[name].state_dict(), own[name].state_dict())
        assert shared[name].param_groups[0]["lr"] == own[name].param_groups[0]["lr"]


@pytest.mark.parametrize("rule", ["adam", "rmsprop"])
def test_a_group_state_loads_into_a_fresh_optimizer_and_the_run_goes_on_the_same(rule):
    method = vae_method()
    optimizers = make_optimizers(method, rule, 1e-2, 4)
    run_steps(method, optimizers, 3)
    saved = {name: copy.deepcopy(opt.state_dict()) for name, opt in optimizers.items()}
    resumed_method = copy.deepcopy(method)
    resumed = make_optimizers(resumed_method, rule, 1e-2, 4)
    for name, opt in resumed.items():
        opt.load_state_dict(saved[name])
        same_state(opt.state_dict(), optimizers[name].state_dict())
    run_steps(method, optimizers, 3, seed=9)
    run_steps(resumed_method, resumed, 3, seed=9)
    for p, q in zip(method.model.parameters(), resumed_method.model.parameters(), strict=True):
        assert torch.equal(p, q)
    own = per_group(vae_method(), rule, 1e-2, 4)       # a state written by an optimizer of its own loads too
    for name, opt in own.items():
        opt.load_state_dict(saved[name])
        same_state(opt.state_dict(), saved[name])


def test_the_shared_optimizer_is_called_once_per_step():
    method = nvil_method()                             # three groups: generative, inference, baseline
    optimizers = make_optimizers(method, "adam", 1e-3)
    shared = {id(opt.shared) for opt in optimizers.values()}
    assert len(optimizers) == 3 and len(shared) == 1
    calls = []
    next(iter(optimizers.values())).shared.register_step_pre_hook(lambda *a: calls.append(1))
    run_steps(method, optimizers, 4)
    assert len(calls) == 4


def test_a_group_without_a_loss_is_not_moved_by_the_optimizer_it_shares():
    method = vae_method()
    optimizers = make_optimizers(method, "adam", 1e-2)
    groups = optimizer_groups(optimizers)
    run_steps(method, optimizers, 1)                   # every parameter now holds a gradient and Adam state
    before = {name: [p.detach().clone() for p in params] for name, params in groups.items()}
    out = method.losses(X, torch.Generator().manual_seed(2))
    apply_losses(Losses({"generative": out.losses["generative"]}, out.bound), groups, optimizers)   # θ only
    assert all(torch.equal(p, b) for p, b in zip(groups["inference"], before["inference"]))
    assert not any(torch.equal(p, b) for p, b in zip(groups["generative"], before["generative"]))
