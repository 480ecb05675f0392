"""Loading XSPEC 12.9.1's library from the shared tree, and what happens when it cannot load.

A stock XSPEC 12.9.1 installs libXS only as a static archive: the copy
without ``libXS.so`` is such a tree. Runs in the live suite
(``tests/run_pyxspec_live.sh``), where the tree is unpacked; the same checks
on the wheel's tree are in test_model_loading.py.
"""
from __future__ import annotations

import pytest

from library_trees import linked_copy, load_in_child

pytestmark = pytest.mark.requires_pyxspec


@pytest.fixture(scope="module")
def headas_1291(pyxspec_tree):
    (arch,) = [p for p in pyxspec_tree.iterdir() if (p / "lib" / "libXSFunctions.so").is_file()]
    return arch


def test_1291_library_loads_and_runs_fortran_models(headas_1291):
    result = load_in_child(headas_1291, None)
    assert result.get("origin") == "headas", result
    assert 0.0 < min(result["phabs"]) < max(result["phabs"]) <= 1.0   # xsphab_, Fortran single


def test_stock_1291_tree_is_refused_naming_libxs_and_bundled_works(headas_1291, tmp_path):
    broken = linked_copy(headas_1291, tmp_path, leave_out=("libXS.so",))
    refused = load_in_child(broken, None)["refused"]
    assert f"{broken / 'lib' / 'libXS.so'} is missing" in refused
    assert "only the static archive libXS.a" in refused
    assert "XSPEC_SBI_LIBRARY=bundled" in refused
    # env.sh's LD_LIBRARY_PATH shadows the wheel's libraries: the message says so ...
    shadowed = load_in_child(broken, "bundled")["refused"]
    assert f"LD_LIBRARY_PATH lists {headas_1291 / 'lib'}" in shadowed
    # ... and without it the bundled library loads although HEADAS is the broken tree.
    chosen = load_in_child(broken, "bundled", ld_library_path="")
    assert chosen["origin"] == "bundled"
    assert chosen["headas"] != str(broken)
    assert 0.0 < min(chosen["phabs"]) < max(chosen["phabs"]) <= 1.0


KEEP_TABLES = r"""
import os, sys
import xspec
xspec.Xset.chatter = 0
xspec.Xset.abund = "wilm"
xspec.Xset.xsect = "bcmc"
os.chdir(sys.argv[1])
xspec.Spectrum("PN.pha")
xspec.Model("tbabs*powerlaw").setPars(1.0, 2.0, 2e-5)
before = list(xspec.AllModels(1).folded(1))
from xspec_sbi.model import library as xslibrary
lib = xslibrary.library()        # the engine loads the library PyXspec has loaded
xspec.AllModels(1).setPars(1.0)  # XSPEC recomputes its model
after = list(xspec.AllModels(1).folded(1))
print("RESULT", lib.loaded.shared, xspec.Xset.abund, xspec.Xset.xsect,
      xslibrary.current_settings().abund, before == after)
"""


def test_loading_the_engine_keeps_xspecs_tables(shared_data):
    """A second FNINIT would reset XSPEC's tables to angr/vern under the user's session
    (it did: PyXspec and the engine share one library in the process)."""
    import subprocess
    import sys
    from pyxspec_live_support import XSPEC, SKIP_REASON
    if XSPEC is None:
        pytest.skip(SKIP_REASON)
    out = subprocess.run([sys.executable, "-c", KEEP_TABLES,
                          str(shared_data / "xmm_pn_ngc7793_ulx4")], capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, out.stdout + out.stderr
    assert line[-1].split()[1:] == ["True", "wilm", "bcmc", "wilm", "True"]
