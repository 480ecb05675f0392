"""SBIResult.to_arviz(): groups, draws, weights aligned with the posterior rows, netCDF round trip.

arviz is an optional extra: the tests that need it skip where it is not
installed; the error message without it is tested everywhere.
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from report_fakes import fake_result

needs_arviz = pytest.mark.skipif(importlib.util.find_spec("arviz") is None,
                                 reason="arviz is not installed (pip install 'xspec_sbi[arviz]')")


def test_without_arviz_the_error_says_how_to_install(monkeypatch):
    r = fake_result(n=50, correction=None, chain=False)
    monkeypatch.setitem(sys.modules, "arviz", None)      # import arviz raises ImportError
    with pytest.raises(ImportError, match=r"xspec_sbi\[arviz\]"):
        r.to_arviz()


@needs_arviz
@pytest.mark.parametrize("kind", ["reliable", "unreliable"])
def test_groups_and_weights(kind, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # arviz 0.2x announces its refactor
        import arviz as az
    r = fake_result(n=800 if kind == "reliable" else 300, correction=kind,
                    seed=3 if kind == "unreliable" else 0)
    c = r.correction
    assert c.reliable == (kind == "reliable")
    idata = r.to_arviz()
    assert set(idata.groups()) == {"posterior", "sample_stats", "network_posterior", "prior",
                                   "observed_data", "constant_data", "chain_posterior",
                                   "chain_sample_stats"}
    for i, name in enumerate(r.names):
        np.testing.assert_array_equal(idata.posterior[name].values[0], r.samples[:, i])
        np.testing.assert_array_equal(idata.network_posterior[name].values[0], r.samples_raw[:, i])
        np.testing.assert_array_equal(idata.chain_posterior[name].values[0], r.chain.samples[:, i])
        p = r.prior.parameters[i]
        prior = idata.prior[name].values
        assert prior.shape == (1, len(r.samples)) and prior.min() >= p.lower and prior.max() <= p.upper
    ss = idata.sample_stats
    np.testing.assert_allclose(ss["stat"].values[0], r.session.statistic_function()(r.samples))
    rows = ss["proposal_index"].values[0]
    # each posterior row is the proposal it names, and carries that proposal's weight
    np.testing.assert_array_equal(c.proposals[rows], r.samples)
    np.testing.assert_array_equal(ss["importance_weight"].values[0], c.weights[rows])
    if kind == "unreliable":
        np.testing.assert_array_equal(rows, np.arange(c.n))
        assert ss["importance_weight"].values.sum() == pytest.approx(1.0)
    spec = r.session.spectra[0]
    np.testing.assert_array_equal(idata.observed_data["counts_1"].values, spec.binned_counts())
    np.testing.assert_array_equal(idata.constant_data["e_lo_1"].values, spec.bin_energies()[0])
    assert idata.constant_data["exposure_1"].values.item() == spec.exposure
    assert idata.attrs["model"] == "tbabs*powerlaw"
    path = tmp_path / "result.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    np.testing.assert_array_equal(back.posterior[r.names[0]].values, idata.posterior[r.names[0]].values)
    assert back.attrs["statistic"] == r.statistic
    # other tools read it: arviz's own summary of the posterior
    summ = az.summary(idata, kind="stats")
    assert summ.loc[r.names[1], "mean"] == pytest.approx(r.samples[:, 1].mean(), rel=1e-3)
