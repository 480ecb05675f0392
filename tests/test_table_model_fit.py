"""A table model through ``sbi_fit`` end to end, on a tiny budget (``refine=False``).

``tbabs*atable{powerlaw grid}`` on the paper's NICER-like response: simulation,
training, the exact-likelihood check, the fit and the chain all run on the
table's engine evaluation, and the result names the table's parameters.
"""
from __future__ import annotations

import numpy as np
import pytest

from table_model_support import write_table
from xspec_sbi.api import sbi_fit
from xspec_sbi.forward.simulate import fakeit_spectrum
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.model.evaluation import powerlaw_integral
from xspec_sbi.model.expression import Model
from xspec_sbi.model.library import XspecSettings, configure
from xspec_sbi.presets.nicer import reference_spectrum
from xspec_sbi.session import Session

EDGES = np.geomspace(0.1, 20.0, 301).astype(np.float32).astype(np.float64)
GAMMA = np.round(np.arange(0.5, 3.01, 0.25), 10)


@pytest.fixture(scope="module")
def table_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "pltab.fits"
    write_table(path, "pltab", [("PhoIndex", 0, 1.7, 0.01, 0.5, 0.5, 3.0, 3.0, GAMMA)], EDGES,
                lambda p: powerlaw_integral(EDGES, np.array([p[0]])))
    settings = XspecSettings("wilm", "vern")
    configure(settings)
    model = Model(f"tbabs*atable{{{path}}}").set(**{"TBabs.nH": 0.2, "pltab.PhoIndex": 1.7,
                                                     "pltab.norm": 1.0})
    template = reference_spectrum(2000, model=model)
    observed = fakeit_spectrum(template, model, model.free_values(), np.random.default_rng(6))
    return Session((observed,), model, settings)


def test_sbi_fit_runs_on_a_table_model(table_session):
    r = sbi_fit(table_session,
                prior={"TBabs.nH": ("uniform", 0.1, 0.3), "pltab.PhoIndex": ("uniform", 1.0, 2.5),
                       "pltab.norm": ("log", 0.1, 10.0)},
                restrict=None, n_simulations=300, n_samples=1000, chain_length=1000,
                chain_burn=200, seed=3, workers=1, config=NPEConfig(max_epochs=5, patience=2),
                refine=False, progress=False)
    assert r.names == ("TBabs.nH", "pltab.PhoIndex", "pltab.norm")
    assert np.all(np.isfinite(r.samples)) and r.samples.shape == (1000, 3)
    # the C-stat fit on the table model finds the truth within a few of its errors
    # (2000 counts: PhoIndex to ~0.1)
    assert abs(r.best_theta[1] - 1.7) < 0.4
    assert abs(np.log(r.best_theta[2])) < 0.5


def test_fingerprint_holds_the_table_content_not_only_its_name(table_session, tmp_path):
    import os
    import time
    path = tmp_path / "own.fits"

    def session(scale):
        write_table(path, "pltab", [("PhoIndex", 0, 1.7, 0.01, 0.5, 0.5, 3.0, 3.0, GAMMA)],
                    EDGES, lambda p: scale * powerlaw_integral(EDGES, np.array([p[0]])))
        os.utime(path, ns=(time.time_ns(), time.time_ns()))   # a new stamp for the reader's cache
        return Session(table_session.spectra, Model(f"tbabs*atable{{{path}}}"),
                       table_session.settings)

    before = session(1.0).fingerprint()
    time.sleep(0.01)
    # Same name, edited in place (brighter by 10 %): a network trained on it must be refused.
    after = session(1.1).fingerprint()
    assert before["tables"] and after["model"] == before["model"]
    assert after["tables"] != before["tables"]
    # A model without tables keeps the fingerprint keys networks were saved with.
    plain = Session(table_session.spectra, Model("tbabs*powerlaw"), table_session.settings)
    assert "tables" not in plain.fingerprint()
