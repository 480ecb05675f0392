"""Tests of the Goodman-Weare chain (xspec_sbi.baseline.mcmc) and XSPEC chain files."""
import os

import numpy as np
import pytest
from astropy.io import fits

from xspec_sbi.baseline.chainfile import (ChainFileError, chain_column_name, read_chain_file,
                                 write_chain_file)
from xspec_sbi.baseline.mcmc import (ChainConfigError, ChainResult, initial_walkers, log_prior,
                            run_chain)

MEAN = np.array([1.5, -0.5])
SD = np.array([0.4, 0.2])
RHO = 0.6
COV = np.array([[SD[0] ** 2, RHO * SD[0] * SD[1]], [RHO * SD[0] * SD[1], SD[1] ** 2]])
PREC = np.linalg.inv(COV)
LOWER = np.array([-5.0, -5.0])
UPPER = np.array([5.0, 5.0])


def gaussian_stat(theta):
    """C = -2 ln L for a correlated 2-D Gaussian likelihood."""
    d = theta - MEAN
    return np.einsum("ni,ij,nj->n", d, PREC, d)


@pytest.fixture(scope="module")
def gaussian_chain():
    return run_chain(gaussian_stat, MEAN + 0.1, LOWER, UPPER, names=["a", "b"],
                     burn=2000, length=24000, seed=42)


def test_chain_recovers_gaussian_mean_sd_and_correlation(gaussian_chain):
    r = gaussian_chain
    assert isinstance(r, ChainResult)
    assert r.samples.shape == (24000, 2) and r.stat.shape == (24000,)
    assert r.walkers == 8 and r.names == ("a", "b")
    np.testing.assert_allclose(r.samples.mean(axis=0), MEAN, atol=0.15 * SD.max())
    np.testing.assert_allclose(r.samples.std(axis=0), SD, rtol=0.1)
    assert np.corrcoef(r.samples.T)[0, 1] == pytest.approx(RHO, abs=0.08)
    assert 0.2 < r.acceptance_fraction.mean() < 0.9


def test_chain_stat_column_is_the_statistic_of_each_sample(gaussian_chain):
    r = gaussian_chain
    np.testing.assert_allclose(r.stat, gaussian_stat(np.asarray(r.samples)), rtol=1e-12, atol=1e-12)
    assert r.walker_chains().shape == (3000, 8, 2)
    np.testing.assert_array_equal(r.walker_chains()[1, 3], r.samples[8 + 3])


def test_chain_is_deterministic_with_seed():
    kw = dict(burn=80, length=400, seed=7)
    a = run_chain(gaussian_stat, MEAN, LOWER, UPPER, **kw)
    b = run_chain(gaussian_stat, MEAN, LOWER, UPPER, **kw)
    c = run_chain(gaussian_stat, MEAN, LOWER, UPPER, burn=80, length=400, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.stat, b.stat)
    assert not np.array_equal(a.samples, c.samples)


def test_uniform_and_log_uniform_priors_on_flat_likelihood():
    def flat(theta):
        return np.zeros(len(theta))

    kw = dict(burn=800, length=16000, seed=3)
    uni = run_chain(flat, [10.0], [1.0], [100.0], **kw)
    logu = run_chain(flat, [10.0], [1.0], [100.0], log_uniform=[True], **kw)
    assert np.all((uni.samples >= 1.0) & (uni.samples <= 100.0))
    # Uniform on [1, 100]: mean 50.5, sd 28.6. Log-uniform: ln x uniform on [0, ln 100].
    assert uni.samples.mean() == pytest.approx(50.5, abs=4.0)
    assert np.log(logu.samples).mean() == pytest.approx(np.log(100.0) / 2, abs=0.25)
    assert logu.log_uniform == (True,)


def test_log_prior_values():
    lp = log_prior([[2.0, 5.0], [0.5, 5.0]], [1.0, 0.0], [4.0, 10.0], [True, False])
    assert lp[0] == pytest.approx(-np.log(2.0) - np.log(np.log(4.0)) - np.log(10.0))
    assert lp[1] == -np.inf


def test_xspec_length_counting_and_burn():
    r = run_chain(gaussian_stat, MEAN, LOWER, UPPER, burn=16, length=64, seed=1)
    assert r.samples.shape == (64, 2) and r.burn == 16 and r.length == 64
    # burn = 0: the initial ensemble is the first step, kept in the chain.
    init = initial_walkers(MEAN, LOWER, UPPER, 8, np.random.default_rng(5),
                           deltas=[0.01, 0.01])
    assert init.shape == (8, 2)
    assert np.all(np.abs(init - MEAN) <= 0.1 + 1e-12)  # XSPEC: within ten deltas


def test_initial_walkers_from_covariance_stay_inside_bounds():
    rng = np.random.default_rng(0)
    init = initial_walkers([0.05], [0.0], [1.0], 200, rng, covariance=[[0.01]])
    assert np.all((init >= 0.0) & (init <= 1.0))
    assert init.std() > 0.03  # spread like the covariance, not collapsed


def test_walker_rules():
    five_d = np.zeros(5)
    lo, hi = -np.ones(5), np.ones(5)
    with pytest.warns(UserWarning, match="at least 10 walkers"):
        r = run_chain(lambda t: np.sum(t**2, axis=1), five_d, lo, hi, burn=0, length=50, seed=0)
    assert r.walkers == 10 and r.length == 50
    with pytest.raises(ChainConfigError, match="too few"):
        run_chain(gaussian_stat, MEAN, LOWER, UPPER, walkers=2, length=10)
    with pytest.raises(ChainConfigError, match="even"):
        run_chain(gaussian_stat, MEAN, LOWER, UPPER, walkers=7, length=70)
    with pytest.raises(ChainConfigError, match="multiple of walkers"):
        run_chain(gaussian_stat, MEAN, LOWER, UPPER, length=100)
    with pytest.raises(ChainConfigError, match="lower limit > 0"):
        run_chain(gaussian_stat, MEAN, LOWER, UPPER, length=80, log_uniform=[True, False])
    with pytest.raises(ChainConfigError, match="outside the hard limits"):
        run_chain(gaussian_stat, [9.0, 0.0], LOWER, UPPER, length=80)


# --- XSPEC chain files ----------------------------------------------------------

def test_chain_file_round_trip_and_layout(tmp_path, gaussian_chain):
    r = gaussian_chain
    path = tmp_path / "chain.fits"
    write_chain_file(path, r.samples, r.stat, names=["TBabs.nH", "PhoIndex"], indices=[1, 2],
                     units=["10^22", ""], walkers=r.walkers, burn=r.burn)
    back = read_chain_file(path)
    np.testing.assert_array_equal(back.samples, r.samples)
    np.testing.assert_array_equal(back.stat, r.stat)
    assert back.names == ("nH", "PhoIndex") and back.indices == (1, 2)
    assert back.units == ("10^22", "") and back.walkers == 8
    assert back.chain_type == "GoodmanWeare" and back.statistic == "C-Statistic"
    # The raw layout XSPEC's FITSChain reader checks.
    with fits.open(path) as hdul:
        hdu = hdul["CHAIN"]
        assert [c.name for c in hdu.columns] == ["nH__1", "PhoIndex__2", "FIT_STATISTIC"]
        assert all(hdu.header[f"TFORM{i}"] == "D" for i in (1, 2, 3))
        assert hdu.header["CHAINTYP"] == "GoodmanWeare" and hdu.header["NWALKERS"] == 8
        assert hdu.header["NAXIS2"] == r.length
    assert sorted(os.listdir(tmp_path)) == ["chain.fits"]  # no temporary left behind


def test_chain_file_refuses_overwrite_and_replaces_on_request(tmp_path):
    path = tmp_path / "c.fits"
    samples = np.arange(8.0).reshape(4, 2)
    write_chain_file(path, samples, np.ones(4), names=["a", "b"], indices=[1, 2], walkers=2)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_chain_file(path, samples, np.ones(4), names=["a", "b"], indices=[1, 2], walkers=2)
    write_chain_file(path, samples * 2, np.zeros(4), names=["a", "b"], indices=[1, 2], walkers=2,
                     overwrite=True)
    np.testing.assert_array_equal(read_chain_file(path).samples, samples * 2)


def test_chain_file_model_names_and_bad_files(tmp_path):
    assert chain_column_name("powerlaw.norm", 5, "m2") == "norm__m2__5"
    path = tmp_path / "named.fits"
    write_chain_file(path, np.ones((2, 1)), np.ones(2), names=["norm"], indices=[5],
                     model_names=["m2"], walkers=2)
    back = read_chain_file(path)
    assert back.model_names == ("m2",) and back.indices == (5,)
    assert back.column_names == ("norm__m2__5",)

    plain = tmp_path / "plain.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="x", format="D", array=np.ones(2))], name="OTHER")]).writeto(plain)
    with pytest.raises(ChainFileError, match="plain.fits.*CHAIN"):
        read_chain_file(plain)
    badlabel = tmp_path / "badlabel.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="nH", format="D", array=np.ones(2)),
         fits.Column(name="FIT_STATISTIC", format="D", array=np.ones(2))], name="CHAIN")]
    ).writeto(badlabel)
    with pytest.raises(ChainFileError, match="column 1 label"):
        read_chain_file(badlabel)
    with pytest.raises(FileNotFoundError):
        read_chain_file(tmp_path / "missing.fits")
    with pytest.raises(ChainFileError, match="multiple of walkers"):
        write_chain_file(tmp_path / "w.fits", np.ones((3, 1)), np.ones(3), names=["a"],
                         indices=[1], walkers=2)


def test_default_walkers_follow_xspec_and_grow_with_the_free_parameters():
    from xspec_sbi.baseline.mcmc import resolve_walkers
    assert resolve_walkers(None, 5000, 50000, 3) == (8, 5000, 50000)
    # five free parameters (tbabs*(powerlaw+bbodyrad)) need ten walkers; counts stay multiples
    with pytest.warns(UserWarning, match="10 walkers"):
        assert resolve_walkers(None, 5000, 50000, 5) == (10, 5000, 50000)
    with pytest.warns(UserWarning):
        assert resolve_walkers(None, 5004, 50004, 6) == (12, 5004, 50004)
