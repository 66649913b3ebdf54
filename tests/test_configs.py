"""Every shipped config parses, and every row of benchmarks/paper_table.py points at one."""

import importlib.util
from pathlib import Path

import pytest

from varinf.config import make_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.toml"))


def paper_table():
    spec = importlib.util.spec_from_file_location("paper_table", REPO / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_parses(path):
    cfg = make_config(path)
    assert cfg.dataset == "binarized-mnist" and cfg.epochs >= 1


def test_paper_table_rows_name_existing_configs():
    tables = paper_table().TABLES
    rows = {f"table{t}:{row}": REPO / "configs" / name for t, r in tables.items() for row, name in r.items()}
    assert len(rows) == 23 + 21                     # Tables 1-2, and Table 3 (issue #21)
    missing = [row for row, path in rows.items() if not path.exists()]
    assert not missing
    # the paper's settings in the paper-settings rows (Hjelm et al. 2015 §7.1, §7.2)
    for row in ("table1:vae", "table1:gbvi20"):
        cfg = make_config(rows[row])
        assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.latent_dim) == ("rmsprop", 3e-3, 100, 500, 200)
    for row in ("table2:wake-sleep", "table2:nvil", "table2:avi20", "table2:avi20-240", "table2:mpvi20",
                "table2:mpvi20-240"):
        cfg = make_config(rows[row])
        assert (cfg.model, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("sbn", "adam", 3e-4, 10, 500)
    assert make_config(rows["table1:gbvi20"]).resolved().refine_steps == 20
    assert make_config(rows["table2:avi20"]).resolved().refine_steps == 20
    assert make_config(rows["table2:nvil"]).hidden == () == make_config(rows["table2:wake-sleep"]).hidden
    assert make_config(rows["table2:avi20-240"]).hidden == (240,) == make_config(rows["table2:mpvi20-240"]).hidden
    for row in ("table2:mpvi20", "table2:mpvi20-240", "table2:avi20", "table2:avi20-240"):
        cfg = make_config(rows[row]).resolved()
        assert (cfg.refine_steps, cfg.samples, cfg.valid_refine_steps) == (20, 20, 0)   # early stopping: encoder
    assert make_config(rows["table2:mpvi20"]).method == "mpvi"
    # Eq. 9 as printed in the paper-settings AVI rows, whatever the code's default step; the same warm-up for
    # every Table 1 row on RMSprop 3e-3
    assert make_config(rows["table2:avi20"]).avi_rate == 1.0 == make_config(rows["table2:avi20-240"]).avi_rate
    assert {make_config(rows[r]).warmup_steps for r in ("table1:vae", "table1:gbvi20", "table1:hvi5", "table1:hvi10")} \
        == {500}
    for row, path in rows.items():                  # Table 3: every estimator on the three networks
        if row.startswith("table3:"):
            net, method = row[len("table3:"):].split("-", 1)
            cfg = make_config(path)
            assert cfg.method == method and cfg.model == "sbn" and cfg.batch_size == 50
            assert cfg.latent_dim == {"linear": 200, "nonlinear": 200, "deep": (200, 200, 200)}[net]
            assert cfg.hidden == ((200, 200) if net == "nonlinear" else ())


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name.startswith(("table1", "table2"))], ids=lambda p: p.name)
def test_paper_settings_headers_name_what_is_ours(path):
    """Every Table 1 and 2 config (Hjelm et al. 2015) says in its header what differs from the paper; each setting the paper does not give
    (warm-up, damping, patience, validation samples) that the file sets is named there."""
    text = path.read_text()
    header = text[:text.index("[train]")]
    cfg = make_config(path)
    if not path.stem.endswith("_reduced"):
        assert "Ours, not the paper's" in header and "Where we differ from the paper" in header
    assert "patience" in header.lower()
    if cfg.warmup_steps:
        assert "warm" in header.lower()
    if cfg.method == "avi":
        assert "avi_rate" in header and "Eq. 9" in header


def test_table1_flags_are_refused_on_a_table2_row(capsys):
    with pytest.raises(SystemExit) as exc:
        paper_table().main(["--table", "2", "--row", "avi20-reduced", "--refine-steps", "20"])
    assert exc.value.code == 2
    assert "--refine-steps apply to Table 1 rows" in capsys.readouterr().err


def test_a_table1_row_runs_end_to_end(tmp_path, shared_data_dir):
    """One epoch of the reduced VAE row on binarized MNIST, evaluated on 20 test images: the row's summary
    holds both bounds with standard errors and the run's own objective on the whole test split."""
    import json
    import torch
    threads = torch.get_num_threads()
    try:
        row = paper_table().main(["--table", "1", "--row", "vae-reduced", "--epochs", "1", "--threads", "1",
                                  "--nll-samples", "5", "--subset", "20", "--out", str(tmp_path / "row")])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "row" / "table1_row.json").read_text())
    assert saved == row and row["epochs_run"] == 1 and row["test_points"] == 20
    for key in ("test_bound_encoder", "test_nll_encoder", "test_bound_refined", "test_nll_refined", "test_bound_own"):
        assert row[key] == row[key] and row[key + "_stderr"] > 0, key           # finite, with an error bar
    assert row["test_nll_encoder"] <= -row["test_bound_encoder"] + 1e-4            # NLL ≤ −ELBO per image
    assert row["own_bound"].startswith("SGVB")


def test_the_table2_protocol_resumes_its_evaluations_after_a_kill(tmp_path, shared_data_dir, monkeypatch):
    """Hjelm et al.'s Table 2 protocol (r chosen on valid at k = 50, test at k = 50 and 5000) on a small digits
    SBN: killed midway through its evaluations, run again, it gives the unbroken row and evaluates each batch once."""
    from killed_eval import Killed, count_batches
    from varinf.config import make_config
    from varinf.training import train

    run = tmp_path / "sbn"
    train(make_config(dataset="digits", model="sbn", method="avi", hidden=(16,), latent_dim=8, epochs=1,
                      refine_steps=2, refine_samples=4, threads=1, patience=0), run, progress=False)
    table = paper_table()
    calls = count_batches(monkeypatch)
    whole = table.table2_protocol(run, (0, 2), None)
    total = len(calls)
    count_batches(monkeypatch, kill_after=total // 2)
    with pytest.raises(Killed):
        table.table2_protocol(run, (0, 2), None)
    assert (run / "table2.partial").is_dir()
    calls = count_batches(monkeypatch)
    again = table.table2_protocol(run, (0, 2), None)
    assert len(calls) == total - total // 2                 # every batch evaluated once over the two invocations
    assert again == whole
    assert not (run / "table2.partial").exists()
