"""Priors: construction from parameter specs, Table 1, sampling, density, bounded map, truncation."""
import numpy as np
import pytest
import torch
from scipy import stats

from xspec_sbi.model.parameters import ParameterSpec
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior, PriorError, build_prior
from xspec_sbi.inference.truncation import truncate
from xspec_sbi.presets.table1 import table1_frozen, table1_prior


def spec(name, index, value, mn, bot, top, mx, frozen=False, unit=""):
    return ParameterSpec(name, index, unit, value, 0.01, mn, bot, top, mx, frozen)


# XSPEC's model.dat values for tbabs*(powerlaw+bbodyrad).
MODEL2 = [
    spec("TBabs.nH", 1, 1.0, 0.0, 0.0, 1e5, 1e6, unit="10^22"),
    spec("powerlaw.PhoIndex", 2, 1.0, -3.0, -2.0, 9.0, 10.0),
    spec("powerlaw.norm", 3, 1.0, 0.0, 0.0, 1e20, 1e24),
    spec("bbodyrad.kT", 4, 3.0, 1e-3, 1e-2, 100.0, 200.0, unit="keV"),
    spec("bbodyrad.norm", 5, 1.0, 0.0, 0.0, 1e20, 1e24),
]


def test_default_range_is_soft_limits_and_frozen_left_out():
    params = list(MODEL2)
    params[0] = spec("TBabs.nH", 1, 0.2, 0.0, 0.0, 1e5, 1e6, frozen=True)
    prior = build_prior(params)
    assert prior.names == ("powerlaw.PhoIndex", "powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm")
    np.testing.assert_array_equal(prior.lower, [-2.0, 0.0, 1e-2, 0.0])
    np.testing.assert_array_equal(prior.upper, [9.0, 1e20, 100.0, 1e20])
    assert not prior.is_log.any()


def test_override_by_name_and_kind_string():
    prior = build_prior(MODEL2, {"powerlaw.norm": ("log", 0.01, 100), "bbodyrad.kT": "log",
                                 "TBabs.nH": ("uniform", 0.1, 0.3)})
    p = dict(zip(prior.names, prior.parameters))
    assert (p["powerlaw.norm"].kind, p["powerlaw.norm"].lower, p["powerlaw.norm"].upper) == ("log", 0.01, 100.0)
    assert (p["bbodyrad.kT"].kind, p["bbodyrad.kT"].lower, p["bbodyrad.kT"].upper) == ("log", 1e-2, 100.0)
    assert p["TBabs.nH"].unit == "10^22"


@pytest.mark.parametrize("overrides, fragment", [
    ({"powerlaw.Norm": ("log", 0.01, 100)}, "'powerlaw.Norm'"),
    ({"powerlaw.norm": ("uniform", 5.0, 5.0)}, "'powerlaw.norm'"),
    ({"powerlaw.norm": ("uniform", 5.0, 1.0)}, "'powerlaw.norm'"),
    ({"powerlaw.norm": ("log", 0.0, 10.0)}, "'powerlaw.norm'"),
    ({"powerlaw.norm": "log"}, "'powerlaw.norm'"),            # soft bottom is 0
    ({"powerlaw.norm": ("gauss", 1.0, 0.0)}, "'powerlaw.norm'"),          # sigma must be > 0
    ({"powerlaw.norm": ("log", 1.0)}, "'powerlaw.norm'"),
    ({"powerlaw.PhoIndex": ("uniform", -5.0, 2.0)}, "hard limits"),
])
def test_bad_overrides_name_the_parameter(overrides, fragment):
    with pytest.raises(PriorError, match=fragment.replace(".", r"\.")):
        build_prior(MODEL2, overrides)


def test_override_of_frozen_parameter_is_refused():
    params = [spec("TBabs.nH", 1, 0.2, 0.0, 0.0, 1e5, 1e6, frozen=True)] + MODEL2[1:]
    with pytest.raises(PriorError, match="TBabs.nH.*frozen"):
        build_prior(params, {"TBabs.nH": ("uniform", 0.1, 0.3)})


def test_table1_setups():
    m1 = build_prior(MODEL2[:3], table1_prior(1))
    np.testing.assert_allclose(m1.lower, [0.1, 0.5, 0.01])
    np.testing.assert_allclose(m1.upper, [0.3, 2.5, 100.0])
    assert list(m1.is_log) == [False, False, True]
    m2 = build_prior(MODEL2, table1_prior(2, norm="uniform"))
    np.testing.assert_allclose(m2.lower, [0.15, 1.0, 0.01, 0.3, 1.0])
    np.testing.assert_allclose(m2.upper, [0.35, 3.0, 10.0, 3.0, 1e5])
    assert not m2.is_log.any()
    frozen = table1_frozen(3)
    assert frozen == {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}
    params3 = [spec(p.name, p.index, frozen.get(p.name, p.value), p.min, p.bot, p.top, p.max,
                    frozen=p.name in frozen) for p in MODEL2]
    m3 = build_prior(params3, table1_prior(3))
    assert m3.names == ("powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm")
    np.testing.assert_allclose(m3.lower, [0.1, 0.1, 0.1])
    np.testing.assert_allclose(m3.upper, [10.0, 4.5, 1e5])
    with pytest.raises(PriorError, match="model_number"):
        table1_prior(4)


PRIOR = BoxPrior((ParameterPrior("a", "uniform", -1.0, 3.0), ParameterPrior("b", "log", 0.01, 100.0)))


def test_sampling_is_seeded_and_has_the_right_law():
    s1, s2 = PRIOR.sample(4000, rng=3), PRIOR.sample(4000, rng=3)
    np.testing.assert_array_equal(s1, s2)
    assert PRIOR.contains(s1).all()
    assert stats.kstest(s1[:, 0], stats.uniform(-1, 4).cdf).pvalue > 1e-3
    assert stats.kstest(np.log10(s1[:, 1]), stats.uniform(-2, 4).cdf).pvalue > 1e-3


def test_log_prob_normalised_by_quadrature_and_minus_inf_outside():
    a = np.linspace(-1, 3, 2001)
    b = np.geomspace(0.01, 100, 200001)
    lp_a = PRIOR.log_prob(np.column_stack([a, np.full_like(a, 1.0)]))
    lp_b = PRIOR.log_prob(np.column_stack([np.zeros_like(b), b]))
    # Marginal of b: exp(lp) / p_a(0), p_a = 1/4 uniform.
    assert np.trapezoid(np.exp(lp_a) / np.exp(lp_a[0]) / 4.0, a) == pytest.approx(1.0, rel=1e-6)
    assert np.trapezoid(np.exp(lp_b) * 4.0, b) == pytest.approx(1.0, rel=1e-4)
    out = PRIOR.log_prob(np.array([[3.5, 1.0], [0.0, 200.0], [0.0, -1.0]]))
    assert np.all(out == -np.inf)


def test_unconstrained_map_round_trip_and_jacobian_by_finite_differences():
    theta = PRIOR.sample(50, rng=1)
    z = PRIOR.to_unconstrained(theta)
    np.testing.assert_allclose(PRIOR.from_unconstrained(z), theta, rtol=1e-10, atol=1e-12)
    h = 1e-6
    num = np.zeros(len(theta))
    for j in range(2):  # the map is diagonal: product of 1-D derivatives
        tp, tm = theta.copy(), theta.copy()
        tp[:, j] += h * np.abs(theta[:, j]).clip(1e-3)
        tm[:, j] -= h * np.abs(theta[:, j]).clip(1e-3)
        dz = (PRIOR.to_unconstrained(tp)[:, j] - PRIOR.to_unconstrained(tm)[:, j]) / (tp[:, j] - tm[:, j])
        num += np.log(np.abs(dz))
    np.testing.assert_allclose(PRIOR.log_abs_det_jacobian(theta), num, rtol=1e-5, atol=1e-5)
    extreme = PRIOR.from_unconstrained(np.array([[-60.0, 60.0], [60.0, -60.0], [800.0, -800.0]]))
    assert PRIOR.contains(extreme).all()


class TorchBoxPrior(torch.distributions.Distribution):
    """Torch view of a BoxPrior, as ``sbi`` expects of a prior (sample/log_prob on tensors, support).

    No library code needs one (the package trains its own flows on numpy draws);
    it lives here to show that the numpy prior serves ``sbi``'s interface.
    Sampling uses torch's global generator; seed it with ``torch.manual_seed``.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, prior: BoxPrior) -> None:
        self.prior = prior
        self._lower = torch.as_tensor(prior.lower, dtype=torch.float32)
        self._upper = torch.as_tensor(prior.upper, dtype=torch.float32)
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.n_dim]),
                         validate_args=False)

    @property
    def support(self):
        constraints = torch.distributions.constraints
        return constraints.independent(constraints.interval(self._lower, self._upper), 1)

    @property
    def mean(self) -> torch.Tensor:
        lo, hi, log = self.prior.lower, self.prior.upper, self.prior.is_log
        m = (lo + hi) / 2
        m[log] = (hi[log] - lo[log]) / np.log(hi[log] / lo[log])
        return torch.as_tensor(m, dtype=torch.float32)

    @property
    def variance(self) -> torch.Tensor:
        lo, hi, log = self.prior.lower, self.prior.upper, self.prior.is_log
        m = self.mean.double().numpy()
        second = (lo**2 + lo * hi + hi**2) / 3
        second[log] = (hi[log] ** 2 - lo[log] ** 2) / (2 * np.log(hi[log] / lo[log]))
        return torch.as_tensor(second - m**2, dtype=torch.float32)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        u = torch.rand(shape.numel(), self.prior.n_dim, dtype=torch.float64)
        theta = self.prior.from_unit(u.numpy())
        return torch.as_tensor(theta, dtype=torch.float32).reshape(*shape, self.prior.n_dim)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value)
        flat = value.detach().reshape(-1, self.prior.n_dim).double().cpu().numpy()
        lp = self.prior.log_prob(flat)
        return torch.as_tensor(lp, dtype=torch.float32).reshape(value.shape[:-1])


def test_torch_view():
    tp = TorchBoxPrior(PRIOR)
    torch.manual_seed(0)
    s = tp.sample((3000,))
    assert s.shape == (3000, 2) and s.dtype == torch.float32
    assert bool(tp.support.check(s).all())
    np.testing.assert_allclose(tp.log_prob(s[:5]).numpy(), PRIOR.log_prob(s[:5].double().numpy()), rtol=1e-5)
    np.testing.assert_allclose(s.double().mean(0).numpy(), tp.mean.numpy(), rtol=0.1)
    assert tp.log_prob(torch.tensor([[5.0, 1.0]])).item() == -np.inf
    torch.manual_seed(0)
    assert torch.equal(tp.sample((10,)), s[:10])


def test_truncation_samples_inside_region_with_measured_acceptance():
    region = lambda t: t[:, 0] < 0.0  # noqa: E731 - a quarter of the a-range
    tr = truncate(PRIOR, region, rng=0, label="a < 0")
    assert tr.acceptance == pytest.approx(0.25, abs=0.015)
    assert tr.mass == pytest.approx(0.25, abs=0.015)
    s = tr.sample(3000, rng=1)
    assert (s[:, 0] < 0).all() and PRIOR.contains(s).all()
    np.testing.assert_array_equal(s, tr.sample(3000, rng=1))
    # Inside the region the law is still the prior's: b stays log-uniform.
    assert stats.kstest(np.log10(s[:, 1]), stats.uniform(-2, 4).cdf).pvalue > 1e-3
    sub = truncate(PRIOR, lambda t: np.ones(len(t), bool), rng=0, lower=[0.0, 1.0], upper=[1.0, 10.0])
    assert sub.mass == pytest.approx(0.25 * 0.25, rel=1e-12)
    assert np.isfinite(tr.log_prob(np.array([[-0.5, 1.0]]))).all()
    assert tr.log_prob(np.array([[0.5, 1.0]]))[0] == -np.inf
    with pytest.raises(PriorError, match="accepted none"):
        truncate(PRIOR, lambda t: np.zeros(len(t), bool), rng=0, label="empty")
