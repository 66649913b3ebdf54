"""A fixed set of mutants of the maths and the loop control that the suite must kill (issue #20 item 4).

Each mutant is a one-line bug of the kind a review would miss (an off-by-one in a normalisation, a
step rule's bias correction, a tie counted as an improvement, ...). The test copies ``src/varinf`` to a
temporary directory, applies the mutant to the copy, and runs the tests that guard against it in a
subprocess importing the copy: they must fail. A change that weakens those tests (a looser tolerance,
a property any algorithm has in place of the algorithm's own value) lets a mutant survive and fails
here. A mutant whose source line no longer exists fails too: update it with the code.
The full mutation campaign is ``mutmut run`` (configured in pyproject.toml; docs/RESULTS.md §"Test quality").
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OBJ, PINS, SET = "tests/test_objectives.py", "tests/test_algorithm_pins.py", "tests/test_settings.py"

# (id, file under src/varinf, original text, mutant text, tests that must fail)
MUTANTS = [
    ("logmeanexp-k-minus-1", "objectives.py", "lse - math.log(num_samples)", "lse - math.log(max(num_samples - 1, 1))",
     [OBJ + "::test_log_marginal_estimate_converges_and_chunking_keeps_the_answer"]),
    ("gaussian-entropy-constant", "families.py", "(1.0 + math.log(2 * math.pi))", "(1.0 + math.log(math.pi))",
     ["tests/test_refinement.py::test_closed_form_entropy_matches_torch"]),
    ("gaussian-log-q-from-noise", "families.py", "- 0.5 * h.shape[-1] * math.log(2 * math.pi)",
     "- h.shape[-1] * math.log(2 * math.pi)",
     [OBJ + "::test_gaussian_log_q_from_the_noise_equals_the_generic_log_prob_in_value_and_gradient"]),
    ("leapfrog-full-first-half-step", "infer/hvi.py",
     "            v = v + 0.5 * step * grad\n            z = z + step * v",
     "            v = v + step * grad\n            z = z + step * v",
     [PINS + "::test_leapfrog_follows_the_hand_computed_trajectory_on_a_quadratic_potential"]),
    ("adam-refiner-no-bias-correction", "refinement.py", "v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)",
     "v_hat = m / (1 - b1 ** t), v", [PINS + "::test_refiner_step_rule_equals_torch_optim_on_the_same_gradients"]),
    ("avi-damping-reversed", "refinement.py", "torch.lerp(probs, target, rate)", "torch.lerp(target, probs, rate)",
     ["tests/test_sbn.py::test_damped_avi_step_is_the_interpolation_and_still_reaches_the_marginals"]),
    ("early-stopping-tie-improves", "training.py", "improved = valid_elbo > best_valid",
     "improved = valid_elbo >= best_valid",
     [PINS + "::test_early_stopping_and_best_epoch_on_a_scripted_validation_sequence"]),
    ("validation-noise-not-per-epoch", "training.py", "cfg.seed * 1_000_003 + epoch + 1", "cfg.seed * 1_000_003 + 1",
     [PINS + "::test_validation_noise_is_fresh_each_epoch_and_reproducible"]),
    ("eval-stderr-biased-sd", "evaluate.py", "values.std(unbiased=True)", "values.std(unbiased=False)",
     [PINS + "::test_eval_reports_the_standard_error_of_the_mean_over_datapoints"]),
    ("default-avi-step-undamped", "config.py", "avi_rate=AVI_DEFAULT_RATE,", "avi_rate=1.0,",
     [SET + "::test_one_default_step_for_test_time_avi"]),
]

# The other planted bugs of issue #20 (docs/RESULTS.md "Test quality"): run with VARINF_MUTANTS=all (≈ 3 min more).
EXTRA_MUTANTS = [
    ('resume-drops-patience-0', 'training.py',
     '    changes = {k: v for k, v in changes.items() if v is not None}\n',
     '    changes = {k: v for k, v in changes.items() if v}\n',
     [SET + "::test_resume_with_patience_0_turns_early_stopping_off",
      SET + "::test_resume_applies_every_allowed_change_and_refuses_every_other"]),
    ('cli-turns-patience-0-into-none', 'cli.py',
     '        cfg = resume_config(args.out, **settings)',
     "        settings = {k: (None if k == 'patience' and v == 0 else v) for k, v in settings.items()}\n"
     "        cfg = resume_config(args.out, **settings)",
     [SET + "::test_resume_with_patience_0_turns_early_stopping_off",
      SET + "::test_resume_applies_every_allowed_change_and_refuses_every_other"]),
    ('trainconfig-accepts-patience-none', 'config.py',
     '    "patience": lambda v: _patience(v),',
     '    "patience": lambda v: _int("patience", v, 0, allow_none=True),',
     [SET + "::test_patience_0_is_off_and_none_is_not_a_patience"]),
    ('defaults-baked-in-at-construction', 'config.py',
     '        if self.model == "sbn" and self.likelihood',
     '        if None in (getattr(self, k) for k in GENERIC_DEFAULTS):\n'
     '            self.__dict__.update(self.resolved().__dict__)\n        if self.model == "sbn" and self.likelihood',
     [SET + "::test_replace_method_equals_a_fresh_config",
      SET + "::test_replace_method_equals_a_fresh_config_with_that_method"]),
    ('resume-compares-raw-values', 'training.py',
     '_normal(RULES[k](v)) != _normal(current[k])',
     '_normal(v) != _normal(current[k])',
     [SET + "::test_resume_accepts_a_setting_given_again_in_another_spelling"]),
    ('data-dir-not-resumable', 'config.py',
     'RESUMABLE_CHANGES = ("epochs", "patience", "device", "threads", "data_dir")',
     'RESUMABLE_CHANGES = ("epochs", "patience", "device", "threads")',
     [SET + "::test_resume_applies_every_allowed_change_and_refuses_every_other"]),
    ('saved-patience-null-not-upgraded', 'config.py',
     '        settings = {**settings, "patience": PATIENCE_OFF}',
     '        pass',
     [SET + "::test_a_run_saved_with_patience_null_resumes_with_early_stopping_off"]),
    ('logmeanexp-k-plus-1', 'objectives.py',
     'return total / num_samples, lse - math.log(num_samples)',
     'return total / num_samples, lse - math.log(num_samples + 1)',
     [PINS + "::test_one_importance_sample_gives_log_px_equal_to_the_elbo_exactly",
      OBJ + "::test_log_marginal_estimate_converges_and_chunking_keeps_the_answer"]),
    ('leapfrog-position-from-the-old-momentum', 'infer/hvi.py',
     '            v = v + 0.5 * step * grad\n            z = z + step * v',
     '            z = z + step * v\n            v = v + 0.5 * step * grad',
     [PINS + "::test_leapfrog_follows_the_hand_computed_trajectory_on_a_quadratic_potential"]),
    ('hvi-bound-forgets-log-q', 'infer/hvi.py',
     'log_q = self.family.dist(*params).log_prob(z0) + momentum_log_prob(v0)',
     'log_q = self.family.dist(*params).log_prob(z0)',
     [PINS + "::test_the_hvi_bound_is_eq_11_on_its_own_draws"]),
    ('adam-refiner-eps-inside-the-sqrt', 'refinement.py',
     'm_hat / (v_hat.sqrt() + self.eps)',
     'm_hat / (v_hat + self.eps).sqrt()',
     [PINS + "::test_refiner_step_rule_equals_torch_optim_on_the_same_gradients"]),
    ('sgd-refiner-half-step', 'refinement.py',
     'return tuple(p + self.rate * g for p, g in zip(params, grads)), state',
     'return tuple(p + 0.5 * self.rate * g for p, g in zip(params, grads)), state',
     [PINS + "::test_refiner_step_rule_equals_torch_optim_on_the_same_gradients"]),
    ('stops-one-epoch-late', 'training.py',
     'return patience != PATIENCE_OFF and bad_epochs >= patience',
     'return patience != PATIENCE_OFF and bad_epochs > patience',
     [PINS + "::test_early_stopping_and_best_epoch_on_a_scripted_validation_sequence"]),
    ('resume-forgets-the-bad-epoch-count', 'training.py',
     'best_valid, best_epoch, bad_epochs = meta["best_valid_elbo"], meta["best_epoch"], meta["bad_epochs"]',
     'best_valid, best_epoch, bad_epochs = meta["best_valid_elbo"], meta["best_epoch"], 0',
     [PINS + "::test_early_stopping_counts_across_a_resume"]),
    ('resume-ignores-a-changed-patience-of-a-stopped-run', 'training.py',
     '    if stops_early(cfg.patience, bad_epochs):     # with the patience given now (it may change on resume)',
     "    if meta.get('stopped_early'):",
     [PINS + "::test_early_stopping_counts_across_a_resume"]),
    ('validation-noise-not-seeded-by-the-run', 'training.py',
     'gen = _seeded(cfg.seed * 1_000_003 + epoch + 1, device)',
     'gen = _seeded(epoch + 1, device)',
     [PINS + "::test_validation_noise_is_fresh_each_epoch_and_reproducible"]),
    ('cnn-one-downsampling-too-few', 'models/vae.py',
     '        n_down = min(_downsamplings(h), _downsamplings(w))\n        act = ACTIVATIONS[cfg.activation]\n'
     '        chans = list(cfg.channels)\n        layers',
     '        n_down = min(_downsamplings(h), _downsamplings(w)) - 1\n        act = ACTIVATIONS[cfg.activation]\n'
     '        chans = list(cfg.channels)\n        layers',
     [PINS + "::test_parameter_shapes_of_every_shipped_architecture"]),
    ('sbn-encoder-hidden-widths-doubled', 'models/sbn.py',
     'self.encoder = _mlp([cfg.data_dim, *cfg.hidden, cfg.latent_dim], cfg.activation)',
     'self.encoder = _mlp([cfg.data_dim, *(2 * h for h in cfg.hidden), cfg.latent_dim], cfg.activation)',
     [PINS + "::test_parameter_shapes_of_every_shipped_architecture"]),
    ('gap-s-e-unpaired', 'evaluate.py',
     'gap, gap_se = _mean_and_stderr(ref["elbo"] - plain["elbo"])',
     'gap, gap_se = _mean_and_stderr(ref["elbo"] - plain["elbo"]); gap_se = (r_elbo_se ** 2 + elbo_se ** 2) ** 0.5',
     [PINS + "::test_eval_reports_the_standard_error_of_the_mean_over_datapoints"]),
]
SELECTED = MUTANTS + (EXTRA_MUTANTS if os.environ.get("VARINF_MUTANTS") == "all" else [])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A copy of src/varinf; each mutant writes one file of it and restores it after."""
    root = tmp_path_factory.mktemp("mutant") / "src"
    shutil.copytree(ROOT / "src" / "varinf", root / "varinf", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run_tests(src: Path, tests: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    check = "import varinf, sys; sys.exit(0 if varinf.__file__.startswith(sys.argv[1]) else 3)"
    assert subprocess.run([sys.executable, "-c", check, str(src)], env=env, cwd=ROOT).returncode == 0, \
        "the subprocess does not import the mutated copy"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name, path, original, mutant, tests", SELECTED, ids=[m[0] for m in SELECTED])
def test_the_suite_kills_the_mutant(pristine, name, path, original, mutant, tests):
    target = pristine / "varinf" / path
    source = target.read_text()
    assert source.count(original) == 1, f"mutant {name}: {original!r} is not once in {path}; update the mutant"
    target.write_text(source.replace(original, mutant))
    try:
        result = run_tests(pristine, tests)
    finally:
        target.write_text(source)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    assert result.returncode == 1, f"mutant {name} survived ({summary}): {tests} no longer catch it"


def test_the_unmutated_copy_passes_the_same_tests(pristine):
    """The control: every kill above is the mutant's doing, not something the copy lacks."""
    tests = sorted({t for m in SELECTED for t in m[4]})
    result = run_tests(pristine, tests)
    assert result.returncode == 0, result.stdout[-2000:]
