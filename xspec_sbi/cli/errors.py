"""The command line's three ways to end early, and their exit statuses.

:class:`UsageError` (2) for a malformed or inconsistent command line,
:class:`CommandError` (1) for a command that cannot complete, and
:class:`Terminated` (143) for SIGTERM, raised by the handler that
:func:`xspec_sbi.cli.main.main` installs so that SIGTERM unwinds like Ctrl-C
(130): process pools stopped, temporary folders removed.
"""
from __future__ import annotations

__all__ = ["UsageError", "CommandError", "Terminated", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE",
           "EXIT_SIGINT", "EXIT_SIGTERM"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: 128 + the signal number, as shells report a process ended by that signal.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class UsageError(ValueError):
    """A malformed or inconsistent command line (exit status 2)."""


class CommandError(RuntimeError):
    """A command that cannot complete (exit status 1); the message names the file at fault."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds as an interrupt does (a ``KeyboardInterrupt``), exit status 143."""
