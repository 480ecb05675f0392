"""Regressions for what ``scripts/user_trials.py`` found when a new user ran the package.

Each test is one finding of those trials, on toy files (12 channels), and fails
without its fix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ogip_testfiles import toy_grid, write_arf, write_pha, write_rmf
from xspec_sbi.cli import main as cli


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy RMF + ARF (12 channels, 0.2-8.2 keV) in one folder."""
    folder = tmp_path_factory.mktemp("toy")
    elo, ehi, cmin, cmax, dense = toy_grid(n_e=40, n_chan=12)
    write_rmf(folder / "toy.rmf", elo, ehi, cmin, cmax, dense)
    write_arf(folder / "toy.arf", elo, ehi, np.full(elo.size, 20.0))
    return folder


def _pha(folder: Path, name: str, **keywords) -> Path:
    kw = {"RESPFILE": "toy.rmf", "ANCRFILE": "toy.arf"} | keywords
    counts = np.random.default_rng(3).poisson(20.0, 12)
    return write_pha(folder / name, counts, exposure=100.0, keywords=kw)


def _error(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[xspec_sbi]")]
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.mark.parametrize("keyword, option", [("RESPFILE", "--respfile"), ("ANCRFILE", "--arffile"),
                                             ("BACKFILE", "--backfile")])
def test_a_missing_header_file_is_said_with_the_command_line_option(toy, tmp_path, capsys,
                                                                    keyword, option):
    # the trials' finding: the command line told its user to "pass respfile='none'", the
    # Python keyword, which no option of xspec-sbi takes
    spec = _pha(toy, f"no_{keyword.lower()}.pha", **{keyword: "nosuch.fits"})
    code, line = _error(["fit", spec, "-m", "powerlaw", "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert "nosuch.fits" in line and f"the {keyword} keyword" in line, line
    assert f"{option} none" in line, line
    assert "='none'" not in line, line
    assert not (tmp_path / "out").exists()


def test_a_missing_file_given_by_option_names_that_option(toy, tmp_path, capsys):
    spec = _pha(toy, "plain.pha")
    code, line = _error(["fit", spec, "-m", "powerlaw", "--backfile", tmp_path / "gone_bkg.pha",
                         "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert "gone_bkg.pha" in line and "(from --backfile)" in line, line
