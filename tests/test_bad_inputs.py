"""Catalogue of issue 15: faults and bad inputs a hostile but ordinary user tries.

One test per item of the issue. "Wrong or lost":
  W1 report/apply files replaced without --overwrite; stale files beside a new report
  W2 half-written reports (a failure or interrupt while writing)
  W3 two runs into one --out at the same time
  W4 orphans after SIGTERM                     -> tests/test_interrupts.py (real signals)
  W5 edited network files accepted
  W6 apply outside the training range (warning; --strict fails)
"Unclear":
  U1 all-zero spectrum, non-integer counts      U7 unwritable --out (file, under a file, /proc, read-only)
  U2 file.pha{abc}                              U8 truncated weights, invalid config.json, edited
  U3 --nicer-like-arf with a Swift ARF             hidden_features, edited setup.json
  U4 --prior twice                              U9 SIGINT tracebacks -> tests/test_interrupts.py
  U5 every parameter frozen                     U10 apply names the property that differs
  U6 --restrict counts:5000-100, --seed -1,     U11 file modes 0644
     --sims 3, n_samples=-3, workers=-2
Budgets are small (--sims 200, --samples 200, --no-mcmc, one worker).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ogip_testfiles import write_pha, write_toy_response
from xspec_sbi.cli import main as cli
from xspec_sbi.files import atomic_folder

MODEL = ["--model", "tbabs*powerlaw", "--freeze", "TBabs.nH=0.5",
         "--prior", "powerlaw.norm=log:0.1:10", "--prior", "powerlaw.PhoIndex=uniform:1:3"]
SMALL = ["--sims", 200, "--restrict", "none", "--max-epochs", 20, "--workers", 1]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The one error line (step messages start with [xspec_sbi]); no traceback."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[xspec_sbi]")]
    assert len(lines) == 1, err
    assert lines[0].startswith("xspec-sbi"), lines[0]
    return lines[0]


def not_simulated(err: str) -> None:
    assert "simulating" not in err and "training" not in err, err


# -- files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy RMF + ARF (12 channels, 0.2-8.2 keV) in one folder."""
    folder = tmp_path_factory.mktemp("toy")
    return write_toy_response(folder)


def pha(folder, name, counts, exposure=100.0, column="COUNTS"):
    kw = {"RESPFILE": "toy.rmf", "ANCRFILE": "toy.arf", "TSTART": 1000.0, "TSTOP": 1000.0 + exposure}
    values = np.asarray(counts, dtype=float if column == "RATE" else int)
    return write_pha(Path(folder) / name, values, column=column, exposure=exposure, keywords=kw)


def fakeit(toy, norm, index, seed, exposure=100.0):
    from xspec_sbi.data.spectrum import load_spectrum
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.model.expression import Model
    from xspec_sbi.model.library import XspecSettings, configure
    configure(XspecSettings())
    template = load_spectrum(pha(toy, f"template{exposure:g}.pha", np.zeros(12), exposure=exposure))
    model = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.5}).freeze("TBabs.nH")
    return fakeit_spectrum(template, model, [index, norm], np.random.default_rng(seed)).counts


@pytest.fixture(scope="module")
def spectrum(toy):
    return pha(toy, "src.pha", fakeit(toy, 1.0, 2.0, seed=1))


@pytest.fixture(scope="module")
def network(toy, spectrum, tmp_path_factory):
    """A small trained network (train --sims 200)."""
    net = tmp_path_factory.mktemp("nets") / "net"
    code = cli.main([str(a) for a in ["train", spectrum, *MODEL, *SMALL, "--samples", 200,
                                      "--save-network", net, "-q"]])
    assert code == 0
    return net


def copy_network(network, tmp_path):
    dst = tmp_path / "net"
    shutil.copytree(network, dst)
    return dst


def fit_args(spectrum, out, *extra):
    return ["fit", spectrum, *MODEL, *SMALL, "--samples", 200, "--no-mcmc", "--out", out, *extra]


# == W1: nothing replaced without --overwrite; replaced as a whole with it ============
def test_W1_report_folder_with_other_files_is_refused_untouched(spectrum, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "corner.png").write_bytes(b"old corner")
    (out / "posterior_samples.npz").write_bytes(b"old samples")
    code, _, err = run(fit_args(spectrum, out), capsys)
    assert code == 1
    line = error_line(err)
    assert "--out" in line and "--overwrite" in line and "corner.png" in line
    not_simulated(err)
    assert (out / "corner.png").read_bytes() == b"old corner"
    assert (out / "posterior_samples.npz").read_bytes() == b"old samples"


def test_W1_apply_folder_with_samples_is_refused_untouched(network, spectrum, tmp_path, capsys):
    out = tmp_path / "tracks"
    out.mkdir()
    (out / "samples.npz").write_bytes(b"old")
    code, _, err = run(["apply", network, spectrum, "--out", out, "--samples", 200], capsys)
    assert code == 1
    assert "--out" in error_line(err) and "samples.npz" in error_line(err)
    assert (out / "samples.npz").read_bytes() == b"old"


def test_W1_overwrite_replaces_the_folder_as_a_whole_with_modes_0644(spectrum, tmp_path, capsys):
    # also U11: every written file has the ordinary mode (0666 less the umask), none 0600
    out = tmp_path / "rep"
    out.mkdir()
    (out / "mcmc_chain.fits").write_bytes(b"stale chain of another run")
    code, stdout, err = run(fit_args(spectrum, out, "--overwrite", "-q"), capsys)
    assert code == 0, err
    names = sorted(os.listdir(out))
    assert "mcmc_chain.fits" not in names                 # --no-mcmc: the stale chain is gone
    assert {"summary.json", "posterior_samples.npz", "sbi_chain.fits", "corner.png",
            "spectrum.png", "report.html"} <= set(names)
    mask = os.umask(0)
    os.umask(mask)
    for name in names:
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o666 & ~mask, name
    assert sorted(os.listdir(tmp_path)) == ["rep"]        # no partial folder, no lock


# == W2: half-written reports ==========================================================
def test_W2_folder_with_only_an_old_chain_is_refused_before_any_simulation(spectrum, tmp_path,
                                                                          capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "mcmc_chain.fits").write_bytes(b"old")
    code, _, err = run(fit_args(spectrum, out), capsys)
    assert code == 1 and "mcmc_chain.fits" in error_line(err)
    not_simulated(err)
    assert os.listdir(out) == ["mcmc_chain.fits"]


def test_W2_interrupt_while_writing_the_report_leaves_no_folder(spectrum, tmp_path, capsys,
                                                                monkeypatch):
    from xspec_sbi.result import SBIResult

    def interrupted(self, path=None, **kw):
        raise KeyboardInterrupt                       # Ctrl-C after summary, npz, chain, corner
    monkeypatch.setattr(SBIResult, "plot_spectrum", interrupted)
    out = tmp_path / "rep"
    code, _, err = run(fit_args(spectrum, out, "-q"), capsys)
    assert code == 130
    assert "interrupted" in error_line(err)
    assert os.listdir(tmp_path) == []                 # no report, no partial folder, no lock


# == W3: two runs into one --out ========================================================
def test_W3_a_second_run_into_the_same_out_is_refused(spectrum, tmp_path, capsys):
    out = tmp_path / "rep"
    with atomic_folder(out) as first:                 # a first run is writing `out`
        (first / "summary.json").write_text('{"run": 1}')
        code, _, err = run(fit_args(spectrum, out), capsys)
        assert code == 1
        line = error_line(err)
        assert "--out" in line and "another run is writing it" in line
        not_simulated(err)
    assert os.listdir(out) == ["summary.json"]        # the first run's files only
    assert json.loads((out / "summary.json").read_text()) == {"run": 1}


# == W5: edited network files ===========================================================
@pytest.mark.parametrize("name,edit", [
    ("config.json", "z_mean"), ("setup.json", "prior"), ("weights.pt", "truncate")])
def test_W5_edited_network_files_are_refused_naming_the_file(network, spectrum, tmp_path, capsys,
                                                             name, edit):
    net = copy_network(network, tmp_path)
    path = net / name
    if edit == "z_mean":
        cfg = json.loads(path.read_text())
        cfg["z_mean"][0] += 0.5
        path.write_text(json.dumps(cfg, indent=1))
    elif edit == "prior":
        setup = json.loads(path.read_text())
        setup["prior"]["powerlaw.norm"][2] = 100.0
        path.write_text(json.dumps(setup, indent=1))
    else:
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
    code, _, err = run(["apply", net, spectrum, "--out", tmp_path / "t"], capsys)
    assert code == 1
    line = error_line(err)
    assert str(path) in line and ("edited" in line or "truncated" in line)
    assert not (tmp_path / "t").exists()


# == W6: apply outside the training range ================================================
def test_W6_apply_outside_the_training_range_warns_and_strict_fails(network, toy, spectrum,
                                                                   tmp_path, capsys):
    bright = pha(tmp_path, "bright.pha", fakeit(toy, 300.0, 2.0, seed=5))    # 30x the prior top
    shutil.copy(toy / "toy.rmf", tmp_path)
    shutil.copy(toy / "toy.arf", tmp_path)
    out = tmp_path / "t"
    code, _, err = run(["apply", network, spectrum, bright, "--out", out, "--samples", 200], capsys)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "outside the network's training spectra" in ln]
    assert len(warnings) == 1 and str(bright) in warnings[0] and "total counts" in warnings[0]
    import csv
    rows = list(csv.DictReader((out / "tracks.csv").open()))
    # only the bright one flagged
    assert rows[0]["out_of_distribution"] == "" and "total counts" in rows[1]["out_of_distribution"]

    code, _, err = run(["apply", network, spectrum, bright, "--out", tmp_path / "t2", "--strict"],
                       capsys)
    assert code == 1
    line = error_line(err)
    assert str(bright) in line and "--strict" in line
    assert not (tmp_path / "t2").exists()


# == U1: doubtful spectra are said, naming the file ======================================
def test_U1_all_zero_and_non_integer_spectra_are_warned_about(toy, caplog):
    from xspec_sbi.cli.inputs import build_session
    from xspec_sbi.model.expression import Model
    model = Model("tbabs*powerlaw")
    zero = pha(toy, "zero.pha", np.zeros(12))
    scaled = pha(toy, "rate.pha", np.full(12, 0.0137), column="RATE")       # 1.37 counts per bin
    opts = dict(ignore=None, notice=None, abund="angr", xsect="vern", respfile=None, arffile=None,
                backfile=None, nicer_like_arf=None)
    with caplog.at_level(logging.WARNING, logger="xspec_sbi"):
        build_session([zero], model, **opts)
        build_session([scaled], model, **opts)
    texts = [r.getMessage() for r in caplog.records]
    assert any(str(zero) in t and "0 counts" in t for t in texts), texts
    assert any(str(scaled) in t and "not integers" in t and "Poisson" in t for t in texts), texts
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xspec_sbi"):
        build_session([pha(toy, "fine.pha", np.full(12, 3))], model, **opts)
    assert not caplog.records
    # Python users get the same warning: it is given where the files are loaded.
    from xspec_sbi.session import Session
    with caplog.at_level(logging.WARNING, logger="xspec_sbi"):
        Session.from_files([scaled], model)
    assert any(str(scaled) in r.getMessage() and "not integers" in r.getMessage()
               for r in caplog.records)


# == U2-U6: the command line names the option and says what to do ========================
def test_U2_a_malformed_row_selector_is_named(spectrum, capsys):
    code, _, err = run(["fit", f"{spectrum}{{abc}}", *MODEL], capsys)
    assert code == 2
    line = error_line(err)
    assert "{abc}" in line and "not a row number" in line and "not found" not in line


def test_U3_nicer_like_arf_refuses_another_telescope(toy, spectrum, tmp_path, capsys):
    arf = shutil.copy(toy / "toy.arf", tmp_path / "swift.arf")
    fits.setval(arf, "TELESCOP", value="SWIFT", ext=1)
    code, _, err = run(["fit", spectrum, *MODEL, "--nicer-like-arf", arf], capsys)
    assert code == 2
    line = error_line(err)
    assert "--nicer-like-arf" in line and "SWIFT" in line and "--respfile" in line


def test_U4_a_prior_given_twice_is_refused(spectrum, capsys):
    code, _, err = run(["fit", spectrum, *MODEL, "--prior", "powerlaw.norm=log:1:5"], capsys)
    assert code == 2
    line = error_line(err)
    assert "--prior given twice for powerlaw.norm" in line and "log:1:5" in line


def test_U5_every_parameter_frozen_blames_freeze(spectrum, capsys):
    code, _, err = run(["fit", spectrum, "--model", "tbabs*powerlaw", "--freeze", "TBabs.nH",
                        "--freeze", "powerlaw.PhoIndex", "--freeze", "powerlaw.norm"], capsys)
    assert code == 2
    line = error_line(err)
    assert "--freeze" in line and "every parameter" in line and "--prior" not in line


@pytest.mark.parametrize("option,value,needle", [
    ("--restrict", "counts:5000-100", "0 <= LO < HI"),
    ("--seed", "-1", "integer >= 0"),
    ("--sims", "3", "integer >= 20"),
    ("--workers", "-2", "integer >= 1"),
    ("--samples", "-3", "integer >= 2"),
])
def test_U6_bad_numbers_name_their_option(spectrum, capsys, option, value, needle):
    code, _, err = run(["fit", spectrum, *MODEL, option, value], capsys)
    assert code == 2
    line = error_line(err)
    assert option in line and needle in line, line
    if option == "--restrict":
        assert "CountWindow" not in line and "restrict=" not in line


@pytest.mark.parametrize("keyword,value", [("n_samples", -3), ("workers", -2),
                                           ("n_simulations", 3)])
def test_U6_the_api_refuses_bad_budgets_before_any_work(keyword, value):
    from xspec_sbi import sbi_fit
    from xspec_sbi.options import OptionError
    # no session at all: the options are checked first, so nothing is read or simulated
    with pytest.raises(OptionError, match=f"{keyword}={value}"):
        sbi_fit(None, **{keyword: value})


# == U7: unwritable --out, refused before any simulation, without [Errno] ==================
@pytest.mark.parametrize("case", ["file", "under_a_file", "proc", "read_only"])
def test_U7_unwritable_out_is_refused_before_any_simulation(spectrum, tmp_path, capsys, case):
    (tmp_path / "a_file").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    if case == "read_only":
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):
            ro.chmod(0o755)
            pytest.skip("running as root: permissions do not stop writes here")
    out = {"file": tmp_path / "a_file", "under_a_file": tmp_path / "a_file" / "rep",
           "proc": Path("/proc/xspec_sbi_test/rep"), "read_only": ro / "rep"}[case]
    try:
        code, _, err = run(fit_args(spectrum, out), capsys)
    finally:
        ro.chmod(0o755)
    assert code == 1
    line = error_line(err)
    assert line.startswith("xspec-sbi fit: error: --out") and str(out) in line
    assert "[Errno" not in line
    not_simulated(err)


# == U8: broken network files: the file named, one short line ==============================
@pytest.mark.parametrize("case", ["truncated_weights", "invalid_config", "hidden_features"])
def test_U8_broken_network_without_manifest_gives_one_short_line(network, spectrum, tmp_path,
                                                                 capsys, case):
    net = copy_network(network, tmp_path)
    (net / "manifest.json").unlink()                  # as saved by an older version
    if case == "truncated_weights":
        with open(net / "weights.pt", "r+b") as fh:
            fh.truncate(100)
    elif case == "invalid_config":
        (net / "config.json").write_text((net / "config.json").read_text()[:-40])
    else:
        cfg = json.loads((net / "config.json").read_text())
        cfg["npe_config"]["hidden_features"] = 7
        (net / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(["apply", net, spectrum, "--out", tmp_path / "t"], capsys)
    assert code == 1
    line = error_line(err)
    assert str(net) in line and len(line) < 700
    assert "no manifest.json" in err                  # the warning that the files are unchecked


def test_U8_an_edited_setup_json_is_blamed_on_setup_json(network, spectrum, tmp_path, capsys):
    net = copy_network(network, tmp_path)
    setup = json.loads((net / "setup.json").read_text())
    setup["ignore"] = "**-1.0"
    (net / "setup.json").write_text(json.dumps(setup))
    code, _, err = run(["apply", net, spectrum, "--out", tmp_path / "t"], capsys)
    assert code == 1
    line = error_line(err)
    assert "setup.json" in line and str(spectrum) not in line


# == U10: which property differs ===========================================================
def test_U10_apply_names_the_property_that_differs(network, toy, spectrum, tmp_path, capsys):
    # another exposure is accepted (judged by its own likelihood) and only it is named
    other = pha(toy, "short.pha", fakeit(toy, 1.0, 2.0, seed=3, exposure=50.0), exposure=50.0)
    code, _, err = run(["apply", network, spectrum, other, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    line = next(ln for ln in err.splitlines() if "set-up differs" in ln)
    assert str(other) in line and "exposure x 0.5 (50 s against 100 s)" in line
    assert "ARF" not in line and "RMF" not in line          # only what differs is named
    # what the network cannot read is refused, naming the property
    grouped = Path(toy) / "grouped.pha"
    write_pha(grouped, np.asarray(fakeit(toy, 1.0, 2.0, seed=4), dtype=int), exposure=100.0,
              grouping=np.tile([1, -1], 6), keywords={"RESPFILE": "toy.rmf", "ANCRFILE": "toy.arf"})
    code, _, err = run(["apply", network, grouped, "--out", tmp_path / "t2"], capsys)
    assert code == 1
    line = error_line(err)
    assert str(grouped) in line and "6 noticed bins, the network reads 12" in line


# == U11: modes of the network folder (the report folder: test_W1_overwrite...) ============
def test_U11_network_files_have_ordinary_modes(network):
    mask = os.umask(0)
    os.umask(mask)
    names = sorted(os.listdir(network))
    assert names == ["config.json", "manifest.json", "ood_reference.npz", "setup.json", "weights.pt"]
    for name in names:
        assert stat.S_IMODE(os.stat(network / name).st_mode) == 0o666 & ~mask, name


# == W5/U8 at the library level: NeuralPosterior.load checks the manifest itself ==========
def test_W5_library_load_refuses_edited_files_naming_them(network, tmp_path):
    from xspec_sbi.inference.persistence import NetworkFileError
    from xspec_sbi.inference.posterior import NeuralPosterior
    setup = json.loads((network / "setup.json").read_text())
    fingerprint = setup["fingerprint"]
    assert list(NeuralPosterior.load(network, fingerprint).prior.names) == ["powerlaw.PhoIndex",
                                                                            "powerlaw.norm"]
    net = copy_network(network, tmp_path)
    cfg = json.loads((net / "config.json").read_text())
    cfg["z_mean"][0] += 0.5
    (net / "config.json").write_text(json.dumps(cfg, indent=1))
    with pytest.raises(NetworkFileError, match=r"config.json: .*(edited|when saved)"):
        NeuralPosterior.load(net, fingerprint)
    # without a manifest (an older network) a truncated weights file is still named
    (net / "manifest.json").unlink()
    shutil.copy(network / "config.json", net / "config.json")
    with open(net / "weights.pt", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(NetworkFileError, match=r"weights.pt: cannot be read as saved weights"):
        NeuralPosterior.load(net, fingerprint)
