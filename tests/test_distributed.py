"""Data parallelism (varinf.distributed): 2 gloo processes × 1 thread against one process, on CPU.

Truth is the single-process run: with the noise of every datapoint drawn from the global batch
(varinf.distributed), N processes must end at one process's parameters after K updates up to
the summation order of the gradient (the all-reduce adds two half-batch sums where one process
adds the batch in one reduction). Tolerance: |Δ| / (1 + |θ|) ≤ 1e-5 over every tensor of the
checkpoint (weights, NVIL's moments, the optimizers' moments) after 12–24 updates, i.e. 1% of one
Adam step of lr 1e-3. Measured (benchmarks/ddp_equivalence.py, 2026-11-22): ≤ 2e-7 for
vae/gbvi/avi and 1e-6 for nvil, whose baseline gradient feeds back through the running moments;
drawing each shard's noise on its own gives 2e-2–7e-2 and summing the gradients instead of
averaging them 0.3–2.8, so the check can fail (and test_negative_control_shard_noise_matters).

All 2-process work runs in ONE torchrun launch of tests/ddp_worker.py (process start-up dominates);
tests/gloo_launch.py tells a machine that cannot host a gloo group from a failure of varinf's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from varinf.checkpoint import read_checkpoint
from varinf.config import make_config
from varinf.distributed import Context, GradSync, global_moments, shard_bounds
from varinf.streams import Shard, Stream
from varinf.evaluate import evaluate_run
from varinf.families import BERNOULLI, GAUSSIAN
from varinf.training import train

from gloo_launch import HERE, check_launch, free_port, torchrun, worker_env
from killed_eval import Killed, count_batches

ATOL = 1e-5
SMALL = dict(dataset="digits", hidden=(32,), latent_dim=8, batch_size=100, threads=1, patience=0, seed=3)
RUNS = {                                   # name -> settings; digits: 1197 training rows = 12 updates per epoch
    "vae": dict(SMALL, method="vae", epochs=2),
    "gbvi": dict(SMALL, method="gbvi", epochs=1, refine_steps=3, refine_samples=4, samples=2, lr=3e-3),
    "nvil": dict(SMALL, method="nvil", model="sbn", epochs=2),
    "avi": dict(SMALL, method="avi", model="sbn", epochs=1, refine_steps=3, refine_samples=4, samples=2),
    "wake-sleep": dict(SMALL, method="wake-sleep", model="sbn", epochs=1),
    "hvi": dict(SMALL, method="hvi", epochs=1),                           # momentum noise drawn for the global batch
    "disarm-deep": dict(SMALL, method="disarm", model="sbn", latent_dim=(8, 4), hidden=(), epochs=1),   # layered uniforms
}
EVAL = dict(nll_samples=30, batch_size=64, refine_steps=2, refine_sweep=(0, 2))   # digits' 300 test points: 5 batches
EVAL_K = dict(nll_samples=200, batch_size=1000, refine_steps=2)     # 1 batch, 14 chunks of 15 draws: the k draws split


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = read_checkpoint(run_dir / "checkpoints", "last")
    return tensors


def _max_diff(a: dict, b: dict) -> float:
    """max |a − b| / (1 + |a|) over every floating-point tensor of two checkpoints."""
    assert a.keys() == b.keys()
    return max(((a[k].double() - b[k].double()).abs() / (1 + a[k].double().abs())).max().item()
               for k in a if a[k].is_floating_point())


def interrupted_eval(run: Path, output: Path, batches: int) -> None:
    """The evaluation of the worker (EVAL) killed in one process after ``batches`` batches were saved."""
    with pytest.MonkeyPatch.context() as m:
        count_batches(m, kill_after=batches)
        with pytest.raises(Killed):
            evaluate_run(run, **EVAL, output=output)
    assert len(list(output.with_suffix(".partial").glob("*.safetensors"))) == 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data_dir):
    root = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    for name, settings in RUNS.items():                      # one process: the reference
        train(make_config(**settings), root / f"{name}-1", progress=False)
    train(make_config(**{**RUNS["vae"], "epochs": 1}), root / "resume", progress=False)
    interrupted_eval(root / "vae-1", root / "eval-2.json", batches=2)     # the 2 processes resume it
    done = torchrun(["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                     str(HERE / "ddp_worker.py"), str(root)], env=worker_env(VARINF_DATA_DIR=str(shared_data_dir)))
    check_launch(done, "the 2-process runs (tests/ddp_worker.py)")
    (root / "workers.out").write_text(done.stdout)
    return root


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_reproduce_one_process_parameters(runs, name):
    one, two = _params(runs / f"{name}-1"), _params(runs / f"{name}-2")
    assert _max_diff(one, two) <= ATOL
    assert _max_diff(one, _params(runs / f"{name}-1")) == 0.0


def test_nvil_running_moments_are_those_of_the_global_batch(runs):
    one, two = _params(runs / "nvil-1"), _params(runs / "nvil-2")
    for key in ("model.method.mean", "model.method.var"):
        assert key in one, sorted(one)
        assert torch.allclose(one[key], two[key], rtol=1e-5, atol=1e-6)


def test_leaving_the_group_joins_gloo_threads(runs):
    """destroy_process_group() must join gloo's threads: one left running races the interpreter's exit and
    aborts the process (SIGABRT; 1 of 30 launches before the torch._dynamo import in init_from_env, RESULTS §14.1)."""
    out = (runs / "workers.out").read_text()
    for rank in (0, 1):
        assert f"rank {rank}: gloo threads after leaving the group: []" in out, out[-2000:]


def test_world_size_is_recorded_in_config_and_every_metrics_line(runs):
    for n in (1, 2):
        run = runs / f"vae-{n}"
        assert json.loads((run / "config.json").read_text())["world_size"] == n
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["world_size"] for r in lines] == [n, n]
    one = [json.loads(line) for line in (runs / "vae-1" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (runs / "vae-2" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(one, two):                     # the global bounds, not one shard's
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], abs=1e-3)
        assert a["valid_elbo"] == pytest.approx(b["valid_elbo"], abs=1e-3)


def test_resume_under_another_process_count(runs):
    lines = [json.loads(line) for line in (runs / "resume" / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in lines] == [1, 2]
    assert _max_diff(_params(runs / "vae-1"), _params(runs / "resume")) <= ATOL


def test_distributed_eval_equals_single_process_eval(runs):
    """The 2 processes resumed a 1-process evaluation killed after 2 of its batches (interrupted_eval)."""
    two = json.loads((runs / "eval-2.json").read_text())
    one = evaluate_run(runs / "vae-1", **EVAL, write=False)
    assert not (runs / "eval-2.partial").exists()
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in ("test_elbo", "test_nll", "test_elbo_refined", "test_nll_refined", "amortization_gap"):
        assert two[key] == one[key], key                   # the same per-datapoint numbers, bit for bit
    assert [r["test_elbo"] for r in two["refine_sweep"]] == [r["test_elbo"] for r in one["refine_sweep"]]


def test_distributed_eval_with_k_split_equals_single_process_eval(runs):
    """One batch for two processes: each evaluates every other chunk of the k draws; the same numbers, bit for bit."""
    two = json.loads((runs / "eval-k-2.json").read_text())
    one = evaluate_run(runs / "vae-1", **EVAL_K, write=False)
    assert two["world_size"] == 2 and two["test_points"] == 300
    for key in ("test_elbo", "test_nll", "test_elbo_refined", "test_nll_refined", "amortization_gap"):
        assert two[key] == one[key], key


def test_negative_control_shard_noise_matters(shared_data_dir):
    """Without the global-batch draw, a shard's noise differs from one process's: the check can fail."""
    mu, log_std = torch.zeros(10, 3), torch.zeros(10, 3)
    full = GAUSSIAN.draw((mu, log_std), 2, torch.Generator().manual_seed(0))               # (2, 10, 3)
    naive = GAUSSIAN.draw((mu[5:], log_std[5:]), 2, torch.Generator().manual_seed(0))      # rank 1, own draw
    assert not torch.allclose(full[:, 5:], naive)
    sharded = GAUSSIAN.draw((mu[5:], log_std[5:]), 2, Stream(torch.Generator().manual_seed(0), Shard(5, 10, 10)))
    logits = torch.randn(5, 3)
    b_shard = BERNOULLI.draw((logits,), 4, Stream(torch.Generator().manual_seed(1), Shard(5, 10, 10)))
    assert torch.equal(full[:, 5:], sharded)
    b_full = BERNOULLI.draw((torch.cat([torch.randn(5, 3), logits]),), 4, torch.Generator().manual_seed(1))
    assert torch.equal(b_full[:, 5:], b_shard)


def test_shard_bounds_cover_the_batch_once():
    for rows in (1, 2, 7, 100):
        for world in (1, 2, 3):
            spans = [shard_bounds(rows, Context(r, world)) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            sizes = [b - a for a, b in spans]
            assert sizes == [t.shape[0] for t in torch.arange(rows).tensor_split(world)]


def test_one_process_hooks_are_the_identity():
    x = torch.randn(4, 5)
    mean, var = global_moments(x, None)
    assert torch.equal(mean, x.mean()) and torch.equal(var, x.var(unbiased=False))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    GradSync(0.5, Context())([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_bf16_autocast_trains_on_cpu_and_bad_precision_settings_are_refused(tmp_path):
    """The GPU path's reduced-precision option runs on a CPU too; its effect on the bound is measured only on a GPU."""
    from varinf.errors import ConfigError
    result = train(make_config(**{**RUNS["vae"], "epochs": 1, "autocast": "bf16"}), tmp_path / "bf16", progress=False)
    assert torch.isfinite(torch.tensor(result.history[0]["train_elbo"]))
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["train"]["autocast"] == "bf16"
    with pytest.raises(ConfigError, match="autocast"):
        make_config(autocast="fp8")
    with pytest.raises(ConfigError, match="tf32"):
        make_config(tf32="yes")


def test_torchrun_command_line(tmp_path, shared_data_dir):
    """`torchrun --nproc_per_node 2 -m varinf train` joins a gloo group, and only rank 0 prints and writes."""
    out = tmp_path / "run"
    done = torchrun(["--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "varinf",
                     "train", "--out", str(out), "--dataset", "digits", "--hidden", "16", "--latent-dim", "4",
                     "--epochs", "1", "--threads", "1", "--quiet", "--tensorboard"],
                    env=worker_env(VARINF_DATA_DIR=str(shared_data_dir)), timeout=120)
    check_launch(done, "torchrun -m varinf train")
    assert done.stdout.count('"run_dir"') == 1                      # one summary line: rank 0's
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1    # one event file: rank 0's
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
