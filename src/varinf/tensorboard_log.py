"""TensorBoard event files of a training run: per-epoch bounds, learning rates and timings.

``varinf train --tensorboard`` / ``varinf.train(..., tensorboard=True)`` writes, once per epoch
(global step = the epoch number), through ``torch.utils.tensorboard.SummaryWriter``:

* ``bound/train``: the epoch's mean training bound (the method's objective, nats per datapoint);
* ``bound/valid``: the validation bound the run early-stops on;
* ``lr/<group>``: each optimizer's learning rate at its last update (after any warm-up);
* ``time/epoch_seconds``: wall-clock seconds of the epoch (training and validation).

The same numbers as ``metrics.jsonl``. The files go to ``RUN_DIR/tensorboard/`` (watch them with
``tensorboard --logdir RUN_DIR/tensorboard``); each training session, a ``--resume`` included, adds
its own ``events.out.tfevents.*`` file there and never touches an existing one. Only the
process that writes the run's files (rank 0 under ``torchrun``) writes events. The directory is
created at the first epoch's end, so a run refused before training starts leaves none.
The extra dependency is the ``tensorboard`` package: ``pip install 'varinf[tensorboard]'``.
"""

from __future__ import annotations

from pathlib import Path

from varinf.errors import ConfigError

__all__ = ["BOARD_DIR", "EpochBoard"]

#: the folder of a run directory that holds the event files
BOARD_DIR = "tensorboard"


class EpochBoard:
    """Writes one training epoch at a time to ``run_dir/tensorboard`` (the writer opens on first use)."""

    def __init__(self, run_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package, which is not installed: "
                              "pip install 'varinf[tensorboard]' (or pip install tensorboard)") from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(run_dir) / BOARD_DIR
        self._writer = None

    def _open(self):
        if self.log_dir.is_symlink() or (self.log_dir.exists() and not self.log_dir.is_dir()):
            raise ConfigError(f"{self.log_dir} is a symlink or a file; varinf writes its TensorBoard events only "
                              "into a real directory of the run (move it away)")
        self._writer = self._writer_class(log_dir=str(self.log_dir))
        return self._writer

    def epoch(self, row: dict, optimizers: dict) -> None:
        """Write one ``metrics.jsonl`` row (epoch, train_elbo, valid_elbo, seconds) and the learning rates."""
        writer = self._writer or self._open()
        step = int(row["epoch"])
        writer.add_scalar("bound/train", row["train_elbo"], step)
        writer.add_scalar("bound/valid", row["valid_elbo"], step)
        for name, optimizer in optimizers.items():
            writer.add_scalar(f"lr/{name}", optimizer.param_groups[0]["lr"], step)
        writer.add_scalar("time/epoch_seconds", row["seconds"], step)
        writer.flush()                       # on disk at every epoch: a killed run keeps its curves

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
