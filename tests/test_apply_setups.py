"""``xspec-sbi apply`` across set-ups: other exposures and ARFs weighted by their own likelihood.

One network is trained on a toy spectrum; spectra through an ARF 1 % higher,
or with another exposure, are accepted, their differences named in words and
numbers (tracks.csv, column ``setup``), and their draws weighted by their own
exact likelihood; a spectrum the network cannot read (another grouping) is
refused naming the property.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from ogip_testfiles import toy_grid, write_arf, write_pha, write_toy_response
from xspec_sbi.cli import main as cli

SETUP = ["--model", "tbabs*powerlaw", "--freeze", "TBabs.nH=0.5",
         "--prior", "powerlaw.norm=log:0.01:1", "--prior", "powerlaw.PhoIndex=uniform:1:3",
         "--sims", 600, "--restrict", "none", "--max-epochs", 40, "--workers", 1, "-q"]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy RMF, an ARF and one 1 % higher, a network trained on one spectrum (100 s)."""
    folder = tmp_path_factory.mktemp("setups")
    write_toy_response(folder)
    elo, ehi = toy_grid(n_e=40, n_chan=12)[:2]
    write_arf(folder / "toy_plus1.arf", elo, ehi, np.full(elo.size, 20.2))
    return folder


def _spectrum(folder, name, seed, *, exposure=100.0, arf="toy.arf", norm=0.1, index=1.8,
              grouping=None):
    """A fakeit spectrum of tbabs*powerlaw through its own ARF and exposure, written as a PHA."""
    from xspec_sbi.data.spectrum import load_spectrum
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.model.expression import Model
    from xspec_sbi.model.library import XspecSettings, configure
    configure(XspecSettings())
    kw = {"RESPFILE": "toy.rmf", "ANCRFILE": arf}
    empty = write_pha(folder / f"empty_{name}", np.zeros(12, dtype=int), exposure=exposure, keywords=kw)
    model = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.5}).freeze("TBabs.nH")
    fake = fakeit_spectrum(load_spectrum(empty), model, [index, norm], np.random.default_rng(seed))
    return write_pha(folder / name, np.asarray(fake.counts, dtype=int), exposure=exposure,
                     keywords=kw, grouping=grouping)


@pytest.fixture(scope="module")
def network(toy, tmp_path_factory):
    net = tmp_path_factory.mktemp("net") / "net"
    train = _spectrum(toy, "train.pha", 1)
    code = cli.main([str(a) for a in ["train", train, *SETUP, "--save-network", net,
                                      "--samples", 200]])
    assert code == 0
    return net


def _rows(out):
    return list(csv.DictReader((out / "tracks.csv").open()))


def _exact_median(path, seed=5):
    """Median norm of an independent exact posterior: a Goodman-Weare chain on the file's C-stat."""
    from xspec_sbi.baseline.comparison import fit_and_chain
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.model.expression import Model
    from xspec_sbi.session import Session
    model = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.5}).freeze("TBabs.nH")
    session = Session.from_files([str(path)], model)
    box = build_prior(model.parameters, {"powerlaw.norm": ("log", 0.01, 1.0),
                                         "powerlaw.PhoIndex": ("uniform", 1.0, 3.0)})
    stat = session.statistic_function()
    _, chain = fit_and_chain(stat, np.array([1.8, 0.1]), box, model.free_parameters, 8000, 2000,
                             8, np.random.default_rng(seed))
    return np.median(chain.samples, axis=0), np.std(chain.samples, axis=0)


def test_apply_weights_another_arf_and_exposure_by_their_own_likelihood(toy, network, tmp_path,
                                                                         capsys):
    same = _spectrum(toy, "same.pha", 2)
    arf = _spectrum(toy, "arf.pha", 3, arf="toy_plus1.arf")
    longer = _spectrum(toy, "long.pha", 4, exposure=105.0)
    out = tmp_path / "tracks"
    code, _, err = run(["apply", network, same, arf, longer, "--samples", 2000, "--out", out,
                        "--times", "index"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert rows[0]["setup"] == "training set-up"
    assert rows[1]["setup"] == "ARF differs by at most 1 %"
    assert rows[2]["setup"].startswith("exposure x 1.05 (105 s against 100 s)")
    assert "long.pha: set-up differs from the training spectrum's: exposure x 1.05" in err
    # each spectrum judged by its own likelihood (the network reads the longer one's counts as
    # a brighter source): the weighted posterior agrees with the spectrum's own exact chain
    npz = np.load(out / "samples.npz")
    for row, path, draws in zip(rows, (same, arf, longer), npz["samples"]):
        assert row["likelihood_check"] == "passed"
        median, sd = _exact_median(path)
        assert np.all(np.abs(np.median(draws, axis=0) - median) < 0.25 * sd)


def test_apply_refuses_another_grouping_naming_the_bins(toy, network, tmp_path, capsys):
    grouping = np.tile([1, -1], 6)    # pairs of channels: 6 bins against the network's 12
    other = _spectrum(toy, "paired.pha", 6, grouping=grouping)
    code, _, err = run(["apply", network, other, "--out", tmp_path / "t", "-q"], capsys)
    assert code == 1
    line = err.strip()
    assert "\n" not in line
    assert str(other) in line and "6 noticed bins, the network reads 12" in line
    assert not (tmp_path / "t").exists()


@pytest.fixture(scope="module")
def exposure_network(toy, tmp_path_factory):
    net = tmp_path_factory.mktemp("netexp") / "net"
    train = _spectrum(toy, "train.pha", 1)
    code = cli.main([str(a) for a in ["train", train, *SETUP, "--sims", 1200, "--exposure-range",
                                      0.25, 4, "--save-network", net, "--samples", 200]])
    assert code == 0
    return net


def test_other_exposures_with_and_without_the_exposure_conditioned_network(
        toy, network, exposure_network, tmp_path, capsys):
    short = _spectrum(toy, "short.pha", 7, exposure=40.0)
    longer = _spectrum(toy, "triple.pha", 8, exposure=300.0)
    # trained at 100 s only: the 3x spectrum's counts read as a 3x brighter source, and its
    # own exact likelihood says so (the check fails: flagged, not passed off as its posterior)
    code, _, err = run(["apply", network, longer, "--out", tmp_path / "fixed", "-q"], capsys)
    assert code == 0, err
    assert _rows(tmp_path / "fixed")[0]["likelihood_check"] == "failed"
    # trained over 0.25-4x: the network reads each exposure and both agree with their chains
    out = tmp_path / "conditioned"
    code, _, err = run(["apply", exposure_network, short, longer,
                        "--samples", 2000, "--out", out], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert rows[0]["setup"] == ("exposure x 0.4 (40 s against 100 s), read by the network "
                                "(trained over exposure x 0.25-4)")
    npz = np.load(out / "samples.npz")
    for row, path, draws in zip(rows, (short, longer), npz["samples"]):
        assert row["likelihood_check"] == "passed"
        assert float(row["ess_fraction"]) > 0.15
        median, sd = _exact_median(path)
        assert np.all(np.abs(np.median(draws, axis=0) - median) < 0.25 * sd)
    # a factor outside the range is said to be an extrapolation
    far = _spectrum(toy, "far.pha", 9, exposure=800.0)
    code, _, err = run(["apply", exposure_network, far, "--out", tmp_path / "far"], capsys)
    assert code == 0, err
    assert "outside the network's exposure range 0.25-4" in _rows(tmp_path / "far")[0]["setup"]


def test_exposure_range_option_is_checked_naming_it(toy, tmp_path, capsys):
    train = _spectrum(toy, "train.pha", 1)
    code, _, err = run(["train", train, *SETUP, "--exposure-range", 2, 4, "--save-network",
                        tmp_path / "n"], capsys)
    assert code == 2
    assert "--exposure-range 2 4" in err and "0 < LOW <= 1 <= HIGH" in err


def test_refine_runs_rounds_on_the_flagged_spectrum_only(toy, network, tmp_path, capsys):
    same = _spectrum(toy, "same_r.pha", 12)
    longer = _spectrum(toy, "triple_r.pha", 8, exposure=300.0)
    out = tmp_path / "refined"
    code, _, err = run(["apply", network, same, longer, "--refine", "--samples", 2000,
                        "--out", out, "--times", "index"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert rows[0]["refine_rounds"] == ""          # its check passed: no round
    # fitted as `fit` fits a spectrum alone: a first round of 3,000 simulations
    assert rows[1]["refine_rounds"] == "1 (3000 simulations, passed)", rows[1]["refine_rounds"]
    assert "triple_r.pha: round 1 (trained, " in err
    assert rows[1]["likelihood_check"] == "passed"
    median, sd = _exact_median(longer)
    draws = np.load(out / "samples.npz")["samples"][1]
    assert np.all(np.abs(np.median(draws, axis=0) - median) < 0.25 * sd)


def test_fit_with_a_network_of_another_setup_is_checked_by_its_own_likelihood(toy, network,
                                                                              tmp_path, capsys):
    arf = _spectrum(toy, "arf_fit.pha", 13, arf="toy_plus1.arf")
    out = tmp_path / "report"
    loud = [a for a in SETUP if a != "-q"]
    code, stdout, err = run(["fit", arf, *loud, "--network", network, "--no-mcmc", "--samples",
                             2000, "--out", out], capsys)
    assert code == 0, err
    assert "set-up differs from the network's training spectrum" in err
    assert "ARF differs by at most 1 %" in err
    import json
    summary = json.loads((out / "summary.json").read_text())
    median, sd = _exact_median(arf)
    params = summary["parameters"]
    got = [params[n]["median"] for n in ("powerlaw.PhoIndex", "powerlaw.norm")] \
        if isinstance(params, dict) else [p["median"] for p in params]
    assert np.all(np.abs(np.asarray(got) - median) < 0.25 * sd)


def test_fit_with_the_exposure_conditioned_network_reads_the_spectrum_exposure(
        toy, exposure_network, tmp_path, capsys):
    longer = _spectrum(toy, "triple_fit.pha", 8, exposure=300.0)
    out = tmp_path / "report"
    loud = [a for a in SETUP if a != "-q"]
    code, _, err = run(["fit", longer, *loud, "--network", exposure_network, "--no-mcmc",
                        "--samples", 2000, "--out", out], capsys)
    assert code == 0, err
    assert "read by the network (trained over exposure x 0.25-4)" in err
    # the loaded network's own draws pass the check: no refinement round was needed
    assert "refinement round" not in err
    import json
    params = json.loads((out / "summary.json").read_text())["parameters"]
    got = [params[n]["median"] for n in ("powerlaw.PhoIndex", "powerlaw.norm")] \
        if isinstance(params, dict) else [p["median"] for p in params]
    median, sd = _exact_median(longer)
    assert np.all(np.abs(np.asarray(got) - median) < 0.25 * sd)
