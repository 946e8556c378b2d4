"""What a start need not wait for: package attributes imported on first use (modules that import
MindSpore, the slowest part of a start, stay out of `import whisperms` and of the CLI's checks of
its arguments), and work begun at once on a thread of its own, waited for where it is first needed
(InBackground)."""

import threading
from importlib import import_module


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
        self._thread.start()

    def _run(self):
        try:
            self._result = self._make()
        except BaseException as error:  # raised again in the caller of get()
            self._error = error
        self._done = True

    def get(self):
        self._thread.join()
        if not self._done:  # a child forked before the thread ended: the work is not there
            self._run()
        if self._error is not None:
            raise self._error
        return self._result
