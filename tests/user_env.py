"""The environment a new process gets from a user's shell, for the tests' CLI and script
subprocesses: the session's own folders (conftest) and nothing that importing MindSpore adds.

MindSpore's import puts its CPU plugin folder first on LD_LIBRARY_PATH (and sets a few other
variables) in os.environ, for processes it starts itself. A CLI started from the test process would
inherit that and load other kernel libraries than a user's shell gives it, which on some CPUs
changes float results in their last bits, so outputs compared with the test process's own would
differ for a reason no user meets.
"""

import os

_AT_START = {}


def snapshot():
    """Record os.environ as it is now: called before any test module imports MindSpore."""
    _AT_START.clear()
    _AT_START.update(os.environ)


def user_env(extra=None):
    """The recorded environment with `extra` on top."""
    return {**_AT_START, **(extra or {})}


def default_sigint():
    """preexec_fn: SIGINT at its default in a child, as a shell gives it to a command. A test run
    in the background (CI) has SIGINT ignored, and a child would inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
