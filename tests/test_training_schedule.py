"""Training: the fixed cosine schedule, and ensemble members trained side by side in processes."""
import numpy as np
import pytest
import torch
from scipy import stats

from xspec_sbi.inference.config import NPEConfig, NPEError
from xspec_sbi.inference.members import member_workers
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior
from xspec_sbi.inference.training import fit_single_round, train_npe

# theta ~ U[0, 1]^2, x ~ N(theta, 0.1^2): the posterior is a truncated normal per parameter
SIGMA = 0.1
PRIOR = BoxPrior((ParameterPrior("a", "uniform", 0.0, 1.0), ParameterPrior("b", "uniform", 0.0, 1.0)))
SMALL = NPEConfig(x_transform="none", embedding=None)


def gauss_sim(theta, rng):
    return theta + SIGMA * rng.standard_normal(theta.shape)


def test_cosine_schedule_runs_its_epochs_and_gives_the_analytic_posterior():
    post = fit_single_round(gauss_sim, PRIOR, 4000, rng=0, config=NPEConfig(
        x_transform="none", embedding=None, epochs=12))
    assert post.summary.epochs == 12                 # no early stop
    assert 1 <= post.summary.best_epoch <= 12
    x_obs = np.array([0.5, 0.3])
    s = post.sample(x_obs, 4000, rng=1)
    exact = stats.truncnorm(-x_obs / SIGMA, (1 - x_obs) / SIGMA, loc=x_obs, scale=SIGMA)
    np.testing.assert_allclose(s.mean(0), exact.mean(), atol=0.03)
    ratio = s.std(0) / exact.std()
    assert np.all((ratio > 0.85) & (ratio < 1.3)), ratio


@pytest.mark.slow
def test_members_in_processes_have_the_weights_of_members_trained_here():
    theta = PRIOR.sample(600, rng=2)
    x = gauss_sim(theta, np.random.default_rng(3))
    cfg = NPEConfig(x_transform="none", embedding=None, hidden_features=16, ensemble_size=2, epochs=3)
    here = train_npe(theta, x, PRIOR, rng=4, config=NPEConfig(**{**cfg.to_dict(), "member_workers": 1}))
    apart = train_npe(theta, x, PRIOR, rng=4, config=NPEConfig(**{**cfg.to_dict(), "member_workers": 2}))
    a, b = here.flow.state_dict(), apart.flow.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("members.1.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the members differ from each other (own seeds), and the draws are the same
    assert not torch.equal(a["members.0.context.weight"], a["members.1.context.weight"])
    x_obs = np.array([0.4, 0.6])
    np.testing.assert_array_equal(here.sample(x_obs, 100, rng=5), apart.sample(x_obs, 100, rng=5))
    assert here.summary.epochs == apart.summary.epochs == 3


def test_how_many_processes_train_the_members():
    cpu = torch.device("cpu")
    assert member_workers(NPEConfig(), cpu) == 1                                   # one member: here
    assert member_workers(NPEConfig(ensemble_size=3, member_workers=8), cpu) == 3    # at most one each
    assert member_workers(NPEConfig(ensemble_size=3, member_workers=2), cpu) == 2
    assert member_workers(NPEConfig(ensemble_size=3, member_workers=1), cpu) == 1
    # a thread count the workers could not reproduce, or a GPU: here
    assert member_workers(NPEConfig(ensemble_size=3, num_threads=None, member_workers=3), cpu) == 1
    assert member_workers(NPEConfig(ensemble_size=3, member_workers=3), torch.device("cuda")) == 1


@pytest.mark.parametrize("field", ["epochs", "member_workers"])
def test_schedule_fields_are_checked(field):
    with pytest.raises(NPEError, match=f"NPEConfig.{field} must be >= 1"):
        NPEConfig(**{field: 0})


def test_members_with_own_splits_differ_and_an_ensemble_saves_and_loads(tmp_path):
    from xspec_sbi.inference.posterior import NeuralPosterior
    theta = PRIOR.sample(600, rng=2)
    x = gauss_sim(theta, np.random.default_rng(3))
    cfg = dict(x_transform="none", embedding=None, hidden_features=16, ensemble_size=2, epochs=3,
               member_workers=1)
    shared = train_npe(theta, x, PRIOR, rng=4, config=NPEConfig(**cfg))
    own = train_npe(theta, x, PRIOR, rng=4, config=NPEConfig(**cfg, member_splits=True))
    a, b = shared.flow.state_dict(), own.flow.state_dict()
    # the first member keeps the shared split (and its seed): the same weights; the second does not
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("members.0."))
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("members.1."))
    fp = {"model": "toy gaussian", "prior": PRIOR.to_dict(), "response": "none"}
    loaded = NeuralPosterior.load(own.save(tmp_path / "net", fp), fp)
    x_obs = np.array([0.4, 0.6])
    np.testing.assert_array_equal(loaded.sample(x_obs, 100, rng=5), own.sample(x_obs, 100, rng=5))
