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
    # the edge said in the parameter's unit: "within 1 % of the bound 0.01" read as 0.01 +- 1e-4
    # to a user whose posterior reached 0.03 (a prior 0.01-3: its 1 % ends at 0.0399)
    ends = box.from_unit(np.array([np.full(box.n_dim, edge), np.full(box.n_dim, 1 - edge)]))
    out = []
    for j, name in enumerate(box.names):
        for side, near, value, end in (
                ("lower", (u[:, j] <= edge) & (cdf[:, j] <= edge), box.lower[j], ends[0, j]),
                ("upper", (u[:, j] >= 1 - edge) & (cdf[:, j] >= 1 - edge), box.upper[j], ends[1, j])):
            f = float(np.mean(near))
            if f > share:
                span = f"{value:.4g}-{end:.4g}" if side == "lower" else f"{end:.4g}-{value:.4g}"
                out.append(f"{name}: {100 * f:.0f}% of the posterior lies in {span}, the prior's "
                           f"{100 * edge:g}% next to its {side} bound {value:g}; the data may want a "
                           f"value beyond it (widen the prior if that is physical)")
    return tuple(out)
