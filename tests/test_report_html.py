"""report.html renders in a real browser: embedded PNG figures, tables, a non-blank page."""
from __future__ import annotations

import base64
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
    result = sbi_fit(session, prior=table1_prior(1), restrict=None, n_simulations=500, n_samples=500,
                     chain_length=800, chain_burn=200, workers=1, seed=0, progress=False,
                     config=NPEConfig(max_epochs=30))
    out = write_report(result, tmp_path_factory.mktemp("report"), title="report test", notes=[note])
    return result, out


def test_report_dom_has_embedded_figures_and_tables(report, tmp_path):
    result, out = report
    proc = _chromium(tmp_path, "--dump-dom", (out / "report.html").resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    images = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(images) == 2                                   # corner plot and folded spectrum
    for data, name in zip(images, ("corner.png", "spectrum.png")):
        png = base64.b64decode(data)
        assert png.startswith(PNG_MAGIC)
        assert png == (out / name).read_bytes()               # the very file, not a placeholder
    tables = re.findall(r"<table>(.*?)</table>", dom, flags=re.S)
    assert len(tables) == 1
    rows = re.findall(r"<tr>(.*?)</tr>", tables[0], flags=re.S)
    assert len(rows) == 1 + len(result.names)
    assert "MCMC median" in rows[0]
    for name, row in zip(result.names, rows[1:]):
        assert name in row
        cells = re.findall(r"<td>(.*?)</td>", row)
        med = result.summaries[list(result.names).index(name)].median
        assert float(cells[1]) == pytest.approx(med, rel=1e-4)
    assert "report test" in dom and "<pre>" in dom


def test_report_screenshot_is_not_blank(report, tmp_path):
    from matplotlib.image import imread

    _, out = report
    shot = tmp_path / "page.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000",
                     (out / "report.html").resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    # a blank page is one colour; a rendered report has text and two figures
    assert pixels.std() > 0.05
    non_white = np.any(pixels < 0.9, axis=2).mean()
    assert non_white > 0.02
    # the figures are drawn: several distinct colours (the SBI and MCMC ones among them)
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8) // 32, axis=0)
    assert len(colours) > 10
