"""The fit statistic of observed spectra as a function of the free parameters.

XSPEC's ``statistic cstat`` is the Cash statistic for a spectrum without
background and the W statistic (profiled Poisson background) for one with a
background file; a joint fit adds the statistics of its spectra. Fits, chains,
restricted priors and likelihood corrections all use this one objective.

Large batches (the likelihood check's 10,000 draws, the Metropolis moves,
amortized application) can be evaluated across a process pool
(:meth:`PoissonStatistic.using`, :func:`statistics_of_spectra`): the work is
cut on the blocks the calling process folds at a time, so the numbers are
the same bits with or without a pool (see :mod:`xspec_sbi.forward.pooled`).
Blocks of more than 32 rows fold on one BLAS thread in every process: a dense transfer
matrix folded by OpenBLAS on 2 threads gave other last bits than on one
(XMM-pn and Swift XRT, joint W-stat), and on a busy 2-core machine it was
also ~1.9x slower (10,000 rows: 2.8 s against 1.5 s).
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np

from xspec_sbi.forward import expectation, stats
from xspec_sbi.forward.pooled import RowCost, evaluate_units, pool_of
from xspec_sbi.forward.simulate import FakeitDraws, Simulator, SpectralSimulator, installed_simulator

__all__ = ["PoissonStatistic", "statistics_of_spectra", "poolable"]


class PoissonStatistic:
    """``stat(theta) -> (n_batch,)``: XSPEC's cstat (or wstat) of observed data.

    Parameters
    ----------
    simulator : SpectralSimulator
        Gives the folded model; its background (if any) selects wstat.
    observed : ndarray (n_outputs,)
        Data in the simulator's layout: per spectrum, source counts then,
        with a background, background counts.
    executor : SimulatorPool, optional
        Evaluate large batches across its workers (see :meth:`using`).
    """

    def __init__(self, simulator, observed, executor=None):
        self.simulator = simulator
        observed = np.asarray(observed, dtype=np.float64)
        if observed.shape != (simulator.n_outputs,):
            raise ValueError(f"observed data have shape {observed.shape}; the set-up expects "
                             f"({simulator.n_outputs},)")
        self._observed = observed
        self._parts = list(zip(simulator.parts, simulator.split(observed)))
        self.executor = _pool_for(executor, simulator)
        self._cost = RowCost()

    def using(self, executor) -> "PoissonStatistic":
        """This statistic with large batches evaluated across ``executor``'s workers.

        Parameters
        ----------
        executor : SimulatorPool or None
            A pool of this package (its workers set up as this process);
            anything else, or None, evaluates in this process, as does a
            simulator folding through XSPEC itself (it has pools of its own).

        Returns
        -------
        PoissonStatistic
            The same numbers, bit for bit; work under ~0.05 s stays here, and
            a pool measured slower than this process is left alone.
        """
        out = copy.copy(self)
        out.executor, out._cost = _pool_for(executor, self.simulator), RowCost()
        return out

    def __getstate__(self):
        # a pool does not travel (its threads and pipes are this process's): a copy elsewhere
        # evaluates where it is
        state = dict(self.__dict__)
        state["executor"], state["_cost"] = None, RowCost()
        return state

    @property
    def name(self) -> str:
        return "wstat" if any(p.has_background for p, _ in self._parts) else "cstat"

    def expected_counts(self, theta) -> list[np.ndarray]:
        """Folded source model per spectrum, each (n_batch, n_bins)."""
        return [p.expected_source(theta) for p, _ in self._parts]

    #: Parameter rows folded at a time: the model and folding arrays of a block stay in the
    #: CPU caches (10,000 rows of a 3,451-energy response in one block took 1.28 s, in
    #: 256-row blocks 0.82 s; the simulator's seed blocks are 256 rows too).
    BLOCK_ROWS = 256

    def __call__(self, theta) -> np.ndarray:
        theta = np.atleast_2d(theta)
        n, size = theta.shape[0], self.BLOCK_ROWS
        if self.executor is None or n <= size:
            return self._blocks(theta)
        # units are this process's blocks: a worker folds exactly the rows this process would
        sizes = [min(size, n - a) for a in range(0, n, size)]
        sim = None if _installed_in(self.executor, self.simulator) else self.simulator
        return evaluate_units(
            self.executor, sizes, lambda u0, u1: self._blocks(theta[u0 * size:u1 * size]),
            lambda u0, u1: (_statistic_task, (sim, self._observed, theta[u0 * size:u1 * size])),
            self._cost, f"the {self.name} of model {_expression(self.simulator)}")

    def _blocks(self, theta) -> np.ndarray:
        """The statistic of each row, ``BLOCK_ROWS`` rows folded at a time from the first."""
        total = np.zeros(theta.shape[0])
        for a in range(0, theta.shape[0], self.BLOCK_ROWS):
            rows = theta[a:a + self.BLOCK_ROWS]
            with blas_threads_for(len(rows)):
                for (sim, data), mu in zip(self._parts, self.expected_counts(rows)):
                    total[a:a + len(rows)] += self._one(sim, data, mu)
        return total

    @staticmethod
    def of_rows(simulator, x, theta) -> np.ndarray:
        """Statistic of each data row at its own parameters: ``stat(x[i] | theta[i])``.

        Parameters
        ----------
        simulator : SpectralSimulator
        x : ndarray (n, n_outputs), counts
            Data rows in the simulator's layout (e.g. spectra simulated at ``theta``).
        theta : ndarray (n, n_free)

        Returns
        -------
        ndarray (n,)
            One folding of all rows, no per-row set-up (posterior predictive checks).
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        theta = np.atleast_2d(theta)
        if x.shape != (theta.shape[0], simulator.n_outputs):
            raise ValueError(f"x has shape {x.shape}; expected ({theta.shape[0]}, {simulator.n_outputs})")
        total = np.zeros(theta.shape[0])
        with blas_threads_for(theta.shape[0]):
            for sim, data in zip(simulator.parts, simulator.split(x)):
                total += PoissonStatistic._one(sim, data, sim.expected_source(theta))
        return total

    @staticmethod
    def _one(sim: FakeitDraws, data, mu):
        """Statistic of data (n_outputs,) or rows (n, n_outputs) against source counts mu."""
        if not sim.has_background:
            return stats.cstat(data, mu)
        src, bkg = data[..., :sim.n_bins], data[..., sim.n_bins:]
        # Only t_s / t_b matters to wstat; the simulator keeps that ratio.
        return stats.wstat(src, bkg, mu, 1.0, 1.0 / sim.background_scale)

    def goodness(self, theta) -> expectation.GoodnessOfFit:
        """Statistic at one parameter vector against its Kaastra (2017) expectation.

        For wstat the expectation treats the profiled background as known
        (an approximation noted in the result).
        """
        theta = np.atleast_2d(theta)[:1]
        means, value = [], 0.0
        for (sim, data), mu in zip(self._parts, self.expected_counts(theta)):
            mu = mu[0]
            if sim.has_background:
                src, bkg = data[:sim.n_bins], data[sim.n_bins:]
                ratio = 1.0 / sim.background_scale
                mu = mu + stats.wstat_background(src, bkg, mu, 1.0, ratio)
            means.append(mu)
        value = float(self(theta)[0])
        mean, var = expectation.cstat_expectation(np.concatenate(means))
        n = sum(m.size for m in means)
        return expectation.GoodnessOfFit(cstat=value, expected=float(mean),
                                         sigma=float(np.sqrt(var)), n_bins=n, statistic=self.name)


_CONTROLLER = []

#: Blocks of at most this many rows fold on BLAS's own threads: they are the walkers of a
#: chain or a fit's steps, called thousands of times, where switching the thread count
#: cost 0.1-0.4 ms a call (+25 % on an 8-walker step). The thread count then depends on the
#: block alone, and a pooled unit is the same block in the worker, so the bits still agree.
SMALL_BLOCK_ROWS = 32


def blas_threads_for(rows: int):
    """The BLAS threading for folding a block of ``rows`` rows: one thread above
    :data:`SMALL_BLOCK_ROWS`, as set otherwise."""
    return one_blas_thread() if rows > SMALL_BLOCK_ROWS else contextlib.nullcontext()


def one_blas_thread():
    """A block whose BLAS calls run on one thread (threadpoolctl; without it, nothing changes).

    The statistic's numbers then do not depend on the process or the machine's
    cores (the pool's workers run one BLAS thread each).
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER.append(ThreadpoolController())
        except ImportError:
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    return contextlib.nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


def _expression(simulator) -> str:
    model = getattr(simulator, "model", None)
    return str(getattr(model, "expression", model))


def poolable(*simulators) -> bool:
    """Whether a pool may evaluate these set-ups' statistic: the engine's simulators only
    (a simulator folding through XSPEC itself has pools of its own)."""
    return all(isinstance(p, Simulator) for sim in simulators for p in sim.parts)


def _pool_for(executor, *simulators):
    """The pool the statistic uses (None: this process)."""
    return pool_of(executor) if poolable(*simulators) else None


def _installed_in(executor, simulator) -> bool:
    """Whether the pool's workers already hold ``simulator`` (then only rows travel)."""
    return getattr(executor, "simulator", None) is simulator


def _worker_simulator(sim):
    sim = sim if sim is not None else installed_simulator()
    if sim is None:
        raise RuntimeError("worker has no simulator installed")
    return sim


def _statistic_task(sim, observed, theta):
    """In a worker: :class:`PoissonStatistic` of ``theta``'s rows."""
    return PoissonStatistic(_worker_simulator(sim), observed)._blocks(theta)


def _shared_rows(sim, xs, first_spectrum, n, theta, start, block):
    """Statistics of flattened rows ``start .. start+len(theta)`` of spectra sharing ``sim``.

    Row ``r`` belongs to spectrum ``r // n`` (its data ``xs[r // n - first_spectrum]``);
    rows are folded ``block`` at a time from ``start`` (a multiple of ``block``).
    """
    out = np.empty(len(theta))
    for a in range(0, len(theta), block):
        b = min(len(theta), a + block)
        rows = np.arange(start + a, start + b) // n - first_spectrum
        out[a:b] = PoissonStatistic.of_rows(sim, xs[rows], theta[a:b])
    return out


def _shared_task(sim, xs, first_spectrum, n, theta, start, block):
    return _shared_rows(_worker_simulator(sim), xs, first_spectrum, n, theta, start, block)


def _own_rows(sim, x, theta, block):
    """Statistics of one spectrum (data ``x``, set-up ``sim``) at rows ``theta``, ``block`` at a time."""
    out = np.empty(len(theta))
    for a in range(0, len(theta), block):
        b = min(len(theta), a + block)
        out[a:b] = PoissonStatistic.of_rows(sim, np.repeat(x[None], b - a, axis=0), theta[a:b])
    return out


def _own_task(items, block):
    """In a worker: ``items`` of ``(simulator, x, theta)``, one per spectrum; values side by side."""
    return np.concatenate([_own_rows(sim, x, theta, block) for sim, x, theta in items])


def statistics_of_spectra(simulator, simulators, x, raw, block_rows: int, executor=None,
                          cost: RowCost | None = None) -> np.ndarray:
    """C-stat (or W-stat) of each spectrum at each of its draws, (m, n).

    Parameters
    ----------
    simulator : SpectralSimulator
        The set-up of every spectrum (when ``simulators`` is None).
    simulators : sequence of SpectralSimulator or None
        Each spectrum's own set-up.
    x : ndarray (m, n_outputs), counts
        The spectra.
    raw : ndarray (m, n, k)
        Each spectrum's parameter rows.
    block_rows : int
        Rows folded at a time: across spectra of one set-up, within each
        spectrum otherwise. The numbers do not depend on it.
    executor : SimulatorPool, optional
        Evaluate across its workers (the same bits; small work stays here).
    cost : RowCost, optional
        The cost measured so far (kept by the caller between calls).

    Returns
    -------
    ndarray (m, n)
    """
    m, n, k = raw.shape
    block = max(1, int(block_rows))
    executor, cost = _pool_for(executor, simulator, *(simulators or ())), cost or RowCost()
    what = f"the statistic of model {_expression(simulator)}"
    if simulators is None:
        theta = raw.reshape(m * n, k)
        sizes = [min(block, m * n - a) for a in range(0, m * n, block)]
        sim = None if _installed_in(executor, simulator) else simulator

        def task(u0, u1):
            a, b = u0 * block, min(u1 * block, m * n)
            i0, i1 = a // n, (b - 1) // n + 1
            # the spectra these rows belong to, once each: not one copy of the data per row
            return _shared_task, (sim, x[i0:i1], i0, n, theta[a:b], a, block)

        return evaluate_units(executor, sizes,
                              lambda u0, u1: _shared_rows(simulator, x, 0, n, theta[u0 * block:
                                                          min(u1 * block, m * n)], u0 * block, block),
                              task, cost, what).reshape(m, n)
    # each spectrum its own set-up (its transfer matrix is ~0.4 MB): with enough spectra a
    # task is whole spectra, so each set-up travels once; else block-aligned pieces of each
    whole = m >= 4 * (getattr(executor, "workers", None) or 1)
    units = []
    for i in range(m):
        if whole and i > 0:
            units.append((i, 0, n))
        elif whole:   # the first spectrum's first block alone: the cost probe
            units.extend([(0, 0, min(block, n))] + ([(0, block, n)] if n > block else []))
        else:
            units.extend((i, a, min(n, a + block)) for a in range(0, n, block))

    def here(u0, u1):
        return np.concatenate([_own_rows(simulators[i], x[i], raw[i, a:b], block)
                               for i, a, b in _merged(units[u0:u1])])

    def task(u0, u1):
        return _own_task, ([(simulators[i], x[i], raw[i, a:b]) for i, a, b in _merged(units[u0:u1])],
                           block)

    values = evaluate_units(executor, [b - a for _, a, b in units], here, task, cost, what)
    return values.reshape(m, n)


def _merged(units):
    """Consecutive row ranges ``(spectrum, a, b)`` of one spectrum joined (its set-up sent once)."""
    out = []
    for i, a, b in units:
        if out and out[-1][0] == i and out[-1][2] == a:
            out[-1] = (i, out[-1][1], b)
        else:
            out.append((i, a, b))
    return out
