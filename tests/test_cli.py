"""The xspec-sbi command: help, one-line errors with exit codes, fit end to end, train + apply."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from ogip_testfiles import write_pha, write_toy_response
from xspec_sbi.cli import main as cli


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- help -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["fit", "train", "apply", "demo"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: xspec-sbi {command}")
    assert "examples:" in out and f"xspec-sbi {command}" in out.split("examples:")[1]


def test_top_level_help_lists_the_commands_and_runs_as_a_module():
    # a separate interpreter: the module entry point, not just main()
    proc = subprocess.run([sys.executable, "-m", "xspec_sbi.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("fit", "train", "apply", "demo"):
        assert f"    {command} " in proc.stdout


# -- errors ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    """A toy RMF + ARF and a PHA writer that points at them (12 channels, 0.2-8.2 keV)."""
    folder = tmp_path_factory.mktemp("toy")
    return write_toy_response(folder)


def _fake_pha(folder, name, counts, exposure=100.0, tstart=None):
    kw = {"RESPFILE": "toy.rmf", "ANCRFILE": "toy.arf"}
    if tstart is not None:
        kw.update(TSTART=float(tstart), TSTOP=float(tstart) + exposure)
    return write_pha(folder / name, np.asarray(counts, dtype=int), exposure=exposure, keywords=kw)


def _one_line_error(err, *needles):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("xspec-sbi")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_prior_syntax_is_a_usage_error_naming_the_option(toy_files, capsys):
    pha = _fake_pha(toy_files, "err.pha", np.full(12, 50))
    code, _, err = run(["fit", pha, "--model", "tbabs*powerlaw", "--prior", "powerlaw.norm=log:1e-3"],
                       capsys)
    assert code == 2
    _one_line_error(err, "--prior", "powerlaw.norm=log:1e-3", "NAME=KIND:LO:HI")


def test_unknown_parameter_is_a_usage_error_listing_the_known_ones(toy_files, capsys):
    pha = _fake_pha(toy_files, "err.pha", np.full(12, 50))
    code, _, err = run(["fit", pha, "--model", "tbabs*powerlaw", "--prior", "powerlaw.gamma=uniform:1:3"],
                       capsys)
    assert code == 2
    _one_line_error(err, "powerlaw.gamma", "powerlaw.PhoIndex")


def test_missing_spectrum_is_a_failure_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nowhere.pha"
    code, _, err = run(["fit", missing, "--model", "tbabs*powerlaw"], capsys)
    assert code == 1
    _one_line_error(err, str(missing))


def test_other_usage_errors(toy_files, capsys):
    pha = _fake_pha(toy_files, "err.pha", np.full(12, 50))
    code, _, err = run(["fit", pha], capsys)                       # no --model
    assert code == 2
    _one_line_error(err, "--model")
    code, _, err = run(["fit", pha, "--model", "tbabs*powerlaw", "--restrict", "counts:abc"], capsys)
    assert code == 2
    _one_line_error(err, "--restrict")
    code, _, err = run(["fit", pha, "--model", "tbabs*powerlaw", "--executor", "localhost:8786"], capsys)
    assert code == 2
    _one_line_error(err, "--executor", "dask://HOST:PORT")
    code, _, err = run(["fit", pha, "--model", "tbabs*nosuchmodel"], capsys)
    assert code == 2
    _one_line_error(err, "nosuchmodel")


def test_flux_options_are_checked_before_any_simulation(toy_files, capsys):
    pha = _fake_pha(toy_files, "err.pha", np.full(12, 50))
    base = ["fit", pha, "--model", "tbabs*powerlaw"]
    for extra, needles in [(["--flux", 2, 0.5], ("--flux 2 0.5", "low < high")),
                           (["--flux", 20, 50], ("--flux 20 50", "outside the model's energy grid")),
                           (["--lumin", 0.5, 2, 0], ("--lumin 0.5 2 0", "redshift 0.0: must be > 0")),
                           (["--flux", 0.5, 2, "--cosmo", 70, 0, 0.73], ("--cosmo", "--lumin")),
                           (["--lumin", 0.5, 2, 0.1, "--cosmo", 70, 0, 1.5], ("--cosmo", "lambda0=1.5")),
                           (["--unabsorbed"], ("--unabsorbed", "--flux"))]:
        code, _, err = run(base + extra, capsys)
        assert code == 2, (extra, err)
        _one_line_error(err, *needles)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(cli.CommandError) as exc:
        cli.main(["fit", str(tmp_path / "nowhere.pha"), "--model", "tbabs*powerlaw", "--debug"])
    assert "nowhere.pha" in str(exc.value)


def test_parse_prior():
    assert cli.parse_prior("powerlaw.norm=log:1e-3:10") == ("powerlaw.norm", ("log", 1e-3, 10.0))
    assert cli.parse_prior("TBabs.nH=lin:0:2") == ("TBabs.nH", ("uniform", 0.0, 2.0))
    assert cli.parse_prior("TBabs.nH=log") == ("TBabs.nH", "log")
    for bad in ("TBabs.nH", "=log:1:2", "TBabs.nH=gauss:1", "TBabs.nH=log:a:2", "TBabs.nH=log:1:2:3"):
        with pytest.raises(cli.UsageError):
            cli.parse_prior(bad)


# -- fit end to end on a real spectrum ------------------------------------------------
def test_fit_writes_the_report_folder(shared_data, tmp_path, capsys):
    pn = shared_data / "xmm_pn_ngc7793_ulx4" / "PN.pha"
    if not pn.is_file():
        pytest.skip(f"{pn} is absent")
    out = tmp_path / "report"
    code, stdout, err = run(
        ["fit", pn, "--model", "tbabs*powerlaw", "--ignore", "**-0.5 8.-**", "--sims", 500,
         "--samples", 500, "--chain-length", 800, "--chain-burn", 200, "--restrict", "none",
         "--max-epochs", 30, "--workers", 1, "--prior", "TBabs.nH=uniform:0:0.5",
         "--prior", "powerlaw.PhoIndex=uniform:1.5:2.5", "--prior", "powerlaw.norm=log:2e-4:1e-3",
         "--flux", 0.5, 2, "--lumin", 2, 8, 0.05, "--unabsorbed", "--out", out, "-q"], capsys)
    assert code == 0, err
    assert "SBI median" in stdout and "MCMC median" in stdout and "report:" in stdout
    assert "unabsorbed flux 0.5-2 keV:" in stdout and "lumin 2-8 keV (source frame) at z = 0.05" in stdout
    for name in ("summary.json", "posterior_samples.npz", "sbi_chain.fits", "mcmc_chain.fits",
                 "corner.png", "spectrum.png", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    npz = np.load(out / "posterior_samples.npz")
    assert list(npz["names"]) == ["TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]
    for i, name in enumerate(npz["names"]):
        assert summary["parameters"][name]["median"] == pytest.approx(np.median(npz["samples"][:, i]))
    assert summary["statistic"] == "wstat"            # PN.pha names its background file
    fluxes = summary["fluxes"]
    assert [(f["kind"], f["unabsorbed"]) for f in fluxes] == [
        ("flux", False), ("flux", True), ("lumin", False), ("lumin", True)]
    assert fluxes[1]["absorbers"] == ["TBabs"]
    assert fluxes[1]["energy_flux_erg_cm2_s"]["median"] > fluxes[0]["energy_flux_erg_cm2_s"]["median"]
    assert "Fluxes and luminosities" in (out / "report.html").read_text()
    # refuses to overwrite the report without --overwrite, before any work
    code, _, err = run(["fit", pn, "--model", "tbabs*powerlaw", "--out", out], capsys)
    assert code == 1
    _one_line_error(err, "summary.json", "--overwrite")


# -- train + apply --------------------------------------------------------------------
def _fakeit_counts(toy_files, norm, index, seed, exposure=100.0):
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.data.spectrum import load_spectrum
    from xspec_sbi.model.library import XspecSettings, configure
    from xspec_sbi.model.expression import Model
    configure(XspecSettings())
    template = load_spectrum(_fake_pha(toy_files, "template.pha", np.zeros(12), exposure=exposure))
    model = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.5}).freeze("TBabs.nH")
    fake = fakeit_spectrum(template, model, [index, norm], np.random.default_rng(seed))
    return fake.counts


def test_train_then_apply_gives_tracks_and_lists_another_setup(toy_files, tmp_path, capsys):
    truths = [(1.0, 1.7), (4.0, 2.3)]     # (norm, PhoIndex) of two spectra of one set-up
    files = [_fake_pha(toy_files, f"burst{i}.pha", _fakeit_counts(toy_files, n, g, seed=10 + i),
                       tstart=1000.0 + 200.0 * i) for i, (n, g) in enumerate(truths)]
    net = tmp_path / "net"
    setup = ["--model", "tbabs*powerlaw", "--freeze", "TBabs.nH=0.5",
             "--prior", "powerlaw.norm=log:0.1:10", "--prior", "powerlaw.PhoIndex=uniform:1:3",
             "--sims", 500, "--restrict", "none", "--max-epochs", 40, "--workers", 1, "-q"]
    code, stdout, err = run(["train", files[0], *setup, "--save-network", net, "--samples", 200], capsys)
    assert code == 0, err
    saved = json.loads((net / cli.SETUP_NAME).read_text())
    assert saved["model"] == "tbabs*powerlaw" and saved["frozen"] == {"TBabs.nH": 0.5}
    assert saved["prior"]["powerlaw.norm"] == ["log", 0.1, 10.0]

    # no silent overwrite of a saved network
    code, _, err = run(["train", files[0], *setup, "--save-network", net], capsys)
    assert code == 1
    _one_line_error(err, str(net), "--overwrite")

    out = tmp_path / "tracks"
    code, stdout, err = run(["apply", net, *files, "--samples", 2000, "--out", out, "-q"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((out / "tracks.csv").open()))
    assert [r["spectrum"] for r in rows] == [str(f) for f in files]
    # mid-times from TSTART/TSTOP, relative to the earliest
    assert [float(r["time_s"]) for r in rows] == pytest.approx([0.0, 200.0])
    # each spectrum's draws were checked against its own exact likelihood, and the check is listed
    assert all(r["likelihood_check"] in ("passed", "failed") for r in rows)
    assert all(0 < float(r["ess_fraction"]) <= 1 and r["pareto_k"] for r in rows)
    npz = np.load(out / "samples.npz")
    assert npz["samples"].shape == (2, 2000, 2)
    names = list(npz["names"])
    assert names == ["powerlaw.PhoIndex", "powerlaw.norm"]
    for row, draws in zip(rows, npz["samples"]):
        for j, name in enumerate(names):
            lo, med, hi = np.quantile(draws[:, j], [0.16, 0.5, 0.84])
            assert float(row[f"{name}_median"]) == pytest.approx(med, rel=1e-5)
            assert float(row[f"{name}_lo68"]) <= float(row[f"{name}_median"]) <= float(row[f"{name}_hi68"])
    # the posteriors follow the truths: 4x the norm is seen as a larger norm, within a factor 2
    norms = [float(r["powerlaw.norm_median"]) for r in rows]
    assert norms[1] > 2 * norms[0]
    for med, (truth, _) in zip(norms, truths):
        assert truth / 2 < med < truth * 2
    assert (out / "tracks.png").stat().st_size > 5000

    # a spectrum with another exposure is accepted, judged by its own likelihood, and the
    # difference is listed (tests/test_apply_setups.py checks the answers and the refusals)
    other = _fake_pha(toy_files, "other.pha", _fakeit_counts(toy_files, 1.0, 1.7, seed=3, exposure=50.0),
                      exposure=50.0)
    code, _, err = run(["apply", net, files[0], other, "--out", tmp_path / "t2", "-q"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "t2" / "tracks.csv").open()))
    assert rows[0]["setup"] == "training set-up"
    assert rows[1]["setup"].startswith("exposure x 0.5 (50 s against 100 s)")


def test_demo_command_passes_its_options_to_the_demo(monkeypatch, capsys):
    from xspec_sbi import demo
    seen = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(argv) or 0)
    code, _, _ = run(["demo", "--quick", "--out", "runs/x", "--seed", 4], capsys)
    assert code == 0
    assert seen == [["--out", "runs/x", "--quick", "--seed", "4"]]


def test_a_fit_alone_starts_on_fewer_simulations_and_a_kept_network_on_the_papers(toy_files):
    """--sims unset: fit leaves it to sbi_fit (3,000 there); train and --save-network take 10,000."""
    from xspec_sbi.cli.commands import prepare
    from xspec_sbi.cli.parser import build_parser
    pha = _fake_pha(toy_files, "sims.pha", np.full(12, 50))
    parser = build_parser()
    base = [str(pha), "--model", "tbabs*powerlaw", "--prior", "powerlaw.norm=log:1e-3:10"]
    cases = [(["fit"] + base, None), (["fit"] + base + ["--save-network", str(toy_files / "n")], 10_000),
             (["train"] + base + ["--save-network", str(toy_files / "t")], 10_000),
             (["fit"] + base + ["--sims", "700"], 700)]
    for argv, expected in cases:
        assert prepare(parser.parse_args(argv)).args.sims == expected, argv
