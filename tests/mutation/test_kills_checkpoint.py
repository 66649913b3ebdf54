"""Tests that kill the surviving mutants of ``varinf.checkpoint`` (issue #20; docs/RESULTS.md §17)."""

import hashlib
import json
import re

import pytest
import torch
from safetensors.torch import save as save_bytes

from varinf.checkpoint import read_checkpoint, remove_stale_files, restore, save_checkpoint
from varinf.errors import CheckpointError
from varinf.runfiles import shown

OWNER = "0123456789abcdef"


class Bookkeeping(torch.optim.SGD):
    """SGD whose per-parameter state also holds a plain number and a tensor under a dotted key: what a
    user's optimizer may keep (torch's own keep tensors under dot-free keys only)."""

    def step(self, closure=None):
        super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                st["n_steps"] = st.get("n_steps", 0) + 1                   # a scalar: the JSON side
                st["trace.sq"] = st.get("trace.sq", torch.zeros_like(p)) + p.grad.pow(2)   # a dotted key


class Counting(torch.optim.Optimizer):
    """An optimizer whose state is plain numbers only (no tensor): restored from the JSON side alone."""

    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["n_steps"] = self.state[p].get("n_steps", 0) + 1


def test_every_optimizer_state_entry_round_trips_scalars_and_dotted_keys_included(tmp_path):
    """save_checkpoint → read_checkpoint → restore gives back the optimizer's whole state: the scalar
    entries (JSON "scalars") and a tensor whose key holds a dot ("optim.<idx>.<key>" split once at
    the index; kills split without maxsplit, rsplit, maxsplit 3, the scalars dropped, and the scalars of a
    parameter without tensor state dropped)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt, counting = Bookkeeping(model.parameters(), lr=0.1, momentum=0.9), Counting(model.parameters())
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        counting.step()
    save_checkpoint(tmp_path, "last", model=model, optimizers={"model": opt, "count": counting}, meta={"step": 2},
                    owner=OWNER)
    tensors, meta = read_checkpoint(tmp_path, "last")

    fresh = torch.nn.Linear(3, 2)
    fresh_opt, fresh_counting = Bookkeeping(fresh.parameters(), lr=0.1, momentum=0.9), Counting(fresh.parameters())
    restore(tensors, meta, model=fresh, optimizers={"model": fresh_opt, "count": fresh_counting})
    assert fresh_counting.state_dict()["state"] == {0: {"n_steps": 2}, 1: {"n_steps": 2}}
    want, got = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert set(got) == set(want) == {0, 1}
    for idx in want:
        assert set(got[idx]) == set(want[idx]) == {"momentum_buffer", "n_steps", "trace.sq"}
        assert got[idx]["n_steps"] == 2
        for key in ("momentum_buffer", "trace.sq"):
            assert torch.equal(got[idx][key], want[idx][key])


def test_a_file_another_owners_record_supersedes_is_not_removed(tmp_path):
    """remove_stale_files removes only what its owner provably wrote: a weights file that a record of
    another run names as superseded stays (kills the owner check joined by ``or``)."""
    other, mine = "a" * 16, "b" * 16
    model, opts = torch.nn.Linear(2, 1), {}
    save_checkpoint(tmp_path, "last", model=model, optimizers=opts, meta={"step": 1}, owner=other)
    first = (tmp_path / "last-000001.safetensors").read_bytes()
    save_checkpoint(tmp_path, "last", model=model, optimizers=opts, meta={"step": 2}, owner=other)
    (tmp_path / "last-000001.safetensors").write_bytes(first)        # superseded, and back (e.g. from a copy)
    assert remove_stale_files(tmp_path, owner=mine) == []
    assert (tmp_path / "last-000001.safetensors").read_bytes() == first
    assert remove_stale_files(tmp_path, owner=other) == [tmp_path / "last-000001.safetensors"]


def test_weights_of_another_model_are_refused_naming_the_missing_and_unexpected_tensors(tmp_path):
    """Restoring into a model with other parameter names is a CheckpointError that names what is missing and
    what is unexpected (kills the two sets replaced by None: a TypeError)."""
    save_checkpoint(tmp_path, "last", model=torch.nn.Linear(2, 1), optimizers={}, meta={"step": 1}, owner=OWNER)
    tensors, meta = read_checkpoint(tmp_path, "last")
    other = torch.nn.Sequential(torch.nn.Linear(2, 1))
    with pytest.raises(CheckpointError, match=r"^checkpoint was written by a model of another configuration "
                                              r"\(missing \['0\.bias', '0\.weight'\], unexpected \['bias', 'weight'\]\)$"):
        restore(tensors, meta, model=other)


def test_an_optimizer_the_checkpoint_has_no_state_for_is_named():
    """Restoring an optimizer the checkpoint did not save is a CheckpointError naming it."""
    model = torch.nn.Linear(2, 1)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match=r"^checkpoint holds no state for optimizer 'decoder'$"):
        restore(tensors, {"optimizers": {"model": {}}}, model=model, optimizers={"decoder": opt})


def test_corrupt_weights_are_reported_with_both_digests(tmp_path):
    """Weights whose SHA-256 is not the record's: the error names the file, the record and both digests."""
    save_checkpoint(tmp_path, "last", model=torch.nn.Linear(2, 1), optimizers={}, meta={"step": 1}, owner=OWNER)
    record = json.loads((tmp_path / "last.json").read_text())
    weights = tmp_path / record["weights_file"]
    weights.write_bytes(weights.read_bytes()[:-1] + b" ")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match=rf"^checkpoint weights {re.escape(str(weights))} are corrupt or do not "
                                              rf"belong to last.json \(sha256 {digest[:12]}…, expected "
                                              rf"{record['weights_sha256'][:12]}…\)$"):
        read_checkpoint(tmp_path, "last")


def test_a_format_1_record_without_a_weights_name_reads_name_safetensors(tmp_path):
    """Format 1 (before versioned weights) kept NAME.safetensors beside NAME.json, not named in the record."""
    model = torch.nn.Linear(2, 1)
    blob = save_bytes({f"model.{k}": v for k, v in model.state_dict().items()})
    (tmp_path / "last.safetensors").write_bytes(blob)
    (tmp_path / "last.json").write_text(json.dumps({"format_version": 1, "step": 3, "optimizers": {},
                                                    "weights_sha256": hashlib.sha256(blob).hexdigest()}))
    tensors, meta = read_checkpoint(tmp_path, "last")
    assert meta["step"] == 3 and torch.equal(tensors["model.weight"], model.weight.detach())


def test_weights_that_are_not_safetensors_are_named(tmp_path):
    """A weights file whose digest matches but that safetensors cannot parse: one line naming the file."""
    save_checkpoint(tmp_path, "last", model=torch.nn.Linear(2, 1), optimizers={}, meta={"step": 1}, owner=OWNER)
    record = json.loads((tmp_path / "last.json").read_text())
    weights = tmp_path / record["weights_file"]
    weights.write_bytes(b"not a safetensors file")
    record["weights_sha256"] = hashlib.sha256(b"not a safetensors file").hexdigest()
    (tmp_path / "last.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=rf"^checkpoint weights {re.escape(str(weights))} cannot be read: "):
        read_checkpoint(tmp_path, "last")


@pytest.mark.parametrize("name", [5, "../last-000001.safetensors", "sub/last-000001.safetensors",
                                  ".last-000001.safetensors", "last-000001.bin"])
def test_a_record_may_name_only_a_plain_safetensors_file_beside_it(tmp_path, name):
    """weights_file must be a string, a bare file name (no directory part), not hidden, ending .safetensors."""
    save_checkpoint(tmp_path, "last", model=torch.nn.Linear(2, 1), optimizers={}, meta={"step": 1}, owner=OWNER)
    record = json.loads((tmp_path / "last.json").read_text())
    record["weights_file"] = name
    (tmp_path / "last.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=rf"last\.json names the weights file {re.escape(shown(name))}; expected a "
                                              r"\.safetensors file in the same directory$"):
        read_checkpoint(tmp_path, "last")
