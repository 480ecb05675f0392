"""Tests of Response: file loading, ARF handling and the synthetic Gaussian/NICER-like responses."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from scipy.stats import norm

from ogip_testfiles import toy_grid, write_arf, write_rmf
from xspec_sbi.data import ogip_response
from xspec_sbi.data.response import (
    NICER_FWHM_A_KEV,
    NICER_FWHM_B_KEV,
    Response,
    ResponseError,
    gaussian_response,
    load_response,
    nicer_like_response,
    nicer_xti_fwhm,
)

XMM = "xmm_pn_ngc7793_ulx4"
SWIFT = "swift_xrt_grb110731a"
NICER_ARF = "nicer_4u1820/pre_burst_Tint200_raw.arf"


def test_xmm_response_with_arf(shared_data):
    resp = load_response(shared_data / XMM / "PN.rmf", shared_data / XMM / "PN.arf")
    arf = ogip_response.read_arf(shared_data / XMM / "PN.arf")
    assert resp.matrix.shape == (2067, 4096) and resp.first_channel == 0
    np.testing.assert_array_equal(resp.arf, arf.specresp)
    assert resp.arf_path.endswith("PN.arf") and resp.rmf_path.endswith("PN.rmf")
    edges = resp.energy_edges
    assert edges.shape == (2068,) and np.all(np.diff(edges) > 0)
    # diag(arf) @ M against a dense product on a slice of rows
    rows = slice(400, 460)
    dense = resp.arf[rows, None] * resp.matrix[rows].toarray()
    np.testing.assert_allclose(resp.effective_matrix()[rows].toarray(), dense, rtol=1e-12)
    np.testing.assert_array_equal(resp.channels[[0, -1]], [0, 4095])


def test_swift_zero_energy_edge_follows_xspec(shared_data):
    resp = load_response(shared_data / SWIFT / "swxwt0to2s6_20110101v015.rmf",
                         shared_data / SWIFT / "test_grb110731.arf")
    raw = ogip_response.read_rmf(shared_data / SWIFT / "swxwt0to2s6_20110101v015.rmf")
    assert raw.energ_lo[0] == 0.0
    assert resp.energ_lo[0] == pytest.approx(raw.energ_hi[0] / 1000.0)
    np.testing.assert_array_equal(resp.energ_lo[1:], raw.energ_lo[1:])
    assert resp.matrix.shape == (2400, 1024)


def test_arf_grid_mismatch_names_both_files(shared_data):
    with pytest.raises(ResponseError) as info:
        load_response(shared_data / XMM / "PN.rmf", shared_data / SWIFT / "test_grb110731.arf")
    assert "PN.rmf" in str(info.value) and "test_grb110731.arf" in str(info.value)


def test_arf_grid_mismatch_small_files(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid()
    rmf = write_rmf(tmp_path / "a.rmf", lo, hi, e_min, e_max, dense)
    shifted = write_arf(tmp_path / "shift.arf", lo + 0.01, hi + 0.01, np.ones(lo.size))
    with pytest.raises(ResponseError, match=r"shift.arf.*a.rmf"):
        load_response(rmf, shifted)
    good = load_response(rmf, write_arf(tmp_path / "ok.arf", lo, hi, np.full(lo.size, 3.0)))
    np.testing.assert_allclose(good.effective_matrix().toarray(), 3.0 * dense, rtol=1e-6)


def test_rsp_without_arf(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid()
    area = np.linspace(50.0, 400.0, lo.size)
    path = write_rmf(tmp_path / "full.rsp", lo, hi, e_min, e_max, dense * area[:, None],
                     extname="SPECRESP MATRIX", hduclas3="FULL")
    resp = load_response(path)
    assert resp.arf is None and resp.arf_path is None
    np.testing.assert_allclose(resp.effective_matrix().toarray(), dense * area[:, None], rtol=1e-6)


def test_response_validation():
    lo, hi, e_min, e_max, dense = toy_grid()
    matrix = scipy.sparse.csr_matrix(dense)
    with pytest.raises(ResponseError, match="matrix shape"):
        Response(lo, hi, e_min[:-1], e_max[:-1], 1, matrix)
    gap = hi.copy()
    gap[10] -= 0.05
    with pytest.raises(ResponseError, match="contiguous"):
        Response(lo, gap, e_min, e_max, 1, matrix)
    with pytest.raises(ResponseError, match="ARF"):
        Response(lo, hi, e_min, e_max, 1, matrix, arf=np.ones(3))
    negative = dense.copy()
    negative[0, 0] = -1.0
    with pytest.raises(ResponseError, match="negative"):
        Response(lo, hi, e_min, e_max, 1, scipy.sparse.csr_matrix(negative))


# ---------------------------------------------------------- synthetic responses

def _profile_fwhm(resp: Response, energy: float) -> tuple[float, float]:
    """Centroid and FWHM (keV) of one row, from channel moments with Sheppard's correction."""
    row = int(np.searchsorted(resp.energ_hi, energy))
    p = resp.matrix[row].toarray().ravel()
    centre = 0.5 * (resp.e_min + resp.e_max)
    width = resp.e_max - resp.e_min
    mean = np.sum(p * centre) / p.sum()
    var = np.sum(p * (centre - mean) ** 2) / p.sum() - np.mean(width) ** 2 / 12.0
    return mean, np.sqrt(var) * 2.0 * np.sqrt(2.0 * np.log(2.0))


def test_gaussian_rows_sum_to_one_and_edge_fractions():
    lo = np.linspace(0.05, 12.0, 1200)
    hi = np.r_[lo[1:], 12.01]
    cedges = np.linspace(0.5, 10.0, 951)
    fwhm = 0.2
    resp = gaussian_response(lo, hi, cedges[:-1], cedges[1:], fwhm)
    sums = np.asarray(resp.matrix.sum(axis=1)).ravel()
    centre = 0.5 * (lo + hi)
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    interior = (centre > 0.5 + 6 * sigma) & (centre < 10.0 - 6 * sigma)
    np.testing.assert_allclose(sums[interior], 1.0, atol=1e-9)
    # at the edges each row holds the Gaussian fraction inside [0.5, 10] keV, except
    # photons more than 5 sigma outside, whose < Phi(-5) fraction is cut with the kernel
    fraction = norm.cdf(10.0, centre, sigma) - norm.cdf(0.5, centre, sigma)
    reached = sums > 0
    np.testing.assert_allclose(sums[reached], fraction[reached], atol=1e-9)
    assert np.all(fraction[~reached] <= norm.sf(5.0))
    assert reached.sum() > interior.sum()
    mean, width = _profile_fwhm(resp, 4.0)
    assert mean == pytest.approx(4.0, abs=2e-3)
    assert width == pytest.approx(fwhm, rel=5e-3)
    # truncated at 5 sigma: no entry farther than 5 sigma + one channel from the photon energy
    rows, cols = resp.matrix.nonzero()
    channel_centre = 0.5 * (cedges[:-1] + cedges[1:])
    assert np.max(np.abs(channel_centre[cols] - centre[rows])) <= 5 * sigma + 0.01


def test_gaussian_callable_fwhm_and_arf():
    lo, hi, e_min, e_max, _ = toy_grid(n_e=200, n_chan=300)
    area = np.linspace(1.0, 2.0, lo.size)
    resp = gaussian_response(lo, hi, e_min, e_max, lambda e: 0.05 * np.sqrt(e), arf=area,
                             first_channel=0)
    np.testing.assert_array_equal(resp.arf, area)
    assert resp.first_channel == 0 and resp.rmf_path is None
    mean, width = _profile_fwhm(resp, 6.0)
    assert width == pytest.approx(0.05 * np.sqrt(mean), rel=0.02)
    with pytest.raises(ResponseError, match="fwhm"):
        gaussian_response(lo, hi, e_min, e_max, -1.0)


def test_nicer_fwhm_law():
    np.testing.assert_allclose(nicer_xti_fwhm([1.0, 6.0]), [0.085, 0.137], rtol=1e-12)
    assert NICER_FWHM_A_KEV**2 + NICER_FWHM_B_KEV**2 == pytest.approx(0.085**2)


def test_nicer_like_response(shared_data):
    resp = nicer_like_response(shared_data / NICER_ARF)
    arf = ogip_response.read_arf(shared_data / NICER_ARF)
    assert resp.matrix.shape == (3451, 1501)
    assert resp.first_channel == 0 and resp.rmf_path is None
    assert resp.arf_path == str(shared_data / NICER_ARF)
    assert "not available" in resp.description
    np.testing.assert_array_equal(resp.arf, arf.specresp)
    np.testing.assert_array_equal(resp.channels[[0, -1]], [0, 1500])
    np.testing.assert_allclose(resp.e_min[[0, 100, 1500]], [0.0, 1.0, 15.0], atol=1e-12)
    np.testing.assert_allclose(resp.e_max - resp.e_min, 0.01, atol=1e-12)
    assert resp.matrix.nnz < 0.05 * 3451 * 1501
    sums = np.asarray(resp.matrix.sum(axis=1)).ravel()
    centre = 0.5 * (resp.energ_lo + resp.energ_hi)
    np.testing.assert_allclose(sums[(centre > 0.5) & (centre < 14.0)], 1.0, atol=1e-9)
    assert np.all(sums[centre > 16.5] == 0.0)  # beyond PI 1500
    for energy, expected in ((1.0, 0.085), (3.0, nicer_xti_fwhm(3.0)), (6.0, 0.137)):
        mean, width = _profile_fwhm(resp, energy)
        assert mean == pytest.approx(energy, abs=0.005)
        assert width == pytest.approx(expected, rel=0.01)
