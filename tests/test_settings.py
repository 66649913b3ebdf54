"""Settings with one meaning per value (issue #20 item 3).

"Use the method's default" (None, or a flag/key not given) and "off" (0) are different values;
method defaults are resolved where they are used, so ``dataclasses.replace(cfg, method=...)``
equals a fresh config; ``patience = 0`` disables early stopping everywhere; test-time AVI has one
default step γ whatever method trained the run.
"""

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from varinf import make_config
from varinf.checkpoint import atomic_write_json
from varinf.cli import main
from varinf.config import AUTOCAST, GENERIC_DEFAULTS, MAX_SEED, METHOD_SPECIFIC, RULES, TrainConfig, method_defaults
from varinf.errors import ConfigError
from varinf.infer import METHODS
from varinf.likelihoods import LIKELIHOODS
from varinf.models import MODEL_CLASSES
from varinf.models.vae import ACTIVATIONS
from varinf.training import resume_config, saved_config

TINY = ["--dataset", "digits", "--hidden", "8", "--latent-dim", "2", "--batch-size", "300", "--threads", "1",
        "--quiet"]


def run_cli(*args) -> int:
    return main([str(a) for a in args])


# ---- the four defects of issue #20 --------------------------------------------------------------

def test_resume_with_patience_0_turns_early_stopping_off(tmp_path):
    """``varinf train --resume --patience 0`` was silently ignored (the run kept its old patience)."""
    run = tmp_path / "run"
    assert run_cli("train", *TINY, "--epochs", 1, "--patience", 3, "--out", run) == 0
    assert run_cli("train", *TINY, "--epochs", 2, "--patience", 0, "--resume", "--out", run) == 0
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 1 and meta["config"]["patience"] == 0


def test_patience_0_is_off_and_none_is_not_a_patience():
    assert make_config(patience=0).patience == 0                   # off, through the API
    assert make_config(patience=None) == make_config()             # None in make_config: "not given"
    with pytest.raises(ConfigError, match="patience"):
        TrainConfig(patience=None)                                 # no second meaning for None
    with pytest.raises(ConfigError, match="patience"):
        TrainConfig(patience=-1)


def test_replace_method_equals_a_fresh_config():
    """``replace(mpvi config, method="gbvi")`` kept mpvi's inference rate and validation refinement."""
    mpvi = make_config(method="mpvi", model="sbn")
    assert dataclasses.replace(mpvi, method="gbvi", model="mlp") == make_config(method="gbvi", model="mlp")
    gbvi = dataclasses.replace(mpvi, method="gbvi", model="mlp").resolved()
    assert (gbvi.inference_rate, gbvi.valid_refine_steps) == (5e-3, 20)


@pytest.mark.parametrize("method", ["avi", "nvil", "wake-sleep", "reinforce", "mean-pass", "straight-through"])
def test_one_default_step_for_test_time_avi(method):
    """Test-time AVI got γ = 1 on runs trained by nvil, wake-sleep or reinforce and γ = 0.1 on avi runs."""
    from varinf.evaluate import run_refiner
    from varinf.refinement import AdaptiveImportanceSampling

    cfg = make_config(method=method, model="sbn", refine_steps=5)
    refiner = run_refiner(cfg, "bernoulli")             # avi's own refiner, else the binary family's default
    assert isinstance(refiner, AdaptiveImportanceSampling)
    assert refiner.rate == 0.1 == AdaptiveImportanceSampling(5).rate    # varinf's damped step; Eq. 9 prints 1


# ---- one TrainConfig whatever the route: flags, TOML, API, checkpoint JSON, resume -------------------
# derandomized: the same 60 examples on every run (CI is reproducible); no example database written
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
BUILT_IN = ("mlp", "cnn", "sbn")                       # the models --model offers
positive = st.floats(1e-6, 10.0, allow_nan=False, allow_infinity=False)
maybe = st.none().__or__                               # maybe(s): None ("not given") or a value of s

# One strategy per setting that has a --flag: valid values only (None: not given).
FIELD_VALUES = {
    "dataset": st.sampled_from(["digits", "binarized-mnist", "mnist", "mnist-t10k-split"]),
    "data_dir": maybe(st.sampled_from(["/data", "data/mnist", "~/varinf data"])),
    "binarize": maybe(st.just(True)),                  # a store_true flag: given (True) or not
    "latent_dim": st.integers(1, 300),
    "hidden": st.lists(st.integers(1, 600), max_size=3).map(tuple),
    "activation": st.sampled_from(sorted(ACTIVATIONS)),
    "estimator": st.sampled_from(["A", "B", "a", "b"]),
    "samples": maybe(st.integers(1, 50)),
    "optimizer": st.sampled_from(["adam", "rmsprop"]),
    "lr": positive,
    "warmup_steps": st.integers(0, 1000),
    "batch_size": st.integers(1, 500),
    "epochs": st.integers(1, 1000),
    "patience": maybe(st.integers(0, 50)),
    "refine_steps": maybe(st.integers(0, 40)),
    "inference_rate": maybe(positive),
    "refine_optimizer": maybe(st.sampled_from(["sgd", "adam"])),
    "refine_samples": maybe(st.integers(1, 40)),
    "avi_rate": maybe(st.floats(0.0, 1.0, exclude_min=True)),
    "valid_refine_steps": maybe(st.integers(0, 40)),
    "leapfrog_steps": maybe(st.integers(0, 20)),
    "seed": st.integers(0, MAX_SEED),
    "device": st.sampled_from(["cpu", "cuda", "cuda:0", "cuda:3"]),
    "threads": maybe(st.integers(1, 16)),
    "tf32": maybe(st.just(True)),
    "autocast": maybe(st.sampled_from(AUTOCAST)),
}


@st.composite
def valid_settings(draw) -> dict:
    """A dict of settings as a user would give them (None: not given) that make a valid config."""
    s = {name: draw(values) for name, values in FIELD_VALUES.items()}
    s["method"] = draw(st.sampled_from(sorted(METHODS)))
    for name in METHOD_SPECIFIC:                       # only the methods that read them take other values
        if name in s and name not in METHODS[s["method"]].defaults:
            s[name] = draw(maybe(st.just(GENERIC_DEFAULTS[name])))
    fitting = [m for m in BUILT_IN if MODEL_CLASSES[m].family.name in METHODS[s["method"]].families]
    s["model"] = draw(st.sampled_from(fitting))
    s["likelihood"] = "bernoulli" if s["model"] == "sbn" else draw(st.sampled_from(sorted(LIKELIHOODS)))
    # a setting left out entirely, not even None, is "not given" too
    return {k: v for k, v in s.items() if v is not None or draw(st.booleans())}


def to_flags(s: dict) -> list[str]:
    flags = []
    for name, value in s.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, tuple):
            flags += [flag, ",".join(map(str, value))]
        else:
            flags += [flag, str(value)]
    return flags


def to_toml(s: dict) -> str:
    def literal(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, tuple):
            return "[" + ", ".join(map(literal, v)) + "]"
        return repr(v)
    return "[train]\n" + "".join(f"{k} = {literal(v)}\n" for k, v in s.items() if v is not None)


def cli_train(argv: list) -> tuple[int, TrainConfig | None]:
    """(exit status, the TrainConfig ``varinf train ARGV`` hands to the training loop); the loop is not run."""
    import types

    import varinf.training
    seen = []

    def fake_train(cfg, run_dir, **kw):
        seen.append(cfg)
        return types.SimpleNamespace(run_dir=run_dir, epochs_run=0, best_epoch=-1, best_valid_elbo=None,
                                     stopped_early=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(varinf.training, "train", fake_train)
        rc = run_cli("train", *argv)
    return rc, seen[-1] if seen else None


def config_of_flags(argv: list) -> TrainConfig:
    rc, cfg = cli_train(argv)
    assert rc == 0
    return cfg


def write_run_config(run, cfg: TrainConfig) -> None:
    """config.json as varinf.train writes it at a run's start."""
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "config.json", {"train": cfg.resolved().to_dict(), "model": {}, "method": cfg.method})


@PROPERTY
@given(s=valid_settings())
def test_flags_toml_api_and_saved_json_give_the_same_config(s, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    api = make_config(**s)
    toml = tmp / "c.toml"
    toml.write_text(to_toml(s))
    assert make_config(toml) == api
    assert config_of_flags([*to_flags(s), "--out", tmp / "run"]) == api
    assert config_of_flags(["--config", toml, "--out", tmp / "run2"]) == api
    resolved = api.resolved()
    # every method default is filled in; temperature stays None only for a method without a relaxation
    assert resolved.resolved() == resolved
    assert None not in (getattr(resolved, k) for k in method_defaults(api.method) if k != "temperature")
    assert (resolved.temperature is None) == (api.method not in ("gumbel", "gumbel-st"))
    for name, value in method_defaults(api.method).items():          # given values win; the rest: the table
        if s.get(name) is not None:
            assert getattr(resolved, name) == getattr(api, name)
        elif name != "valid_refine_steps" or value is not None:
            assert getattr(resolved, name) == value
    write_run_config(tmp / "run3", api)
    assert saved_config(tmp / "run3") == resolved                    # config.json round trip


@PROPERTY
@given(s=valid_settings(), method=st.sampled_from(sorted(METHODS)), model=st.sampled_from(BUILT_IN))
def test_replace_method_equals_a_fresh_config_with_that_method(s, method, model):
    def outcome(make):
        try:
            return make()
        except ConfigError as exc:
            return str(exc)
    fresh = outcome(lambda: make_config(**{**s, "method": method, "model": model}))
    replaced = outcome(lambda: dataclasses.replace(make_config(**s), method=method, model=model))
    assert replaced == fresh
    assume(isinstance(fresh, TrainConfig))
    assert replaced.resolved() == fresh.resolved()


RESUMABLE = {"epochs": FIELD_VALUES["epochs"], "patience": st.integers(0, 50), "device": FIELD_VALUES["device"],
             "threads": st.integers(1, 16), "data_dir": st.sampled_from(["/data", "other/dir"])}


@PROPERTY
@given(s=valid_settings(), changes=st.dictionaries(st.sampled_from(sorted(RESUMABLE)), st.none(), min_size=1)
       .flatmap(lambda d: st.fixed_dictionaries({k: RESUMABLE[k] for k in d})),
       other=st.sampled_from(sorted(set(FIELD_VALUES) - set(RESUMABLE))), data=st.data())
def test_resume_applies_every_allowed_change_and_refuses_every_other(s, changes, other, data, tmp_path_factory):
    import warnings
    run = tmp_path_factory.mktemp("run")
    saved = make_config(**s).resolved()
    write_run_config(run, saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # another thread count warns
        resumed = resume_config(run, **changes)
        assert resumed == dataclasses.replace(saved, **changes)
        assert config_of_flags([*to_flags(changes), "--resume", "--out", run]) == resumed
    value = data.draw(FIELD_VALUES[other].filter(lambda v: v is not None))
    if RULES[other](value) == getattr(saved, other):
        assert resume_config(run, **{other: value}) == saved   # the same value: nothing changes
    else:
        with pytest.raises(ConfigError, match=f"cannot resume .*{other}: saved"):
            resume_config(run, **{other: value})
        assert cli_train([*to_flags({other: value}), "--resume", "--out", run]) == (2, None)


@pytest.mark.parametrize("method, model", [("vae", "mlp"), ("arm", "sbn"), ("nvil", "sbn"), ("avi", "sbn")])
def test_a_temperature_for_a_method_without_a_relaxation_is_refused_not_ignored(method, model, tmp_path):
    """--temperature is τ of gumbel and gumbel-st only; given to another method it would silently do nothing."""
    message = f"temperature 0.3 is read only by method gumbel and gumbel-st; method '{method}' does not use it"
    with pytest.raises(ConfigError, match=message):
        make_config(method=method, model=model, temperature=0.3)
    (tmp_path / "t.toml").write_text(f'[train]\nmethod = "{method}"\nmodel = "{model}"\ntemperature = 0.3\n')
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path / "t.toml")
    with pytest.raises(SystemExit) as exit_:                                # argparse's error: one line, status 2
        cli_train(["--method", method, "--model", model, "--temperature", "0.3"])
    assert exit_.value.code == 2
    assert make_config(method=method, model=model).resolved().temperature is None
    for relaxed in ("gumbel", "gumbel-st"):
        assert make_config(method=relaxed, model="sbn", temperature=0.3).resolved().temperature == 0.3
        with pytest.raises(ConfigError, match=message):                      # one rule for replace as for make
            dataclasses.replace(make_config(method=relaxed, model="sbn", temperature=0.3), method=method, model=model)


@pytest.mark.parametrize("method", ["vae", "iwae", "gbvi", "savae"])
def test_leapfrog_steps_for_a_method_other_than_hvi_is_refused_not_ignored(method):
    with pytest.raises(ConfigError, match=f"leapfrog_steps 3 is read only by method hvi; method '{method}' does not"):
        make_config(method=method, leapfrog_steps=3)
    assert make_config(method=method, leapfrog_steps=0).resolved().leapfrog_steps == 0     # the generic "none"
    assert make_config(method=method).resolved().leapfrog_steps == 0
    assert make_config(method="hvi", leapfrog_steps=3).resolved().leapfrog_steps == 3


@pytest.mark.parametrize("setting, value", [("estimator", "b"), ("optimizer", "ADAM"), ("likelihood", "Bernoulli"),
                                            ("hidden", [8]), ("lr", 1), ("refine_optimizer", "SGD")])
def test_resume_accepts_a_setting_given_again_in_another_spelling(tmp_path, setting, value):
    """Settings are compared as validated: --estimator b is the run's estimator B, not a change."""
    saved = make_config(method="gbvi", hidden=(8,), lr=1.0, refine_optimizer="sgd").resolved()
    write_run_config(tmp_path, saved)
    assert resume_config(tmp_path, **{setting: value}) == saved


# ---- runs saved before this change still load and resume ------------------------------------------
SAVED_BY_MAIN = Path(__file__).parent / "data" / "run_saved_by_54ee111"   # varinf train ... --patience 0 at 54ee111


def test_a_run_saved_with_patience_null_resumes_with_early_stopping_off(tmp_path):
    """varinf before this change saved ``"patience": null`` for "off"; such a run loads, resumes and evaluates."""
    import shutil

    from varinf.training import load_model
    run = tmp_path / "old"
    shutil.copytree(SAVED_BY_MAIN, run)
    assert json.loads((run / "config.json").read_text())["train"]["patience"] is None
    assert saved_config(run).patience == 0
    assert load_model(run)[1].patience == 0
    assert run_cli("train", "--out", run, "--resume", "--epochs", 3, "--quiet") == 0
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 2 and meta["config"]["patience"] == 0 and not meta["stopped_early"]
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3]
