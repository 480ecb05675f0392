"""A TEST DOUBLE of PyXspec, backed by xspec_sbi's embedded engine.

:class:`PyXspecTestDouble` implements only the documented PyXspec attributes
that :mod:`xspec_sbi.pyxspec` reads or sets (AllData, Spectrum, Background,
Response, AllModels, Model, Component, Parameter, Fit, Xset, AllChains,
Chain), computing everything with our own readers, folding, statistics, fit
and chain. It lets the adapter's logic be tested where PyXspec cannot be
installed.

It is NOT PyXspec. A result obtained with this double is never evidence of
compatibility with PyXspec or agreement with XSPEC: the double agrees with
the engine by construction. Compatibility is checked only by
``tests/test_pyxspec_live.py`` against the real ``xspec`` module.

Local models: ``AllModels.addPyMod(func, parInfo, compType)`` registers a
Python model as PyXspec does (``func(engs, params, flux)`` fills ``flux``);
an expression using one is evaluated by the double itself
(:class:`_LocalExpression`), and the embedded engine refuses it, as it
would refuse a real local model.

Simplifications (where the double is not XSPEC): ``Spectrum(...)`` and
``AllData += file`` load into data group 1; ``AllData.ignore``/``notice``
without a ``n:`` prefix apply to spectrum 1; ``Fit.statistic`` is computed on
demand; ``Fit.perform`` uses :func:`xspec_sbi.baseline.fit.fit`; chains use
:func:`xspec_sbi.baseline.mcmc.run_chain` with a fixed seed; ``Xset.save`` writes a
small .xcm in XSPEC's command syntax that only the double's ``restore``
is known to read.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import replace

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.baseline.chainfile import read_chain_file, write_chain_file
from xspec_sbi.baseline.fit import fit
from xspec_sbi.forward.folding import Folder
from xspec_sbi.baseline.mcmc import run_chain
from xspec_sbi.data.ogip import split_row_suffix
from xspec_sbi.session import Session
from xspec_sbi.data.spectrum import load_spectrum
from xspec_sbi.model.parameters import ParameterSpec
from xspec_sbi.model.expression import Component, ComponentInfo, component_catalog, powerlaw_integral
from xspec_sbi.model.expression import Model as EngineModel

__all__ = ["PyXspecTestDouble", "worker_double"]

_LINK = re.compile(r"^=?\s*(?:([-+0-9.eE]+)\s*\*\s*)?p(\d+)\s*$", re.IGNORECASE)


class _Entry:
    """One loaded spectrum of the double."""

    def __init__(self, given, group, spectrum, rmf, arf, bkg):
        self.given, self.group, self.spectrum = given, group, spectrum
        self.rmf, self.arf, self.bkg = rmf, arf, bkg


def _keyword_file(value):
    return None if value is None else (None if str(value).strip().lower() in ("", "none")
                                       else str(value))


class _Background:
    def __init__(self, entry):
        self.fileName = entry.bkg
        self.exposure = entry.spectrum.background.exposure
        self.areaScale = entry.spectrum.background.areascal
        self.backScale = entry.spectrum.background.backscal


class _Response:
    def __init__(self, entry):
        self.rmf = entry.rmf
        self.arf = entry.arf or ""


class _Spectrum:
    """PyXspec's Spectrum (documented attributes only)."""

    def __init__(self, double, index):
        object.__setattr__(self, "_d", double)
        object.__setattr__(self, "index", index)

    @property
    def _entry(self):
        return self._d._entries[self.index - 1]

    @property
    def fileName(self):
        return self._entry.given

    @property
    def exposure(self):
        return self._d.test_hooks.get("exposure", {}).get(self.index,
                                                           self._entry.spectrum.exposure)

    @property
    def areaScale(self):
        return self._entry.spectrum.areascal

    @property
    def backScale(self):
        return self._entry.spectrum.backscal

    @property
    def dataGroup(self):
        return self._entry.group

    @property
    def noticed(self):
        return [int(i) + 1 for i in np.flatnonzero(self._entry.spectrum.noticed)]

    @property
    def ignored(self):
        return [int(i) + 1 for i in np.flatnonzero(~self._entry.spectrum.noticed)]

    @property
    def values(self):
        s = self._entry.spectrum
        return tuple(s.binned_counts() / s.exposure)

    @property
    def background(self):
        if self._entry.bkg is None:
            raise Exception(f"Error: spectrum {self.index} has no background")
        return _Background(self._entry)

    @property
    def response(self):
        if self._entry.rmf is None:
            raise Exception(f"Error: No response is assigned to source 1 for spectrum {self.index}")
        return _Response(self._entry)

    def ignore(self, ranges):
        e = self._entry
        e.spectrum = e.spectrum.ignore(ranges)

    def notice(self, ranges):
        e = self._entry
        e.spectrum = e.spectrum.notice("all" if "all" in ranges.lower() else ranges)


class _DataManager:
    def __init__(self, double):
        self._d = double

    @property
    def nSpectra(self):
        return len(self._d._entries)

    @property
    def nGroups(self):
        return max((e.group for e in self._d._entries), default=0)

    def __call__(self, expr):
        if isinstance(expr, int):
            if not 1 <= expr <= self.nSpectra:
                raise Exception(f"Error: spectrum {expr} is not loaded")
            return _Spectrum(self._d, expr)
        self._d._data_command(str(expr))
        return None

    def __iadd__(self, filename):
        self._d._load(filename, group=1, number=self.nSpectra + 1)
        return self

    def clear(self):
        self._d._entries.clear()
        self._d._groups_changed()

    def ignore(self, ranges):
        self._select(ranges, "ignore")

    def notice(self, ranges):
        self._select(ranges, "notice")

    def _select(self, ranges, verb):
        text = ranges.strip()
        if text.lower() == "bad":
            for n in range(1, self.nSpectra + 1):
                _Spectrum(self._d, n).ignore("bad")
            return
        target, _, rest = text.rpartition(":")
        numbers = _spectrum_range(target or "1", self.nSpectra)
        for n in numbers:
            getattr(_Spectrum(self._d, n), verb)(rest)


def _spectrum_range(text, n_spectra):
    a, _, b = text.partition("-")
    lo = 1 if a in ("", "**") else int(a)
    hi = (n_spectra if b in ("**",) else int(b)) if b else lo
    return range(lo, min(hi, n_spectra) + 1)


class _Parameter:
    def __init__(self, double, group, index, name, unit):
        object.__setattr__(self, "_d", double)
        object.__setattr__(self, "_g", group)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "unit", unit)

    @property
    def _row(self):
        return self._d._pars[self._g][self.index - 1]

    @property
    def values(self):
        row = self._row
        return [self._d._value(self._g, self.index)] + list(row["values"][1:])

    @values.setter
    def values(self, value):
        row = self._row
        if isinstance(value, (int, float)):
            new = [float(value)] + row["values"][1:]
        else:
            parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
            new = list(row["values"])
            for k, text in enumerate(parts[:6]):
                if text.strip():
                    new[k] = float(text)
        if not new[2] <= new[0] <= new[5]:
            raise Exception(f"Error: parameter value {new[0]} outside its hard limits")
        row["values"] = new
        row["link"] = ""

    @property
    def frozen(self):
        return self._row["frozen"]

    @frozen.setter
    def frozen(self, value):
        self._row["frozen"] = bool(value)

    @property
    def link(self):
        return self._row["link"]

    @link.setter
    def link(self, value):
        text = str(value or "").strip()
        if text and not _LINK.match(text.lstrip("=").strip()):
            raise Exception(f"Error: the double cannot parse link {text!r}")
        self._row["link"] = f"= {text.lstrip('=').strip()}" if text else ""

    def untie(self):
        self._row["values"][0] = self._d._value(self._g, self.index)
        self._row["link"] = ""

    @property
    def sigma(self):
        return -1.0


class _Component:
    def __init__(self, name, parameters):
        self.name = name
        self.parameterNames = [p.name.split(".", 1)[1] for p in parameters]
        for p in parameters:
            setattr(self, p.name.split(".", 1)[1], p)


class _Model:
    """``AllModels(group)``: the model of one data group."""

    def __init__(self, double, group):
        self._d, self._group = double, group
        base = double._base
        self.name = ""
        self.expression = double._full_expression
        self.nParameters = len(base.parameters)
        self.startParIndex = (group - 1) * self.nParameters + 1
        self._params = [_Parameter(double, group, p.index, p.name, p.unit)
                        for p in base.parameters]
        self.componentNames = [c.label for c in base.components]
        for c in base.components:
            own = self._params[c.first_parameter:c.first_parameter + c.n_parameters]
            setattr(self, c.label, _Component(c.label, own))

    def __call__(self, index):
        if not 1 <= index <= self.nParameters:
            raise Exception(f"Error: Valid range of parameters for this object: 1-{self.nParameters}")
        return self._params[index - 1]

    def setPars(self, *values):
        position = 1
        for v in values:
            if isinstance(v, dict):
                for k, x in v.items():
                    self(int(k)).values = x
            else:
                self(position).values = v
                position += 1

    def folded(self, spectrum_index):
        entry = self._d._entries[spectrum_index - 1]
        if entry.group != self._group:
            raise Exception("Error: Cannot retrieve array for this model and spectrum number.")
        return list(self._d._folded(spectrum_index))


class _ModelManager:
    def __init__(self, double):
        self._d = double
        self.sources = {1: ""}

    def __call__(self, group, modName=""):
        if self._d._base is None:
            raise Exception("Error: Model is not currently loaded in XSPEC.")
        if not 1 <= group <= max(1, self._d.AllData.nGroups):
            raise Exception(f"Error: No model object exists for unnamed model, data group {group}")
        return _Model(self._d, group)

    def __iadd__(self, expression):
        self._d.Model(expression)
        return self

    def clear(self):
        self._d._base = None
        self._d._pars = {}

    def addPyMod(self, func, parInfo, compType, calcsErrors=False, spectrumDependent=False):
        """PyXspec's local Python model: ``func(engs, params, flux)``, named ``func.__name__``."""
        if compType not in ("add", "mul"):
            raise Exception(f"Error: the double supports 'add' and 'mul' local models, not {compType!r}")
        rows = [_par_info_row(text) for text in parInfo]
        info = ComponentInfo(name=func.__name__, kind=compType, symbol="", emin=0.0, emax=1e20,
                             parameters=tuple(rows))
        self._d._local[func.__name__.lower()] = (info, func)


class _Fit:
    def __init__(self, double):
        self._d = double
        self.statMethod = "cstat"
        self.query = "on"
        self.method = "leven"
        self.nIterations = 10

    @property
    def statistic(self):
        d = self._d
        return float(d._statistic()(d._session_model().free_values()[None, :])[0])

    def perform(self):
        d = self._d
        model = d._session_model()
        free = model.free_parameters
        result = fit(d._statistic(), [p.value for p in free], [p.min for p in free],
                     [p.max for p in free])
        d.AllModels(1).setPars({p.index: float(v) for p, v in zip(free, result.theta)})


class _Xset:
    def __init__(self, double):
        self._d = double
        self.chatter = 10
        self.logChatter = 10
        self.allowPrompting = True
        self._abund, self._xsect = xslibrary.DEFAULT_ABUND, xslibrary.DEFAULT_XSECT

    @property
    def abund(self):
        return self._abund

    @abund.setter
    def abund(self, table):
        xslibrary.configure(xslibrary.XspecSettings(table.strip(), self._xsect))
        self._abund = table.strip()

    @property
    def xsect(self):
        return self._xsect

    @xsect.setter
    def xsect(self, table):
        xslibrary.configure(xslibrary.XspecSettings(self._abund, table.strip()))
        self._xsect = table.strip()

    @property
    def version(self):
        return ("test-double", "not XSPEC")

    def save(self, fileName, info="a"):
        self._d._save(fileName)

    def restore(self, fileName):
        self._d._restore(fileName)


class _ChainRecord:
    def __init__(self, fileName):
        self.fileName = fileName


class _ChainManager:
    def __init__(self, double):
        self._d = double
        self._loaded = []

    def __call__(self, index):
        return _ChainRecord(self._loaded[index - 1].path)

    def __iadd__(self, chain):
        path = chain.fileName if isinstance(chain, _ChainRecord) else str(chain)
        if os.path.exists(path):
            self._loaded.append(read_chain_file(path))  # XSPEC's layout, or it raises
        else:
            self._d.Chain(path)
        return self

    def __isub__(self, chain):
        if chain == "*":
            self._loaded.clear()
        elif isinstance(chain, int):
            del self._loaded[chain - 1]
        else:
            path = chain.fileName if isinstance(chain, _ChainRecord) else str(chain)
            self._loaded = [c for c in self._loaded if c.path != path]
        return self

    def clear(self):
        self._loaded.clear()

    def test_loaded_files(self):
        """DOUBLE ONLY (not PyXspec): paths of the loaded chains."""
        return [c.path for c in self._loaded]


class PyXspecTestDouble:
    """A test double of the ``xspec`` module (see the module docstring: not PyXspec).

    ``test_hooks`` (double only) lets a test make the double misreport, e.g.
    ``test_hooks["exposure"] = {1: 1000.0}``.
    """

    import_path = "pyxspec_double:worker_double"

    def __init__(self):
        self._entries: list = []
        self._base = None
        self._full_expression = ""
        self._pars: dict = {}
        self._folders: dict = {}
        self._local: dict = {}
        self.test_hooks: dict = {}
        self.AllData = _DataManager(self)
        self.AllModels = _ModelManager(self)
        self.Fit = _Fit(self)
        self.Xset = _Xset(self)
        self.AllChains = _ChainManager(self)

    # -- constructors with PyXspec's names ----------------------------------
    def Spectrum(self, dataFile, backFile="USE_DEFAULT", respFile="USE_DEFAULT",
                 arfFile="USE_DEFAULT"):
        kw = {k: (None if v == "USE_DEFAULT" else ("none" if not v else v))
              for k, v in (("backfile", backFile), ("respfile", respFile), ("ancrfile", arfFile))}
        self._load(dataFile, group=1, number=len(self._entries) + 1, **kw)
        return _Spectrum(self, len(self._entries))

    def Model(self, exprString, modName="", sourceNum=1, setPars=None):
        words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", exprString)}
        base = (_LocalExpression(exprString, self._local) if words & self._local.keys()
                else EngineModel(exprString))
        self._base = base
        self._full_expression = _full_expression(exprString, base)
        self._pars = {}
        self._groups_changed()
        if setPars:
            self.AllModels(1).setPars(setPars)
        return self.AllModels(1)

    def Chain(self, fileName, fileType=None, burn=0, runLength=100, proposal=None, rand=None,
              temperature=None, algorithm="gw", walkers=10):
        model = self._session_model()
        free = model.free_parameters
        result = run_chain(self._statistic(), [p.value for p in free], [p.min for p in free],
                           [p.max for p in free], names=[p.name for p in free],
                           walkers=walkers, burn=burn, length=runLength, seed=12345)
        write_chain_file(fileName, result.samples, result.stat, names=[p.name for p in free],
                         indices=[p.index for p in free], units=[p.unit for p in free],
                         walkers=result.walkers, burn=burn)
        self.AllChains += fileName
        return _ChainRecord(fileName)

    # -- engine-backed internals --------------------------------------------
    def _load(self, given, group, number, respfile=None, ancrfile=None, backfile=None):
        bare, row = split_row_suffix(given)
        s = load_spectrum(bare, row=row, respfile=respfile, ancrfile=ancrfile, backfile=backfile)
        entry = _Entry(given, group, s, s.response.rmf_path if s.response else None,
                       s.response.arf_path if s.response else None,
                       s.background.path if s.background is not None else None)
        if number <= len(self._entries):
            self._entries[number - 1] = entry
        else:
            self._entries.append(entry)
        self._groups_changed()

    def _data_command(self, text):
        tokens = text.split()
        number = 0
        group = 1
        for tok in tokens:
            if ":" in tok:
                g, n = tok.split(":")
                group, number = int(g), int(n)
                continue
            if tok.isdigit():
                number = int(tok)
                continue
            number = number or len(self._entries) + 1
            self._load(tok, group, number)
            number += 1

    def _groups_changed(self):
        self._folders.clear()
        if self._base is None:
            return
        n_groups = max(1, self.AllData.nGroups)
        for g in range(1, n_groups + 1):
            if g in self._pars:
                continue
            self._pars[g] = [
                {"values": [p.value, p.delta, p.min, p.bot, p.top, p.max], "frozen": p.frozen,
                 "link": "" if g == 1 else f"= p{p.index}"} for p in self._base.parameters]

    def _value(self, group, index):
        row = self._pars[group][index - 1]
        if not row["link"]:
            return float(row["values"][0])
        m = _LINK.match(row["link"].lstrip("=").strip())
        factor = float(m.group(1)) if m.group(1) else 1.0
        number = int(m.group(2))
        n = len(self._base.parameters)
        return factor * self._value((number - 1) // n + 1, (number - 1) % n + 1)

    def _make_model(self, expression, parameters):
        if isinstance(self._base, _LocalExpression):
            return _LocalExpression(expression, self._local, parameters)
        return EngineModel(expression, parameters)

    def _all_free_model(self):
        return self._make_model(self._base.expression, [replace(p, frozen=False, link=None)
                                                        for p in self._base.parameters])

    def _folded(self, number):
        entry = self._entries[number - 1]
        key = (number, entry.spectrum.noticed.tobytes(), id(entry.spectrum))
        if key not in self._folders:
            self._folders[key] = Folder(entry.spectrum, self._all_free_model())
        values = [self._value(entry.group, i) for i in range(1, len(self._base.parameters) + 1)]
        counts = self._folders[key].expected_counts(np.array([values]))[0]
        s = entry.spectrum
        return counts / (s.exposure * s.binned_areascal())

    def _session_model(self):
        params = []
        for p in self._base.parameters:
            row = self._pars[1][p.index - 1]
            link = row["link"] or None
            params.append(replace(p, value=self._value(1, p.index), frozen=row["frozen"] and not link,
                                  delta=abs(row["values"][1]), min=row["values"][2],
                                  bot=row["values"][3], top=row["values"][4], max=row["values"][5],
                                  link=link))
        return self._make_model(self._base.expression, params)

    def _statistic(self):
        method = self.Fit.statMethod.split()[0].lower()
        if method != "cstat":
            raise Exception(f"the double computes cstat only, not {method}")
        settings = xslibrary.XspecSettings(self.Xset.abund, self.Xset.xsect)
        session = Session(tuple(e.spectrum for e in self._entries), self._session_model(),
                          settings)
        return session.statistic_function()

    def _save(self, path):
        lines = ["#PyXspec: Output generated from Xset.save().  DO NOT MODIFY.",
                 f"statistic {self.Fit.statMethod}", f"abund {self.Xset.abund}",
                 f"xsect {self.Xset.xsect}"]
        for n, e in enumerate(self._entries, start=1):
            lines.append(f"data {e.group}:{n} {os.path.abspath(split_row_suffix(e.given)[0])}"
                         + (f"{{{split_row_suffix(e.given)[1]}}}" if split_row_suffix(e.given)[1] else ""))
            lines.append(f"response 1:{n} {e.rmf or 'none'}")
            lines.append(f"arf 1:{n} {e.arf or 'none'}")
            lines.append(f"backgrnd {n} {e.bkg or 'none'}")
            off = np.flatnonzero(~e.spectrum.noticed) + 1
            if off.size:
                lines.append(f"ignore {n}:" + ",".join(str(int(c)) for c in off))
        if self._base is not None:
            lines.append(f"model {self._full_expression}")
            for g in sorted(self._pars):
                for row in self._pars[g]:
                    if row["link"]:
                        lines.append(row["link"])
                    else:
                        v = list(row["values"])
                        v[1] = -abs(v[1]) if row["frozen"] else abs(v[1])
                        lines.append(" ".join(repr(float(x)) for x in v))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _restore(self, path):
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        self.__init__()
        pending_model, par_lines = None, []
        for ln in lines:
            word, _, rest = ln.partition(" ")
            if pending_model is not None and (ln.startswith("=") or re.match(r"^[-+0-9.]", ln)):
                par_lines.append(ln)
                continue
            if word == "statistic":
                self.Fit.statMethod = rest
            elif word == "abund":
                self.Xset.abund = rest
            elif word == "xsect":
                self.Xset.xsect = rest
            elif word == "data":
                spec, _, file = rest.partition(" ")
                g, n = spec.split(":")
                self._load(file, int(g), int(n), respfile="none", ancrfile="none", backfile="none")
            elif word in ("response", "arf", "backgrnd"):
                spec, _, file = rest.partition(" ")
                n = int(spec.split(":")[-1])
                e = self._entries[n - 1]
                setattr(e, {"response": "rmf", "arf": "arf", "backgrnd": "bkg"}[word],
                        _keyword_file(file))
                self._reload(n)
            elif word == "ignore":
                spec, _, ranges = rest.partition(":")
                _Spectrum(self, int(spec)).ignore(ranges.replace(",", " "))
            elif word == "model":
                pending_model = rest
        if pending_model is not None:
            self.Model(pending_model)
            n = len(self._base.parameters)
            for k, ln in enumerate(par_lines):
                row = self._pars[k // n + 1][k % n]
                if ln.startswith("="):
                    row["link"] = ln
                else:
                    v = [float(x) for x in ln.split()]
                    row["frozen"] = v[1] < 0
                    v[1] = abs(v[1])
                    row["values"], row["link"] = v, ""

    def _reload(self, n):
        e = self._entries[n - 1]
        bare, row = split_row_suffix(e.given)
        noticed = e.spectrum.noticed
        s = load_spectrum(bare, row=row, respfile=e.rmf or "none",
                          ancrfile=(e.arf or "none") if e.rmf else "none",
                          backfile=e.bkg or "none")
        e.spectrum = replace(s, noticed=noticed)
        self._folders.clear()


def _par_info_row(text):
    """One ``parInfo`` string (model.dat layout: name [unit] value hardmin softmin softmax
    hardmax delta) as a ComponentInfo parameter row."""
    tokens = shlex.split(text)
    if len(tokens) == 7:
        tokens.insert(1, "")
    if len(tokens) != 8:
        raise Exception(f"Error: cannot read parInfo entry {text!r}")
    name, unit, *numbers = tokens
    value, hard_min, soft_min, soft_max, hard_max, delta = map(float, numbers)
    return (name, unit, value, hard_min, soft_min, soft_max, hard_max, delta, "")


class _LocalExpression:
    """DOUBLE ONLY: an expression with local Python components (``AllModels.addPyMod``).

    The double evaluates it itself: a local component calls the registered
    function as PyXspec does, a library component calls XSPEC's function
    through :func:`xspec_sbi.model.library.call_model`, one parameter row at a
    time. It offers the attributes of the engine's Model that the double and
    the engine's Simulator use (``parameters``, ``components``,
    ``free_parameters``, ``evaluate``...).
    """

    def __init__(self, expression, local, parameters=None):
        self.expression = expression
        self._local = dict(local)
        self._tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[()*+]", expression)
        self._pos = 0
        self._funcs = []
        infos = []
        self._tree = self._sum(infos)
        comps, first, seen = [], 0, {}
        for i, info in enumerate(infos, start=1):
            seen[info.name] = seen.get(info.name, 0) + 1
            label = info.name if seen[info.name] == 1 else f"{info.name}_{i}"
            comps.append(Component(info, i, label, first))
            first += len(info.parameters) + (1 if info.kind == "add" else 0)
        self.components = tuple(comps)
        self.parameters = tuple(parameters) if parameters is not None else self._defaults()

    # -- parsing (XSPEC's algebra: sums of products, implicit products) -------
    def _peek(self):
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _sum(self, infos):
        terms = [self._prod(infos)]
        while self._peek() == "+":
            self._pos += 1
            terms.append(self._prod(infos))
        return terms[0] if len(terms) == 1 else ("+", terms)

    def _prod(self, infos):
        factors = [self._atom(infos)]
        while self._peek() not in (None, "+", ")"):
            if self._peek() == "*":
                self._pos += 1
            factors.append(self._atom(infos))
        return factors[0] if len(factors) == 1 else ("*", factors)

    def _atom(self, infos):
        tok = self._peek()
        self._pos += 1
        if tok == "(":
            tree = self._sum(infos)
            self._pos += 1
            return tree
        info, func = self._lookup(tok)
        infos.append(info)
        self._funcs.append(func)
        return ("c", len(infos) - 1)

    def _lookup(self, word):
        if word.lower() in self._local:
            return self._local[word.lower()]
        catalog = component_catalog()
        for name, info in catalog.items():
            if name == word.lower() or name.startswith(word.lower()):
                if info.kind not in ("add", "mul"):
                    raise Exception(f"Error: the double cannot evaluate {info.kind} model {name}")
                return info, None
        raise Exception(f"Error: unknown model component {word!r}")

    def _defaults(self):
        out = []
        for c in self.components:
            rows = list(c.info.parameters)
            if c.info.kind == "add":
                rows.append(("norm", "", 1.0, 0.0, 0.0, 1e24, 1e24, 0.01, ""))
            for name, unit, v, mn, bot, top, mx, delta, special in rows:
                out.append(ParameterSpec(name=f"{c.label}.{name}", index=len(out) + 1, unit=unit,
                                         value=v, delta=abs(delta), min=mn, bot=bot, top=top,
                                         max=mx, frozen=bool(special) or delta < 0))
        return tuple(out)

    # -- the engine Model's interface ------------------------------------------
    @property
    def free_parameters(self):
        return tuple(p for p in self.parameters if p.free)

    @property
    def free_names(self):
        return tuple(p.name for p in self.free_parameters)

    def free_values(self):
        return np.array([p.value for p in self.free_parameters])

    def probe(self, settings=None):
        pass

    def all_values(self, theta):
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        values = np.tile([p.value for p in self.parameters], (theta.shape[0], 1))
        values[:, [i for i, p in enumerate(self.parameters) if p.free]] = theta
        for i, p in enumerate(self.parameters):
            if p.link is not None:
                m = _LINK.match(p.link.strip())
                values[:, i] = float(m.group(1) or 1.0) * values[:, int(m.group(2)) - 1]
        return values

    def evaluate(self, energy_edges, theta):
        """Photon flux (n_batch, n_e) per energy bin, photons cm^-2 s^-1."""
        edges = np.ascontiguousarray(energy_edges, dtype=np.float64)
        return np.array([self._eval(self._tree, row, edges) for row in self.all_values(theta)])

    def _eval(self, tree, row, edges):
        if tree[0] != "c":
            parts = [self._eval(t, row, edges) for t in tree[1]]
            out = parts[0]
            for part in parts[1:]:
                out = out + part if tree[0] == "+" else out * part
            return out
        comp, func = self.components[tree[1]], self._funcs[tree[1]]
        n_own = len(comp.info.parameters)
        pars = row[comp.first_parameter:comp.first_parameter + n_own]
        if func is not None:
            flux = [0.0] * (edges.size - 1)
            func(list(edges), tuple(float(v) for v in pars), flux)
            shape = np.asarray(flux, dtype=np.float64)
        elif comp.info.name.lower() == "powerlaw":
            shape = powerlaw_integral(edges, np.array([pars[0]]))[0]
        else:
            shape = xslibrary.call_model(comp.info.symbol, edges, pars)
        if comp.info.kind == "add":
            shape = shape * row[comp.first_parameter + n_own]
        return shape


def _full_expression(expression, base):
    """The expression with full component names, as PyXspec's Model.expression."""
    names = iter(c.info.name for c in base.components)
    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: next(names), expression)


#: The instance a spawned worker process uses (``import_path``); empty until restored.
worker_double = PyXspecTestDouble()
