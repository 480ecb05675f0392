"""Is the posterior piled against a bound of the prior? (the data may want a value beyond it)"""
from __future__ import annotations

import numpy as np

__all__ = ["bound_warnings"]


def bound_warnings(samples: np.ndarray, box, *, edge: float = 0.01, share: float = 0.1) -> tuple:
    """Parameters whose posterior piles against a bound of the prior.

    A share of the draws over ``share`` within ``edge`` of the prior's range
    (in the prior's warped coordinate: log for log-uniform parameters) from a
    bound means the data may want a value beyond it.
    """
    u = box.to_unit(np.clip(samples, box.lower, box.upper))
    # A Gaussian prior truncated at wide bounds (XSPEC's hard limits) puts its mean within
    # edge of a bound: a draw counts only if it also lies in the prior's last edge of mass
    # there (the prior's CDF is u itself for uniform and log-uniform parameters).
    cdf = box.cdf(np.clip(samples, box.lower, box.upper)) if box.is_gauss.any() else u
    out = []
    for j, name in enumerate(box.names):
        for side, near, value in (("lower", (u[:, j] <= edge) & (cdf[:, j] <= edge), box.lower[j]),
                                  ("upper", (u[:, j] >= 1 - edge) & (cdf[:, j] >= 1 - edge),
                                   box.upper[j])):
            f = float(np.mean(near))
            if f > share:
                out.append(f"{name}: {100 * f:.0f}% of the posterior lies within {100 * edge:g}% of the "
                           f"prior's {side} bound {value:g}; the data may want a value beyond it "
                           f"(widen the prior if that is physical)")
    return tuple(out)
