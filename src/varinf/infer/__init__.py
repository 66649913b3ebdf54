"""Inference and learning algorithms, one module each, and the registry ``varinf train --method`` reads."""

from varinf.infer.aevb import AEVB, make_optimizer
from varinf.infer.gbvi import GBVI
from varinf.infer.savae import SAVAE

METHODS = {AEVB.name: AEVB, GBVI.name: GBVI, SAVAE.name: SAVAE}

__all__ = ["AEVB", "GBVI", "SAVAE", "METHODS", "make_optimizer"]
