"""Inference and learning algorithms, one module each, and the registry ``varinf train --method`` reads."""

from varinf.infer._base import SurrogateAscent, add_linear_warmup, make_optimizer
from varinf.infer.aevb import AEVB
from varinf.infer.avi import AVI
from varinf.infer.gbvi import GBVI
from varinf.infer.mean_pass import MeanPass
from varinf.infer.nvil import NVIL
from varinf.infer.reinforce import Reinforce
from varinf.infer.savae import SAVAE
from varinf.infer.straight_through import StraightThrough
from varinf.infer.wake_sleep import WakeSleep

METHODS = {m.name: m for m in (AEVB, GBVI, SAVAE, MeanPass, StraightThrough, AVI, WakeSleep, NVIL, Reinforce)}

__all__ = ["AEVB", "GBVI", "SAVAE", "MeanPass", "StraightThrough", "AVI", "WakeSleep", "NVIL", "Reinforce",
           "METHODS", "SurrogateAscent", "add_linear_warmup", "make_optimizer"]
