"""Model parameter specifications, as XSPEC lists them.

A :class:`ParameterSpec` is the plain record every stage after the model
passes around: priors, fits, chains and the network read names, limits and
frozen flags from it and never touch the model library.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParameterSpec", "parameter_index"]


@dataclass(frozen=True)
class ParameterSpec:
    """One model parameter with XSPEC's six values.

    Parameters
    ----------
    name : str
        Name as PyXspec shows it: ``"<component>.<parameter>"``, e.g.
        ``"TBabs.nH"``, ``"powerlaw.PhoIndex"``, ``"bbodyrad.norm"``; a repeated
        component carries PyXspec's suffix ``_<component index>`` (``"powerlaw_3.norm"``).
    index : int
        XSPEC's 1-based parameter number in the model.
    unit : str
        Unit string from ``model.dat`` (``"10^22"``, ``"keV"``, ``""``).
    value, delta, min, bot, top, max : float
        XSPEC's value, fit delta, hard minimum, soft bottom, soft top and hard
        maximum. Hard limits bound fits; soft limits are the default prior range.
    frozen : bool
        Frozen parameters keep ``value`` and are not inferred.
    link : str or None
        XSPEC link expression (``"= p1"``) when the parameter is tied to another;
        a linked parameter is neither free nor frozen in XSPEC's sense.
    """

    name: str
    index: int
    unit: str
    value: float
    delta: float
    min: float
    bot: float
    top: float
    max: float
    frozen: bool = False
    link: str | None = None

    @property
    def free(self) -> bool:
        """True when the parameter is fitted/inferred (not frozen, not linked)."""
        return not self.frozen and self.link is None


def parameter_index(parameters, name, expression: str, error=ValueError) -> int:
    """0-based position of a parameter given by name (case-insensitive, as XSPEC) or 1-based number.

    Parameters
    ----------
    parameters : sequence of ParameterSpec
    name : str or int
    expression : str
        The model's expression, for the message.
    error : type
        The exception raised for an unknown name or number.
    """
    if isinstance(name, (int, np.integer)):
        if not 1 <= name <= len(parameters):
            raise error(f"parameter number {name} is outside 1..{len(parameters)}")
        return int(name) - 1
    key = str(name).lower()
    for i, p in enumerate(parameters):
        if p.name.lower() == key:
            return i
    raise error(f"no parameter {name!r} in model {expression!r}; known: "
                + ", ".join(p.name for p in parameters))
