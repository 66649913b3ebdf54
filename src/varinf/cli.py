"""Command-line interface: ``varinf train``, ``varinf eval``, ``varinf plot``."""

from __future__ import annotations

import argparse
import json
import re
import sys

from varinf.errors import VarinfError


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 500 or 500,500; got {text!r}")


def _latent_dim(text: str) -> int | tuple[int, ...]:
    widths = _int_tuple(text)
    return widths[0] if len(widths) == 1 else widths


def _size_help(name: str) -> str:
    from varinf.config import GENERIC_SIZE, SIZE_DEFAULTS

    def show(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
    per_dataset = [f"{show(sizes[name])} for {dataset}" for dataset, sizes in SIZE_DEFAULTS.items()]
    return ", ".join(per_dataset + [f"else {show(GENERIC_SIZE[name])}"])


def _method_names() -> list[str]:
    from varinf.infer import METHODS
    return list(METHODS)


def _methods_help() -> str:
    from varinf.infer import METHODS
    return "; ".join(f"{name} ({spec.summary}; {'/'.join(spec.families)} latents)" for name, spec in METHODS.items())


#: The longest error line printed; a longer one keeps its start and end (an echoed value can be megabytes).
MAX_ERROR_CHARS = 1000
_LONG_WORD = re.compile(r"\S{201,}")
# A negative number (also -1e-3, -.5, -inf, -nan) given as the value of a flag.
_NEGATIVE = re.compile(r"^-(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def one_line(message: str) -> str:
    """``message`` as one line of bounded length: newlines shown as spaces, each over-long word and the whole
    line shortened in the middle (saying how long they were)."""
    text = _LONG_WORD.sub(lambda m: f"{m[0][:100]}…[{len(m[0])} characters]…{m[0][-60:]}",
                          " ".join(str(message).split()))
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS - 300]} …[{len(text)} characters]… {text[-250:]}"
    return text


def negative_values_joined(argv: list[str]) -> list[str]:
    """``--lr -1e-3`` as ``--lr=-1e-3``: argparse takes ``-1e-3``, ``-.5`` or ``-inf`` after a flag for another
    flag (it knows only plain negative numbers such as -1); the setting's own check then judges the value."""
    out: list[str] = []
    for arg in argv:
        prev = out[-1] if out else ""
        if _NEGATIVE.match(arg) and prev.startswith("--") and "=" not in prev and prev != "--":
            out[-1] = f"{prev}={arg}"
        else:
            out.append(arg)
    return out


class _Parser(argparse.ArgumentParser):
    """argparse with its error line kept to one line of bounded length (it repeats the bad value)."""

    def error(self, message: str):
        super().error(one_line(message))


def build_parser() -> argparse.ArgumentParser:
    from varinf import __version__
    parser = _Parser(prog="varinf", description="Approximate inference in latent-variable models.")
    parser.add_argument("--version", action="version", version=f"varinf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; settings from --config (TOML) overridden by flags")
    t.add_argument("--config", help="TOML file of settings (top level or a [train] table)")
    t.add_argument("--out", required=True, help="run directory for checkpoints, metrics, eval and figures")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--dataset", help="digits | binarized-mnist | mnist | mnist-t10k-split (the t10k images split "
                        "8000/1000/1000) | path to .npy/.npz (default digits)")
    t.add_argument("--data-dir", help="data directory (default $VARINF_DATA_DIR, else ~/.cache/varinf)")
    t.add_argument("--binarize", action="store_true", default=None,
                   help="dynamic binarization of grey-level data (mnist): a fresh Bernoulli draw every epoch")
    t.add_argument("--model", choices=["mlp", "cnn", "sbn"],
                   help="mlp | cnn: VAE encoder/decoder architecture; sbn: sigmoid belief network with binary "
                        "latents (default mlp)")
    t.add_argument("--latent-dim", type=_latent_dim,
                   help=f"number of latent variables K (default {_size_help('latent_dim')}); for --model sbn a list such as 200,200,200 "
                        "gives a deep SBN with one stochastic layer per entry, bottom (next to x) first")
    t.add_argument("--hidden", type=_int_tuple,
                   help=f"hidden widths, e.g. 500 or 500,500 (default {_size_help('hidden')}); --hidden '' = none "
                        "(a linear sbn)")
    t.add_argument("--activation", help="softplus | relu | tanh | elu (default softplus)")
    t.add_argument("--likelihood", choices=["bernoulli", "gaussian-global", "gaussian-pixel"],
                   help="p(x|z) of mlp/cnn: bernoulli (binary data, default), or Gaussian with a learned variance "
                        "shared by all pixels (gaussian-global) or one per pixel (gaussian-pixel), for grey levels")
    t.add_argument("--method", choices=_method_names(), help="training method (default vae): " + _methods_help())
    t.add_argument("--estimator", choices=["A", "B", "a", "b"], help="vae: SGVB estimator A or B (default B)")
    t.add_argument("--samples", type=int,
                   help="samples per datapoint; for the refined-EM methods the M-step's N (default: the method's, "
                        "1 or 20)")
    t.add_argument("--refine-steps", type=int,
                   help="refined EM (gbvi, mpvi, stvi, avi, savae): refinement steps T per E-step (default 20)")
    t.add_argument("--inference-rate", type=float,
                   help="gbvi/savae/mpvi/stvi: step size γ of the gradient refinement (default: the method's)")
    t.add_argument("--refine-optimizer", choices=["sgd", "adam"],
                   help="gradient refiners: plain steps (sgd, the paper's Eq. 4) or adaptive (adam) (default sgd)")
    t.add_argument("--refine-samples", type=int,
                   help="gbvi/savae/stvi/avi: samples N per refinement step (default 20)")
    t.add_argument("--avi-rate", type=float,
                   help="avi: step γ in mu <- (1-γ) mu + γ Σ w h, in (0, 1] (default 0.1, varinf's damped step, "
                        "not the paper's: Hjelm et al. 2015 Eq. 9 as printed is γ = 1)")
    t.add_argument("--leapfrog-steps", type=int,
                   help="hvi: leapfrog steps K of Hamiltonian variational inference (default 5; refused for other "
                        "methods)")
    t.add_argument("--temperature", type=float,
                   help="gumbel/gumbel-st: temperature τ of the Gumbel-Softmax (Concrete) relaxation (default 0.5; "
                        "refused for other methods)")
    t.add_argument("--valid-refine-steps", type=int,
                   help="refined EM: refinement steps in the per-epoch validation bound; 0 = the encoder's own "
                        "bound (default: T for gbvi/savae, 0 for mpvi/stvi/avi)")
    t.add_argument("--optimizer", choices=["adam", "rmsprop"], help="optimizer (default adam)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument("--warmup-steps", type=int,
                   help="linear learning-rate warm-up over the first W updates (default 0: none)")
    t.add_argument("--batch-size", type=int, help="minibatch size (default 100)")
    t.add_argument("--epochs", type=int, help="maximum number of epochs (default 100)")
    t.add_argument("--patience", type=int,
                   help="early-stopping patience in epochs; 0 disables early stopping (default 20)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--device", help="cpu | cuda (default cpu)")
    t.add_argument("--threads", type=int,
                   help="torch intra-op threads; 0: torch's own default, one per core (default 1: torch's made "
                        "the README's digits job 3-25x slower on shared cores, docs/RESULTS.md §3; raise it only on "
                        "cores you have to yourself)")
    t.add_argument("--tf32", action="store_true", default=None,
                   help="CUDA: allow TF32 tensor-core matmuls (off by default; effect on the bound not measured)")
    t.add_argument("--autocast", choices=["bf16"],
                   help="run the training step under torch.autocast in bfloat16 (off by default)")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write per-epoch bounds, learning rates and timings as TensorBoard events to "
                        "RUN_DIR/tensorboard (needs pip install 'varinf[tensorboard]')")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines (warnings and errors only)")
    t.add_argument("--verbose", action="store_true", help="also debug messages")

    e = sub.add_parser("eval", help="test ELBO and importance-sampled NLL of a trained run -> RUN_DIR/eval.json")
    e.add_argument("run_dir", help="a run directory written by varinf train")
    e.add_argument("--nll-samples", type=int, default=5000, help="importance samples per datapoint k (default 5000)")
    e.add_argument("--subset", type=int, help="evaluate on a uniform random subset of this many test points")
    e.add_argument("--batch-size", type=int, default=100, help="test points per batch (default 100)")
    e.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="evaluate the best-validation or the last checkpoint (default best)")
    e.add_argument("--output", help="write the result here instead of RUN_DIR/eval.json (keeps an earlier one)")
    e.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    e.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws and of --subset (default 0)")
    e.add_argument("--data-dir", help="data directory (default: the run's, else $VARINF_DATA_DIR)")
    e.add_argument("--threads", type=int, help="torch intra-op threads; 0: torch's own default, one per core "
                   "(default 0)")
    e.add_argument("--quiet", action="store_true", help="no progress bar (warnings and errors only)")
    e.add_argument("--verbose", action="store_true", help="also debug messages")
    e.add_argument("--refine-steps", type=int,
                   help="also evaluate q refined by T steps of the run's refiner from the encoder (default: the "
                        "run's own T, 0 for a method without refinement)")
    e.add_argument("--inference-rate", type=float,
                   help="gradient refiners: step size γ (default: the run's)")
    e.add_argument("--refine-optimizer", choices=["sgd", "adam"],
                   help="gradient refiners: step rule (default: the run's)")
    e.add_argument("--refine-samples", type=int, help="samples per refinement step (default: the run's)")
    e.add_argument("--avi-rate", type=float,
                   help="AVI refiner: step γ in (0, 1] (default: the run's; 0.1, varinf's damped step, for a run "
                        "that did not set it, whatever its method; Hjelm et al. 2015 Eq. 9 as printed is γ = 1)")
    e.add_argument("--refine-sweep", type=_int_tuple,
                   help="also the bound after each T in this list, e.g. 0,1,2,5,10,20,50: a table in eval.json "
                        "and figures/amortization_gap.png")

    p = sub.add_parser("plot", help="figures of a trained run -> RUN_DIR/figures/*.png")
    p.add_argument("run_dir", help="a run directory written by varinf train")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="plot the best-validation or the last checkpoint (default best)")
    p.add_argument("--data-dir", help="data directory (default: the run's, else $VARINF_DATA_DIR)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples drawn for the figures (default 0)")
    return parser


TRAIN_SETTINGS = ("dataset", "data_dir", "binarize", "model", "latent_dim", "hidden", "activation", "method",
                  "estimator", "samples", "refine_steps", "inference_rate", "refine_optimizer", "refine_samples",
                  "avi_rate", "valid_refine_steps", "leapfrog_steps", "temperature", "optimizer", "lr", "warmup_steps",
                  "batch_size", "epochs", "patience", "seed", "device", "threads", "likelihood", "tf32", "autocast")


def _train(args) -> int:
    from varinf.config import load_toml, make_config
    from varinf.distributed import process_group
    from varinf.runs import resume_config, saved_config
    from varinf.training import train

    given = {k: getattr(args, k) for k in TRAIN_SETTINGS}         # None: the flag was not given
    if args.resume and saved_config(args.out) is not None:
        # --resume continues with the run's saved settings; the flags given may change only what is safe.
        settings = {**(load_toml(args.config) if args.config else {}),
                    **{k: v for k, v in given.items() if v is not None}}
        cfg = resume_config(args.out, **settings)
    else:
        cfg = make_config(args.config, **given)
    with process_group(cfg.device) as ctx:   # under torchrun: join the process group (gloo on CPU, NCCL on CUDA)
        result = train(cfg, args.out, resume=args.resume, progress=not args.quiet, tensorboard=args.tensorboard)
    if not ctx.is_main:
        return 0
    print(json.dumps({"run_dir": str(result.run_dir), "epochs": result.epochs_run, "best_epoch": result.best_epoch,
                      "best_valid_elbo": result.best_valid_elbo, "stopped_early": result.stopped_early}))
    return 0


def _eval(args) -> int:
    import torch

    from varinf.config import RULES
    from varinf.distributed import process_group
    from varinf.evaluate import evaluate_run

    RULES["seed"](args.seed)                                        # the rule `varinf train --seed` obeys
    if args.threads is not None and RULES["threads"](args.threads):  # the rule `varinf train --threads` obeys
        torch.set_num_threads(args.threads)
    with process_group(args.device) as ctx:   # under torchrun: test points sharded over the processes
        result = evaluate_run(args.run_dir, nll_samples=args.nll_samples, subset=args.subset,
                              batch_size=args.batch_size, checkpoint=args.checkpoint, device=args.device,
                              seed=args.seed, data_dir=args.data_dir, progress=not args.quiet,
                              refine_steps=args.refine_steps, inference_rate=args.inference_rate,
                              refine_optimizer=args.refine_optimizer, refine_samples=args.refine_samples,
                              avi_rate=args.avi_rate, refine_sweep=args.refine_sweep, output=args.output)
    if ctx.is_main:
        print(json.dumps(result, indent=2))
    return 0


def _plot(args) -> int:
    from varinf.config import RULES
    from varinf.plotting import plot_run

    RULES["seed"](args.seed)
    for path in plot_run(args.run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir, seed=args.seed):
        print(path)
    return 0


def _configure_logging(args) -> None:
    """``varinf`` messages at INFO (per-epoch lines), WARNING with --quiet, DEBUG with --verbose."""
    from varinf.logs import enable_logging

    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    enable_logging("DEBUG" if verbose else "WARNING" if quiet else "INFO")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(negative_values_joined(sys.argv[1:] if argv is None else list(argv)))
    _configure_logging(args)
    handler = {"train": _train, "eval": _eval, "plot": _plot}[args.command]
    try:
        return handler(args)
    except VarinfError as exc:
        print(f"varinf {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:                     # e.g. a file name too long, a full disk, no permission
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"varinf {args.command}: error: {one_line(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = f"; continue with: varinf train --out {args.out} --resume" if args.command == "train" else ""
        print(f"varinf {args.command}: interrupted; checkpoints written so far are intact{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
