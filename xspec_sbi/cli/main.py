"""The ``xspec-sbi`` command: fit, train, apply and demo from a shell.

``fit`` runs :func:`xspec_sbi.sbi_fit` on PHA files and writes the report
folder; ``train`` trains an amortized posterior and saves it with the set-up
that rebuilds its session (``setup.json`` inside the network folder);
``apply`` draws posteriors for many spectra of that set-up in one batched
call and writes parameter tracks (CSV and PNG); ``demo`` runs the paper's
reference case.

This module is the entry point and the error mapping: every failure prints
one line naming the file, option or parameter at fault (``--debug`` shows the
traceback). Exit statuses: 0 success, 1 failure, 2 usage error, 130 Ctrl-C
(SIGINT), 143 SIGTERM; on either signal the simulation processes are
stopped and no partial output folder stays. Step messages go through the
``xspec_sbi`` logger: ``--quiet`` shows warnings only, ``--verbose`` details.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings

from xspec_sbi.cli.apply import cmd_apply
from xspec_sbi.cli.commands import cmd_demo, cmd_fit, cmd_train
from xspec_sbi.cli.errors import (EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE,
                                  CommandError, Terminated, UsageError)
from xspec_sbi.cli.parser import PROG, build_parser, parse_prior
from xspec_sbi.cli.setup_file import SETUP_NAME, load_setup

__all__ = ["main", "build_parser", "UsageError", "CommandError", "parse_prior", "SETUP_NAME",
           "load_setup"]

_COMMANDS = {"fit": cmd_fit, "train": cmd_train, "apply": cmd_apply, "demo": cmd_demo}
#: Longest error line printed: a torch size-mismatch dump is kilobytes.
_MAX_LINE = 600


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {exc.strerror or text}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LINE else text[:_MAX_LINE] + " ... (--debug shows all)"


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def _logging(args):
    """Step messages of logger ``xspec_sbi`` on stderr at the level of --quiet/--verbose.

    The package's own Python warnings (``warnings.warn`` in ``xspec_sbi/``) go
    through the logger too, as one ``[xspec_sbi] warning: ...`` line: Python's
    format (``/path/pipeline.py:102: UserWarning: ...`` and a source line) is
    for programmers. Other packages' warnings keep it.
    """
    log = logging.getLogger("xspec_sbi")
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[xspec_sbi] %(message)s"))
    saved = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        with warnings.catch_warnings():
            python_format = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if os.path.abspath(str(filename)).startswith(_PACKAGE + os.sep):
                    log.warning("warning: %s", " ".join(str(message).split()))
                else:
                    python_format(message, category, filename, lineno, file, line)
            warnings.showwarning = show
            yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved)


_received: list[int] = []


def _first_signal_only(signum):
    """Later SIGINT/SIGTERM are ignored: a second Ctrl-C must not cut the clean-up short."""
    _received.append(signum)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _on_sigint(signum, frame):
    _first_signal_only(signum)
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    _first_signal_only(signum)
    raise Terminated()


@contextlib.contextmanager
def _signals_unwind():
    """SIGINT and SIGTERM raise once, so pools stop and temporary folders go; repeats are ignored.

    SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so it unwinds
    as Ctrl-C does. The previous handlers are restored on the way out unless a
    signal came (the process is then about to exit).
    """
    if threading.current_thread() is not threading.main_thread():
        yield            # signal handlers can only be set from the main thread
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _received.clear()
    if previous[signal.SIGINT] is not signal.SIG_IGN:     # started in the background: keep it so
        signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        # after a signal the process is on its way out: a repeat must not kill it with a
        # traceback before it exits 130/143, so the signals stay ignored
        if not _received:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _interrupt_handled() -> None:
    """Tell CPython the interrupt was handled, so the process exits with our status.

    CPython marks a ``KeyboardInterrupt`` that passes through code run by
    ``PyRun_String`` (as C extensions do) as unhandled, even when an outer
    ``except`` catches it, and then ends the process by SIGINT (status -2)
    instead of with ``sys.exit(130)``. Before this reset, about one Ctrl-C in
    six during training ended so (tests/test_interrupts.py); none in 18 runs
    after. The flag is reset where the interpreter exports it.
    """
    import ctypes
    try:
        flag = ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt")
    except (ValueError, AttributeError):      # not exported by this interpreter
        return
    flag.value = 0


def main(argv=None) -> int:
    """Run ``xspec-sbi``; returns the exit status (0, 1, 2, 130 or 143: see the module notes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _signals_unwind(), _logging(args):
            return _COMMANDS[args.command](args)
    except UsageError as exc:
        if debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        _interrupt_handled()
        print(f"{PROG}: interrupted (SIGTERM); nothing was written", file=sys.stderr)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        _interrupt_handled()
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_SIGINT
    except Exception as exc:  # every failure becomes one line; --debug shows the traceback
        if debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
