"""Tests of Spectrum: XSPEC grouping/quality rules, ignore/notice, backgrounds, loading."""
from __future__ import annotations

import numpy as np
import pytest

from ogip_testfiles import toy_grid, write_pha, write_pha_type2, write_rmf
from xspec_sbi.data import ogip_pha, ogip_response
from xspec_sbi.data.grouping import xspec_bin_index
from xspec_sbi.data.response import Response, nicer_like_response
from xspec_sbi.data.spectrum import Spectrum, SpectrumError, load_spectrum

XMM = "xmm_pn_ngc7793_ulx4"
SWIFT = "swift_xrt_grb110731a"
NICER = "nicer_4u1820"


# ------------------------------------------------------------ XSPEC grouping

@pytest.mark.parametrize("grouping, quality, expected", [
    # plain grouping
    ([1, -1, -1, 1, -1], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]),
    # leading quality-1 channels dropped; first good channel forced to start a bin
    ([1, -1, -1, 1, -1], [1, 1, 0, 0, 0], [-1, -1, 0, 1, 1]),
    # a quality-1 channel flagged +1 does not start a bin: the next -1 joins the bin before
    ([1, -1, 1, -1], [0, 0, 1, 0], [0, 0, -1, 0]),
    # a dubious run inside a group gets its own bin, and so does what follows it
    ([1, -1, -1, -1, -1, -1], [0, 0, 2, 2, 0, 0], [0, 0, 1, 1, 2, 2]),
    # runs of 5 then 0 then 2 (the Swift file's layout), grouping kept inside runs
    ([1, 1, -1, -1, 1, -1, -1, 1], [5, 5, 5, 0, 0, 0, 2, 2], [0, 1, 1, 2, 3, 3, 4, 5]),
    # quality-1 channels inside a bad-by-user run stay out, the run continues
    ([1, -1, -1, -1], [5, 1, 5, 0], [0, -1, 0, 1]),
])
def test_xspec_bin_index_rules(grouping, quality, expected):
    np.testing.assert_array_equal(xspec_bin_index(np.array(grouping), np.array(quality)), expected)


def test_spectrum_from_arrays():
    spec = Spectrum(counts=[3, 0, 5, 2], exposure=10.0)
    assert spec.n_bins == 4 and spec.path is None and spec.response is None
    np.testing.assert_array_equal(spec.channels, [1, 2, 3, 4])
    np.testing.assert_array_equal(spec.binning_matrix().toarray(), np.eye(4))
    grouped = Spectrum(counts=[3, 0, 5, 2], exposure=10.0, grouping=[1, -1, 1, -1], quality=[0, 0, 0, 5])
    # the quality-5 channel leaves the good group it was flagged into (XSPEC's patch)
    np.testing.assert_array_equal(grouped.binned_counts(), [3, 5, 2])
    np.testing.assert_array_equal(grouped.bin_quality, [0, 0, 5])
    np.testing.assert_array_equal(grouped.ignore("bad").binned_counts(), [3, 5])
    simulated = grouped.with_counts([1, 1, 1, 1])
    np.testing.assert_array_equal(simulated.binned_counts(), [2, 1, 1])


@pytest.mark.parametrize("kwargs, message", [
    ({"counts": [1, -1], "exposure": 1.0}, "negative counts"),
    ({"counts": [1, np.nan], "exposure": 1.0}, "non-finite"),
    ({"counts": [1, 2], "exposure": 0.0}, "exposure"),
    ({"counts": [1, 2], "exposure": 1.0, "grouping": [1, 0]}, "grouping"),
    ({"counts": [1, 2], "exposure": 1.0, "quality": [1, 1]}, "quality 1"),
    ({"counts": [1, 2], "exposure": 1.0, "noticed": [True]}, "noticed"),
    ({"counts": [1, 2], "exposure": 1.0, "backscal": [1.0, 0.0]}, "BACKSCAL"),
    ({"counts": [1, 2], "exposure": 1.0, "areascal": [1.0]}, "AREASCAL"),
])
def test_spectrum_validation(kwargs, message):
    with pytest.raises(SpectrumError, match=message):
        Spectrum(**kwargs)


def test_selection_errors():
    spec = Spectrum(counts=np.ones(10), exposure=1.0)
    for bad, message in (("0-5", "from 1"), ("1:1-5", "prefix"), ("foo", "parse"), ("", "empty"),
                         ("2-", "parse")):
        with pytest.raises(SpectrumError, match=message):
            spec.ignore(bad)
    with pytest.raises(SpectrumError, match="notice bad"):
        spec.notice("bad")
    with pytest.raises(SpectrumError, match="response"):
        spec.ignore("**-0.5")


def test_channel_selection_counts_bins_from_one():
    spec = Spectrum(counts=np.arange(8.0), exposure=1.0, grouping=[1, -1, 1, 1, -1, -1, 1, -1])
    assert spec.n_bins_all == 4
    np.testing.assert_array_equal(spec.ignore("1").noticed, [False, True, True, True])
    np.testing.assert_array_equal(spec.ignore("2-3").noticed, [True, False, False, True])
    np.testing.assert_array_equal(spec.ignore("**-2,4").noticed, [False, False, True, False])
    np.testing.assert_array_equal(spec.ignore("3-**").noticed, [True, True, False, False])
    np.testing.assert_array_equal(spec.ignore("3-1").noticed, [False, False, False, True])
    np.testing.assert_array_equal(spec.ignore("2-999").noticed, [True, False, False, False])
    np.testing.assert_array_equal(spec.ignore("all").notice("2").noticed, [False, True, False, False])
    assert spec.ignore("1-4").notice("all").n_bins == 4
    np.testing.assert_array_equal(spec.ignore("4").binned_counts(), [1, 2, 3 + 4 + 5])


def test_binned_scales_follow_xspec_averaging():
    counts = np.array([4.0, 0.0, 6.0, 0.0, 0.0])
    backscal = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    spec = Spectrum(counts=counts, exposure=1.0, grouping=[1, -1, -1, 1, -1], backscal=backscal)
    # counts-weighted harmonic mean; plain harmonic mean in an empty bin
    expected = [10.0 / (4.0 / 1.0 + 6.0 / 3.0), 2.0 / (1.0 / 4.0 + 1.0 / 5.0)]
    np.testing.assert_allclose(spec.binned_backscal(), expected, rtol=1e-14)
    np.testing.assert_allclose(spec.binned_areascal(), [1.0, 1.0])
    net = Spectrum(counts=counts, exposure=1.0, grouping=[1, -1, -1, 1, -1], backscal=backscal,
                   spectrum_type="NET")
    np.testing.assert_allclose(net.binned_backscal(), [2.0, 4.5])


def test_background_from_arrays():
    bkg = Spectrum(counts=[2, 4, 6, 8], exposure=50.0, backscal=4.0, areascal=[1.0, 1.0, 2.0, 2.0],
                   grouping=[1, 1, 1, 1])
    src = Spectrum(counts=[1, 1, 1, 1], exposure=10.0, backscal=1.0, grouping=[1, -1, 1, -1],
                   background=bkg)
    np.testing.assert_array_equal(src.binned_background_counts(), [6, 14])
    bkg_area = [1.0, 14.0 / (6.0 / 2.0 + 8.0 / 2.0)]
    np.testing.assert_allclose(src.background_scale(), [10.0 / (50.0 * 4.0 * a) for a in bkg_area])
    ignored = src.ignore("1")
    np.testing.assert_array_equal(ignored.binned_background_counts(), [14])
    assert ignored.background_scale().shape == (1,)
    with pytest.raises(SpectrumError, match="background"):
        Spectrum(counts=[1, 1, 1], exposure=1.0, background=bkg)
    with pytest.raises(SpectrumError, match="no background"):
        Spectrum(counts=[1, 1], exposure=1.0).background_scale()


# ------------------------------------------------------------ real data sets

def _expected_bins(grouping, quality, good_slices):
    """Channel ranges of the grouped bins for files whose bad channels form a few runs.

    ``good_slices`` lists (start, stop, quality) runs covering every channel
    that is not quality 1; each run starts a bin (XSPEC patches the grouping so).
    """
    starts = []
    for start, stop, _ in good_slices:
        starts.append(start)
        starts.extend(start + 1 + np.flatnonzero(grouping[start + 1:stop] == 1))
    bins = []
    for k, first in enumerate(starts):
        run_stop = next(stop for start, stop, _ in good_slices if start <= first < stop)
        nxt = starts[k + 1] if k + 1 < len(starts) else run_stop
        bins.append((first, min(nxt, run_stop) - 1))
    return bins


def _energy_selection(lo, hi, low_cut, high_cut):
    """Bins kept by ``ignore **-low_cut high_cut-**`` under XSPEC's rule, written per bin."""
    keep = []
    for j in range(len(hi)):
        ignored_low = j == 0 or hi[j - 1] < low_cut   # up to the bin containing low_cut
        ignored_high = hi[j] >= high_cut               # from the bin containing high_cut
        keep.append(not ignored_low and not ignored_high)
    return np.array(keep)


@pytest.fixture(scope="module")
def swift(shared_data):
    return load_spectrum(shared_data / SWIFT / "grb110731a_src.pha")


@pytest.fixture(scope="module")
def xmm(shared_data):
    return load_spectrum(shared_data / XMM / "PN.pha")


@pytest.fixture(scope="module")
def nicer_response(shared_data):
    return nicer_like_response(shared_data / NICER / "pre_burst_Tint200_raw.arf")


def test_swift_grouping_quality_and_selection(swift):
    q, g = swift.quality, swift.grouping
    runs = [(0, 30, 5), (30, 719, 0), (719, 1024, 2)]
    for start, stop, quality in runs:
        assert np.all(q[start:stop] == quality)
    bins = _expected_bins(g, q, runs)
    assert swift.n_bins_all == len(bins) == 350
    first, last = swift.bin_channels()
    np.testing.assert_array_equal(first, [b[0] for b in bins])
    np.testing.assert_array_equal(last, [b[1] for b in bins])
    np.testing.assert_array_equal(swift.binned_counts(),
                                  [swift.counts[a:b + 1].sum() for a, b in bins])
    assert swift.counts.sum() == 956 and swift.binned_counts().sum() == 956

    run_quality = np.array([next(rq for s, e, rq in runs if s <= a < e) for a, _ in bins])
    np.testing.assert_array_equal(swift.bin_quality, run_quality)
    good = swift.ignore("bad")
    assert good.n_bins == int(np.sum(run_quality == 0)) == 44

    rmf = ogip_response.read_rmf(swift.response.rmf_path)
    lo = np.array([rmf.e_min[a] for a, _ in bins])
    hi = np.array([rmf.e_max[b] for _, b in bins])
    both = good.ignore("**-0.3 10.-**")
    np.testing.assert_array_equal(both.noticed, (run_quality == 0) & _energy_selection(lo, hi, 0.3, 10.0))
    blo, bhi = both.bin_energies()
    np.testing.assert_array_equal(blo, lo[both.noticed])
    np.testing.assert_array_equal(bhi, hi[both.noticed])
    # comma-separated form and order of tokens do not matter
    np.testing.assert_array_equal(swift.ignore("10.-**,bad **-0.3").noticed, both.noticed)


def test_swift_background(swift, shared_data):
    bkg_rec = ogip_pha.read_pha(shared_data / SWIFT / "test_grb110731_bkg.pha")
    assert swift.background.counts.sum() == bkg_rec.counts.sum() == 10553
    spec = swift.ignore("bad").ignore("**-0.5 8.0-**")
    # independent: sum background channels over the source's noticed bins
    first, last = spec.bin_channels()
    offset = spec.channels[0]
    expected = [bkg_rec.counts[a - offset:b - offset + 1].sum() for a, b in zip(first, last)]
    np.testing.assert_array_equal(spec.binned_background_counts(), expected)
    ratio = (49.91755 * 9.5e-05 * 1.0) / (572.1246273263523 * 0.999999 * 1.0)
    np.testing.assert_allclose(spec.background_scale(), ratio, rtol=1e-12)
    assert spec.background_scale().shape == (spec.n_bins,)


def test_xmm_grouping_selection_and_background(xmm, shared_data):
    q, g = xmm.quality, xmm.grouping
    assert np.all(q[:20] == 1) and np.all(q[20:3000] == 0) and np.all(q[3000:] == 1)
    bins = _expected_bins(g, q, [(20, 3000, 0)])
    assert xmm.n_bins_all == len(bins)
    np.testing.assert_array_equal(xmm.binned_counts(), [xmm.counts[a:b + 1].sum() for a, b in bins])
    assert xmm.counts.sum() == 11_526
    assert xmm.binned_counts().sum() == 11_526 - xmm.counts[q == 1].sum()

    resp = xmm.response
    assert resp.arf_path.endswith("PN.arf") and resp.matrix.shape == (2067, 4096)
    lo = resp.e_min[[a for a, _ in bins]]
    hi = resp.e_max[[b for _, b in bins]]
    cut = xmm.ignore("**-0.5 10.-**")
    np.testing.assert_array_equal(cut.noticed, _energy_selection(lo, hi, 0.5, 10.0))
    band = xmm.ignore("all").notice("0.5-2.0")
    expected_band = np.array([hi[j] >= 0.5 and (j == 0 or hi[j - 1] < 2.0) for j in range(len(hi))])
    np.testing.assert_array_equal(band.noticed, expected_band)

    assert xmm.background.counts.sum() == 1213
    np.testing.assert_allclose(cut.background_scale(), 2010100.0 / 6866200.0, rtol=1e-12)
    matrix = cut.binning_matrix()
    assert matrix.shape == (cut.n_bins, 4096)
    np.testing.assert_array_equal(cut.binned_background_counts(), matrix @ xmm.background.counts)


@pytest.mark.parametrize("name, total, exposure", [
    ("pre_burst_spectrum_opt.pha", 224_630, 124.6598),
    ("b_004_0.25s_raw_opt.pha", 578, 0.25),
    ("b_008_0.25s_raw_opt.pha", 3_932, 0.25),
])
def test_nicer_spectra_with_nicer_like_response(shared_data, nicer_response, name, total, exposure):
    path = shared_data / NICER / name
    with pytest.raises(FileNotFoundError, match="RESPFILE"):
        load_spectrum(path)  # the NICER RMFs are not in the data set
    spec = load_spectrum(path, respfile="none").with_response(nicer_response)
    assert spec.counts.sum() == total and spec.exposure == pytest.approx(exposure)
    assert spec.background is None
    q, g = spec.quality, spec.grouping
    assert np.all(q[:22] == 1) and np.all(q[22:] == 0)
    bins = _expected_bins(g, q, [(22, 1501, 0)])
    assert spec.n_bins_all == len(bins)
    assert spec.binned_counts().sum() == total - spec.counts[:22].sum()
    lo = nicer_response.e_min[[a for a, _ in bins]]
    hi = nicer_response.e_max[[b for _, b in bins]]
    cut = spec.ignore("**-0.3 10.-**")
    np.testing.assert_array_equal(cut.noticed, _energy_selection(lo, hi, 0.3, 10.0))
    first10 = spec.ignore("1-10")
    assert first10.n_bins == spec.n_bins_all - 10 and not first10.noticed[:10].any()


# ----------------------------------------------------------------- loading

def test_load_overrides(shared_data):
    pha = shared_data / XMM / "PN.pha"
    bare = load_spectrum(pha, respfile="NONE", backfile="none")
    assert bare.response is None and bare.background is None
    no_arf = load_spectrum(pha, ancrfile="none", backfile="")
    assert no_arf.response.arf is None and no_arf.background is None
    explicit = load_spectrum(pha, respfile=shared_data / XMM / "PN.rmf",
                             backfile=shared_data / XMM / "PNbackground_spectrum.fits")
    assert explicit.response.rmf_path == str(shared_data / XMM / "PN.rmf")
    assert explicit.background.exposure == pytest.approx(20_265.98058616)
    with pytest.raises(SpectrumError, match="no response"):
        load_spectrum(pha, respfile="none", ancrfile=shared_data / XMM / "PN.arf")
    with pytest.raises(FileNotFoundError, match="missing.rmf"):
        load_spectrum(pha, respfile=shared_data / XMM / "missing.rmf")


def test_channel_count_mismatch_names_files(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid(n_chan=12)
    rmf = write_rmf(tmp_path / "twelve.rmf", lo, hi, e_min, e_max, dense)
    pha = write_pha(tmp_path / "ten.pha", np.ones(10, dtype=int), keywords={"RESPFILE": "twelve.rmf"})
    with pytest.raises(SpectrumError) as info:
        load_spectrum(pha)
    assert "ten.pha" in str(info.value) and "twelve.rmf" in str(info.value)
    assert "10 channels" in str(info.value) and "12" in str(info.value)
    assert rmf.exists()


def test_type2_and_rate_files_through_load_spectrum(tmp_path):
    lo, hi, e_min, e_max, dense = toy_grid(n_chan=4)
    write_rmf(tmp_path / "four.rmf", lo, hi, e_min, e_max, dense)
    counts = np.array([[1, 2, 3, 4], [10, 20, 30, 40]])
    write_pha_type2(tmp_path / "bkg2.pha", counts * 3, [100.0, 200.0], [2.0, 4.0])
    src = write_pha_type2(tmp_path / "src2.pha", counts, [10.0, 20.0], [1.0, 1.0],
                          keywords={"RESPFILE": "four.rmf", "BACKFILE": "bkg2.pha"})
    spec = load_spectrum(f"{src}{{2}}")
    np.testing.assert_array_equal(spec.counts, counts[1])
    assert spec.row == 2 and spec.exposure == 20.0 and spec.response.n_channels == 4
    # the type II background follows the source row, as in XSPEC
    np.testing.assert_array_equal(spec.background.counts, counts[1] * 3)
    np.testing.assert_allclose(spec.background_scale(), (20.0 * 1.0) / (200.0 * 4.0))
    assert load_spectrum(src, row=1).background.exposure == 100.0

    rate = write_pha(tmp_path / "rate.pha", np.array([2.0, 0.0, 5.0, 1.0]) / 8.0, column="RATE",
                     exposure=8.0, keywords={"RESPFILE": "four.rmf"})
    spec = load_spectrum(rate)
    np.testing.assert_array_equal(spec.counts, [2, 0, 5, 1])
    assert isinstance(spec.response, Response) and spec.channels[0] == 1
    lo_e, hi_e = spec.bin_energies()
    np.testing.assert_allclose(lo_e, e_min, rtol=1e-6)
    np.testing.assert_allclose(hi_e, e_max, rtol=1e-6)
