"""From command-line options to a model, a prior and a session, checked at the edge.

Every refusal names the option or file at fault and says what to do; what is
accepted but doubtful (an all-zero spectrum, non-integer counts under a
Poisson statistic) is said as a warning naming the file.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path


from xspec_sbi.cli.errors import CommandError, UsageError
from xspec_sbi.cli.parser import parse_freeze, parse_prior
from xspec_sbi.data.grouping import SpectrumError
from xspec_sbi.data.ogip import OGIPFileNotFoundError

__all__ = ["model_and_prior", "check_soft_limits", "build_session", "describe", "response_note"]

log = logging.getLogger("xspec_sbi")

_ROW = re.compile(r"^(?P<path>.*)\{(?P<row>[^{}]*)\}\s*$")


def model_and_prior(expression: str, freeze, prior_texts, group_free=(), n_spectra: int = 1):
    """Model with ``--group-free`` and ``--freeze`` applied, and the ``--prior`` overrides by canonical name.

    With ``--group-free`` the model has one data group per spectrum
    (:func:`xspec_sbi.model.groups.free_per_group`); ``--freeze`` and
    ``--prior`` then also take group copies, ``NAME[g]``.

    Returns
    -------
    (Model or GroupedModel, dict, BoxPrior)
    """
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.model.expression import Model
    from xspec_sbi.model.groups import free_per_group
    try:
        model = Model(expression)
    except ValueError as exc:
        raise UsageError(f"--model {expression!r}: {exc}") from None
    if group_free:
        if n_spectra < 2:
            raise UsageError(f"--group-free {' '.join(group_free)}: one data group per spectrum "
                             "needs at least two spectra")
        try:
            model = free_per_group(model, n_spectra, group_free)
        except ValueError as exc:
            raise UsageError(f"--group-free: {exc}") from None
    for text in freeze:
        name, value = parse_freeze(text)
        try:
            if value is not None:
                model = model.set(**{name: value})
            model = model.freeze(name)
        except ValueError as exc:
            raise UsageError(f"--freeze {text!r}: {exc}") from None
    if not model.free_parameters:
        raise UsageError(f"--freeze: every parameter of {model.expression} is frozen; leave at "
                         "least one free (drop it from --freeze)")
    overrides, given = {}, {}
    for text in prior_texts:
        name, spec = parse_prior(text)
        try:
            canonical = model.parameters[model.index_of(name)].name
        except ValueError as exc:
            raise UsageError(f"--prior {text!r}: {exc}") from None
        if canonical in given:
            raise UsageError(f"--prior given twice for {canonical} ({given[canonical]!r} and "
                             f"{text!r}): give it once")
        if model.parameters[model.index_of(name)].frozen:
            raise UsageError(f"--prior {text!r}: {canonical} is frozen (--freeze); a prior is for "
                             "free parameters only")
        given[canonical] = text
        overrides[canonical] = spec
    try:
        box = build_prior(model.parameters, overrides)
    except ValueError as exc:
        raise UsageError(f"--prior: {exc}") from None
    return model, overrides, box


def check_soft_limits(model, overrides) -> None:
    """Refuse a free norm left at XSPEC's soft limits (0 to 1e24), naming the --prior to give.

    ``sbi_fit`` refuses it too, but after the session and the output folder, and
    in its own words (``prior={...}`` first); the spectra are checked before it,
    as XSPEC reads the data before the model.
    """
    from xspec_sbi.options import too_wide_soft_limits, too_wide_text
    p = too_wide_soft_limits(model.free_parameters, overrides)
    if p is not None:
        raise UsageError(f"{too_wide_text(p)}; give --prior {p.name}=log:LO:HI")


def _check_spectrum_path(text: str) -> None:
    m = _ROW.match(text)
    if m is not None and not m.group("row").strip().isdigit():
        raise UsageError(f"{text}: row selector {{{m.group('row')}}} is not a row number; write "
                         f"{m.group('path')}{{N}} with N the 1-based row of a type II file")
    bare = m.group("path") if m is not None else text
    if not Path(bare).is_file():
        raise CommandError(f"{text}: spectrum file not found"
                           + (f" ({bare} does not exist)" if bare != text else ""))


def _check_nicer_arf(path: str) -> None:
    from xspec_sbi.data.ogip import OGIPError, header_keywords
    if not Path(path).is_file():
        raise CommandError(f"--nicer-like-arf {path}: file not found")
    try:
        header = header_keywords(path, ("TELESCOP", "INSTRUME"), "SPECRESP")
    except OGIPError as exc:
        raise CommandError(f"--nicer-like-arf {exc}") from None
    telescope = str(header.get("TELESCOP", "")).strip()
    if telescope and telescope.upper() != "NICER":
        raise UsageError(f"--nicer-like-arf {path}: TELESCOP={telescope!r}, not NICER; the "
                         "NICER-like redistribution models NICER's XTI only: give this ARF with "
                         f"--arffile and the {telescope} RMF with --respfile")
    if not telescope:
        log.warning("--nicer-like-arf %s: no TELESCOP keyword; taken to be NICER's ARF", path)


def build_session(spectra, model, *, ignore, notice, abund, xsect, respfile, arffile, backfile,
                  nicer_like_arf, group=None):
    """The session of the given PHA files, with the options' response, background and channels.

    ``group`` (channels a bin, ``--regroup``) replaces each file's GROUPING column
    before ``ignore``/``notice``, keeping its QUALITY, as ``ftgrouppha
    grouptype=constant`` would.
    """
    from dataclasses import replace

    from xspec_sbi.session import Session, SessionError
    response = None
    if nicer_like_arf:
        if respfile or arffile:
            raise UsageError("--nicer-like-arf replaces the response: drop --respfile/--arffile")
        _check_nicer_arf(nicer_like_arf)
        from xspec_sbi.data.response import nicer_like_response
        response = nicer_like_response(nicer_like_arf)
    for s in spectra:
        _check_spectrum_path(str(s))
    from xspec_sbi.model.groups import GroupedModel
    groups = "per-file" if isinstance(model, GroupedModel) else None
    try:
        session = Session.from_files(list(spectra), model, ignore=None if group else ignore,
                                     notice=None if group else notice, respfile=respfile,
                                     ancrfile=arffile, backfile=backfile, response=response,
                                     abund=abund, xsect=xsect, groups=groups)
    except OGIPFileNotFoundError as exc:
        raise _missing_file(exc) from None
    except SessionError as exc:
        if "no noticed bins" not in str(exc) or not (ignore or notice):
            raise
        given = " ".join(f"{o} {v!r}" for o, v in (("--ignore", ignore), ("--notice", notice)) if v)
        raise UsageError(f"{given}: {exc}; every bin is ignored, notice some (a band inside the "
                         "response's channels)") from None
    except SpectrumError:
        _blame_selection(spectra, ignore=None if group else ignore, notice=None if group else notice,
                         respfile=respfile, arffile=arffile, backfile=backfile, response=response)
        raise
    if group:
        from xspec_sbi.presets.nicer import paper_grouping
        regrouped = []
        for s in session.spectra:
            s = replace(s, grouping=paper_grouping(s.n_channels, int(group)), noticed=None)
            regrouped.append(_select(s, ignore, notice))
        session = replace(session, spectra=tuple(regrouped))
    return session


def _select(spectrum, ignore, notice):
    """``spectrum`` with --ignore then --notice applied; a selection it refuses is a usage error naming the option."""
    for option, selection in (("--ignore", ignore), ("--notice", notice)):
        if not selection:
            continue
        try:
            spectrum = spectrum.ignore(selection) if option == "--ignore" else spectrum.notice(selection)
        except SpectrumError as exc:
            raise UsageError(f"{option} {selection!r}: {exc}") from None
    return spectrum


def _blame_selection(spectra, *, ignore, notice, respfile, arffile, backfile, response) -> None:
    """After a failed load: the --ignore/--notice at fault as a usage error, if it is one.

    The spectra are loaded again without the selections (on this error path
    only); where they load, each selection is applied alone, and the first
    one refused is named with the option the user typed.
    """
    from xspec_sbi.data.spectrum import load_spectrum
    for path in spectra:
        try:
            s = load_spectrum(path, respfile="none" if response is not None else respfile,
                              ancrfile="none" if response is not None else arffile,
                              backfile=backfile)
            s = s.with_response(response) if response is not None else s
        except (OSError, ValueError):
            return     # the file itself is at fault: the original error says so
        _select(s, ignore, notice)


_FILE_OPTIONS = {"RESPFILE": "--respfile", "ANCRFILE": "--arffile", "BACKFILE": "--backfile"}


def _missing_file(exc) -> Exception:
    """A missing RESPFILE/ANCRFILE/BACKFILE said with this command's options, not the library's keywords."""
    option = _FILE_OPTIONS.get(exc.keyword)
    if option is None:
        return CommandError(str(exc))
    origin = f"the {exc.keyword} keyword" if exc.from_header else option
    return CommandError(f"{exc.spectrum}: file {exc.missing} (from {origin}) not found; give "
                        f"{option} none to load without it, or {option} PATH")


def describe(session, box) -> None:
    """The session and the prior as step messages (details at --verbose)."""
    for s in session.spectra:
        resp = s.response
        rtext = resp.rmf_path or getattr(resp, "description", None) or "response from arrays"
        log.debug("  %s: %.0f counts in %d bins, exposure %g s%s\n    response: %s%s", s.label,
                  s.binned_counts().sum(), s.n_bins, s.exposure,
                  ", with background" if s.background is not None else "", rtext,
                  f" + {resp.arf_path}" if resp.arf_path and resp.rmf_path else "")
    log.info("model %s, free: %s (abund %s, xsect %s)", session.model.expression,
             ", ".join(session.model.free_names), session.settings.abund, session.settings.xsect)
    for p in box.parameters:
        log.debug("  prior %s: %s %s", p.name, p.describe(), p.unit)


def response_note(nicer_like_arf) -> list[str]:
    """The report's note on an approximate response."""
    if nicer_like_arf:
        return [f"NICER-like response: ARF {nicer_like_arf} with Gaussian redistribution "
                "(the real NICER RMF was not used)"]
    return []
