"""Drawing helpers shared by the classical examples."""

import numpy as np
from matplotlib.patches import Ellipse


def ellipse(ax, mean, cov, **kw):
    """Draw the 2-sigma ellipse of N(mean, cov) on ``ax``."""
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    w, h = 2 * 2 * np.sqrt(vals[::-1])
    ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, **kw))
