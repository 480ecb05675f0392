"""A trained network on disk: the directory format, atomic replacement, fingerprints.

A saved network is a directory holding ``weights.pt`` (the flow's
``state_dict``) and ``config.json``: the records needed to rebuild it (prior,
feature transform, latent standardisation, :class:`NPEConfig` as data) and the
fingerprint of what it was trained for. :class:`~xspec_sbi.inference.posterior.NeuralPosterior`
assembles the object from these; this module only reads, writes and compares.

Fingerprints are compared as data, key by key. An entry of the saved
fingerprint equal to the saved configuration record is that configuration and
is read as it is (fields it lacks take their defaults) before the comparison,
so adding a field with a default to :class:`NPEConfig` leaves networks saved
before it loadable.

A saved directory is tamper-evident: it is built in a temporary sibling and
renamed into place with a lock against a concurrent writer
(:func:`xspec_sbi.files.atomic_folder`), and carries ``manifest.json``, the
SHA-256 digest of every file (:func:`xspec_sbi.files.write_manifest`).
:func:`read_network` refuses a directory whose files differ from it, naming
the file; directories saved before manifests existed load unchecked.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch

from xspec_sbi._version import __version__
from xspec_sbi.files import ManifestError, atomic_folder, verify_manifest, write_manifest
from xspec_sbi.inference.config import FINGERPRINT_SCHEMA, TRAINING_ONLY, FingerprintMismatch, NPEConfig, NPEError

__all__ = ["FORMAT", "full_fingerprint", "fingerprint_differences", "write_network", "read_network",
           "read_weights", "check_fingerprint", "NetworkFileError"]

#: ``format`` entry of ``config.json``.
FORMAT = "xspec_sbi.npe/1"
_CONFIG_NAME = "config.json"
_WEIGHTS_NAME = "weights.pt"


class NetworkFileError(NPEError):
    """A file of a saved network differs from its manifest or cannot be read; names the file."""


def full_fingerprint(fingerprint: Mapping) -> dict:
    """The caller's fingerprint as JSON data, with package, sbi and torch versions added.

    Parameters
    ----------
    fingerprint : mapping
        JSON-serialisable description of what a network is trained for.

    Raises
    ------
    NPEError
        When ``fingerprint`` is not a mapping or an entry is not JSON-serialisable
        (names the key).
    """
    import sbi

    if not isinstance(fingerprint, Mapping):
        raise NPEError(f"fingerprint must be a mapping, got {type(fingerprint).__name__}")
    fp = {}
    for key, value in fingerprint.items():
        try:
            fp[str(key)] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as exc:
            raise NPEError(f"fingerprint[{key!r}] is not JSON-serialisable: {exc}") from exc
    fp.update({"xspec_sbi_version": __version__, "sbi_version": sbi.__version__,
               "torch_version": torch.__version__})
    return fp


def fingerprint_differences(saved: Mapping, expected: Mapping) -> list[str]:
    """Sorted keys whose values differ between two fingerprints (a key on one side only differs)."""
    return sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))


def _what_it_is(fingerprint: Mapping) -> dict:
    """The fingerprint without the configuration's training-only fields (``TRAINING_ONLY``)."""
    out = dict(fingerprint)
    if isinstance(out.get("npe"), Mapping):
        out["npe"] = {k: v for k, v in out["npe"].items() if k not in TRAINING_ONLY}
    return out


def check_fingerprint(path: str | os.PathLike, record: Mapping, fingerprint: Mapping,
                      config: NPEConfig) -> None:
    """Refuse a saved network whose fingerprint differs from the caller's.

    Parameters
    ----------
    path : path-like
        The network's directory (named in the error).
    record : mapping
        Its ``config.json`` as read by :func:`read_network`.
    fingerprint : mapping
        What the caller expects (versions are added as on saving).
    config : NPEConfig
        The saved configuration as read from ``record["npe_config"]``.

    Raises
    ------
    FingerprintMismatch
        Naming every differing key with both values.
    """
    expected = full_fingerprint(fingerprint)
    raw, upgraded = record["npe_config"], config.to_dict()
    # The caller's copy of the configuration in the fingerprint is compared as
    # the configuration itself is read: fields added since saving take defaults.
    saved = {k: (upgraded if v == raw else v) for k, v in record["fingerprint"].items()}
    saved, expected = _what_it_is(saved), _what_it_is(expected)
    differ = fingerprint_differences(saved, expected)
    if differ:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r} != expected {expected.get(k)!r}" for k in differ)
        raise FingerprintMismatch(f"{path}: fingerprint differs in {differ} ({detail})")


def write_network(path: str | os.PathLike, record: Mapping, state: Mapping[str, torch.Tensor], *,
                  overwrite: bool = False) -> Path:
    """Write a network directory, via a temporary sibling renamed into place.

    Parameters
    ----------
    path : path-like
        Target directory.
    record : mapping
        JSON-ready contents of ``config.json``; ``format`` and
        ``fingerprint_schema`` are added.
    state : mapping
        The flow's ``state_dict`` (tensors are moved to the CPU).
    overwrite : bool
        Replace an existing directory at ``path`` (as a whole).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    record = {"format": FORMAT, "fingerprint_schema": FINGERPRINT_SCHEMA, **record}
    # all there or not at all, one writer at a time, nothing of an earlier network kept
    with atomic_folder(path, overwrite=overwrite) as tmp:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp / _WEIGHTS_NAME)
        (tmp / _CONFIG_NAME).write_text(json.dumps(record, indent=1))
        write_manifest(tmp)
    return path


def read_network(path: str | os.PathLike) -> tuple[dict, NPEConfig]:
    """Read the records of a network directory written by :func:`write_network`.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    record : dict
        Contents of ``config.json``.
    config : NPEConfig
        The saved configuration; files written before ``theta_map`` existed
        used the logit map, other missing fields take their defaults.

    Raises
    ------
    FileNotFoundError, NPEError
        A missing file, another format, a newer fingerprint schema or an
        unknown configuration field (each names the file).
    """
    path = Path(path)
    cfg_path, w_path = path / _CONFIG_NAME, path / _WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found (not a saved xspec_sbi posterior?)")
    try:
        verify_manifest(path, required=False)     # networks saved before manifests: unchecked
    except ManifestError as exc:
        raise NetworkFileError(str(exc)) from None
    try:
        record = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"{cfg_path}: not valid JSON ({exc}); save the network again") \
            from None
    if record.get("format") != FORMAT:
        raise NPEError(f"{cfg_path}: format {record.get('format')!r}, expected {FORMAT!r}")
    # Files written before the schema was recorded have the layout of schema 1.
    schema = record.get("fingerprint_schema", 1)
    if not isinstance(schema, int) or schema > FINGERPRINT_SCHEMA:
        raise NPEError(f"{cfg_path}: fingerprint_schema {schema!r}; this version reads up to "
                       f"{FINGERPRINT_SCHEMA} (saved by a newer xspec_sbi?)")
    # Files written before theta_map existed used the logit map.
    config = NPEConfig.from_dict({"theta_map": "logit", **record["npe_config"]}, source=str(cfg_path))
    return record, config


def read_weights(path: str | os.PathLike) -> dict:
    """The flow's ``state_dict`` saved in a network directory, on the CPU.

    Raises
    ------
    NetworkFileError
        The file cannot be read as saved weights (truncated, say); names it.
    """
    w_path = Path(path) / _WEIGHTS_NAME
    try:
        return torch.load(w_path, map_location="cpu", weights_only=True)
    except Exception as exc:    # torch raises RuntimeError, EOFError, UnpicklingError...
        first = " ".join(str(exc).split())[:160]
        raise NetworkFileError(f"{w_path}: cannot be read as saved weights ({type(exc).__name__}: "
                               f"{first}); save the network again") from None
