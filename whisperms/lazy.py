"""What a start need not wait for: package attributes imported on first use (modules that import
MindSpore, the slowest part of a start, stay out of `import whisperms` and of the CLI's checks of
its arguments), and work begun at once on a thread of its own, waited for where it is first needed
(InBackground)."""

import os
import threading
import time
import weakref
from importlib import import_module

# How long a fork waits for work still running in the background (see _finish_before_fork).
FORK_WAIT_SECONDS = 10.0


def lazy_attributes(package, namespace, lazy):
    """`__getattr__` and `__dir__` for `package` whose names in `lazy` (name -> submodule) load on
    first use, then stay in `namespace` (the package's globals)."""

    def __getattr__(name):
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{lazy[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__


class InBackground:
    """`make()` run on a thread of its own from now on, for work needed later rather than at once
    (and that releases the GIL: numpy copies); `get()` waits for its result or raises its error."""

    def __init__(self, make):
        self._make = make
        self._done = False
        self._result = self._error = None
        self._thread = threading.Thread(target=self._run, name="whisperms-prepare", daemon=True)
        _running.add(self)
        self._thread.start()

    def _run(self):
        try:
            self._result = self._make()
        except BaseException as error:  # raised again in the caller of get()
            self._error = error
        self._done = True
        _running.discard(self)

    def get(self):
        self._thread.join()
        if not self._done:  # a child forked before the thread ended: the work is not there
            self._run()
        if self._error is not None:
            raise self._error
        return self._result


_running = weakref.WeakSet()  # InBackground jobs whose thread has not finished


def _finish_before_fork():
    """Let running work finish (for up to FORK_WAIT_SECONDS in all) before the process forks.

    A child gets a copy of the parent's memory but only the forking thread: work cut off mid-way
    can leave a library's lock held for ever (the `tokenizers` parser's did: a child that loaded
    the tokenizer again waited on it), and finished work is simply there in the child."""
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    for job in list(_running):
        if job._thread is not threading.current_thread():
            job._thread.join(max(0.0, deadline - time.monotonic()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_before_fork)
