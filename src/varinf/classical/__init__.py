"""Classical approximate inference: EM, MAP inference and sparse coding, mean-field CAVI.

* :class:`GaussianMixture` - expectation-maximisation (EM, Neal-Hinton view; ``em.py``);
* :class:`SparseCoding`, :func:`fista`, :func:`ista` - MAP inference and sparse coding
  (``sparse_coding.py``);
* :class:`MeanFieldCAVI`, :class:`BayesianGaussianMixture` - mean-field coordinate ascent
  variational inference (CAVI; ``cavi.py``);
* :class:`CoordinateAscent` - the loop all of them share (``_base.py``).
"""

from ._base import CoordinateAscent
from .cavi import BayesianGaussianMixture, MeanFieldCAVI, UnivariateGaussianCAVI
from .em import GaussianMixture
from .sparse_coding import SparseCoding, fista, ista, sparse_coding_objective

__all__ = [
    "CoordinateAscent",
    "GaussianMixture",
    "SparseCoding",
    "fista",
    "ista",
    "sparse_coding_objective",
    "MeanFieldCAVI",
    "BayesianGaussianMixture",
    "UnivariateGaussianCAVI",
]
