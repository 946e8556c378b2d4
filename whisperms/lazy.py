"""Package attributes imported on first use: modules that import MindSpore (the slowest part of a
start) stay out of `import whisperms` and of the CLI's checks of its arguments, which must not wait
for it."""

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
