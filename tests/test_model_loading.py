"""Choosing and loading XSPEC's library: messages that name what is missing, and the bundled choice.

Uses the xspectrampoline wheel's tree (always installed); the same checks on
XSPEC 12.9.1's tree are in test_pyxspec_live_library.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from library_trees import linked_copy, load_in_child
from xspec_sbi.model import functions, loading


@pytest.mark.parametrize("listed, symbol, interface", [
    ("C_powerLaw", "C_powerLaw", "C++"),
    ("c_xszbabs", "xszbabs", "C"),
    ("F_ismabs", "ismabs_", "Fortran double"),
    ("xsphab", "xsphab_", "Fortran single"),
    ("XSABSW", "xsabsw_", "Fortran single"),
])
def test_model_dat_naming_convention(listed, symbol, interface):
    f = functions.model_function(listed)
    assert (f.symbol, f.interface) == (symbol, interface)


def test_bad_function_name_is_refused():
    with pytest.raises(ValueError, match="'3abc'"):
        functions.model_function("3abc")


def test_choice_from_environment(tmp_path):
    bundled = loading.bundled_headas()
    assert loading.choose_source({}).origin == "bundled"
    assert loading.choose_source({"HEADAS": str(tmp_path)}) == loading.LibrarySource(
        tmp_path, "headas")
    assert loading.choose_source({"HEADAS": str(tmp_path),
                                  "XSPEC_SBI_LIBRARY": "bundled"}).headas == bundled
    with pytest.raises(loading.XspecLibraryError, match="XSPEC_SBI_LIBRARY='nonsense'"):
        loading.choose_source({"XSPEC_SBI_LIBRARY": "nonsense"})
    with pytest.raises(loading.XspecLibraryError, match="HEADAS is not set"):
        loading.choose_source({"XSPEC_SBI_LIBRARY": "headas"})


@pytest.fixture(scope="module")
def reference():
    """The bundled library's values, loaded the default way (HEADAS unset)."""
    result = load_in_child(None, None)
    assert result["origin"] == "bundled", result
    return result


def test_missing_libxs_is_named_and_bundled_is_the_way_out(tmp_path, reference):
    broken = linked_copy(loading.bundled_headas(), tmp_path, leave_out=("libXS.so",))
    refused = load_in_child(broken, None)["refused"]
    assert f"{broken / 'lib' / 'libXS.so'} is missing" in refused
    assert "XSPEC_SBI_LIBRARY=bundled" in refused
    # The explicit choice loads the wheel's library whatever HEADAS says.
    chosen = load_in_child(broken, "bundled")
    assert chosen["origin"] == "bundled"
    np.testing.assert_array_equal(chosen["tbabs"], reference["tbabs"])


def test_unloadable_file_is_named_with_the_loaders_message(tmp_path):
    broken = linked_copy(loading.bundled_headas(), tmp_path, leave_out=("libXSUtil.so",))
    (broken / "lib" / "libXSUtil.so").write_bytes(b"not a shared library")
    refused = load_in_child(broken, None)["refused"]
    # libXSFunctions needs libXSUtil, so the dynamic loader's own words name it.
    assert "fails to load" in refused
    assert f"{broken / 'lib' / 'libXSUtil.so'}: file too short" in refused


def test_fortran_functions_give_the_bits_of_xspecs_c_wrappers():
    """Called by model.dat's convention, each function gives what XSPEC 12.15's own
    ``C_<name>`` wrapper gives (the wrapper converts to float32 and back itself)."""
    from xspec_sbi.model import library as xslibrary
    from xspec_sbi.model.catalogue import component_catalog
    cat = component_catalog()
    edges = np.geomspace(0.1, 20.0, 301)
    checked = {}
    for name in ("phabs", "wabs", "bbody", "diskbb", "bbodyrad", "zphabs", "bremss", "zwabs",
                 "compmag", "zbabs"):
        info = cat[name]
        assert not info.function.startswith("C_"), info
        params = np.array([row[2] for row in info.parameters])
        ours = xslibrary.call_model(info.function, edges, params)
        theirs = xslibrary.call_model(f"C_{name}", edges, params)
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
        assert np.any(ours != 0), name
        checked[info.model_function.interface] = name
    # The Fortran double-precision models (F_ismabs, F_ismdust, F_olivineabs) all
    # read modelData files that neither tree has: their values are not comparable.
    assert set(checked) == {"Fortran single", "C"}
