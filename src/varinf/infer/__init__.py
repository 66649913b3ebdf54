"""Inference and learning algorithms, one module each, and the registry ``varinf train --method`` reads."""

from varinf.infer.aevb import AEVB, make_optimizer

METHODS = {AEVB.name: AEVB}

__all__ = ["AEVB", "METHODS", "make_optimizer"]
