"""Tests that kill the surviving mutants of ``varinf.likelihoods`` (issue #20; docs/RESULTS.md §17)."""

import pytest

from varinf.errors import ConfigError
from varinf.likelihoods import GaussianLikelihood


@pytest.mark.parametrize("bad", [0.0, -1e-3])
def test_a_gaussian_variance_floor_must_be_positive_and_the_error_names_it(bad):
    """σ²_min = 0 would let a constant pixel's density go to +∞: refused, naming the setting and the value
    (kills ``> 0`` → ``>= 0`` and the message dropped)."""
    with pytest.raises(ConfigError, match=rf"^min_variance of a Gaussian likelihood must be > 0, got {bad!r}$"):
        GaussianLikelihood(3, per_pixel=False, min_variance=bad)
    assert GaussianLikelihood(3, per_pixel=True, min_variance=1e-9).min_variance == 1e-9
