"""The out-of-distribution check's principal components on many bins (an ungrouped spectrum).

Beyond :data:`~xspec_sbi.checks.ood.EXACT_SVD_MAX` bins the components come from a
seeded randomized range finder instead of a full SVD; checked here against the full
SVD (the second method) on spectra-like data: the components above the noise floor
agree to 1e-6 or better, and the check's verdicts on held-out and on shifted spectra are
those of the full SVD.
"""
import numpy as np
from scipy.stats import ks_2samp

from xspec_sbi.checks import ood
from xspec_sbi.checks.ood import EXACT_SVD_MAX, OODReference, leading_components


def _spectra(n, m, rng, line=0.0):
    """Counts of absorbed power laws on ``m`` bins, with ``line`` x the continuum at 1 keV."""
    e = np.geomspace(0.3, 10.0, m)                                  # keV
    g = rng.uniform(1.0, 3.0, n)[:, None]
    norm = 10 ** rng.uniform(0.0, 2.0, n)[:, None]
    nh = rng.uniform(0.0, 1.0, n)[:, None]
    bump = 1.0 + line * np.exp(-0.5 * ((e - 1.0) / 0.05) ** 2)
    return rng.poisson(5.0 * norm * e ** -g * np.exp(-nh / e ** 2) * bump).astype(float)


def test_components_above_the_noise_match_the_full_svd():
    rng = np.random.default_rng(1)
    x = np.log1p(_spectra(800, EXACT_SVD_MAX + 100, rng))
    z = (x - x.mean(0)) / x.std(0)
    _, s0, v0 = np.linalg.svd(z, full_matrices=False)
    s1, v1 = leading_components(z, 10)
    assert s1.shape[0] >= 10 and v1.shape == (s1.shape[0], z.shape[1])
    # components separated from the next by a gap (the physical ones, not the noise floor)
    clear = [i for i in range(9) if s0[i] > 1.5 * s0[i + 1] and (i == 0 or s0[i - 1] > 1.5 * s0[i])]
    assert len(clear) >= 3, s0[:10] / s0[0]
    np.testing.assert_allclose(s1[clear], s0[clear], rtol=1e-6)
    assert np.all(np.abs(np.sum(v1[clear] * v0[clear], axis=1)) > 1 - 1e-6)
    # seeded: the same matrix gives the same components
    s2, v2 = leading_components(z, 10)
    assert np.array_equal(s1, s2) and np.array_equal(v1, v2)


def test_the_verdicts_are_those_of_the_full_svd(monkeypatch):
    rng = np.random.default_rng(2)
    m = EXACT_SVD_MAX + 100
    train = _spectra(1000, m, rng)
    held_out = _spectra(200, m, rng)
    shifted = _spectra(50, m, rng, line=30.0)               # a line the training set lacks
    fast = OODReference.fit(train)
    monkeypatch.setattr(ood, "EXACT_SVD_MAX", 10 * m)
    full = OODReference.fit(train)
    for ref in (fast, full):
        assert ref.components.shape == (m, 10)
    flags = lambda ref, xs: np.array([ref.check(x).flagged_shape for x in xs])  # noqa: E731
    q = lambda ref, xs: np.array([ref.check(x).shape_quantile for x in xs])     # noqa: E731
    # held-out spectra of the training distribution: hardly flagged, their distance quantiles
    # alike in distribution (one spectrum's quantile is not comparable: components 6-10 lie
    # on the noise floor, where any two methods, or two training sets, pick other directions)
    for ref in (fast, full):
        assert flags(ref, held_out).mean() <= 0.02
    assert ks_2samp(q(fast, held_out), q(full, held_out)).pvalue > 0.01
    assert flags(fast, shifted).all() and flags(full, shifted).all()
