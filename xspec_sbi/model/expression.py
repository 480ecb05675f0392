"""XSPEC model expressions: XSPEC's algebra and the parameters of a model.

``Model("tbabs*(powerlaw+bbodyrad)")`` parses an expression as XSPEC does
(case-insensitive names, abbreviations, implicit multiplication), lists its
parameters with PyXspec's names and XSPEC's six values, and evaluates a batch
of parameter vectors on an energy grid with XSPEC's own model functions.
The component list is :mod:`xspec_sbi.model.catalogue`; evaluating a parsed
expression (and the identities that make it fast) is
:mod:`xspec_sbi.model.evaluation`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.catalogue import ComponentInfo, ModelError, component_catalog, lookup
from xspec_sbi.model.evaluation import Evaluator, powerlaw_integral
from xspec_sbi.model.parameters import ParameterSpec, parameter_index
from xspec_sbi.model.table import TableInfo
from xspec_sbi.model.table_file import table_component

__all__ = ["ModelError", "ComponentInfo", "Component", "Model", "ParameterEdits", "link_order",
           "resolve_values", "component_catalog",
           "powerlaw_integral"]


# --- expression parsing ----------------------------------------------------

@dataclass(frozen=True)
class Component:
    """A component instance in an expression.

    Parameters
    ----------
    info : ComponentInfo
    index : int
        1-based position in the expression (XSPEC's component number).
    label : str
        PyXspec's name: ``info.name`` or ``info.name + "_<index>"`` for repeats.
    first_parameter : int
        0-based position of its first parameter in the model's list.
    """

    info: ComponentInfo
    index: int
    label: str
    first_parameter: int

    @property
    def n_parameters(self) -> int:
        return len(self.info.parameters) + (1 if self.info.kind == "add" else 0)


# ``atable{file.fits}``: one token, the file name anything up to the brace.
_TABLE = re.compile(r"(?i)\s*([ame]table)\s*\{([^}]*)\}")


def _tokenize(expr: str) -> list[str]:
    toks = re.findall(r"(?i)[ame]table\s*\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|[()*+]|\S", expr)
    for t in toks:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*$|[()*+]$", t) and not _TABLE.match(t):
            raise ModelError(f"unexpected character {t!r} in model expression {expr!r}")
    return toks


class _Parser:
    """Recursive descent over XSPEC's algebra; leaves are component indices.

    Grammar: sum := prod ('+' prod)* ; prod := atom ('*'? atom)* ;
    atom := NAME | '(' sum ')'. A name or ')' followed by a name or '('
    multiplies implicitly, as in ``phabs(bbody+gaussian)``.

    A convolution (``con``) component acts on the product of everything to
    its right in its product, as XSPEC's manual writes them:
    ``phabs*cflux*(pow+gauss)`` is ``phabs * cflux[pow+gauss]``,
    ``cflux*phabs*pow`` is ``cflux[phabs*pow]``, ``cflux(pow)`` is
    ``cflux[pow]``. The tree node is ``("conv", component, operand)``.
    """

    def __init__(self, expr: str, catalog):
        self.expr = expr
        self.toks = _tokenize(expr)
        self.pos = 0
        self.catalog = catalog
        self.components: list[ComponentInfo] = []

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self):
        if not self.toks:
            raise ModelError("empty model expression")
        tree = self.sum()
        if self.peek() is not None:
            raise ModelError(f"unexpected {self.peek()!r} in model expression {self.expr!r}")
        return tree

    def sum(self):
        terms = [self.prod()]
        while self.peek() == "+":
            self.take()
            terms.append(self.prod())
        return terms[0] if len(terms) == 1 else ("+", terms)

    def prod(self):
        factors = [self.atom()]
        while True:
            tok = self.peek()
            if tok == "*":
                self.take()
                factors.append(self.atom())
            elif tok is not None and (tok == "(" or tok[0].isalpha() or tok[0] == "_"):
                factors.append(self.atom())
            else:
                break
        return self._convolutions(factors)

    def _convolutions(self, factors):
        """The product of ``factors``, each con component acting on the factors to its right."""
        for i, f in enumerate(factors):
            if f[0] == "c" and self.components[f[1]].kind == "con":
                rest = factors[i + 1:]
                if not rest:
                    raise ModelError(
                        f"convolution component {self.components[f[1]].name!r} in model "
                        f"expression {self.expr!r} has nothing to its right to act on "
                        f"(write it before what it convolves: {self.components[f[1]].name}(...))")
                node = ("conv", f[1], self._convolutions(rest))
                return node if i == 0 else ("*", factors[:i] + [node])
        return factors[0] if len(factors) == 1 else ("*", factors)

    def atom(self):
        tok = self.take()
        if tok is None:
            raise ModelError(f"model expression {self.expr!r} ends too early")
        if tok == "(":
            tree = self.sum()
            if self.take() != ")":
                raise ModelError(f"unbalanced parentheses in model expression {self.expr!r}")
            return tree
        if tok in ")*+":
            raise ModelError(f"unexpected {tok!r} in model expression {self.expr!r}")
        table = _TABLE.match(tok)
        if table:
            self.components.append(table_component(table.group(1), table.group(2)))
            return ("c", len(self.components) - 1)
        self.components.append(lookup(tok, self.catalog))
        return ("c", len(self.components) - 1)


def _kind(tree, comps) -> str:
    """Type of a subexpression under XSPEC's algebra: 'add' or 'mul'.

    A convolution has the kind of what it acts on (``zmshift*phabs`` is a
    multiplicative factor, ``zashift(powerlaw)`` an additive one).
    """
    if tree[0] == "conv":
        return _kind(tree[2], comps)
    if tree[0] == "c":
        k = comps[tree[1]].info.kind
        if k not in ("add", "mul"):
            raise ModelError(
                f"component {comps[tree[1]].info.name!r} is a {k!r} model; the embedded "
                "engine evaluates additive, multiplicative and convolution components "
                "only (use the XSPEC path for mixing and pile-up models)")
        return k
    kinds = [_kind(t, comps) for t in tree[1]]
    if tree[0] == "+":
        if any(k != "add" for k in kinds):
            raise ModelError("XSPEC cannot add a multiplicative component to others: "
                             "every term of a sum must contain an additive component")
        return "add"
    n_add = kinds.count("add")
    if n_add > 1:
        raise ModelError("XSPEC cannot multiply two additive components together")
    return "add" if n_add == 1 else "mul"


# --- the model ---------------------------------------------------------------

_LINK = re.compile(r"^=\s*(?:([-+0-9.eE]+)\s*\*\s*)?p(\d+)\s*$", re.IGNORECASE)


def link_order(parameters) -> tuple:
    """``(i, factor, target)`` for each linked parameter (``"= pN"``, ``"= a*pN"``, 1-based N),
    ordered so that each target is resolved before the parameters linked to it."""
    links = {}
    for i, p in enumerate(parameters):
        if p.link is None:
            continue
        m = _LINK.match(p.link.strip())
        if not m or not 1 <= int(m.group(2)) <= len(parameters):
            raise ModelError(f"parameter {p.name}: link {p.link!r} is not of the form "
                             f"'= pN' or '= a*pN' with N in 1..{len(parameters)}")
        links[i] = (float(m.group(1)) if m.group(1) else 1.0, int(m.group(2)) - 1)
    order, done = [], set()
    for i in links:
        chain, j = [], i
        while j in links and j not in done:
            if j in chain:
                raise ModelError("parameter links form a loop: "
                                 + " -> ".join(parameters[k].name for k in chain + [j]))
            chain.append(j)
            j = links[j][1]
        for k in reversed(chain):
            order.append((k,) + links[k])
            done.add(k)
    return tuple(order)


def resolve_values(parameters, order, theta, free_names) -> np.ndarray:
    """Every parameter's value (n_batch, n_parameters) from the free ones, links resolved.

    ``order`` is :func:`link_order` of ``parameters``; ``free_names`` names the
    free parameters in an error about the number of columns of ``theta``.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    free = [i for i, p in enumerate(parameters) if p.free]
    if theta.shape[1] != len(free):
        raise ModelError(f"expected {len(free)} free parameter values "
                         f"({', '.join(free_names)}), got {theta.shape[1]}")
    values = np.tile([p.value for p in parameters], (theta.shape[0], 1))
    values[:, free] = theta
    for i, factor, target in order:
        values[:, i] = factor * values[:, target]
    return values


class ParameterEdits:
    """Copies of a model with parameters changed, by name or 1-based number.

    For :class:`Model` and the grouped model of data groups; a class gives
    ``parameters``, ``index_of`` and ``_with(params)`` (the same model with
    ``params``). ``_FREEZE_UNLINKS``: freezing or thawing a parameter also
    drops its link (a data group's copy, linked to group 1 by default).
    """

    _FREEZE_UNLINKS = False

    def updated(self, name, **fields):
        """A copy with one parameter's fields replaced (value, frozen, bot, link, ...)."""
        i = self.index_of(name)
        p = replace(self.parameters[i], **fields)
        if "value" in fields and not (p.min <= p.value <= p.max):
            raise ModelError(f"parameter {p.name}: value {p.value} outside its hard "
                             f"limits [{p.min}, {p.max}]")
        params = list(self.parameters)
        params[i] = p
        return self._with(params)

    def set(self, **values):
        """A copy with parameter values set by name: ``m.set(**{"TBabs.nH": 0.2})``."""
        m = self
        for name, value in values.items():
            m = m.updated(name, value=float(value))
        return m

    def freeze(self, *names):
        return self._frozen(names, True)

    def thaw(self, *names):
        return self._frozen(names, False)

    def _frozen(self, names, frozen: bool):
        extra = {"link": None} if self._FREEZE_UNLINKS else {}
        m = self
        for n in names:
            m = m.updated(n, frozen=frozen, **extra)
        return m


class Model(ParameterEdits):
    """An XSPEC model expression with its parameters.

    Parameters
    ----------
    expression : str
        XSPEC syntax, e.g. ``"tbabs*(powerlaw+bbodyrad)"``.
    parameters : sequence of ParameterSpec, optional
        Parameters to use instead of ``model.dat``'s defaults (same order).

    Examples
    --------
    >>> m = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7})
    >>> [p.name for p in m.free_parameters]
    ['TBabs.nH', 'powerlaw.PhoIndex', 'powerlaw.norm']
    """

    def __init__(self, expression: str, parameters=None):
        parser = _Parser(expression, component_catalog())
        self._tree = parser.parse()
        infos = parser.components
        counts: dict[str, int] = {}
        comps, first = [], 0
        for i, info in enumerate(infos, start=1):
            counts[info.name] = counts.get(info.name, 0) + 1
            label = info.name if counts[info.name] == 1 else f"{info.name}_{i}"
            comps.append(Component(info, i, label, first))
            first += len(info.parameters) + (1 if info.kind == "add" else 0)
        self.components: tuple[Component, ...] = tuple(comps)
        if _kind(self._tree, comps) != "add":
            raise ModelError(f"model {expression!r} has no additive component")
        self.expression = expression
        default = self._default_parameters()
        if parameters is None:
            parameters = default
        parameters = tuple(parameters)
        if [p.name for p in parameters] != [p.name for p in default]:
            raise ModelError(f"parameters given for {expression!r} do not match its components")
        self.parameters: tuple[ParameterSpec, ...] = parameters
        self._check_links()
        self._links = link_order(parameters)

    def _default_parameters(self):
        out = []
        for c in self.components:
            rows = list(c.info.parameters)
            if c.info.kind == "add":
                rows.append(("norm", "", 1.0, 0.0, 0.0, 1e24, 1e24, 0.01, ""))
            for name, unit, v, mn, bot, top, mx, delta, special in rows:
                out.append(ParameterSpec(
                    name=f"{c.label}.{name}", index=len(out) + 1, unit=unit, value=v,
                    delta=abs(delta), min=mn, bot=bot, top=top, max=mx,
                    frozen=bool(special) or delta < 0))
        return tuple(out)

    def _check_links(self):
        for p in self.parameters:
            if p.link is None:
                continue
            m = _LINK.match(p.link.strip())
            if not m or not 1 <= int(m.group(2)) <= len(self.parameters):
                raise ModelError(f"parameter {p.name}: link {p.link!r} is not of the form "
                                 "'= pN' or '= a*pN' with N a parameter of this model")
            if self.parameters[int(m.group(2)) - 1].link is not None:
                raise ModelError(f"parameter {p.name}: links to a linked parameter")

    # -- parameter access -------------------------------------------------
    def __repr__(self):
        return f"Model({self.expression!r})"

    def __getitem__(self, name: str) -> ParameterSpec:
        return self.parameters[self.index_of(name)]

    def index_of(self, name: str) -> int:
        """0-based position of a parameter given by name (case-insensitive) or 1-based number."""
        return parameter_index(self.parameters, name, self.expression, ModelError)

    @property
    def bin_local(self) -> bool:
        """True when each energy bin's value depends on that bin alone (no convolution).

        Folding may then evaluate the model on the part of the response grid
        that reaches a noticed channel; a convolution needs XSPEC's whole grid.
        """
        return all(c.info.kind != "con" for c in self.components)

    @property
    def free_parameters(self) -> tuple[ParameterSpec, ...]:
        """Parameters that are inferred: neither frozen nor linked."""
        return tuple(p for p in self.parameters if p.free)

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.free_parameters)

    def _with(self, params) -> "Model":
        return Model(self.expression, params)

    def free_values(self) -> np.ndarray:
        """Current values of the free parameters, shape (n_free,)."""
        return np.array([p.value for p in self.free_parameters])

    def probe(self, settings=None) -> None:
        """Refuse, with the component's name, models that cannot run here."""
        xslibrary.probe_models([
            (c.info.name, c.info.model_function.listed, c.info.kind, [row[2] for row in c.info.parameters])
            for c in self.components
            if c.info.name.lower() != "powerlaw" and not isinstance(c.info, TableInfo)
        ] or [], settings)

    # -- evaluation -----------------------------------------------------------
    def all_values(self, theta) -> np.ndarray:
        """Full parameter table from free values, links resolved.

        Parameters
        ----------
        theta : array_like (n_batch, n_free)

        Returns
        -------
        ndarray (n_batch, n_parameters)
        """
        return resolve_values(self.parameters, self._links, theta, self.free_names)

    def evaluate(self, energy_edges, theta) -> np.ndarray:
        """Model photon flux for a batch of free-parameter vectors.

        Parameters
        ----------
        energy_edges : ndarray (n_e + 1,), keV
        theta : array_like (n_batch, n_free)
            Free-parameter values in the order of :attr:`free_parameters`.

        Returns
        -------
        flux : ndarray (n_batch, n_e)
            Photons cm^-2 s^-1 in each energy bin.
        """
        edges = np.ascontiguousarray(energy_edges, dtype=np.float64)
        values = self.all_values(theta)
        return Evaluator(self, edges).run(values)
