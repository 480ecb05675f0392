"""report.html renders in a real browser: every section, decoded figures, tables, a readable page.

The page itself has no script. The test loads an instrumented copy: a probe
script, added before ``</body>``, measures what Chromium drew (image sizes after
decoding, table rows, section heights, the residual switch) and writes it as
JSON into the DOM that ``--dump-dom`` returns.
"""
from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PROBE = """<script>
window.addEventListener("load", () => {
  const box = e => e.getBoundingClientRect();
  const sections = [...document.querySelectorAll("section")].map(s => ({
    id: s.id, height: box(s).height, text: s.innerText.trim().length,
    images: [...s.querySelectorAll("img")].map(i => ({alt: i.alt, complete: i.complete,
                                                      width: i.naturalWidth, height: i.naturalHeight})),
    tables: [...s.querySelectorAll("table")].map(t => ({
      rows: t.querySelectorAll("tr").length,
      empty_cells: [...t.querySelectorAll("td")].filter(td => td.innerText.trim() === "").length}))}));
  const shown = () => [...document.querySelectorAll("#spectrum .fig")].filter(
    f => getComputedStyle(f).display !== "none").map(f => f.className);
  const before = shown();
  document.getElementById("res-ratio").click();
  const after = shown();
  const states = [...document.querySelectorAll("#checks td .state")].map(
    s => [s.innerText.trim(), getComputedStyle(s).backgroundColor]);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({sections, before, after, states});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from xspec_sbi.api import sbi_fit
    from xspec_sbi.demo import reference_session
    from xspec_sbi.inference.config import NPEConfig
    from xspec_sbi.presets.table1 import table1_prior
    from xspec_sbi.report.folder import write_report

    session, note = reference_session(counts=2000.0, seed=1)
    # a restricted prior, so that the restricted-prior view and its rounds are drawn
    from xspec_sbi.model.flux import FluxRequest
    result = sbi_fit(session, prior=table1_prior(1), restrict="counts:1000-10000", n_simulations=500,
                     n_samples=500, chain_length=800, chain_burn=200, workers=1, seed=0,
                     progress=False, config=NPEConfig(max_epochs=30),
                     fluxes=[(0.5, 2.0), FluxRequest(0.5, 2.0, unabsorbed=True), (2.0, 10.0, 0.1)])
    out = write_report(result, tmp_path_factory.mktemp("report"), title="report test", notes=[note])
    return result, out


@pytest.fixture(scope="module")
def probe(report, tmp_path_factory):
    """What Chromium drew for each section (JSON written by the probe script)."""
    _, out = report
    tmp = tmp_path_factory.mktemp("probe")
    page = (out / "report.html").read_text()
    assert "<script" not in page                  # the report itself runs no script
    probed = tmp / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = _chromium(tmp, "--virtual-time-budget=10000", "--dump-dom", probed.resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert m, "the probe script did not run: " + proc.stdout[-1000:]
    return json.loads(html.unescape(m.group(1))), proc.stdout


def test_every_section_renders_with_decoded_figures_and_tables(report, probe):
    from xspec_sbi.report.html import SECTIONS

    result, _ = report
    data, _ = probe
    sections = {s["id"]: s for s in data["sections"]}
    assert set(SECTIONS) <= set(sections)
    assert "rounds" in sections                   # the restriction ran rounds
    for sid, s in sections.items():
        assert s["height"] > 40 and s["text"] > 20, f"section {sid} is empty"
        for img in s["images"]:
            assert img["complete"] and img["width"] > 200 and img["height"] > 150, (sid, img)
        for t in s["tables"]:
            assert t["rows"] >= 2 and t["empty_cells"] == 0, (sid, t)
    figures = {sid: len(sections[sid]["images"]) for sid in ("spectrum", "corner", "priors")}
    assert figures == {"spectrum": 2, "corner": 1, "priors": 1}
    k = len(result.names)
    assert sections["posterior"]["tables"][0]["rows"] == 1 + k
    assert sections["priors"]["tables"][0]["rows"] == 1 + k
    assert sections["calibration"]["tables"][0]["rows"] == 1 + 3       # 68, 90, 95 %
    assert sections["fluxes"]["tables"][0]["rows"] == 1 + 2 + 2 + 1     # energy, photon (x2), lumin
    assert len(sections["settings"]["tables"]) == 1                    # the run; the estimator is a grid


def test_status_panel_has_one_coloured_line_per_check(report, probe):
    from xspec_sbi.report.coverage import coverage_unavailable, report_coverage
    from xspec_sbi.report.status import STATES, check_lines

    result, _ = report
    data, _ = probe
    lines = check_lines(result, report_coverage(result), coverage_unavailable(result))
    assert [s for s, _ in data["states"]] == [c.state for c in lines]
    colours = {}
    for state, colour in data["states"]:
        assert state in STATES
        colours.setdefault(state, set()).add(colour)
    # one colour per state, a different one for each state
    assert all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)
    names = [c.name for c in lines]
    for needed in ("likelihood correction", "effective sample size", "Pareto k", "posterior predictive",
                   "out-of-distribution", "restricted prior", "coverage of the network's intervals"):
        assert needed in names


def test_residual_switch_shows_one_figure_at_a_time(probe):
    data, _ = probe
    assert data["before"] == ["fig fig-delchi"]
    assert data["after"] == ["fig fig-ratio"]


def test_embedded_figures_are_the_report_files_and_numbers_match(report, probe):
    result, out = report
    _, dom = probe
    images = dict(re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom))
    assert set(images) == {"spectrum", "spectrum_ratio", "corner", "priors"}
    for name, data in images.items():
        png = base64.b64decode(data)
        assert png.startswith(PNG_MAGIC)
        assert png == (out / f"{name}.png").read_bytes()       # the very file, not a placeholder
    table = re.search(r'<section id="posterior">.*?<table>(.*?)</table>', dom, flags=re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]
    for s, row in zip(result.summaries, rows):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0] == s.name
        assert float(cells[2]) == pytest.approx(s.median, rel=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] >= 1
    assert summary["coverage"]["n_test"] == 100


def test_screenshot_is_a_readable_page(report, tmp_path):
    from matplotlib.image import imread

    _, out = report
    shot = tmp_path / "page.png"           # kept in the test's temporary folder to look at
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,5200",
                     (out / "report.html").resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (5200, 1200)
    # a blank page is one colour; a rendered report has text, tables and four figures
    assert pixels.std() > 0.05
    non_white = np.any(pixels < 0.9, axis=2).mean()
    assert non_white > 0.02
    # distinct colours at 3 bits a channel, each packed into one 9-bit code: np.unique(axis=0)
    # on the 6.2 million RGB rows gives the same count in 20 s (it sorts the rows as records)
    q = (pixels * 255).astype(np.uint8) // 32
    codes = (q[..., 0].astype(np.int32) << 6) | (q[..., 1] << 3) | q[..., 2]
    colours = np.count_nonzero(np.bincount(codes.ravel(), minlength=512))
    assert colours > 10
    # the status panel's green, amber or red badges are on the page
    badge = np.array([[0xd8, 0xf3, 0xdc], [0xff, 0xf3, 0xbf], [0xff, 0xd6, 0xd6]]) / 255
    assert any(np.all(np.abs(pixels - b) < 0.02, axis=2).sum() > 200 for b in badge)
