"""Ctrl-C as the application had it, across calls into MindSpore.

Every MindSpore graph run installs MindSpore's own SIGINT handler, process-wide, which turns Ctrl-C
into SIGTERM: after one transcription a later Ctrl-C killed the process (exit 143) instead of
raising KeyboardInterrupt or running the application's own handler. `kept()` records the handler
before a call and puts it back after. Python's signal.signal works only in the main thread, and
graph runs happen on the graph thread (compute_thread.py) for calls from any thread, so this goes
through the C library's sigaction, which any thread may call. During a call Ctrl-C is still
MindSpore's.
"""

import contextlib
import ctypes
import functools
import signal
import threading

# The C library's struct sigaction, kept as opaque bytes: 152 of them in glibc on x86_64 and
# aarch64; room to spare for others.
SIGACTION_BYTES = 512

_lock = threading.Lock()
_depth = 0  # calls in progress, from any thread: the first records, the last puts back
_saved = None
# Python's own C-level handler (which calls the Python-level one), once seen: put back instead of
# a record of "ignored" or "default" taken before the application set a Python handler (a server
# started with SIGINT ignored, whose web framework sets its handler while a call is in progress)
_python_handler = None


def _find_sigaction():
    try:
        function = ctypes.CDLL(None, use_errno=True).sigaction
    except (OSError, AttributeError):  # no C library with sigaction: nothing is put back
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


_SIGACTION = _find_sigaction()


def _address(action) -> int:
    """The handler function's address in a struct sigaction (its first field): 0 and 1 are the
    default and "ignore"."""
    return ctypes.c_void_p.from_buffer(action).value or 0


def _python_handles() -> bool:
    return callable(signal.getsignal(signal.SIGINT))


def _record():
    """SIGINT's action now, or None; noted as Python's own when Python has a handler set."""
    global _python_handler
    action = ctypes.create_string_buffer(SIGACTION_BYTES)
    if _SIGACTION(signal.SIGINT, None, action) != 0:
        return None
    if _address(action) > 1 and _python_handles() and _python_handler is None:
        _python_handler = action
    return action


@contextlib.contextmanager
def kept():
    """Run the body with SIGINT's handler put back as it was before, when the body returns or
    raises (nested and concurrent bodies: when the last one ends)."""
    global _depth, _saved
    if _SIGACTION is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = _record()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                action = _saved
                if _address(action) <= 1 and _python_handles():
                    action = _python_handler  # set meanwhile; None: not known, left as it is
                if action is not None:
                    _SIGACTION(signal.SIGINT, action, None)
                _saved = None


def keeps(function):
    """`function`, run within kept()."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        with kept():
            return function(*args, **kwargs)

    return call


if _SIGACTION is not None:
    _record()  # imported before any graph runs: Python's own handler, if it has one
