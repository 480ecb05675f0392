"""Tests of the raw OGIP readers on the real data sets and on small written files."""
from __future__ import annotations

import time

import numpy as np
import pytest
from astropy.io import fits

from ogip_testfiles import toy_grid, write_arf, write_pha, write_pha_type2, write_rmf
from xspec_sbi.data import ogip, ogip_pha, ogip_response

# Totals and exposures from ../shared/data/README.md.
REAL_SPECTRA = [
    ("nicer_4u1820/pre_burst_spectrum_opt.pha", 224_630, 124.6598),
    ("nicer_4u1820/b_004_0.25s_raw_opt.pha", 578, 0.25),
    ("nicer_4u1820/b_008_0.25s_raw_opt.pha", 3_932, 0.25),
    ("xmm_pn_ngc7793_ulx4/PN.pha", 11_526, 20_265.98058616),
    ("swift_xrt_grb110731a/grb110731a_src.pha", 956, 49.91755),
]


# ---------------------------------------------------------------- real data

@pytest.mark.parametrize("name, total, exposure", REAL_SPECTRA)
def test_real_counts_and_exposure(shared_data, name, total, exposure):
    rec = ogip_pha.read_pha(shared_data / name)
    assert rec.counts.sum() == total
    assert rec.exposure == pytest.approx(exposure, rel=1e-9)
    assert rec.row is None and not rec.was_rate and rec.poisserr
    assert np.all(np.diff(rec.channels) == 1)


def test_real_keyword_resolution(shared_data):
    swift = ogip_pha.read_pha(shared_data / "swift_xrt_grb110731a/grb110731a_src.pha")
    folder = shared_data / "swift_xrt_grb110731a"
    assert swift.respfile == str(folder / "swxwt0to2s6_20110101v015.rmf")
    assert swift.ancrfile == str(folder / "test_grb110731.arf")
    assert swift.backfile == str(folder / "test_grb110731_bkg.pha")
    assert swift.backscal == pytest.approx(9.5e-05)
    bkg = ogip_pha.read_pha(swift.backfile)  # keywords 'none' and no GROUPING/QUALITY columns
    assert bkg.respfile is None and bkg.ancrfile is None and bkg.backfile is None
    assert bkg.exposure == pytest.approx(572.1246273263523)
    assert np.all(bkg.grouping == 1) and np.all(bkg.quality == 0)

    nicer = ogip_pha.read_pha(shared_data / "nicer_4u1820/b_004_0.25s_raw_opt.pha")
    assert nicer.backfile is None  # BACKFILE = 'none'
    assert nicer.respfile == str(shared_data / "nicer_4u1820/1050300108.rmf")  # absent file, still named
    reference = ogip_pha.read_pha(shared_data / "nicer_4u1820/Reference_pha_tbabs_powerlaw_20000counts.pha")
    assert reference.backfile is None  # BACKFILE = ''
    xmm = ogip_pha.read_pha(shared_data / "xmm_pn_ngc7793_ulx4/PN.pha")
    assert xmm.backfile == str(shared_data / "xmm_pn_ngc7793_ulx4/PNbackground_spectrum.fits")
    assert xmm.backscal == 2010100.0


def test_real_grouping_quality(shared_data):
    swift = ogip_pha.read_pha(shared_data / "swift_xrt_grb110731a/grb110731a_src.pha")
    assert swift.tlmin == 0 and swift.channels[0] == 0 and swift.channels.size == 1024
    assert np.all(swift.quality[:30] == 5) and np.all(swift.quality[30:719] == 0)
    assert np.all(swift.quality[719:] == 2)
    xmm = ogip_pha.read_pha(shared_data / "xmm_pn_ngc7793_ulx4/PN.pha")
    assert (xmm.quality == 1).sum() == 1116 and (xmm.grouping == 1).sum() == 1230
    nicer = ogip_pha.read_pha(shared_data / "nicer_4u1820/pre_burst_spectrum_opt.pha")
    assert (nicer.quality == 1).sum() == 22 and set(np.unique(nicer.grouping)) == {-1, 1}


def _dense_by_loop(hdu, rows) -> np.ndarray:
    """Second, row-by-row decoding of some RMF MATRIX rows (independent of ogip)."""
    data = hdu.data
    n_chan = hdu.header["DETCHANS"]
    col = [n.upper() for n in hdu.columns.names].index("F_CHAN") + 1
    tlmin = hdu.header.get(f"TLMIN{col}", 1)
    dense = np.zeros((len(rows), n_chan))
    for out, i in enumerate(rows):
        f = np.atleast_1d(data["F_CHAN"][i])
        n = np.atleast_1d(data["N_CHAN"][i])
        m = np.atleast_1d(data["MATRIX"][i])
        k = 0
        for g in range(int(data["N_GRP"][i])):
            for c in range(int(n[g])):
                dense[out, int(f[g]) - tlmin + c] += m[k]
                k += 1
    return dense


@pytest.mark.parametrize("name, shape", [
    ("swift_xrt_grb110731a/swxwt0to2s6_20110101v015.rmf", (2400, 1024)),  # fixed-length, dense
    ("xmm_pn_ngc7793_ulx4/PN.rmf", (2067, 4096)),                         # variable-length, 18 groups
])
def test_real_rmf_matches_row_by_row_decoding(shared_data, name, shape):
    rec = ogip_response.read_rmf(shared_data / name)
    assert rec.matrix.shape == shape and rec.first_channel == 0 and not rec.includes_area
    assert rec.matrix.nnz < 0.6 * shape[0] * shape[1]  # explicit zeros dropped
    with fits.open(shared_data / name) as hdul:
        rows = np.random.default_rng(1).choice(shape[0], size=60, replace=False)
        expected = _dense_by_loop(hdul["MATRIX"], rows)
    np.testing.assert_allclose(rec.matrix[rows].toarray(), expected, rtol=0, atol=0)


def test_real_arf(shared_data):
    arf = ogip_response.read_arf(shared_data / "nicer_4u1820/pre_burst_Tint200_raw.arf")
    assert arf.specresp.size == 3451
    assert arf.energ_lo[0] == pytest.approx(0.1) and arf.energ_hi[-1] == pytest.approx(20.0)
    assert arf.specresp.max() == pytest.approx(1889.6947, rel=1e-6)


# ------------------------------------------------------------- written files

def test_rate_column_converted_with_exposure(tmp_path):
    counts = np.array([0, 3, 7, 1, 12])
    path = write_pha(tmp_path / "rate.pha", counts / 40.0, column="RATE", exposure=40.0,
                     keywords={"HDUCLAS3": "RATE"})
    rec = ogip_pha.read_pha(path)
    assert rec.was_rate
    np.testing.assert_array_equal(rec.counts, counts)
    fractional = write_pha(tmp_path / "frac.pha", [0.01, 0.5], column="RATE", exposure=3.0)
    np.testing.assert_allclose(ogip_pha.read_pha(fractional).counts, [0.03, 1.5])


def test_type2_row_selection(tmp_path):
    counts = np.array([[1, 2, 3, 4], [10, 20, 30, 40], [5, 0, 0, 5]])
    path = write_pha_type2(tmp_path / "multi.pha", counts, [10.0, 20.0, 30.0], [0.1, 0.2, 0.3])
    assert ogip_pha.is_type2(path)
    by_arg = ogip_pha.read_pha(path, row=2)
    by_suffix = ogip_pha.read_pha(f"{path}{{2}}")
    for rec in (by_arg, by_suffix):
        np.testing.assert_array_equal(rec.counts, counts[1])
        assert rec.row == 2 and rec.exposure == 20.0 and rec.backscal == 0.2
    assert ogip_pha.read_pha(path, row=3).exposure == 30.0
    with pytest.raises(ogip.OGIPError, match="type II"):
        ogip_pha.read_pha(path)
    with pytest.raises(ogip.OGIPError, match="out of range"):
        ogip_pha.read_pha(path, row=4)
    with pytest.raises(ogip.OGIPError, match="contradicts"):
        ogip_pha.read_pha(f"{path}{{1}}", row=2)
    single = write_pha(tmp_path / "single.pha", [1, 2, 3])
    assert not ogip_pha.is_type2(single)
    with pytest.raises(ogip.OGIPError, match="type I"):
        ogip_pha.read_pha(single, row=1)


def test_scale_columns_quality_keyword_and_file_keywords(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_pha(tmp_path / "s.pha", [1, 2, 3], columns={"BACKSCAL": [1.0, 2.0, 4.0],
                                                              "AREASCAL": [0.5, 0.5, 1.0]},
                     keywords={"BACKSCAL": None, "AREASCAL": None, "QUALITY": 2, "GROUPING": 0,
                               "RESPFILE": "sub/r.rmf", "ANCRFILE": "NONE", "BACKFILE": " "})
    rec = ogip_pha.read_pha(path)
    np.testing.assert_array_equal(rec.backscal, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(rec.areascal, [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(rec.quality, [2, 2, 2])
    np.testing.assert_array_equal(rec.grouping, [1, 1, 1])
    assert rec.respfile == str(tmp_path / "sub" / "r.rmf")
    assert rec.ancrfile is None and rec.backfile is None
    bare = write_pha(tmp_path / "bare.pha", [4, 5], keywords={"BACKSCAL": None, "AREASCAL": None},
                     channel_column=False)
    rec = ogip_pha.read_pha(bare)
    assert rec.backscal == 1.0 and rec.areascal == 1.0
    np.testing.assert_array_equal(rec.channels, [1, 2])
    np.testing.assert_array_equal(rec.quality, [0, 0])


@pytest.mark.parametrize("variable_length", [True, False])
def test_rmf_tlmin_zero_and_one_give_the_same_matrix(tmp_path, variable_length):
    lo, hi, e_min, e_max, dense = toy_grid()
    dense[5, :] = 0.0
    dense[5, [1, 2, 6, 9]] = [0.1, 0.2, 0.3, 0.4]  # three groups in one row
    dense[7, :] = 0.0                              # an empty row (N_GRP = 0)
    zero = ogip_response.read_rmf(write_rmf(tmp_path / "t0.rmf", lo, hi, e_min, e_max, dense, tlmin=0,
                                   variable_length=variable_length))
    one = ogip_response.read_rmf(write_rmf(tmp_path / "t1.rmf", lo, hi, e_min, e_max, dense, tlmin=1,
                                  variable_length=variable_length))
    missing = ogip_response.read_rmf(write_rmf(tmp_path / "tn.rmf", lo, hi, e_min, e_max, dense, tlmin=None,
                                      variable_length=variable_length))
    assert (zero.first_channel, one.first_channel, missing.first_channel) == (0, 1, 1)
    for rec in (zero, one, missing):
        np.testing.assert_allclose(rec.matrix.toarray(), dense, rtol=1e-6)
        assert rec.matrix.shape == dense.shape and not rec.includes_area
    np.testing.assert_array_equal(zero.ebounds_channels, np.arange(dense.shape[1]))


def test_rsp_file_flags_area(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid()
    rsp = ogip_response.read_rmf(write_rmf(tmp_path / "full.rsp", lo, hi, e_min, e_max, dense * 250.0,
                                  extname="SPECRESP MATRIX", hduclas3="FULL"))
    assert rsp.includes_area and rsp.extname == "SPECRESP MATRIX"
    no_class = ogip_response.read_rmf(write_rmf(tmp_path / "nc.rsp", lo, hi, e_min, e_max, dense * 250.0,
                                       hduclas3=None))
    assert no_class.includes_area  # rows sum to 250 > 1


# ---------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pha"
    for reader in (ogip_pha.read_pha, ogip_response.read_rmf, ogip_response.read_arf):
        with pytest.raises(FileNotFoundError, match="nope.pha"):
            reader(missing)


def test_not_fits_and_wrong_hdu(tmp_path):
    text = tmp_path / "text.pha"
    text.write_text("not a FITS file\n")
    with pytest.raises(ogip.OGIPError, match="text.pha"):
        ogip_pha.read_pha(text)
    events = write_pha(tmp_path / "events.fits", [1, 2], extname="EVENTS",
                       keywords={"HDUCLASS": None})
    with fits.open(events, mode="update") as hdul:
        hdul[1].header["HDUCLAS1"] = "EVENTS"
    with pytest.raises(ogip.OGIPError, match=r"events.fits.*SPECTRUM"):
        ogip_pha.read_pha(events)
    with pytest.raises(ogip.OGIPError, match=r"events.fits.*MATRIX"):
        ogip_response.read_rmf(events)
    with pytest.raises(ogip.OGIPError, match=r"events.fits.*SPECRESP"):
        ogip_response.read_arf(events)
    lo, hi, e_min, e_max, dense = toy_grid()
    no_eb = write_rmf(tmp_path / "noeb.rmf", lo, hi, e_min, e_max, dense, ebounds=False)
    with pytest.raises(ogip.OGIPError, match=r"noeb.rmf.*EBOUNDS"):
        ogip_response.read_rmf(no_eb)


@pytest.mark.parametrize("values, kwargs, message", [
    ([1, -2, 3], {}, "negative COUNTS"),
    ([0.1, np.nan, 0.3], {"column": "RATE"}, "non-finite"),
    ([1, 2], {"exposure": None}, "EXPOSURE"),
    ([1, 2], {"exposure": 0.0}, "EXPOSURE=0.0"),
    ([1, 2], {"quality": [0, 7]}, "QUALITY"),
    ([1, 2], {"grouping": [1, 3]}, "GROUPING"),
    ([1, 2], {"keywords": {"BACKSCAL": 0.0}}, "BACKSCAL"),
    ([1, 2], {"keywords": {"EXPOSURE": "long"}}, "EXPOSURE"),
])
def test_bad_spectra(tmp_path, values, kwargs, message):
    path = write_pha(tmp_path / "bad.pha", values, **kwargs)
    with pytest.raises(ogip.OGIPError, match=message) as info:
        ogip_pha.read_pha(path)
    assert "bad.pha" in str(info.value)


def test_missing_counts_column(tmp_path):
    path = write_pha(tmp_path / "nocounts.pha", [1, 2], column="FLUX")
    with pytest.raises(ogip.OGIPError, match=r"nocounts.pha.*COUNTS"):
        ogip_pha.read_pha(path)


def test_bad_rmf_and_arf(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid()
    order = np.arange(lo.size)
    order[[3, 4]] = [4, 3]
    with pytest.raises(ogip.OGIPError, match=r"nonmono.rmf.*monotonically"):
        ogip_response.read_rmf(write_rmf(tmp_path / "nonmono.rmf", lo[order], hi[order], e_min, e_max, dense))
    nan = dense.copy()
    nan[2, 3] = np.nan
    with pytest.raises(ogip.OGIPError, match=r"nan.rmf.*non-finite"):
        ogip_response.read_rmf(write_rmf(tmp_path / "nan.rmf", lo, hi, e_min, e_max, nan))
    # F_CHAN counted from 0 but no TLMIN: XSPEC assumes 1, so channel -1 is addressed.
    with fits.open(write_rmf(tmp_path / "t0.rmf", lo, hi, e_min, e_max, dense, tlmin=0)) as hdul:
        del hdul["MATRIX"].header["TLMIN4"]
        hdul.writeto(tmp_path / "notlmin.rmf")
    with pytest.raises(ogip.OGIPError, match=r"notlmin.rmf.*TLMIN"):
        ogip_response.read_rmf(tmp_path / "notlmin.rmf")
    area = np.full(lo.size, 10.0)
    area[1] = np.nan
    with pytest.raises(ogip.OGIPError, match=r"nan.arf.*SPECRESP"):
        ogip_response.read_arf(write_arf(tmp_path / "nan.arf", lo, hi, area))
    with pytest.raises(ogip.OGIPError, match=r"rev.arf.*monotonically"):
        ogip_response.read_arf(write_arf(tmp_path / "rev.arf", lo[::-1], hi[::-1], np.ones(lo.size)))


# ---------------------------------------------------------------- header keywords only

def test_header_keywords_and_observation_time(tmp_path):
    both = write_pha(tmp_path / "both.pha", [1, 2],
                     keywords={"TSTART": 100.0, "TSTOP": 150.0, "TELESCOP": "NICER"})
    assert ogip_pha.observation_time(f"{both}{{1}}") == 125.0  # row suffix ignored
    keys = ogip_pha.read_header_keywords(both, ("telescop", "TSTART", "OBJECT"))
    assert keys == {"TELESCOP": "NICER", "TSTART": 100.0}
    start_only = write_pha(tmp_path / "start.pha", [1, 2], keywords={"TSTART": 7.5})
    assert ogip_pha.observation_time(start_only) == 7.5
    none = write_pha(tmp_path / "none.pha", [1, 2])
    assert ogip_pha.observation_time(none) is None
    # Keywords only in the primary header are found there, SPECTRUM's winning when both have one.
    with fits.open(none) as hdul:
        hdul[0].header["TSTART"] = 10.0
        hdul[0].header["TSTOP"] = 20.0
        hdul[0].header["TELESCOP"] = "PRIMARY"
        hdul["SPECTRUM"].header["TELESCOP"] = "SWIFT"
        hdul.writeto(tmp_path / "primary.pha")
    assert ogip_pha.observation_time(tmp_path / "primary.pha") == 15.0
    assert ogip_pha.read_header_keywords(tmp_path / "primary.pha", ["TELESCOP"]) == {"TELESCOP": "SWIFT"}
    with pytest.raises(ogip.OGIPFileNotFoundError, match="absent.pha"):
        ogip_pha.observation_time(tmp_path / "absent.pha")
