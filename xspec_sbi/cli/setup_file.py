"""``setup.json``: what rebuilds the session of a saved network, for ``apply``.

Written by ``train`` and ``fit --save-network`` inside the network folder:
the model with its frozen values, the prior, the XSPEC settings, the file
options (absolute paths), the NPE settings, the fingerprint, and the
training spectrum's properties one by one (exposure, response, grouping,
notice state, scales, background), so that ``apply`` can say which of them a
refused spectrum does not share.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from xspec_sbi.cli.errors import CommandError

__all__ = ["SETUP_NAME", "SETUP_FORMAT", "setup_record", "load_setup", "setup_model",
           "spectrum_properties", "property_differences"]

#: Set-up file written inside a saved network folder.
SETUP_NAME = "setup.json"
SETUP_FORMAT = "xspec_sbi.cli-setup/1"
_KEYS = ("model", "frozen", "prior", "ignore", "notice", "abund", "xsect", "respfile", "arffile",
         "backfile", "nicer_like_arf", "training_spectra", "npe_config")


def _abs(path):
    return None if path is None or str(path).lower() in ("", "none") else os.path.abspath(path)


def setup_record(args, model, overrides, result) -> dict:
    """The set-up record of a trained network (paths made absolute; ``none`` kept)."""
    from xspec_sbi.api import network_fingerprint
    from dataclasses import asdict
    keep = lambda v: v if v is None or str(v).lower() == "none" else os.path.abspath(v)  # noqa: E731
    return {
        "format": SETUP_FORMAT,
        "model": model.expression,
        "frozen": {p.name: p.value for p in model.parameters if p.frozen},
        "prior": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "ignore": args.ignore, "notice": args.notice,
        "abund": args.abund, "xsect": args.xsect,
        "respfile": keep(args.respfile), "arffile": keep(args.arffile),
        "backfile": keep(args.backfile), "nicer_like_arf": _abs(args.nicer_like_arf),
        "group": args.group,   # absent from older set-ups: the files' own grouping
        "training_spectra": [os.path.abspath(s) for s in args.spectra],
        "npe_config": asdict(result.posterior.config),
        "prior_box": result.prior.to_dict(),
        "fingerprint": network_fingerprint(result.session, result.prior, result.posterior.config),
        "settings": {k: getattr(result.settings, k)
                     for k in ("restrict", "n_simulations", "rounds", "seed", "versions")},
        "spectrum_properties": [spectrum_properties(s) for s in result.session.spectra],
    }


def load_setup(network) -> dict:
    """Read ``setup.json`` of a saved network folder, with the file named in any error."""
    path = Path(network) / SETUP_NAME
    if not Path(network).is_dir():
        raise CommandError(f"{network}: network folder not found")
    if not path.is_file():
        raise CommandError(f"{path}: not found; apply needs a network saved by "
                           "'xspec-sbi train' or 'xspec-sbi fit --save-network'")
    try:
        setup = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: not valid JSON ({exc}); the file was edited or truncated: "
                           "save the network again") from None
    if not isinstance(setup, dict) or setup.get("format") != SETUP_FORMAT:
        found = setup.get("format") if isinstance(setup, dict) else type(setup).__name__
        raise CommandError(f"{path}: format {found!r}, expected {SETUP_FORMAT!r}")
    missing = [k for k in _KEYS if k not in setup]
    if missing:
        raise CommandError(f"{path}: keys {missing} missing; the file was edited: save the "
                           "network again")
    return setup


def setup_model(setup, path=""):
    """The model of a set-up record, frozen values applied (errors name ``setup.json``)."""
    from xspec_sbi.model.expression import Model
    try:
        model = Model(setup["model"])
        for name, value in setup["frozen"].items():
            model = model.set(**{name: value}).freeze(name)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CommandError(f"{path or SETUP_NAME}: model or frozen values unusable ({exc}); the "
                           "file was edited: save the network again") from None
    return model


# -- the training spectrum's properties, one by one --------------------------------
def _digest(*arrays) -> str | None:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"-")
            continue
        a = np.ascontiguousarray(np.asarray(a, dtype=float))
        h.update(str(a.shape).encode())
        h.update(np.round(a, 12).tobytes())
    return h.hexdigest()[:16]


def spectrum_properties(spectrum) -> dict:
    """What a network trained on ``spectrum`` depends on, property by property.

    Returns
    -------
    dict
        ``exposure`` (s), and digests of ``response`` (energy grid, matrix,
        ARF), ``grouping`` (channel -> bin, quality), ``notice`` (noticed
        bins), ``scales`` (BACKSCAL, AREASCAL) and ``background`` (None
        without one).
    """
    resp = spectrum.response
    matrix = resp.matrix
    bkg = spectrum.background
    return {
        "exposure": float(spectrum.exposure),
        "response": _digest(resp.energ_lo, resp.energ_hi, matrix.indptr, matrix.indices,
                            matrix.data, resp.arf, [resp.first_channel]),
        "grouping": _digest(spectrum.bin_index, spectrum.quality),
        "notice": _digest(spectrum.noticed),
        "scales": _digest(np.atleast_1d(spectrum.backscal), np.atleast_1d(spectrum.areascal)),
        "background": None if bkg is None else _digest(
            bkg.counts, [bkg.exposure], np.atleast_1d(bkg.backscal), np.atleast_1d(bkg.areascal)),
    }


_WHAT = {"response": "response (RMF/ARF)", "grouping": "grouping or quality",
         "notice": "noticed channels (--ignore/--notice)", "scales": "BACKSCAL/AREASCAL",
         "background": "background"}


def property_differences(saved: dict, current: dict) -> list[str]:
    """The properties in which ``current`` differs from ``saved``, in words."""
    out = []
    if not np.isclose(saved.get("exposure", np.nan), current["exposure"], rtol=1e-9):
        out.append(f"exposure {current['exposure']:g} s (training {saved.get('exposure')} s)")
    for key, words in _WHAT.items():
        if saved.get(key) != current[key]:
            if key == "background" and (saved.get(key) is None) != (current[key] is None):
                words += " (present in one, absent in the other)"
            out.append(words)
    return out
