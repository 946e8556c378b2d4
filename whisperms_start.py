"""Where the console commands start (`whisperms`, `whisperms-server`, `whisperms-bulk`).

This module lies outside the whisperms package on purpose: importing the package (NumPy and the
modules of the public API) takes a noticeable moment, and a Ctrl-C typed during it surfaced as a
KeyboardInterrupt traceback, since the commands' own handling of Ctrl-C begins only in their
`main`. Until then, Ctrl-C ends the process here with the command's one line and status 130, as it
does later on. Only Python's own handler is replaced (an application's, or SIGINT ignored, stays),
and it is put back before `main` runs. Standard library only, so nothing slow comes before it.
"""

import importlib
import os
import signal
import sys

# a shell's status for a command ended by SIGINT
INTERRUPTED_STATUS = 128 + signal.SIGINT


def _interrupted(program: str):
    try:
        sys.stderr.write(f"{program}: interrupted\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    # no unwinding: a half-finished import's exit hooks are not to run
    os._exit(INTERRUPTED_STATUS)


def _start(module: str, program: str) -> int:
    guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if guarded:
        signal.signal(signal.SIGINT, lambda signum, frame: _interrupted(program))
    main = importlib.import_module(module).main
    if guarded:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return main()


def whisperms() -> int:
    return _start("whisperms.cli", "whisperms")


def whisperms_server() -> int:
    return _start("whisperms.server", "whisperms-server")


def whisperms_bulk() -> int:
    return _start("whisperms.bulk", "whisperms-bulk")
