"""Every module imports on its own (no cycles), and the engine does not pull in torch."""
import importlib
import pkgutil
import subprocess
import sys

import xspec_sbi

ENGINE = ["data.ogip", "data.ogip_pha", "data.ogip_response", "data.grouping", "data.selection",
          "data.response", "data.spectrum", "model.library", "model.expression", "forward.folding",
          "forward.simulate", "forward.objective", "forward.stats", "forward.expectation", "baseline.fit",
          "baseline.mcmc", "baseline.chainfile", "session", "result", "presets.nicer",
          "inference.priors", "inference.truncation", "inference.config", "inference.latent",
          "inference.features", "inference.region", "presets.table1", "options"]


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(xspec_sbi.__path__, "xspec_sbi.")]
    assert "xspec_sbi.api" in names and "xspec_sbi.pyxspec" in names
    for name in names:
        importlib.import_module(name)


def test_engine_is_free_of_torch():
    code = ("import sys\n"
            + "".join(f"import xspec_sbi.{m}\n" for m in ENGINE)
            + "import xspec_sbi\n"
            + "print('torch' in sys.modules, 'sbi' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    assert callable(xspec_sbi.sbi_fit)


def test_the_model_library_alone_imports_neither_astropy_nor_scipy():
    """A pool worker and the child that probes a model start from the model library: the
    package root imports nothing else first (it cost each such start-up 0.55 s)."""
    code = ("import sys\n"
            "import xspec_sbi.model.library\n"
            "print(*[m in sys.modules for m in ('astropy', 'scipy', 'torch', 'xspec_sbi.session')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"] * 4
    assert xspec_sbi.Session.__module__ == "xspec_sbi.session" and "Session" in dir(xspec_sbi)
