"""XSPEC's model-function interfaces, as ``model.dat`` names them.

The fifth word of a ``model.dat`` entry is the model's function, and its
prefix says how to call it (XSPEC manual, "Adding models to XSPEC"; the
typedefs ``XSCCall``, ``xsccCall``, ``xsF77Call``, ``xsf77Call`` of XSPEC's
installed header ``funcType.h``):

============  ==================  =====================  ==========================
listed        interface           symbol in the library  arrays
============  ==================  =====================  ==========================
``C_name``    C++ (C wrapper)     ``C_name``             float64, sizes by value
``c_name``    C                   ``name``               float64, sizes by value
``F_name``    Fortran double      ``name_``              float64, sizes by reference
``name``      Fortran single      ``name_``              float32, sizes by reference
============  ==================  =====================  ==========================

The C and C++ wrappers take ``(energy, nFlux, params, spectrum, flux,
fluxError, init)``; the Fortran functions ``(ear, ne, param, ifl, photar,
photer)``. XSPEC 12.10 and later also export a ``C_<model name>`` wrapper for
every model, XSPEC 12.9.1 does not (``phabs`` is only ``xsphab_`` there), so
the engine calls the listed function, which every version exports. For the
bundled 12.15 library both give the same bits (tested).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

__all__ = ["INTERFACES", "ModelFunction", "model_function", "bind", "bind_rows"]

INTERFACES = ("C++", "C", "Fortran double", "Fortran single")

_DOUBLE = ctypes.POINTER(ctypes.c_double)
_FLOAT = ctypes.POINTER(ctypes.c_float)
_INT = ctypes.POINTER(ctypes.c_int)


@dataclass(frozen=True)
class ModelFunction:
    """One model function: as listed in ``model.dat``, its symbol and interface.

    Attributes
    ----------
    listed : str
        The function as ``model.dat`` writes it (``"C_powerLaw"``, ``"xsphab"``).
    symbol : str
        The exported symbol (``"C_powerLaw"``, ``"xsphab_"``).
    interface : str
        One of :data:`INTERFACES`.
    """

    listed: str
    symbol: str
    interface: str


def model_function(listed: str) -> ModelFunction:
    """The symbol and interface of a function named as in ``model.dat``.

    Examples
    --------
    >>> model_function("xsphab")
    ModelFunction(listed='xsphab', symbol='xsphab_', interface='Fortran single')
    """
    listed = str(listed).strip()
    if not listed or not (listed[0].isalpha() or listed[0] == "_"):
        raise ValueError(f"model function {listed!r} is not a function name of model.dat")
    if listed.startswith("C_"):
        return ModelFunction(listed, listed, "C++")
    if listed.startswith("c_"):
        return ModelFunction(listed, listed[2:], "C")
    if listed.startswith("F_"):
        # gfortran's mangling: lower case and a trailing underscore.
        return ModelFunction(listed, listed[2:].lower() + "_", "Fortran double")
    return ModelFunction(listed, listed.lower() + "_", "Fortran single")


def _flux_buffer(flux, n: int, dtype) -> np.ndarray:
    """A fresh contiguous flux array of ``n`` bins: zeros, or a copy of ``flux``."""
    if flux is None:
        return np.zeros(n, dtype=dtype)
    out = np.array(flux, dtype=dtype, order="C", copy=True)
    if out.shape != (n,):
        raise ValueError(f"input flux has shape {out.shape}, the energy grid {n} bins")
    return out


def bind(fn, interface: str):
    """A Python caller ``(edges, params, spectrum, init) -> flux`` for a ctypes function.

    Parameters
    ----------
    fn : ctypes function
        The exported symbol.
    interface : str
        One of :data:`INTERFACES`.

    Returns
    -------
    callable
        ``caller(edges (n_e + 1,) keV float64, params (n_par,) float64,
        spectrum int, init str, flux (n_e,) or None) -> flux (n_e,) float64``;
        the functions trust their caller, so the arrays are made contiguous of
        the right type here. ``flux`` is the input of a convolution model
        (XSPEC's ``con`` interface modifies the flux array in place); a copy
        is passed, so the caller's array is left alone. ``None`` passes zeros.
    """
    if interface in ("C++", "C"):
        fn.argtypes = [_DOUBLE, ctypes.c_int, _DOUBLE, ctypes.c_int, _DOUBLE, _DOUBLE,
                       ctypes.c_char_p]
        fn.restype = None

        def call_c(edges, params, spectrum=1, init="", flux=None):
            e = np.ascontiguousarray(edges, dtype=np.float64)
            p = np.ascontiguousarray(params, dtype=np.float64)
            n = e.size - 1
            flux, err = _flux_buffer(flux, n, np.float64), np.zeros(n)
            fn(e.ctypes.data_as(_DOUBLE), n, p.ctypes.data_as(_DOUBLE), int(spectrum),
               flux.ctypes.data_as(_DOUBLE), err.ctypes.data_as(_DOUBLE), init.encode("ascii"))
            return flux
        return call_c
    if interface in ("Fortran double", "Fortran single"):
        dtype, pointer = ((np.float64, _DOUBLE) if interface == "Fortran double"
                          else (np.float32, _FLOAT))
        fn.argtypes = [pointer, _INT, pointer, _INT, pointer, pointer]
        fn.restype = None

        def call_fortran(edges, params, spectrum=1, init="", flux=None):
            # XSPEC itself rounds energies and parameters to float32 for a
            # single-precision model, as astype does here.
            e = np.ascontiguousarray(edges, dtype=dtype)
            # A zero-parameter model still gets a valid pointer.
            p = np.ascontiguousarray(params if np.size(params) else [0.0], dtype=dtype)
            n = e.size - 1
            flux, err = _flux_buffer(flux, n, dtype), np.zeros(n, dtype=dtype)
            fn(e.ctypes.data_as(pointer), ctypes.byref(ctypes.c_int(n)),
               p.ctypes.data_as(pointer), ctypes.byref(ctypes.c_int(int(spectrum))),
               flux.ctypes.data_as(pointer), err.ctypes.data_as(pointer))
            return flux.astype(np.float64)
        return call_fortran
    raise ValueError(f"interface {interface!r}: expected one of {', '.join(INTERFACES)}")


def bind_rows(fn, interface: str):
    """A caller ``(edges, params (n_rows, n_par)) -> flux (n_rows, n_e)`` for many parameter rows.

    The same calls as :func:`bind`'s caller row by row, with the same
    roundings (float32 energies and parameters for a single-precision model)
    and zeroed buffers before each call, so each row has the same bits; the
    energies are converted and the buffers and pointers made once per batch
    (for a 2,779-bin grid that took the cost of a call of ``xsbbrd`` from
    ~90 to ~40 us, ~35 us of which is the model itself).

    Parameters
    ----------
    fn : ctypes function
    interface : str
        One of :data:`INTERFACES` (no convolution input: :func:`bind` for those).

    Returns
    -------
    callable
        ``caller(edges (n_e + 1,) keV, params (n_rows, n_par), spectrum int,
        init str) -> (n_rows, n_e) float64``.
    """
    bind(fn, interface)      # the argument types
    if interface not in INTERFACES:
        raise ValueError(f"interface {interface!r}: expected one of {', '.join(INTERFACES)}")
    dtype, pointer = ((np.float32, _FLOAT) if interface == "Fortran single" else (np.float64, _DOUBLE))

    def call_rows(edges, params, spectrum=1, init=""):
        e = np.ascontiguousarray(edges, dtype=dtype)
        rows = np.atleast_2d(np.asarray(params, dtype=np.float64))
        n, k = e.size - 1, rows.shape[1]
        # A zero-parameter model still gets a valid pointer.
        p = np.zeros(max(k, 1), dtype=dtype)
        flux, err = np.zeros(n, dtype=dtype), np.zeros(n, dtype=dtype)
        ep, pp, fp, erp = (a.ctypes.data_as(pointer) for a in (e, p, flux, err))
        if interface in ("C++", "C"):
            args = (ep, n, pp, int(spectrum), fp, erp, init.encode("ascii"))
        else:
            args = (ep, ctypes.byref(ctypes.c_int(n)), pp, ctypes.byref(ctypes.c_int(int(spectrum))),
                    fp, erp)
        out = np.empty((rows.shape[0], n))
        for j in range(rows.shape[0]):
            p[:k] = rows[j]
            flux[:] = 0.0
            err[:] = 0.0
            fn(*args)
            out[j] = flux
        return out
    return call_rows
