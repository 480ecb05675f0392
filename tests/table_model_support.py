"""Writing OGIP/92-009 table model files for the tests, from an analytic model on a grid.

Written with astropy from the memo's layout (not with the reader under test),
so a misread column or keyword shows up as a disagreement.
"""
from __future__ import annotations

import itertools

import numpy as np
from astropy.io import fits


def write_table(path, name, interpolated, edges, spectrum, additional=(), additive=True,
                redshift=False, row_order=None, extra_header=None, drop=()):
    """Write a table model file.

    Parameters
    ----------
    path : path-like
    name : str
        MODLNAME.
    interpolated : sequence of (name, method, initial, delta, min, bot, top, max, values)
    edges : ndarray (n_t + 1,), keV
    spectrum : callable(params tuple) -> ndarray (1 + n_add, n_t)
        INTPSPEC then the ADDSPnnn rows at one grid point.
    additional : sequence of (name, initial, delta, min, bot, top, max)
    row_order : callable(list of index tuples) -> list, optional
        The order the grid points are written in (default: last parameter fastest).
    extra_header : dict, optional
        Primary keywords to add or override.
    drop : sequence of (extname, column) or extname
        Columns or extensions left out (bad files).
    """
    grids = [np.asarray(p[8], dtype=np.float64) for p in interpolated]
    n_int, n_add = len(interpolated), len(additional)
    n_vals = max(g.size for g in grids)
    names = [p[0] for p in interpolated] + [a[0] for a in additional]
    rows = [(p[1],) + tuple(p[2:8]) for p in interpolated] + \
           [(0,) + tuple(a[1:7]) for a in additional]
    value = np.zeros((n_int + n_add, n_vals))
    numbvals = np.zeros(n_int + n_add, dtype=int)
    for j, g in enumerate(grids):
        value[j, :g.size] = g
        value[j, g.size:] = g[-1]
        numbvals[j] = g.size
    par_cols = [
        fits.Column("NAME", "12A", array=names),
        fits.Column("METHOD", "J", array=[r[0] for r in rows]),
        fits.Column("INITIAL", "E", array=[r[1] for r in rows]),
        fits.Column("DELTA", "E", array=[r[2] for r in rows]),
        fits.Column("MINIMUM", "E", array=[r[3] for r in rows]),
        fits.Column("BOTTOM", "E", array=[r[4] for r in rows]),
        fits.Column("TOP", "E", array=[r[5] for r in rows]),
        fits.Column("MAXIMUM", "E", array=[r[6] for r in rows]),
        fits.Column("NUMBVALS", "J", array=numbvals),
        fits.Column("VALUE", f"{n_vals}E", array=value),
    ]
    par_cols = [c for c in par_cols if ("PARAMETERS", c.name) not in drop]
    par = fits.BinTableHDU.from_columns(par_cols, name="PARAMETERS")
    par.header["NINTPARM"] = n_int
    par.header["NADDPARM"] = n_add
    par.header["HDUCLASS"] = "OGIP"
    par.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
    par.header["HDUCLAS2"] = "PARAMETERS"
    par.header["HDUVERS"] = "1.0.0"
    edges = np.asarray(edges, dtype=np.float64)
    ene_cols = [fits.Column("ENERG_LO", "E", array=edges[:-1]),
                fits.Column("ENERG_HI", "E", array=edges[1:])]
    ene = fits.BinTableHDU.from_columns(
        [c for c in ene_cols if ("ENERGIES", c.name) not in drop], name="ENERGIES")
    ene.header["HDUCLASS"] = "OGIP"
    ene.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
    ene.header["HDUCLAS2"] = "ENERGIES"
    ene.header["HDUVERS"] = "1.0.0"
    points = list(itertools.product(*[range(g.size) for g in grids]))
    if row_order is not None:
        points = row_order(points)
    pv = np.array([[grids[j][i] for j, i in enumerate(pt)] for pt in points])
    blocks = np.array([spectrum(tuple(pv[r])) for r in range(len(points))])
    n_t = edges.size - 1
    spec_cols = [fits.Column("PARAMVAL", f"{n_int}E", array=pv),
                 fits.Column("INTPSPEC", f"{n_t}E", array=blocks[:, 0, :])]
    for a in range(n_add):
        spec_cols.append(fits.Column(f"ADDSP{a + 1:03d}", f"{n_t}E", array=blocks[:, 1 + a, :]))
    spec_cols = [c for c in spec_cols if ("SPECTRA", c.name) not in drop]
    spe = fits.BinTableHDU.from_columns(spec_cols, name="SPECTRA")
    spe.header["HDUCLASS"] = "OGIP"
    spe.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
    spe.header["HDUCLAS2"] = "MODEL SPECTRA"
    spe.header["HDUVERS"] = "1.0.0"
    primary = fits.PrimaryHDU()
    primary.header["MODLNAME"] = name
    primary.header["MODLUNIT"] = "photons/cm^2/s" if additive else " "
    primary.header["REDSHIFT"] = bool(redshift)
    primary.header["ADDMODEL"] = bool(additive)
    primary.header["HDUCLASS"] = "OGIP"
    primary.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
    primary.header["HDUVERS"] = "1.0.0"
    for k, v in (extra_header or {}).items():
        primary.header[k] = v
    hdus = [h for h in (primary, par, ene, spe) if h.name not in drop]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path
