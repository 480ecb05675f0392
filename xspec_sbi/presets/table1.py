"""Table 1 of Barret & Dupourque: the priors and frozen parameters of set-ups 1, 2, 3.

These are the paper's set-ups, kept apart from the library: :func:`table1_prior`
gives prior overrides for :func:`xspec_sbi.inference.priors.build_prior`,
:func:`table1_frozen` the parameters set-up 3 freezes.
"""
from __future__ import annotations

from xspec_sbi.inference.priors import KINDS, PriorError

__all__ = ["table1_prior", "table1_frozen"]

# Bounds (lower, upper) in each parameter's unit: nH in 10^22 cm^-2, kT in keV,
# powerlaw.norm in photons keV^-1 cm^-2 s^-1 at 1 keV, bbodyrad.norm in R_km^2/D_10^2.
_TABLE1 = {
    1: {"TBabs.nH": (0.1, 0.3), "powerlaw.PhoIndex": (0.5, 2.5), "powerlaw.norm": (0.01, 100.0)},
    2: {"TBabs.nH": (0.15, 0.35), "powerlaw.PhoIndex": (1.0, 3.0), "powerlaw.norm": (0.01, 10.0),
        "bbodyrad.kT": (0.3, 3.0), "bbodyrad.norm": (1.0, 1e5)},
    3: {"powerlaw.norm": (0.1, 10.0), "bbodyrad.kT": (0.1, 4.5), "bbodyrad.norm": (0.1, 1e5)},
}
_TABLE1_FROZEN = {1: {}, 2: {}, 3: {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}}


def table1_prior(model_number: int, norm: str = "log") -> dict[str, tuple[str, float, float]]:
    """Prior overrides of Table 1 of Barret & Dupourque (set-ups 1, 2, 3).

    Model 1 is ``tbabs*powerlaw``; models 2 and 3 are ``tbabs*(powerlaw+bbodyrad)``,
    model 3 with ``TBabs.nH`` = 0.2 (10^22 cm^-2) and ``powerlaw.PhoIndex`` = 1.7
    frozen (see :func:`table1_frozen`). ``TBabs.nH``, ``powerlaw.PhoIndex`` and
    ``bbodyrad.kT`` (keV) are uniform; the normalisations (photons keV^-1 cm^-2 s^-1
    at 1 keV; R_km^2/D_10^2) are log-uniform or uniform as ``norm`` says (the
    paper allows both and uses log-uniform).

    Parameters
    ----------
    model_number : {1, 2, 3}
    norm : {"log", "uniform"}

    Returns
    -------
    dict
        ``{name: (kind, lower, upper)}``, ready for
        :func:`xspec_sbi.inference.priors.build_prior`.

    Raises
    ------
    PriorError
        For another ``model_number`` or ``norm``.
    """
    if model_number not in _TABLE1:
        raise PriorError(f"table1_prior: model_number must be 1, 2 or 3, got {model_number!r}")
    if norm not in KINDS:
        raise PriorError(f"table1_prior: norm must be one of {KINDS}, got {norm!r}")
    return {
        name: ((norm if name.endswith(".norm") else "uniform"), lo, hi)
        for name, (lo, hi) in _TABLE1[model_number].items()
    }


def table1_frozen(model_number: int) -> dict[str, float]:
    """Parameters frozen in Table 1's set-up ``model_number``.

    Parameters
    ----------
    model_number : {1, 2, 3}

    Returns
    -------
    dict
        ``{name: value}`` in the parameters' units (nH in 10^22 cm^-2); empty for 1 and 2.
    """
    if model_number not in _TABLE1_FROZEN:
        raise PriorError(f"table1_frozen: model_number must be 1, 2 or 3, got {model_number!r}")
    return dict(_TABLE1_FROZEN[model_number])
