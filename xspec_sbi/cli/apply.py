"""``xspec-sbi apply``: one saved network, many spectra, parameter tracks.

Before any sampling: the network's files are checked against its manifest,
each spectrum against the training set-up (a refusal names the file and the
property that differs) and against the training reference (out of
distribution: a warning per file, or a failure with ``--strict``). Then the
output folder is taken and ``tracks.csv``, ``tracks.png`` and
``samples.npz`` are written into it, all or none.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import numpy as np

from xspec_sbi.amortized import exposure_note
from xspec_sbi.cli.errors import CommandError
from xspec_sbi.cli.outputs import check_network, output_folder, refuse_existing
from xspec_sbi.cli.reference import load_reference
from xspec_sbi.cli.setups import load_posterior, own_arf, session_of, training_session
from xspec_sbi.cli.setup_file import (SETUP_NAME, load_setup, property_differences, setup_model,
                                      spectrum_properties)

__all__ = ["cmd_apply"]

log = logging.getLogger("xspec_sbi")


def _refusal(label, exc, setup, properties):
    """Why a spectrum's set-up differs from the training spectrum's, property by property."""
    training = setup["training_spectra"][0]
    saved = (setup.get("spectrum_properties") or [None])[0]
    if "spectra_setup" in str(exc) and saved is not None:
        differ = property_differences(saved, properties)
        if differ:
            return (f"{label}: set-up differs from the network's training spectrum {training} in "
                    f"{'; '.join(differ)}; apply needs spectra of the training set-up")
    keys = re.findall(r"differs in \[(.*?)\]", str(exc))
    what = keys[0] if keys else str(exc)
    hint = (" (spectra_setup: response, exposure, scaling, grouping, notice state and "
            "background must be those of the training spectrum)" if "spectra_setup" in what else "")
    return f"{label}: set-up differs from the network's training spectrum {training} in {what}{hint}"


def cmd_apply(args) -> int:
    """``xspec-sbi apply NETWORK SPEC.pha...``."""
    from xspec_sbi.inference.config import NPEConfig
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.result import summarize
    refuse_existing(args.out, "--out", args.overwrite)
    if not Path(args.network).is_dir():
        raise CommandError(f"{args.network}: network folder not found")
    check_network(args.network)          # edited or truncated files named before any is read
    setup = load_setup(args.network)
    setup_path = Path(args.network) / SETUP_NAME
    if len(setup["training_spectra"]) != 1:
        raise CommandError(f"{args.network}: trained on {len(setup['training_spectra'])} spectra "
                           "jointly; apply handles networks trained on one spectrum per observation")
    model = setup_model(setup, setup_path)
    try:
        box = build_prior(model.parameters, {k: tuple(v) if isinstance(v, list) else v
                                             for k, v in setup["prior"].items()})
        cfg = NPEConfig.from_dict(setup["npe_config"], source=str(setup_path))
    except (ValueError, TypeError) as exc:
        raise CommandError(f"{setup_path}: prior or npe_config unusable ({exc}); the file was "
                           "edited: save the network again") from None
    reference = load_reference(args.network)
    # the output folder is taken (and locked) before the spectra are read: an existing one
    # is refused at once, and a refusal below leaves nothing behind
    with output_folder(args.out, "--out", args.overwrite) as out:
        x, labels, counts, posterior, sessions, differences, factors = _read_spectra(
            args, setup, model, box, cfg)
        flags = _ood(reference, x, labels, args.strict)
        times, axis_label = _times(args.times, args.spectra)
        log.info("%d spectra of %s; sampling %d posterior draws each", len(x), model.expression,
                 args.samples)
        checked = _draws(posterior, sessions, box, x, labels, args, differences, factors)
        rounds = [""] * len(labels)
        if getattr(args, "refine", False) and checked.flagged:
            checked, rounds = _refine(posterior, sessions, box, x, factors, checked, args, setup)
        samples = checked.samples
        summaries = [summarize(box.names, s) for s in samples]
        _write_tracks_csv(out / "tracks.csv", labels, times, axis_label, counts, summaries, box,
                          flags, checked, rounds)
        _plot_tracks(out / "tracks.png", times, axis_label, summaries, box, model.expression)
        with open(out / "samples.npz", "wb") as fh:
            np.savez(fh, names=np.array(box.names), spectra=np.array(labels), times=times,
                     samples=samples)
    _print_tracks(labels, summaries)
    final = Path(args.out)
    print(f"tracks: {final / 'tracks.csv'}, {final / 'tracks.png'}")
    return 0


def _read_spectra(args, setup, model, box, cfg):
    """Observed vectors, labels, counts, the posterior, sessions and set-up differences.

    A spectrum whose set-up differs from the training spectrum's only in what
    the exact likelihood accounts for (exposure, ARF or RMF values, scales,
    background) is accepted and its differences are returned in words; one
    the network cannot read (other bins, another model or statistic) is
    refused naming the property.
    """
    from tqdm.auto import tqdm

    from xspec_sbi.amortized import SetupError, setup_differences
    from xspec_sbi.api import network_fingerprint
    from xspec_sbi.inference.config import FingerprintMismatch
    from xspec_sbi.inference.persistence import fingerprint_differences
    xs, fps, labels, counts, props, sessions = [], [], [], [], [], []
    quiet = log.getEffectiveLevel() > logging.INFO
    arf = getattr(args, "nicer_like_arf", None)
    if arf is not None and arf != "header" and not Path(arf).is_file():
        raise CommandError(f"--nicer-like-arf {arf}: file not found")
    for spec in tqdm(args.spectra, desc="reading spectra", disable=quiet or len(args.spectra) < 20,
                     leave=False):
        own = setup["nicer_like_arf"] if arf is None else own_arf(spec) if arf == "header" else arf
        session = session_of([spec], model, setup, own)
        fps.append(network_fingerprint(session, box, cfg))
        xs.append(session.observed())
        labels.append(session.spectra[0].label)
        counts.append(float(session.spectra[0].binned_counts().sum()))
        props.append(spectrum_properties(session.spectra[0]))
        sessions.append(session)
    training = training_session(setup, model)
    differences = [()] * len(fps)
    if training is None:
        # without the training file the set-ups cannot be compared: only the training set-up
        log.info("%s: not found; spectra must share its set-up exactly", setup["training_spectra"][0])
        wanted = fps[0]
    else:
        wanted = network_fingerprint(training, box, cfg)
        template = training.spectra[0]
        for i, fp in enumerate(fps):
            differ = fingerprint_differences(wanted, fp)
            if not differ:
                continue
            try:   # first: what the network cannot read (bins, background), named
                words = setup_differences(template, sessions[i].spectra[0])
            except SetupError as exc:
                raise CommandError(f"{exc}; the network was trained on {template.label}") from None
            if differ != ["spectra_setup"]:
                raise CommandError(_refusal(labels[i], FingerprintMismatch(
                    f"fingerprint differs in [{', '.join(differ)}]"), setup, props[i]))
            saved = (setup.get("spectrum_properties") or [None])[0]
            differences[i] = tuple(words or (property_differences(saved, props[i]) if saved else ())
                                   or ("response, scales or background (values; same bins)",))
            note = exposure_note(cfg, sessions[i].spectra[0].exposure / template.exposure)
            if note:
                differences[i] = tuple(f"{d}, {note}" if d.startswith("exposure x") else d
                                       for d in differences[i])
            log.info("%s: set-up differs from the training spectrum's: %s; weighted by its own "
                     "exact likelihood", labels[i], "; ".join(differences[i]))
    posterior = None
    groups: dict[str, list[int]] = {}
    for i, fp in enumerate(fps if training is None else [wanted]):
        groups.setdefault(json.dumps(fp, sort_keys=True, default=str), []).append(i)
    for key, members in groups.items():
        try:
            posterior = load_posterior(args.network, json.loads(key), args.device)
        except FingerprintMismatch as exc:
            if training is not None:
                raise CommandError(f"{args.network}: the training spectrum {template.label} (or "
                                   f"its ARF) changed since the network was saved ({exc})") from None
            first = members[0]
            label = labels[first] + (f" (and {len(members) - 1} more)" if len(members) > 1 else "")
            raise CommandError(_refusal(label, exc, setup, props[first])) from None
    exposure = (training or sessions[0]).spectra[0].exposure
    factors = [s.spectra[0].exposure / exposure for s in sessions]
    return np.stack(xs), labels, counts, posterior, sessions, differences, factors


def _draws(posterior, sessions, box, x, labels, args, differences=(), factors=None):
    """The network's draws of every spectrum, each weighted by its own exact likelihood.

    Spectra whose check fails are named (their draws are the network's, flagged in
    tracks.csv): fit them one by one with ``xspec-sbi fit --network``.
    """
    from xspec_sbi.amortized import amortized_posteriors
    out = amortized_posteriors(posterior, sessions[0].simulator(), box, x, n_samples=args.samples,
                               seed=args.seed, correct=args.correct, labels=labels,
                               simulators=[s.simulator() for s in sessions],
                               differences=differences, exposure_factors=factors,
                               workers=args.workers)
    if out.corrected:
        log.info("%s", out.summary())
        for label in out.flagged:
            log.warning("%s: the exact-likelihood check of the network's draws failed; its track "
                        "point is the network's answer, not the posterior: fit it with "
                        "'xspec-sbi fit %s --network NETWORK'", label, label)
    return out


def _refine(posterior, sessions, box, x, factors, checked, args, setup):
    """``--refine``: :func:`xspec_sbi.api.refine_flagged` on the spectra whose check failed.

    Each spectrum is fitted as ``xspec-sbi fit`` fits it (a first round of
    3,000 simulations, rounds while its check fails), with the network's
    configuration at one exposure (its own set-up), on ``--workers`` processes.
    """
    from dataclasses import replace

    from xspec_sbi.api import refine_flagged
    cfg = replace(posterior.config, exposure_range=None)   # this spectrum's own network
    prior = {k: tuple(v) if isinstance(v, list) else v for k, v in setup["prior"].items()}
    return refine_flagged(checked, sessions, prior, config=cfg, n_samples=args.samples,
                          seed=args.seed, device=args.device, workers=args.workers)


def _ood(reference, x, labels, strict: bool) -> list[str]:
    """Out-of-distribution reasons per spectrum ('' inside); ``--strict`` fails on the first."""
    if reference is None:
        if strict:
            raise CommandError("apply --strict: the network has no training reference "
                               "(ood_reference.npz; saved by an older version): retrain it with "
                               "'xspec-sbi train' or drop --strict")
        log.info("the network has no training reference: out-of-distribution check skipped")
        return [""] * len(labels)
    if reference.n_bins != x.shape[1]:
        raise CommandError(f"ood_reference.npz has {reference.n_bins} bins, the spectra "
                           f"{x.shape[1]}: the network folder was edited; save it again")
    flags = []
    for label, row in zip(labels, x):
        result = reference.check(row)
        flags.append((result.warning or "flagged") if result.flagged else "")
        if result.flagged:
            text = (f"{label}: outside the network's training spectra ({result.warning}); its "
                    "posterior is an extrapolation")
            if strict:
                raise CommandError(f"{text}; nothing written (--strict)")
            log.warning("%s; --strict makes this an error", text)
    return flags


def _times(mode, spectra):
    from xspec_sbi.data.ogip_pha import observation_time
    index = np.arange(len(spectra), dtype=float)
    if mode == "index":
        return index, "spectrum index (file order)"
    found = []
    for s in spectra:
        try:
            found.append(observation_time(s))
        except ValueError as exc:      # OGIPError, or a TSTART that is not a number
            raise CommandError(f"{s}: {exc}; use --times index" if str(s) not in str(exc)
                               else f"{exc}; use --times index") from None
    missing = [s for s, t in zip(spectra, found) if t is None]
    if missing:
        if mode == "header":
            raise CommandError(f"{missing[0]}: no TSTART keyword; use --times index")
        log.info("no TSTART in %s: tracks use the file order", missing[0])
        return index, "spectrum index (file order)"
    t = np.asarray(found)
    t0 = float(t.min())
    return t - t0, f"time since {t0:.3f} s (mission time, mid-exposure)"


def _write_tracks_csv(path, labels, times, axis_label, counts, summaries, box, flags, checked,
                      rounds=None):
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["spectrum", "time_s" if axis_label.startswith("time") else "index", "counts"]
    for n in box.names:
        head += [f"{n}_median", f"{n}_lo68", f"{n}_hi68"]
    w.writerow(head + ["ess_fraction", "pareto_k", "draws_weighed", "likelihood_check",
                       "out_of_distribution", "setup", "refine_rounds"])
    rounds = rounds or [""] * len(labels)
    for i, (label, t, n, summ, flag) in enumerate(zip(labels, times, counts, summaries, flags)):
        row = [label, f"{t:.6f}", f"{n:.0f}"]
        for s in summ:
            row += [f"{s.median:.6g}", f"{s.lo68:.6g}", f"{s.hi68:.6g}"]
        if checked.corrected:
            state = "passed" if checked.reliable[i] else "failed"
            weighed = "" if checked.weighed is None else f"{checked.weighed[i]:d}"
            check = [f"{checked.ess_fraction[i]:.4g}", f"{checked.pareto_k[i]:.3g}", weighed, state]
        else:
            check = ["", "", "", "not computed (--no-correct)"]
        differ = checked.differences[i] if i < len(checked.differences) else ()
        w.writerow(row + check + [flag, "; ".join(differ) if differ else "training set-up",
                                  rounds[i]])
    Path(path).write_text(buf.getvalue())   # inside the command's temporary folder


def _plot_tracks(path, times, axis_label, summaries, box, expression):
    import matplotlib.pyplot as plt

    from xspec_sbi.report.plots import track_plot
    fig = track_plot(times, axis_label, summaries, box.parameters,
                     f"{expression}: posterior median and 68% interval", path=path)
    plt.close(fig)


def _print_tracks(labels, summaries):
    if log.getEffectiveLevel() > logging.INFO:
        return
    width = max(len(Path(lab).name) for lab in labels) + 2
    names = [s.name for s in summaries[0]]
    log.info("%s", f"{'spectrum':<{width}}" + "".join(f"{n:>30}" for n in names))
    for lab, summ in zip(labels, summaries):
        cells = "".join(f"{f'{s.median:.4g} [{s.lo68:.4g}, {s.hi68:.4g}]':>30}" for s in summ)
        log.info("%s", f"{Path(lab).name:<{width}}{cells}")
