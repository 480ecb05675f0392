"""Set-ups for ``apply`` and ``fit --network``: the spectra's sessions, the training one, a network across set-ups.

A saved network's ``setup.json`` rebuilds the session of each spectrum (with
its own ARF under ``--nicer-like-arf header``) and of the training spectrum,
so that a spectrum of another set-up can be compared property by property
with the one the network was trained on (:func:`xspec_sbi.amortized.setup_differences`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from xspec_sbi.amortized import exposure_note
from xspec_sbi.cli.errors import CommandError
from xspec_sbi.cli.inputs import build_session
from xspec_sbi.cli.setup_file import SETUP_NAME, load_setup, setup_model

__all__ = ["load_posterior", "own_arf", "session_of", "training_session", "network_for"]

log = logging.getLogger("xspec_sbi")


def load_posterior(network, fingerprint, device):
    """The saved posterior; a file that cannot be read is named, without torch's internals."""
    from xspec_sbi.inference.config import FingerprintMismatch
    from xspec_sbi.inference.posterior import NeuralPosterior
    try:
        return NeuralPosterior.load(network, fingerprint, device=device)
    except (FingerprintMismatch, FileNotFoundError):
        raise
    except Exception as exc:   # truncated weights, edited sizes, broken JSON: one short line
        first = " ".join(str(exc).split())[:160]
        raise CommandError(f"{network}: saved network cannot be loaded ({type(exc).__name__}: "
                           f"{first}...); it was edited or truncated: save it again") from None


def own_arf(spec: str) -> str:
    """The NICER ARF a spectrum names (ANCRFILE), beside the file when the path is relative."""
    from xspec_sbi.data.ogip import OGIPError, header_keywords
    bare = re.sub(r"\{[^{}]*\}\s*$", "", str(spec))
    try:
        name = str(header_keywords(bare, ("ANCRFILE",), "SPECTRUM").get("ANCRFILE") or "").strip()
    except OGIPError as exc:
        raise CommandError(f"--nicer-like-arf header: {exc}") from None
    if not name or name.lower() == "none":
        raise CommandError(f"{spec}: no ANCRFILE keyword; --nicer-like-arf header needs one "
                           "(or give the ARF: --nicer-like-arf ARF)")
    path = Path(name) if Path(name).is_absolute() else Path(bare).parent / name
    if not path.is_file():
        raise CommandError(f"{spec}: ANCRFILE={name} not found ({path})")
    return str(path)


def session_of(spectra, model, setup, nicer_like_arf):
    return build_session(spectra, model, ignore=setup["ignore"], notice=setup["notice"],
                         abund=setup["abund"], xsect=setup["xsect"], respfile=setup["respfile"],
                         arffile=setup["arffile"], backfile=setup["backfile"],
                         nicer_like_arf=nicer_like_arf, group=setup.get("group"))


def training_session(setup, model):
    """The training spectrum's session, rebuilt from setup.json (None when its file is gone)."""
    spectra = setup["training_spectra"]
    bare = re.sub(r"\{[^{}]*\}\s*$", "", spectra[0])
    if not Path(bare).is_file() or (setup["nicer_like_arf"] and not Path(setup["nicer_like_arf"]).is_file()):
        return None
    return session_of(spectra, model, setup, setup["nicer_like_arf"])


def network_for(network, session, box, cfg, device):
    """What ``fit --network`` loads for ``session``: the folder, or the posterior across set-ups.

    A spectrum whose set-up differs from the training spectrum's only in what
    its exact likelihood accounts for (exposure, ARF or RMF values, scales,
    background level) gets the network loaded against the training set-up
    (read at its exposure ratio); the pipeline's check then weighs the draws
    by this spectrum's own likelihood. Otherwise the folder is returned and
    loading checks the fingerprint as always.
    """
    from xspec_sbi.amortized import SetupError, setup_differences
    from xspec_sbi.api import network_fingerprint
    from xspec_sbi.inference.persistence import fingerprint_differences
    if not (Path(network) / SETUP_NAME).is_file():   # saved by sbi_fit(save=): loaded as it is
        return network
    setup = load_setup(network)
    if len(session.spectra) != 1 or len(setup["training_spectra"]) != 1:
        return network
    training = training_session(setup, setup_model(setup, Path(network) / SETUP_NAME))
    if training is None:
        return network
    wanted = network_fingerprint(training, box, cfg)
    if fingerprint_differences(wanted, network_fingerprint(session, box, cfg)) != ["spectra_setup"]:
        return network        # the same set-up, or another model/prior: loading says which
    template, spectrum = training.spectra[0], session.spectra[0]
    try:
        words = setup_differences(template, spectrum)
    except SetupError as exc:
        raise CommandError(f"--network {network}: {exc}; the network was trained on "
                           f"{template.label}") from None
    factor = spectrum.exposure / template.exposure
    note = exposure_note(cfg, factor)
    log.info("%s: set-up differs from the network's training spectrum %s: %s%s; its draws are "
             "weighted by this spectrum's own exact likelihood", spectrum.label, template.label,
             "; ".join(words) or "response values", f" ({note})" if note else "")
    return load_posterior(network, wanted, device).at_exposure(factor)
