"""The paper's reference set-up: NICER-like response, grouping, exposure.

Barret & Dupourque simulate through NICER's response (ObsID 1050300108),
group 5 channels to ~200 bins over 0.3-10 keV and choose the exposure so that
``tbabs*powerlaw`` with nH = 0.2, PhoIndex = 1.7, norm = 1 gives ~20,000 (or
~2,000) counts. NICER's RMF is not available here: the response is the real
NICER ARF (when the shared data folder is present) or a built-in tabulation
of it, with a Gaussian redistribution of NICER XTI's resolution. Everything
built from it says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xspec_sbi.data.response import Response, gaussian_response, nicer_xti_fwhm
from xspec_sbi.data.spectrum import Spectrum

__all__ = ["REFERENCE_PARAMETERS", "NICER_ARF_NAME", "find_nicer_arf", "builtin_nicer_response",
           "nicer_response", "reference_spectrum", "paper_grouping"]

#: tbabs*powerlaw parameters of the paper's reference spectra.
REFERENCE_PARAMETERS = {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 1.0}
NICER_ARF_NAME = "pre_burst_Tint200_raw.arf"

# NICER XTI effective area (cm²) read off the ARF above at 89 log-spaced
# energies (keV); interpolated linearly in log E it stands in for the ARF
# where the data folder is absent.
_KNOT_ENERGY = (
    0.1025, 0.1075, 0.1175, 0.1225, 0.1275, 0.1375, 0.1475, 0.1525, 0.1625, 0.1725,
    0.1825, 0.1925, 0.2075, 0.2175, 0.2325, 0.2475, 0.2625, 0.2755, 0.2925, 0.3125,
    0.3325, 0.3525, 0.3725, 0.3935, 0.4175, 0.4475, 0.4725, 0.5025, 0.5305, 0.5625,
    0.5975, 0.6375, 0.6725, 0.7135, 0.7575, 0.8075, 0.8535, 0.9075, 0.9625, 1.0225,
    1.0825, 1.1525, 1.2225, 1.2975, 1.3775, 1.4575, 1.547, 1.6425, 1.7425, 1.8495,
    1.9625, 2.0825, 2.211, 2.347, 2.4925, 2.6425, 2.8075, 2.9775, 3.1625, 3.3575,
    3.5625, 3.7775, 4.0125, 4.2575, 4.5175, 4.7925, 5.0875, 5.4025, 5.7325, 6.0825,
    6.4575, 6.8525, 7.2725, 7.7175, 8.1925, 8.6925, 9.2275, 9.7925, 10.395, 11.035,
    11.705, 12.425, 13.185, 13.995, 14.855, 15.765, 16.775, 17.775, 18.875,
)
_KNOT_AREA = (
    117.841, 122.753, 131.153, 134.807, 140.775, 157.218, 172.513, 179.452, 191.918, 202.864,
    219.956, 257.736, 320.497, 381.084, 479.754, 561.969, 637.026, 705.285, 409.932, 499.684,
    597.893, 694.281, 783.943, 874.528, 778.522, 946.589, 1021.8, 1120.8, 1159.74, 1012.99,
    1155, 1244.69, 1314.51, 1384.99, 1451.99, 1513.68, 1561.54, 1608.81, 1654.26, 1696.19,
    1738.22, 1782.3, 1807.47, 1824.72, 1845.35, 1867.99, 1889.58, 1793.45, 1818.22, 1640.93,
    1647.95, 1623.16, 1355.38, 853.035, 986.28, 1009.32, 964.019, 981.959, 942.066, 927.216,
    892.691, 855.174, 804.403, 744.172, 681.686, 619.009, 553.882, 491.903, 433.27, 378.223,
    324.94, 275.206, 228.751, 186.697, 149.459, 116.283, 85.526, 58.86, 36.243, 18.394,
    7.609, 4.798, 2.895, 1.847, 1.268, 0.803, 0.489, 0.32, 0.207,
)


def find_nicer_arf() -> Path | None:
    """The real NICER ARF in ``../shared/data`` next to the working tree, if present."""
    here = Path(__file__).resolve().parent.parent
    for base in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        path = base / "nicer_4u1820" / NICER_ARF_NAME
        if path.is_file():
            return path
    return None


def builtin_nicer_response(n_channels: int = 1501, channel_width_kev: float = 0.01) -> Response:
    """NICER-like response from the built-in area table (no files needed).

    Model grid 0.1-20 keV in 5 eV bins; channels PI 0..1500 of 10 eV; Gaussian
    redistribution with :func:`~xspec_sbi.data.response.nicer_xti_fwhm`.
    """
    edges = np.round(np.arange(0.1, 20.0 + 1e-9, 0.005), 6)
    lo, hi = edges[:-1], edges[1:]
    mid = np.sqrt(lo * hi)
    area = np.interp(np.log(mid), np.log(_KNOT_ENERGY), _KNOT_AREA)
    ch = channel_width_kev * np.arange(n_channels + 1, dtype=np.float64)
    return gaussian_response(lo, hi, ch[:-1], ch[1:], nicer_xti_fwhm, arf=area, first_channel=0,
                             description="NICER-like (built-in): tabulated NICER XTI area with "
                             "Gaussian redistribution; real NICER RMF not available")


def nicer_response(arf_path=None) -> Response:
    """The NICER-like response: from ``arf_path``, else the shared ARF, else built in."""
    from xspec_sbi.data.response import nicer_like_response
    path = arf_path or find_nicer_arf()
    return nicer_like_response(path) if path is not None else builtin_nicer_response()


def paper_grouping(n_channels: int = 1501, width: int = 5) -> np.ndarray:
    """OGIP GROUPING with ``width`` channels a bin (1 starts a bin, -1 continues)."""
    grouping = -np.ones(n_channels, dtype=int)
    grouping[::width] = 1
    return grouping


def reference_spectrum(counts: float = 20000.0, response: Response | None = None,
                       model=None) -> Spectrum:
    """An empty spectrum of the paper's set-up, exposure chosen for ``counts``.

    Parameters
    ----------
    counts : float
        Expected counts of the reference model in 0.3-10 keV (20,000 or 2,000 in the paper).
    response : Response, optional
        Default :func:`nicer_response`.
    model : Model, optional
        Reference model, default ``tbabs*powerlaw`` at :data:`REFERENCE_PARAMETERS`.

    Returns
    -------
    Spectrum
        Zero counts, grouped by 5 channels, noticed 0.3-10 keV; fill it with
        :meth:`Spectrum.with_counts` or simulate into it.
    """
    from xspec_sbi.forward.folding import Folder
    from xspec_sbi.model.expression import Model
    response = response or nicer_response()
    model = model or Model("tbabs*powerlaw").set(**REFERENCE_PARAMETERS)
    n = response.n_channels
    spec = Spectrum(counts=np.zeros(n), exposure=1.0, grouping=paper_grouping(n),
                    response=response).ignore("**-0.3 10.-**")
    per_second = Folder(spec, model).expected_counts(model.free_values()[None, :]).sum()
    return Spectrum(counts=np.zeros(n), exposure=float(counts / per_second),
                    grouping=paper_grouping(n), response=response).ignore("**-0.3 10.-**")
