"""A result as an ``arviz.InferenceData``, for tools that read ArviZ (or its netCDF files).

arviz is an optional extra (``pip install xspec_sbi[arviz]``); it is imported
only here, and only when called.

Groups
------
posterior
    The SBI samples (``result.samples``), one chain; one variable per free
    parameter, named as PyXspec names it (``"powerlaw.PhoIndex"``).
sample_stats
    Per draw: the fit statistic (``stat``, cstat or wstat), and with the
    likelihood correction the Pareto-smoothed importance weight of the network
    draw it came from (``importance_weight``, normalised over the proposals),
    its raw log weight (``log_weight``) and that proposal's row
    (``proposal_index``).
network_posterior
    The network's own draws before any correction (``result.samples_raw``).
prior
    Draws from the user's prior (seeded; the same for the same result).
observed_data
    Counts per noticed bin of each spectrum (``counts_1``, ``counts_2``...;
    ``background_1``... when a background is fitted).
constant_data
    Bin edges in keV (``e_lo_1``, ``e_hi_1``...) and exposures in s.
chain_posterior, chain_sample_stats
    The Goodman-Weare chain (samples over all walkers, one chain) and its
    statistic, when the chain ran.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

__all__ = ["to_inference_data"]


def _import_arviz():
    try:
        import arviz
    except ImportError as exc:   # an optional extra: say how to get it
        raise ImportError("SBIResult.to_arviz() needs arviz: pip install 'xspec_sbi[arviz]' "
                          "(or pip install arviz)") from exc
    return arviz


def _draws(names, samples) -> dict:
    samples = np.asarray(samples, dtype=float)
    return {n: samples[None, :, i] for i, n in enumerate(names)}


def to_inference_data(result, prior_draws: int | None = None, seed: int = 0):
    """``arviz.InferenceData`` of ``result`` (groups in the module docstring).

    Parameters
    ----------
    result : SBIResult
    prior_draws : int, optional
        Draws in the ``prior`` group (default: as many as posterior samples).
    seed : int
        Seeds the prior draws only.

    Returns
    -------
    arviz.InferenceData
    """
    az = _import_arviz()
    from xspec_sbi.result import RECORD_SCHEMA

    names = list(result.names)
    session = result.session
    stat = session.statistic_function()
    n = len(result.samples)
    stats = {"stat": np.asarray(stat(result.samples), dtype=float)[None, :]}
    c = result.correction
    if c is not None:
        # the posterior rows are the resampled proposals when the correction is used, else the proposals
        rows = np.asarray(c.indices) if c.reliable else np.arange(c.n)
        stats["importance_weight"] = np.asarray(c.weights)[rows][None, :]
        stats["log_weight"] = np.asarray(c.log_weights)[rows][None, :]
        stats["proposal_index"] = rows[None, :]
    observed, constant, dims = {}, {}, {}
    for k, (spec, part) in enumerate(zip(session.spectra, stat.simulator.parts), start=1):
        dim = f"bin_{k}"
        observed[f"counts_{k}"] = spec.binned_counts()
        dims[f"counts_{k}"] = [dim]
        if part.has_background:
            observed[f"background_{k}"] = spec.binned_background_counts()
            dims[f"background_{k}"] = [dim]
        if spec.response is not None:
            lo, hi = spec.bin_energies()
            constant[f"e_lo_{k}"], constant[f"e_hi_{k}"] = lo, hi
            dims[f"e_lo_{k}"] = dims[f"e_hi_{k}"] = [dim]
        constant[f"exposure_{k}"] = np.array(spec.exposure)
    prior = result.prior.sample(prior_draws or n, rng=seed)
    # attributes as strings and numbers: netCDF files keep those, not lists or dicts
    attrs = {"model": session.model.expression, "statistic": result.statistic,
             "schema": RECORD_SCHEMA, "parameters": json.dumps(names),
             "units": json.dumps([p.unit for p in result.prior.parameters]),
             "spectra": json.dumps([s.label for s in session.spectra]),
             "samples": "likelihood-corrected network draws" if c is not None and c.reliable
             else "network draws"}
    if result.settings is not None:
        attrs.update(seed=result.settings.seed, versions=json.dumps(result.settings.versions))
    idata = az.from_dict(posterior=_draws(names, result.samples), sample_stats=stats,
                         prior=_draws(names, prior), observed_data=observed,
                         constant_data=constant, dims=dims, attrs=attrs)
    extra = {"network_posterior": _draws(names, result.samples_raw)}
    if result.chain is not None:
        extra["chain_posterior"] = _draws(names, result.chain.samples)
        extra["chain_sample_stats"] = {"stat": np.asarray(result.chain.stat, dtype=float)[None, :]}
    with warnings.catch_warnings():
        # arviz says it adds the chain and draw dimensions: that is what these groups need
        warnings.filterwarnings("ignore", message="the default dims", category=UserWarning)
        idata.add_groups(extra, warn_on_custom_groups=False)
    return idata
