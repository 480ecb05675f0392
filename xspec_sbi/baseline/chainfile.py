"""XSPEC chain files (FITS): write and read in the layout ``chain load`` expects.

Layout, read from XSPEC's ``FITSChain`` class (``Xspec/src/XSFit/MCMC/
FITSChain.cxx``, HEASoft 6.20: ``writeFileInfo``, ``readFileInfo``,
``readParamInfo``) and the XSPEC manual's ``chain`` page:

* an empty primary HDU and a binary table extension ``EXTNAME = 'CHAIN'``;
* one ``TFORM = 'D'`` column per free parameter, named
  ``<parameter name>__<index>`` (``<parameter name>__<model name>__<index>``
  for a named model), ``TUNIT`` the parameter unit; the parameter name is the
  bare XSPEC name (``nH``, ``PhoIndex``), the index XSPEC's parameter number;
* a last ``'D'`` column ``FIT_STATISTIC`` whose ``TUNIT`` is the statistic's
  full name (``C-Statistic`` for cstat);
* keywords ``CHAINTYP = 'GoodmanWeare'`` and ``NWALKERS``; rows in step order,
  walkers within a step. (Metropolis-Hastings files carry ``CHAINTYP =
  'MetropolisHastings'`` and ``TEMPR001``/``STROW001`` keyword pairs instead.)

XSPEC reads the parameters back by column position and checks the labels'
format, the ``'D'`` format and the last column's name; it also refuses an
empty table, so we never write one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from astropy.io import fits

from xspec_sbi.files import atomic_write

__all__ = [
    "CHAIN_EXTNAME",
    "STAT_COLUMN",
    "ChainFileError",
    "ChainFile",
    "chain_column_name",
    "write_chain_file",
    "read_chain_file",
]

CHAIN_EXTNAME = "CHAIN"
STAT_COLUMN = "FIT_STATISTIC"
_DELIM = "__"
_GOODMAN_WEARE = "GoodmanWeare"
_METROPOLIS = "MetropolisHastings"


class ChainFileError(ValueError):
    """A chain file, or data for one, that does not follow XSPEC's layout."""


@dataclass(frozen=True)
class ChainFile:
    """Contents of an XSPEC chain file.

    Attributes
    ----------
    samples : numpy.ndarray, (n_rows, n_par)
        Parameter values, in file order.
    stat : numpy.ndarray, (n_rows,)
        ``FIT_STATISTIC`` column.
    names : tuple of str
        Bare parameter names (``"nH"``).
    indices : tuple of int
        XSPEC parameter numbers.
    units : tuple of str
        Parameter units (``""`` when none).
    model_names : tuple of (str or None)
        Model names for named models, None for the default (unnamed) model.
    statistic : str
        The statistic's full name (``TUNIT`` of ``FIT_STATISTIC``).
    chain_type : str
        ``"GoodmanWeare"`` or ``"MetropolisHastings"``.
    walkers : int or None
        ``NWALKERS`` for a Goodman-Weare chain.
    path : str
        File read.
    """

    samples: np.ndarray
    stat: np.ndarray
    names: tuple[str, ...]
    indices: tuple[int, ...]
    units: tuple[str, ...]
    model_names: tuple[str | None, ...]
    statistic: str
    chain_type: str
    walkers: int | None
    path: str

    @property
    def column_names(self) -> tuple[str, ...]:
        """Parameter column labels as in the file."""
        return tuple(
            chain_column_name(n, i, m)
            for n, i, m in zip(self.names, self.indices, self.model_names)
        )


def chain_column_name(name: str, index: int, model_name: str | None = None) -> str:
    """XSPEC's chain column label for one parameter.

    Parameters
    ----------
    name : str
        Parameter name; a PyXspec-style ``"component.parameter"`` name keeps
        only the part after the last dot, XSPEC's bare parameter name.
    index : int
        XSPEC's 1-based parameter number.
    model_name : str, optional
        Name of a named model (``model 2:mymodel ...``); None for the default.

    Returns
    -------
    str
        ``"nH__1"`` or ``"nH__mymodel__1"``.
    """
    # a data group's copy, "factor[2]", is XSPEC's "factor" with its global number
    bare = re.sub(r"\[\d+\]$", "", name.rsplit(".", 1)[-1].strip())
    if not bare or _DELIM in bare or any(c.isspace() for c in bare):
        raise ChainFileError(f"parameter name {name!r} cannot label an XSPEC chain column")
    if int(index) != index or index < 1:
        raise ChainFileError(f"parameter {name!r}: index must be a positive integer, got {index!r}")
    if model_name:
        if _DELIM in model_name or any(c.isspace() for c in model_name):
            raise ChainFileError(f"model name {model_name!r} cannot label an XSPEC chain column")
        return f"{bare}{_DELIM}{model_name}{_DELIM}{int(index)}"
    return f"{bare}{_DELIM}{int(index)}"


def _parse_label(label: str, column: int, path: str) -> tuple[str, str | None, int]:
    parts = label.strip().split(_DELIM)
    if len(parts) not in (2, 3) or not parts[0] or not re.fullmatch(r"\d+", parts[-1]):
        raise ChainFileError(
            f"{path}: column {column} label {label!r} is not '<name>__[<model>__]<index>'"
        )
    model = parts[1] if len(parts) == 3 else None
    return parts[0], model, int(parts[-1])


def write_chain_file(
    path: str | os.PathLike,
    samples,
    stat,
    *,
    names: Sequence[str],
    indices: Sequence[int],
    units: Sequence[str] | None = None,
    model_names: Sequence[str | None] | None = None,
    walkers: int,
    statistic: str = "C-Statistic",
    burn: int | None = None,
    overwrite: bool = False,
) -> None:
    """Write a Goodman-Weare chain as an XSPEC chain file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output FITS file.
    samples : array_like, (n_rows, n_par)
        Parameter values, rows in XSPEC order (step, then walker).
    stat : array_like, (n_rows,)
        Fit statistic of each row.
    names : sequence of str
        Parameter names (``"nH"`` or ``"TBabs.nH"``).
    indices : sequence of int
        XSPEC parameter numbers.
    units : sequence of str, optional
        Parameter units.
    model_names : sequence of (str or None), optional
        Model names for parameters of named models.
    walkers : int
        Number of walkers (``NWALKERS``); ``n_rows`` must be a multiple.
    statistic : str
        Full name of the statistic (XSPEC's ``C-Statistic`` for cstat).
    burn : int, optional
        Burn length, recorded in a comment.
    overwrite : bool
        Replace an existing file; otherwise refuse with ``FileExistsError``.

    Raises
    ------
    ChainFileError
        On inconsistent shapes or labels.
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    """
    path = os.fspath(path)
    samples = np.asarray(samples, dtype=float)
    stat = np.asarray(stat, dtype=float).reshape(-1)
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise ChainFileError(
            f"{path}: samples must be a non-empty (n_rows, n_par) array, got {samples.shape}"
        )
    n_rows, n_par = samples.shape
    if stat.size != n_rows:
        raise ChainFileError(f"{path}: stat has {stat.size} rows, samples {n_rows}")
    units = tuple(units) if units is not None else ("",) * n_par
    model_names = tuple(model_names) if model_names is not None else (None,) * n_par
    for label, seq in (("names", names), ("indices", indices), ("units", units),
                       ("model_names", model_names)):
        if len(seq) != n_par:
            raise ChainFileError(f"{path}: {label} has {len(seq)} entries for {n_par} parameters")
    if int(walkers) != walkers or walkers < 1 or n_rows % int(walkers):
        raise ChainFileError(f"{path}: {n_rows} rows is not a multiple of walkers={walkers!r}")
    labels = [chain_column_name(n, i, m) for n, i, m in zip(names, indices, model_names)]
    if len(set(labels)) != n_par:
        raise ChainFileError(f"{path}: duplicate parameter columns {labels}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    columns = [
        fits.Column(name=label, format="D", unit=unit or None, array=samples[:, j])
        for j, (label, unit) in enumerate(zip(labels, units))
    ]
    columns.append(fits.Column(name=STAT_COLUMN, format="D", unit=statistic, array=stat))
    table = fits.BinTableHDU.from_columns(columns, name=CHAIN_EXTNAME)
    table.header["CHAINTYP"] = (_GOODMAN_WEARE, "chain algorithm")
    table.header["NWALKERS"] = (int(walkers), "number of walkers")
    table.header.add_history("Created by xspec_sbi (XSPEC chain layout)")
    if burn is not None:
        table.header.add_comment(f"Burn length = {int(burn)}")
    table.header.add_comment(f"Length = {n_rows}")
    hdul = fits.HDUList([fits.PrimaryHDU(), table])

    # through files.atomic_write: never half-written, mode 0644 (not mkstemp's 0600), and
    # without overwrite a hard link refuses a file that appeared meanwhile
    atomic_write(path, lambda tmp: hdul.writeto(tmp, overwrite=True), overwrite=overwrite)


def read_chain_file(path: str | os.PathLike) -> ChainFile:
    """Read an XSPEC chain file (FITS).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ChainFile

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ChainFileError
        When the file lacks a ``CHAIN`` table or breaks XSPEC's layout.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"chain file {path} does not exist")
    with fits.open(path, memmap=False) as hdul:
        if CHAIN_EXTNAME not in [h.name for h in hdul]:
            raise ChainFileError(f"{path}: no {CHAIN_EXTNAME!r} extension")
        hdu = hdul[CHAIN_EXTNAME]
        if not isinstance(hdu, fits.BinTableHDU):
            raise ChainFileError(f"{path}: the {CHAIN_EXTNAME} extension is not a binary table")
        cols = hdu.columns
        if len(cols) < 2:
            raise ChainFileError(f"{path}: a chain table needs at least 2 columns, has {len(cols)}")
        if hdu.data is None or len(hdu.data) == 0:
            raise ChainFileError(f"{path}: chain length must be > 0")
        for j, col in enumerate(cols, start=1):
            if col.format.recformat != "f8" or col.format.repeat != 1:
                raise ChainFileError(f"{path}: column {j} ({col.name}) is not a 'D' column")
        if cols[-1].name != STAT_COLUMN:
            raise ChainFileError(
                f"{path}: last column is {cols[-1].name!r}, expected {STAT_COLUMN!r}"
            )
        parsed = [_parse_label(c.name, j, path) for j, c in enumerate(cols[:-1], start=1)]
        data = hdu.data
        samples = np.column_stack([np.asarray(data[c.name], dtype=float) for c in cols[:-1]])
        stat = np.asarray(data[STAT_COLUMN], dtype=float)
        header = hdu.header
        chain_type = str(header.get("CHAINTYP", _METROPOLIS)).strip()
        walkers = None
        if chain_type == _GOODMAN_WEARE:
            if "NWALKERS" not in header:
                raise ChainFileError(f"{path}: Goodman-Weare chain without NWALKERS keyword")
            walkers = int(header["NWALKERS"])
        units = tuple((c.unit or "") for c in cols[:-1])
        statistic = cols[-1].unit or ""
    samples.setflags(write=False)
    stat.setflags(write=False)
    return ChainFile(
        samples=samples, stat=stat,
        names=tuple(p[0] for p in parsed), indices=tuple(p[2] for p in parsed),
        units=units, model_names=tuple(p[1] for p in parsed), statistic=statistic,
        chain_type=chain_type, walkers=walkers, path=path,
    )
