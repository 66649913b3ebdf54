"""Seconds per epoch of the Hjelm et al. (2015) VAE (784-500-200 softplus) on binarized MNIST, three ways.

    varinf   varinf's own epoch loop (varinf.training.train_epoch + the ``vae`` method)
    hand     a minimal hand-written PyTorch loop of the same model and estimator,
             with torch.optim.Adam's defaults (what a user writes)
    hand-fused  the same loop with Adam(fused=True), the optimizer kernel varinf uses
    pyro     Pyro's SVI with Trace_ELBO on the same networks

Contenders run one epoch each in turn, for ``--rounds`` rounds (the order reversed every other round),
same batch size, same threads, same data tensor; the median seconds per epoch is reported with the
ratios, and the hand-fused / varinf ratio round by round (median, range, rounds varinf won). With
``--isolate`` every epoch is timed in a fresh process of its own (one contender, its warm-up, one timed
epoch): in one process the contenders' timings move with each other's memory layout (the same hand-written
loop was 5 % faster or slower depending on the varinf code loaded beside it), so the ratio of 1 % changes
needs separate processes.
The floor is the epoch's matrix-multiply FLOPs divided by the machine's measured matmul
rate (a large float32 GEMM timed in the same run).

    python benchmarks/bench_vae_loop.py --data-dir ../shared/data --rounds 3
    python benchmarks/bench_vae_loop.py --data-dir ../shared/data --rounds 10 --isolate --no-pyro
    python benchmarks/bench_vae_loop.py --data-dir ../shared/data --threads 1 --step-breakdown
    python benchmarks/bench_vae_loop.py --data-dir ../shared/data --threads 1 --step-breakdown --fixed-cost
    python benchmarks/bench_vae_loop.py --data-dir ../shared/data --forward-parts

``--step-breakdown`` times the parts of one training step of 100 images instead (medians of 15
repeats of 10 calls): varinf's ``method.step`` against the hand-written fused-Adam step, their
forward passes, the optimizer updates (varinf's, which is one call over θ and φ as ``apply_losses`` makes it;
two fused-Adam calls for θ and φ, one call over all parameters, one optimizer with two parameter groups), and the Bernoulli likelihood's data term
Σ_d x_d η_d as a batched product against the elementwise product for S draws per datapoint.
With ``--fixed-cost`` the same parts on a 784-8-4 network and 2 images per step, where the matrix
products cost nothing: each loop's fixed cost per step. ``--forward-parts`` times one forward and backward
pass (fixed weights, no optimizer) from the hand-written loss to varinf's ``method.losses``, one change at
a time (medians of 25 alternated repeats of 40 batches).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from varinf.config import make_config
from varinf.data import load_dataset
from varinf.models import VAE, VAEConfig
from varinf.infer._base import optimizer_groups
from varinf.training import build_model, method_for, optimizers_for, train_epoch


def hand_kl(mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) as the textbook writes it (Kingma & Welling 2014, App. B), (B,)."""
    return 0.5 * (mu.pow(2) + (2 * log_std).exp() - 2 * log_std - 1).sum(-1)


def hand_reconstruction(logits: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """log p(x|z) as the binary cross-entropy with logits, (B,)."""
    return -F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)


def hand_loss(model: VAE, xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The textbook loss of one batch: encoder, reparameterise, BCE + closed-form KL, mean."""
    mu, log_std = model.encoder.net(xb).chunk(2, dim=-1)
    z = mu + log_std.exp() * torch.randn(mu.shape, generator=gen)
    return (hand_kl(mu, log_std) - hand_reconstruction(model.decoder.net(z), xb)).mean()


def hand_written_epoch(model: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, batch_size: int,
                       gen: torch.Generator) -> float:
    """The textbook loop: randperm, ``hand_loss``, step."""
    total = 0.0
    perm = torch.randperm(x.shape[0], generator=gen)
    for i in range(0, x.shape[0], batch_size):
        xb = x[perm[i:i + batch_size]]
        loss = hand_loss(model, xb, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += -loss.item() * xb.shape[0]
    return total / x.shape[0]


def make_pyro_epoch(model: VAE, lr: float):
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    pyro.clear_param_store()
    k = model.latent_dim

    def p_model(xb):
        pyro.module("decoder", model.decoder)
        with pyro.plate("data", xb.shape[0]):
            z = pyro.sample("z", dist.Normal(xb.new_zeros(k), xb.new_ones(k)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=model.decoder(z), validate_args=False).to_event(1), obs=xb)

    def p_guide(xb):
        pyro.module("encoder", model.encoder)
        with pyro.plate("data", xb.shape[0]):
            mu, log_std = model.encoder(xb)
            pyro.sample("z", dist.Normal(mu, log_std.exp()).to_event(1))

    svi = SVI(p_model, p_guide, Adam({"lr": lr}), loss=Trace_ELBO())

    def epoch(x: torch.Tensor, batch_size: int, gen: torch.Generator) -> float:
        total = 0.0
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch_size):
            xb = x[perm[i:i + batch_size]]
            total += -svi.step(xb)
        return total / x.shape[0]

    return epoch


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def epoch_gflop(cfg: VAEConfig, n: int) -> float:
    """Matrix-multiply FLOPs of one epoch: 2·(weights) per example forward, ×3 with backward."""
    sizes = [cfg.data_dim, *cfg.hidden, 2 * cfg.latent_dim]
    dec = [cfg.latent_dim, *reversed(cfg.hidden), cfg.data_dim]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(a * b for a, b in zip(dec[:-1], dec[1:]))
    return 3 * 2 * weights * n / 1e9


def _median_us(fn, reps: int = 15, calls: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def step_breakdown(x: torch.Tensor, cfg, mcfg: VAEConfig, batch: int = 100) -> None:
    """Print the per-step parts (µs) described in the module docstring."""
    model = build_model(mcfg, 0, torch.device("cpu"))
    method = method_for(cfg, model, mcfg.data_dim)
    optimizers = optimizers_for(cfg, method)
    hand = build_model(mcfg, 0, torch.device("cpu"))
    fused = torch.optim.Adam(hand.parameters(), lr=cfg.lr, fused=True)
    xb, gen = x[:batch], torch.Generator().manual_seed(0)
    params = [p for group in optimizer_groups(optimizers).values() for p in group]

    def hand_forward():
        return hand_loss(hand, xb, gen)

    def hand_step():
        loss = hand_forward()
        fused.zero_grad(set_to_none=True)
        loss.backward()
        fused.step()

    def hand_gradients():
        loss = hand_forward()
        fused.zero_grad(set_to_none=True)
        loss.backward()

    def varinf_gradients():                  # what apply_losses does before the optimizer steps (one loss here)
        loss = method.losses(xb, gen).losses["generative"]
        for p in params:
            p.grad = None
        torch.autograd.backward(loss, inputs=params)

    one = build_model(mcfg, 0, torch.device("cpu"))
    for p in one.parameters():
        p.grad = torch.randn_like(p)
    enc, dec = list(one.encoder.parameters()), list(one.decoder.parameters())
    two = [torch.optim.Adam(dec, lr=cfg.lr, fused=True), torch.optim.Adam(enc, lr=cfg.lr, fused=True)]
    single = torch.optim.Adam(one.parameters(), lr=cfg.lr, fused=True)
    grouped = torch.optim.Adam([{"params": dec}, {"params": enc}], lr=cfg.lr, fused=True)
    rows = {
        "varinf step (method.step)": lambda: method.step(xb, gen, optimizers),
        "hand-written step, fused Adam": hand_step,
        "varinf forward (method.losses)": lambda: method.losses(xb, gen),
        "hand-written forward": hand_forward,
        "varinf forward and gradients": varinf_gradients,
        "hand-written forward and gradients": hand_gradients,
        "varinf optimizer update (theta, phi)": lambda: [step() for step in dict.fromkeys(o.step for o in optimizers.values())],
        "hand-written optimizer update": fused.step,
        "two fused-Adam calls (theta, phi)": lambda: [o.step() for o in two],
        "one fused-Adam call, all parameters": single.step,
        "one optimizer, two parameter groups": grouped.step,
    }
    print(f"| part of one step (B = {batch}) | µs (median) |\n|---|---|")
    for name, fn in rows.items():
        print(f"| {name} | {_median_us(fn):.0f} |")
    if batch < 100:                          # the fixed cost per step: the data-term table is for B = 100
        return
    print("\n| draws S per datapoint | batched product (einsum) µs | elementwise product µs |\n|---|---|---|")
    xs = xb.float()
    for num in (1, 2, 5, 20, 500):
        eta = torch.randn(num, xs.shape[0], xs.shape[1])
        batched = _median_us(lambda: torch.einsum("sbd,bd->sb", eta, xs), reps=7)
        elementwise = _median_us(lambda: torch.linalg.vecdot(eta, xs), reps=7)
        print(f"| {num} | {batched:.0f} | {elementwise:.0f} |")


def forward_parts(x: torch.Tensor, cfg, mcfg: VAEConfig, batch: int = 100, reps: int = 25) -> None:
    """µs per forward and backward pass (fixed weights, no optimizer) from the hand-written loss to varinf's,
    one change at a time: where the difference between the two loops lies (module docstring, --forward-parts)."""
    from varinf.contract import posterior
    from varinf.families import GAUSSIAN
    from varinf.objectives import sgvb_b

    model = build_model(mcfg, 0, torch.device("cpu"))
    method = method_for(cfg, model, 784)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    batches = [x[i * batch:(i + 1) * batch].clone() for i in range(40)]
    enc, dec = model.encoder.net, model.decoder.net

    def hand(xb):
        return hand_loss(model, xb, gen)

    def draws(xb):                            # z from the Gaussian family: (S, B, K), S = 1, through the stream
        mu, log_std = enc(xb).chunk(2, -1)
        z = GAUSSIAN.draw((mu, log_std), 1, gen)
        return (hand_kl(mu, log_std) - hand_reconstruction(dec(z.reshape(-1, z.shape[-1])), xb)).mean()

    def likelihood(xb):                       # + varinf's decoder and likelihood on (S, B, ·), mean over S
        mu, log_std = enc(xb).chunk(2, -1)
        z = GAUSSIAN.draw((mu, log_std), 1, gen)
        return (hand_kl(mu, log_std) - model.log_likelihood(xb, z).mean(0)).mean()

    def posterior_value(xb):                  # + q as a Posterior value (the model's posterior(x))
        q = posterior(model, xb)
        return (hand_kl(*q.params) - model.log_likelihood(xb, q.draw(1, gen)).mean(0)).mean()

    def varinf_kl(xb):                        # + the family's closed-form KL to N(0, I)
        q = posterior(model, xb)
        return (GAUSSIAN.kl_to_standard(q.params) - model.log_likelihood(xb, q.draw(1, gen)).mean(0)).mean()

    def estimator(xb):                        # sgvb_b itself: + the data check and the argument checks
        return -sgvb_b(model, posterior(model, xb), xb, 1, gen).mean()

    def losses(xb):                           # the method: + Losses and the detached bound
        return method.losses(xb, gen).losses["generative"]

    variants = {"hand-written loss": hand, "and z drawn by the Gaussian family as (S, B, K), S = 1": draws,
                "and varinf's decoder and likelihood on (S, B, ·), mean over S": likelihood,
                "and q as a Posterior value": posterior_value,
                "and varinf's KL to N(0, I)": varinf_kl, "varinf's sgvb_b (and its data check)": estimator,
                "varinf's method.losses": losses}

    def run(loss_of):
        for xb in batches:
            loss = loss_of(xb)
            for p in params:
                p.grad = None
            loss.backward()

    for loss_of in variants.values():
        run(loss_of)
    times = {name: [] for name in variants}
    for _ in range(reps):
        for name, loss_of in variants.items():
            t0 = time.perf_counter()
            run(loss_of)
            times[name].append((time.perf_counter() - t0) / len(batches) * 1e6)
    base = statistics.median(times["hand-written loss"])
    print(f"| forward and backward of one batch (B = {batch}), fixed weights | µs (median of {reps}) | "
          "against the hand-written loss |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.0f} | {statistics.median(t) - base:+.0f} |")


def make_contender(name: str, cfg, mcfg: VAEConfig, batch_size: int):
    """The epoch function of one contender, with its own freshly initialised model (seed 0) and optimizer."""
    model = build_model(mcfg, 0, torch.device("cpu"))
    if name == "varinf":
        method = method_for(cfg, model, 784)
        optimizers = optimizers_for(cfg, method)
        return lambda g, xs: train_epoch(method, optimizers, xs, batch_size, g)
    if name == "pyro":
        pyro_epoch = make_pyro_epoch(model, cfg.lr)
        return lambda g, xs: pyro_epoch(xs, batch_size, g)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=name == "hand-fused")
    return lambda g, xs: hand_written_epoch(model, opt, xs, batch_size, g)


def isolated_epoch(name: str, r: int, args) -> tuple[float, float]:
    """(seconds, bound) of one epoch of ``name`` timed in a fresh Python process (round ``r``'s batches and noise)."""
    cmd = [sys.executable, __file__, "--contender", name, "--round", str(r), "--batch-size", str(args.batch_size)]
    for flag, value in (("--data-dir", args.data_dir), ("--threads", args.threads), ("--train-size", args.train_size)):
        if value is not None:
            cmd += [flag, str(value)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return out["seconds"], out["bound"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--train-size", type=int, default=None, help="use the first N training images (default all)")
    ap.add_argument("--no-pyro", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--isolate", action="store_true",
                    help="time every epoch in a fresh process of its own (one contender per process), so that no "
                         "contender's memory layout or allocator state shapes another's timing")
    ap.add_argument("--contender", choices=["varinf", "hand", "hand-fused", "pyro"], help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--step-breakdown", action="store_true", help="time the parts of one step instead")
    ap.add_argument("--forward-parts", action="store_true",
                    help="time the forward and backward pass from the hand-written loss to varinf's, one change "
                         "at a time, instead")
    ap.add_argument("--fixed-cost", action="store_true",
                    help="with --step-breakdown: a 784-8-4 network and 2 images per step, where the matrix products "
                         "cost nothing, so the parts are each loop's fixed cost per step")
    args = ap.parse_args()
    if args.fixed_cost and not args.step_breakdown:
        ap.error("--fixed-cost times the parts of one step: give it with --step-breakdown")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset("binarized-mnist", args.data_dir)
    x = data.split("train")[: args.train_size]
    cfg = make_config(dataset="binarized-mnist", lr=1e-3, batch_size=args.batch_size).resolved()   # Table 1 network
    mcfg = VAEConfig(data_dim=784, latent_dim=cfg.latent_dim, hidden=cfg.hidden, activation=cfg.activation)
    if args.forward_parts:
        forward_parts(x, cfg, mcfg, args.batch_size)
        return
    if args.step_breakdown:
        if args.fixed_cost:
            step_breakdown(x, cfg, VAEConfig(data_dim=784, latent_dim=4, hidden=(8,), activation=cfg.activation), 2)
        else:
            step_breakdown(x, cfg, mcfg)
        return

    names = ["varinf", "hand", "hand-fused"] + ([] if args.no_pyro else ["pyro"])
    if args.contender:                        # one contender's epoch in this process (a child of --isolate)
        run = make_contender(args.contender, cfg, mcfg, args.batch_size)
        run(torch.Generator().manual_seed(1), x[: 20 * args.batch_size])      # warm-up, not timed
        t0 = time.perf_counter()
        bound = run(torch.Generator().manual_seed(100 + args.round), x)
        print(json.dumps({"seconds": time.perf_counter() - t0, "bound": bound}))
        return
    contenders = {} if args.isolate else {name: make_contender(name, cfg, mcfg, args.batch_size) for name in names}
    for run in contenders.values():   # warm-up: first-call allocations and dispatch, not timed
        run(torch.Generator().manual_seed(1), x[: 20 * args.batch_size])
    gflops_before = matmul_gflops()
    times: dict[str, list[float]] = {k: [] for k in names}
    bounds: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else list(reversed(names))                  # no contender always first
        for name in order:
            if args.isolate:
                seconds, bound = isolated_epoch(name, r, args)
            else:
                g = torch.Generator().manual_seed(100 + r)
                t0 = time.perf_counter()
                bound = contenders[name](g, x)
                seconds = time.perf_counter() - t0
            times[name].append(seconds)
            bounds[name].append(bound)
            print(f"round {r + 1} {name:10s} {seconds:7.2f} s  train bound {bound:9.2f}", flush=True)
    gflops = max(gflops_before, matmul_gflops())

    med = {k: statistics.median(v) for k, v in times.items()}
    work = epoch_gflop(mcfg, x.shape[0])
    floor = work / gflops
    print()
    print(f"date {datetime.date.today()}  {platform.processor() or platform.machine()}  "
          f"torch {torch.__version__}  threads {torch.get_num_threads()}  N={x.shape[0]}  batch {args.batch_size}")
    print(f"matmul rate {gflops:.0f} GFLOP/s; epoch work {work:.0f} GFLOP; floor {floor:.2f} s/epoch")
    print()
    print("| loop | s/epoch (median) | examples/s | hand / this | hand-fused / this | floor / this |")
    print("|---|---|---|---|---|---|")
    for name in names:
        print(f"| {name} | {med[name]:.2f} | {x.shape[0] / med[name]:.0f} | {med['hand'] / med[name]:.2f} | "
              f"{med['hand-fused'] / med[name]:.2f} | {floor / med[name]:.0%} |")
    paired = [f / v for f, v in zip(times["hand-fused"], times["varinf"])]
    print(f"\nhand-fused / varinf, round by round: median {statistics.median(paired):.3f} "
          f"(range {min(paired):.3f}-{max(paired):.3f}); varinf faster in {sum(p > 1 for p in paired)} "
          f"of {len(paired)} rounds")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"times": times, "bounds": bounds, "gflops": gflops, "floor_s": floor,
                       "threads": torch.get_num_threads(), "isolate": args.isolate}, fh, indent=2)


if __name__ == "__main__":
    main()
