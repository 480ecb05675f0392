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

from ogip_testfiles import toy_grid, write_arf, write_pha, write_rmf
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
    elo, ehi, cmin, cmax, dense = toy_grid(n_e=40, n_chan=12)
    write_rmf(folder / "toy.rmf", elo, ehi, cmin, cmax, dense)
    write_arf(folder / "toy.arf", elo, ehi, np.full(elo.size, 20.0))
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
