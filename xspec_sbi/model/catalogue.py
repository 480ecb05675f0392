"""XSPEC's ``model.dat``: the list of components, their parameters and functions.

:func:`component_catalog` reads the ``model.dat`` of the loaded library;
:func:`parse_model_dat` is the pure reader; :func:`lookup` resolves a name
as XSPEC does (case-insensitive, abbreviations).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.functions import ModelFunction, model_function

__all__ = ["ModelError", "ComponentInfo", "parse_model_dat", "component_catalog", "lookup"]


class ModelError(ValueError):
    """An XSPEC model expression or parameter is invalid."""


@dataclass(frozen=True)
class ComponentInfo:
    """One entry of XSPEC's ``model.dat``.

    Parameters
    ----------
    name : str
        Name as written in ``model.dat`` (``"TBabs"``, ``"powerlaw"``).
    kind : str
        ``"add"``, ``"mul"``, ``"con"``, ``"mix"``, ...
    symbol : str
        ``C_<name>``, the C wrapper XSPEC 12.10 and later export for every
        model (the listed function itself when it starts with ``C_``). Kept
        for callers that name wrappers; XSPEC 12.9.1 lacks most of them, so
        the engine calls :attr:`model_function` instead.
    emin, emax : float
        Energy range of validity, keV.
    parameters : tuple of tuple
        ``(name, unit, value, min, bot, top, max, delta, special)`` where
        ``special`` is ``""``, ``"$"`` (switch) or ``"*"`` (scale).
    function : str
        The function as ``model.dat`` lists it (``"xsphab"``, ``"C_tbabs"``);
        empty for a component defined elsewhere (then ``symbol`` is called).
    """

    name: str
    kind: str
    symbol: str
    emin: float
    emax: float
    parameters: tuple
    function: str = ""

    @property
    def model_function(self) -> ModelFunction:
        """Symbol and interface to call, by ``model.dat``'s naming convention."""
        return model_function(self.function or self.symbol)


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eEdD][-+]?\d+)?$")


def _tokens(line: str) -> list[str]:
    # Units are sometimes quoted (" ", "keV"), sometimes bare (keV(_pl)).
    return [a if a else b for a, b in re.findall(r'"([^"]*)"|(\S+)', line)]


def _float(text: str) -> float:
    return float(text.replace("d", "e").replace("D", "E"))


def parse_model_dat(path: str | Path) -> dict[str, ComponentInfo]:
    """Parse XSPEC's ``model.dat`` into an ordered dict by lower-case name."""
    text = Path(path).read_text(errors="replace").splitlines()
    catalog: dict[str, ComponentInfo] = {}
    i = 0
    while i < len(text):
        head = text[i].split()
        i += 1
        if len(head) < 6 or not head[1].isdigit():
            continue
        name, npar, emin, emax, func, kind = head[:6]
        params = []
        for _ in range(int(npar)):
            toks = _tokens(text[i]) if i < len(text) else []
            i += 1
            if not toks:
                continue
            pname = toks[0]
            special = pname[0] if pname[0] in "$*" else ""
            pname = pname.lstrip("$*")
            nums = [t for t in toks[1:] if _NUMBER.match(t)]
            unit = " ".join(t for t in toks[1:] if not _NUMBER.match(t)).strip()
            if special or len(nums) < 6:
                value = _float(nums[0]) if nums else 0.0
                params.append((pname, unit, value, value, value, value, value, -1.0, special or "$"))
            else:
                v, mn, bot, top, mx, delta = map(_float, nums[-6:])
                params.append((pname, unit, v, mn, bot, top, mx, delta, ""))
        symbol = func if func.startswith("C_") else f"C_{name}"
        catalog.setdefault(name.lower(), ComponentInfo(
            name=name, kind=kind, symbol=symbol, emin=_float(emin), emax=_float(emax),
            parameters=tuple(params), function=func))
    return catalog


@lru_cache(maxsize=1)
def component_catalog() -> dict[str, ComponentInfo]:
    """XSPEC's component list for the loaded library, by lower-case name."""
    return parse_model_dat(xslibrary.model_dat_path())


def lookup(word: str, catalog: dict[str, ComponentInfo]) -> ComponentInfo:
    """The entry XSPEC takes for ``word``: exact name, else the first abbreviation match."""
    key = word.lower()
    if key in catalog:
        return catalog[key]
    # XSPEC accepts abbreviations and takes the first match in model.dat's
    # order ("po" is powerlaw, listed before posm).
    for name, info in catalog.items():
        if name.startswith(key):
            return info
    raise ModelError(f"unknown model component {word!r} (not in XSPEC's model.dat)")
