"""Classical approximate inference: EM, MAP inference / sparse coding, mean-field CAVI."""
from ._base import CoordinateAscent
from .em import GaussianMixture

__all__ = ["CoordinateAscent", "GaussianMixture"]
