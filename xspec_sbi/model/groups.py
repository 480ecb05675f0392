"""XSPEC's data groups: one model expression, one copy of its parameters per group.

XSPEC gives each data group its own copy of the model's parameters. With
``n`` parameters per copy, group ``g``'s parameter ``k`` is XSPEC's
parameter ``(g - 1) * n + k``; every copy of a group above 1 starts linked to
group 1's (``= pk``), and the user unties (``untie``, ``thaw``) the ones that
differ, typically a cross-normalisation ``constant.factor`` frozen at 1 in
group 1 and free in the others. Spectra of group ``g`` are folded with group
``g``'s full parameter vector.

Names: group 1's parameters keep PyXspec's names (``"constant.factor"``);
group ``g >= 2``'s carry the group number in brackets
(``"constant.factor[2]"``), one unambiguous token in tables, in ``prior=``
and on the command line (``--prior "constant.factor[2]=0.5:1.5"``). XSPEC's
global numbers are accepted everywhere a name is.

:class:`GroupedModel` offers the :class:`~xspec_sbi.model.expression.Model`
interface the stages use (parameters, free parameters, ``set``/``freeze``/
``thaw``, ``probe``) over all groups, and :meth:`GroupedModel.for_group`
gives each spectrum's simulator a model that takes the joint free
parameters and evaluates its own group.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from xspec_sbi.model.catalogue import ModelError
from xspec_sbi.model.expression import Model, ParameterEdits, link_order, resolve_values
from xspec_sbi.model.parameters import ParameterSpec, parameter_index

__all__ = ["GroupedModel", "GroupModel", "group_name", "free_per_group"]

_GROUPED_NAME = re.compile(r"^(?P<base>.+?)\s*\[\s*(?P<g>\d+)\s*\]$")


def group_name(name: str, group: int) -> str:
    """A parameter's name in data group ``group``: ``name`` in group 1, ``name[g]`` above."""
    return name if group == 1 else f"{name}[{group}]"


class GroupedModel(ParameterEdits):
    """One model expression over ``n_groups`` XSPEC data groups.

    Parameters
    ----------
    model : Model
        The expression with group 1's parameters.
    n_groups : int
        Number of data groups, >= 1.
    parameters : sequence of ParameterSpec, optional
        All ``n_groups * n`` parameters in XSPEC's global order (as
        :attr:`parameters` lists them); links are ``"= pN"`` / ``"= a*pN"``
        with ``N`` a global number. Default: group 1's, then every other
        group's copy linked to group 1's (XSPEC's default).

    Examples
    --------
    >>> m = Model("constant*tbabs*powerlaw").freeze("constant.factor")
    >>> g = GroupedModel(m, 2).untie("constant.factor")
    >>> g.free_names
    ('TBabs.nH', 'powerlaw.PhoIndex', 'powerlaw.norm', 'constant.factor[2]')
    """

    _FREEZE_UNLINKS = True     # freezing or thawing a group's copy unties it from group 1

    def __init__(self, model: Model, n_groups: int, parameters: Sequence[ParameterSpec] | None = None):
        if not isinstance(model, Model):
            raise ModelError(f"data groups need an engine Model, got {type(model).__name__}")
        if int(n_groups) < 1:
            raise ModelError(f"n_groups={n_groups}: a model has at least one data group")
        self.base = model
        self.n_groups = int(n_groups)
        n = self.n_per_group
        if parameters is None:
            parameters = list(model.parameters)
            for g in range(2, self.n_groups + 1):
                parameters += [replace(p, name=group_name(p.name, g), index=(g - 1) * n + p.index,
                                       frozen=False, link=f"= p{p.index}")
                               for p in model.parameters]
        parameters = tuple(parameters)
        expected = [group_name(p.name, g) for g in range(1, self.n_groups + 1)
                    for p in model.parameters]
        if [p.name for p in parameters] != expected:
            raise ModelError(f"parameters given for {model.expression!r} over {self.n_groups} "
                             "data groups do not match its components")
        self.parameters: tuple[ParameterSpec, ...] = parameters
        # every parameter free and unlinked: evaluates a group's full value vector as it is
        self._open = Model(model.expression, [replace(p, frozen=False, link=None)
                                              for p in model.parameters])
        self._order = link_order(self.parameters)

    # -- the Model interface the stages use ------------------------------------------
    @property
    def open_model(self) -> Model:
        """One group's model with every parameter free and unlinked: it evaluates a
        group's full value vector (:meth:`group_values`) as it is."""
        return self._open

    @property
    def expression(self) -> str:
        return self.base.expression

    @property
    def n_per_group(self) -> int:
        """Parameters of one copy of the model (XSPEC's ``nParameters`` of ``AllModels(1)``)."""
        return len(self.base.parameters)

    @property
    def components(self):
        return self.base.components

    @property
    def bin_local(self) -> bool:
        """As :attr:`Model.bin_local`: False with a convolution (folded from the whole grid)."""
        return self.base.bin_local

    def __repr__(self):
        return f"GroupedModel({self.expression!r}, n_groups={self.n_groups})"

    def __eq__(self, other):
        return (isinstance(other, GroupedModel) and other.expression == self.expression
                and other.parameters == self.parameters)

    def __hash__(self):
        return hash((self.expression, self.parameters))

    def index_of(self, name) -> int:
        """0-based global position of a parameter: ``"powerlaw.norm[2]"``, any case, or XSPEC's number."""
        if isinstance(name, str):
            m = _GROUPED_NAME.match(name.strip())
            if m and int(m.group("g")) == 1:
                name = m.group("base")   # "x[1]" is group 1's "x"
        return parameter_index(self.parameters, name, self.expression, ModelError)

    def __getitem__(self, name) -> ParameterSpec:
        return self.parameters[self.index_of(name)]

    @property
    def free_parameters(self) -> tuple[ParameterSpec, ...]:
        """Group 1's free parameters, then each group's untied free ones (XSPEC's order)."""
        return tuple(p for p in self.parameters if p.free)

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.free_parameters)

    def free_values(self) -> np.ndarray:
        """Current values of the free parameters, shape (n_free,)."""
        return np.array([p.value for p in self.free_parameters])

    def probe(self, settings=None) -> None:
        self.base.probe(settings)

    def group_of(self, name) -> int:
        """Data group (1-based) of a parameter given by name or number."""
        return self.index_of(name) // self.n_per_group + 1

    # -- changing parameters (updated, set, freeze, thaw: ParameterEdits) ---------------
    def untie(self, name, groups: Sequence[int] | None = None) -> "GroupedModel":
        """Free group 1's parameter ``name`` in other groups (XSPEC's ``untie`` then ``thaw``).

        Parameters
        ----------
        name : str or int
            Group 1's parameter (``"constant.factor"``) or its number.
        groups : sequence of int, optional
            Groups whose copy becomes free, each >= 2 (default: all but group 1).
            The copy starts at group 1's value, with group 1's limits.
        """
        i = self.index_of(name)
        if i >= self.n_per_group:
            raise ModelError(f"untie {name!r}: name group 1's parameter "
                             f"({self.parameters[i % self.n_per_group].name}); its copies "
                             "in the other groups are untied")
        chosen = range(2, self.n_groups + 1) if groups is None else groups
        if self.n_groups == 1:
            raise ModelError(f"untie {name!r}: there is only one data group")
        m = self
        for g in chosen:
            if not 2 <= int(g) <= self.n_groups:
                raise ModelError(f"untie {name!r}: data group {g} is outside 2..{self.n_groups}")
            k = (int(g) - 1) * self.n_per_group + i
            m = m.updated(k + 1, frozen=False, link=None, value=self.parameters[i].value)
        return m

    def _with(self, params) -> "GroupedModel":
        return GroupedModel(self.base_with(params[:self.n_per_group]), self.n_groups, params)

    def base_with(self, group1) -> Model:
        return Model(self.expression, list(group1))

    # -- evaluation ---------------------------------------------------------------------
    def all_values(self, theta) -> np.ndarray:
        """Every group's parameters from the free values, links resolved.

        Parameters
        ----------
        theta : array_like (n_batch, n_free)

        Returns
        -------
        ndarray (n_batch, n_groups * n_per_group)
        """
        return resolve_values(self.parameters, self._order, theta, self.free_names)

    def group_values(self, theta, group: int) -> np.ndarray:
        """Group ``group``'s full parameter vectors (n_batch, n_per_group)."""
        n = self.n_per_group
        return self.all_values(theta)[:, (group - 1) * n:group * n]

    def evaluate_group(self, energy_edges, theta, group: int) -> np.ndarray:
        """Photon flux (n_batch, n_e), photons cm^-2 s^-1, of group ``group`` for joint ``theta``."""
        return self._open.evaluate(energy_edges, self.group_values(theta, group))

    def for_group(self, group: int) -> "GroupModel":
        """The model a spectrum of data group ``group`` is folded with."""
        if not 1 <= int(group) <= self.n_groups:
            raise ModelError(f"data group {group} is outside 1..{self.n_groups}")
        return GroupModel(self, int(group))


def free_per_group(model, n_groups: int, names: Sequence[str]) -> GroupedModel:
    """``model`` over ``n_groups`` data groups with group 1's ``names`` free in every other group.

    XSPEC's ``untie`` and ``thaw`` of each group's copy. A ``constant``
    component's factor named here is frozen in group 1 when it is free there:
    the cross-normalisation is relative to group 1 (XSPEC's usage), and a
    free factor in every group would be degenerate with the norms.

    Parameters
    ----------
    model : Model or GroupedModel
    n_groups : int
    names : sequence of str
        Group 1's parameters, e.g. ``["constant.factor"]`` or ``["powerlaw.norm"]``.
    """
    names = list(names)
    if names and n_groups < 2:
        raise ModelError(f"free per group {names}: needs at least two data groups (spectra)")
    grouped = model if isinstance(model, GroupedModel) else GroupedModel(model, n_groups)
    if grouped.n_groups != n_groups:
        raise ModelError(f"the model has {grouped.n_groups} data groups, not {n_groups}")
    for name in names:
        i = grouped.index_of(name)
        if i >= grouped.n_per_group:
            raise ModelError(f"free per group {name!r}: a copy in data group "
                             f"{grouped.group_of(name)}; name group 1's parameter")
        comp = max((c for c in grouped.components if c.first_parameter <= i),
                   key=lambda c: c.first_parameter)
        if comp.info.name.lower() == "constant" and grouped.parameters[i].free:
            grouped = grouped.freeze(i + 1)
        grouped = grouped.untie(i + 1)
    return grouped


class GroupModel:
    """One data group's view of a :class:`GroupedModel`: joint free parameters in, its flux out.

    Simulators and folders call ``evaluate(energy_edges, theta)`` with the
    joint free parameters (``grouped.free_parameters``); the view evaluates
    its own group's full parameter vector.
    """

    def __init__(self, grouped: GroupedModel, group: int):
        self.grouped = grouped
        self.group = group

    def __repr__(self):
        return f"GroupModel({self.grouped.expression!r}, group={self.group})"

    def __eq__(self, other):
        return (isinstance(other, GroupModel) and other.group == self.group
                and other.grouped == self.grouped)

    def __hash__(self):
        return hash((self.grouped, self.group))

    @property
    def expression(self) -> str:
        return self.grouped.expression

    @property
    def bin_local(self) -> bool:
        return self.grouped.bin_local

    @property
    def parameters(self):
        return self.grouped.parameters

    @property
    def free_parameters(self):
        return self.grouped.free_parameters

    @property
    def free_names(self):
        return self.grouped.free_names

    def free_values(self) -> np.ndarray:
        return self.grouped.free_values()

    def index_of(self, name) -> int:
        return self.grouped.index_of(name)

    def probe(self, settings=None) -> None:
        self.grouped.probe(settings)

    def evaluate(self, energy_edges, theta) -> np.ndarray:
        """Photon flux (n_batch, n_e), photons cm^-2 s^-1 per bin, of this group."""
        return self.grouped.evaluate_group(energy_edges, theta, self.group)
