"""``--executor dask://HOST:PORT``: simulations on a Dask cluster."""
from __future__ import annotations

import contextlib
import logging

from xspec_sbi.cli.errors import CommandError
from xspec_sbi.cli.parser import dask_address

__all__ = ["executor"]

log = logging.getLogger("xspec_sbi")


@contextlib.contextmanager
def executor(spec: str | None):
    """The executor of a Dask scheduler (None without ``--executor``); the client closes on exit.

    Closing the client (also on an error or interrupt) releases its futures on the cluster.
    """
    if spec is None:
        yield None
        return
    address = dask_address(spec)
    try:
        from distributed import Client
    except ImportError:
        raise CommandError(f"--executor {spec}: needs the dask[distributed] package "
                           "(pip install 'xspec_sbi[dask]')") from None
    try:
        client = Client(address, timeout=30)
    except OSError as exc:
        raise CommandError(f"--executor {spec}: cannot reach the Dask scheduler at {address} "
                           f"({exc}); start it, or drop --executor") from None
    with client:
        log.info("simulating on the Dask cluster at %s (%d workers)", address,
                 len(client.scheduler_info().get("workers", {})))
        yield client.get_executor()
