"""Folding: transfer matrix against analytic values and an independent dense computation."""
import numpy as np
import pytest
import scipy.sparse as sp

from xspec_sbi.forward.folding import Folder, build_transfer
from xspec_sbi.data.response import Response, nicer_like_response
from xspec_sbi.data.spectrum import Spectrum, load_spectrum
from xspec_sbi.model.expression import Model


def powerlaw_bins(edges, index, norm):
    """Analytic bin integral of norm * E^-index (photons cm^-2 s^-1)."""
    return norm * (edges[1:] ** (1 - index) - edges[:-1] ** (1 - index)) / (1 - index)


def diagonal_response(edges, area):
    n = edges.size - 1
    return Response(energ_lo=edges[:-1], energ_hi=edges[1:], e_min=edges[:-1], e_max=edges[1:],
                    first_channel=1, matrix=sp.identity(n, format="csr"), arf=np.full(n, area),
                    rmf_path=None, arf_path=None)


def test_diagonal_response_reproduces_the_model():
    edges = np.geomspace(0.5, 10.0, 201)
    resp = diagonal_response(edges, area=250.0)
    spec = Spectrum(counts=np.zeros(200), exposure=1000.0, areascal=0.8, response=resp)
    mu = Folder(spec, Model("powerlaw")).expected_counts([[1.7, 3.0]])[0]
    want = 1000.0 * 0.8 * 250.0 * powerlaw_bins(edges, 1.7, 3.0)
    np.testing.assert_allclose(mu, want, rtol=1e-12)


def test_grouping_and_notice_sum_channels():
    edges = np.linspace(1.0, 3.0, 21)
    resp = diagonal_response(edges, area=1.0)
    grouping = np.tile([1, -1, -1, -1], 5)
    spec = Spectrum(counts=np.zeros(20), exposure=1.0, grouping=grouping, response=resp).ignore("1 5")
    mu = Folder(spec, Model("powerlaw")).expected_counts([[2.0, 1.0]])[0]
    per_channel = powerlaw_bins(edges, 2.0, 1.0)
    want = per_channel.reshape(5, 4).sum(axis=1)[1:4]   # bins 1 and 5 ignored
    np.testing.assert_allclose(mu, want, rtol=1e-12)


def _dense_fold(spec, index, norm):
    """Independent reference: dense RMF x ARF, analytic powerlaw, explicit channel sums."""
    r = spec.response
    edges = np.append(r.energ_lo, r.energ_hi[-1])
    photons = powerlaw_bins(edges, index, norm)
    area = r.arf if r.arf is not None else np.ones_like(photons)
    per_channel = spec.exposure * np.asarray(spec.areascal) * ((photons * area) @ r.matrix.toarray())
    return spec.binning_matrix().toarray() @ per_channel


REAL = [
    ("xmm_pn_ngc7793_ulx4/PN.pha", {}),
    ("swift_xrt_grb110731a/grb110731a_src.pha", {}),
]


@pytest.mark.parametrize("name, kw", REAL)
def test_real_responses_match_dense_computation(shared_data, name, kw):
    spec = load_spectrum(shared_data / name, **kw).ignore("**-0.3 10.-**")
    model = Model("powerlaw")
    for trim in (True, False):
        mu = Folder(spec, model, trim=trim).expected_counts([[1.9, 2e-3]])[0]
        np.testing.assert_allclose(mu, _dense_fold(spec, 1.9, 2e-3), rtol=1e-10, atol=1e-12)


def test_nicer_like_response_matches_dense_computation(shared_data):
    d = shared_data / "nicer_4u1820"
    resp = nicer_like_response(d / "pre_burst_Tint200_raw.arf")
    spec = load_spectrum(d / "pre_burst_spectrum_opt.pha", respfile="none", ancrfile="none")
    spec = spec.with_response(resp).ignore("**-0.3 10.-**")
    mu = Folder(spec, Model("powerlaw")).expected_counts([[1.7, 1.0]])[0]
    np.testing.assert_allclose(mu, _dense_fold(spec, 1.7, 1.0), rtol=1e-10)


def test_trimmed_grid_gives_the_same_counts_for_every_component(shared_data):
    spec = load_spectrum(shared_data / "xmm_pn_ngc7793_ulx4/PN.pha").ignore("**-0.5 8.-**")
    model = Model("tbabs*(powerlaw+bbodyrad+gaussian)")
    theta = [[0.3, 2.1, 1e-3, 0.8, 0.5, 6.4, 0.1, 1e-5]]
    a = Folder(spec, model, trim=True)
    b = Folder(spec, model, trim=False)
    assert a.transfer.energy_edges.size < b.transfer.energy_edges.size
    np.testing.assert_allclose(a.expected_counts(theta), b.expected_counts(theta), rtol=1e-12)


def test_spectrum_without_response_is_refused():
    with pytest.raises(ValueError, match="no response"):
        build_transfer(Spectrum(counts=np.zeros(4), exposure=1.0))


def test_storage_dense_or_sparse_gives_the_dense_reference(shared_data, monkeypatch):
    # An ungrouped PN matrix is 22 % filled: over the 12 % threshold it is stored dense,
    # and above DENSE_MAX_BYTES it stays sparse; either way the independent fold's counts
    import dataclasses

    from xspec_sbi.forward import folding
    raw = load_spectrum(shared_data / "xmm_pn_ngc7793_ulx4" / "PN.pha")
    spec = dataclasses.replace(raw, grouping=None, noticed=None).ignore("**-0.5 10.-**")
    reference = _dense_fold(spec, 1.9, 2e-3)
    stored = Folder(spec, Model("powerlaw")).transfer.matrix
    assert not sp.issparse(stored)
    np.testing.assert_allclose(Folder(spec, Model("powerlaw")).expected_counts([[1.9, 2e-3]])[0],
                               reference, rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(folding, "DENSE_MAX_BYTES", 0)
    capped = Folder(spec, Model("powerlaw"))
    assert sp.issparse(capped.transfer.matrix)
    np.testing.assert_allclose(capped.expected_counts([[1.9, 2e-3]])[0], reference,
                               rtol=1e-10, atol=1e-12)
