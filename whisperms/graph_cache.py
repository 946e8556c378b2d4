"""Compiled graphs kept on disk as MindIR, so a later process skips most of the compile.

The first process compiles each entry point with `mindspore.jit` and saves the graph MindSpore's
frontend produced (internals.func_graph_mindir); later processes load it into `nn.GraphCell`, which
only goes through the backend, the costlier part of a compile being the frontend. Results are the
same bit for bit.
"""

import contextlib
import functools
import hashlib
import json
import os
import time
from pathlib import Path

import mindspore as ms
from mindspore import Tensor, nn

from . import internals
from .errors import warn
from .user_dirs import cache_home

GRAPH_CACHE_ENV = "WHISPERMS_GRAPH_CACHE"
OFF = ("0", "off", "false", "no")
# A graph file not loaded for this long is deleted when a process next saves one (a file is touched
# when loaded, at most once a day), so graphs of old versions and of shapes no longer used do not
# pile up; a temporary file this old is a killed process's.
UNUSED_DAYS = 30
STALE_TEMPORARY_SECONDS = 3600
_DAY = 86400


def user_cache(kind, write=True):
    """~/.cache/whisperms/<kind>/mindspore-<version> (or under $XDG_CACHE_HOME), created; None if
    there is no home folder or it is not writable (not readable, with `write` False)."""
    home = cache_home()
    if home is None:
        return None
    return (writable if write else readable)(
        home / "whisperms" / kind / f"mindspore-{ms.__version__}"
    )


def writable(folder):
    """`folder` made absolute (`~` expanded) and created, or None where it cannot be written."""
    folder = readable(folder)
    return folder if folder is not None and os.access(folder, os.W_OK) else None


def readable(folder):
    """`folder` made absolute (`~` expanded) and created where it can be, or None where it cannot
    be listed: graphs saved in a folder now read-only (an image's pre-filled cache) still load."""
    folder = Path(folder).expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return folder if folder.is_dir() and os.access(folder, os.R_OK | os.X_OK) else None


def graph_folder():
    """Where graphs are cached, or None when the cache is off or no folder is usable:
    `$WHISPERMS_GRAPH_CACHE` if set (`0` turns the cache off), else
    ~/.cache/whisperms/graphs/mindspore-<version>. A folder set that cannot be used is said once."""
    setting = os.environ.get(GRAPH_CACHE_ENV)
    if source_fingerprint() is None:
        return None
    if setting is None:
        return user_cache("graphs", write=False)
    if setting.strip().lower() in OFF or not setting.strip():
        return None
    folder = readable(setting)
    if folder is None:
        warn_unusable(GRAPH_CACHE_ENV, setting, "every process compiles its graphs")
    return folder


@functools.lru_cache(maxsize=None)
def warn_unusable(variable, value, consequence):
    warn(f"{variable}={value} is not a folder whisperms can use; {consequence}")


@functools.lru_cache(maxsize=None)
def source_fingerprint():
    """A hash of the package's Python sources (their compiled files where only those are
    installed), read once per process (the code this process runs): any code change names new
    files. None where neither is found (a frozen application): no cache."""
    package = Path(__file__).parent
    paths = sorted(package.glob("*.py")) or sorted(package.glob("*.pyc"))
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def signature(args):
    """Structure, shapes and dtypes of nested tuples of tensors: what a compiled graph is
    specialized to."""
    if isinstance(args, (tuple, list)):
        return [signature(item) for item in args]
    return [list(args.shape), str(args.dtype)]


class GraphCache:
    """One model's compiled entry points in `folder`: saved from the first jit compile, loaded as
    `nn.GraphCell`.

    A cached graph holds no weights: the per-layer entry points take them as inputs, and the
    parameters the others read are saved by name only and bound on load to the model's parameters of
    those names and shapes. So one file serves any checkpoint of that size, and a graph reading
    anything else is not saved."""

    def __init__(self, folder, context, parameters):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.salt = [source_fingerprint(), ms.__version__, context]
        # name -> Parameter: what a loaded graph's parameters are bound to
        self.parameters = parameters
        # False in a read-only folder, and after a save failed (a full disk): one warning, not one
        # per graph
        self.saving = os.access(self.folder, os.W_OK)
        self.pruned = False

    def path(self, name, args, content: bytes):
        # Named by everything the graph depends on, so a changed input is a new file, never a stale
        # graph (MindSpore's own compile cache matches graphs by compile order: a process compiling
        # in another order ran wrong graphs), and by a digest of its bytes, checked before loading:
        # MindSpore loads a damaged file that still parses (other numbers, silently) and logs
        # errors before it refuses one that does not.
        return self.folder / f"{self._stem(name, args)}-{_digest(content)}.mindir"

    def _stem(self, name, args):
        key = hashlib.sha256(json.dumps([self.salt, name, signature(args)]).encode()).hexdigest()
        return f"{name}-{key[:32]}"

    def load(self, name, args):
        """The cached graph for fn(*args) as a GraphCell (called with the same args), or None if
        there is none or it does not load (then it is removed, to be saved again)."""
        path, stem = None, self._stem(name, args)
        for found in self.folder.glob(f"{stem}-*.mindir"):
            try:
                content = found.read_bytes()
            except OSError:
                continue
            if found.name == f"{stem}-{_digest(content)}.mindir":
                path = found
                break
            with contextlib.suppress(OSError):  # damaged; a read-only folder keeps it
                found.unlink(missing_ok=True)
        if path is None:
            return None
        try:
            cell = nn.GraphCell(ms.load(str(path)))
        except Exception:  # truncated, or from another build
            path.unlink(missing_ok=True)
            return None
        for parameter_name, parameter in cell.parameters_dict().items():
            own = self.parameters.get(parameter_name)
            if own is None or own.shape != parameter.shape or own.dtype != parameter.dtype:
                raise ValueError(
                    f"{path.name}: parameter {parameter_name} is not one of this model's"
                )
            # shares the model's memory: no copy
            parameter.set_data(Tensor.from_numpy(own.asnumpy()))
        if self.saving and time.time() - path.stat().st_mtime > _DAY:
            os.utime(path)  # in use: kept by prune
        return cell

    @staticmethod
    def phases():
        """The jit phases compiled so far in this process (None if they cannot be listed: nothing is
        saved); `save` finds the new graph by comparing with these."""
        return internals.compile_phases()

    def save(self, name, args, before):
        """Save the graph jit compiled for fn(*args) since `phases()` returned `before`. Where
        MindSpore's internals do not give the graph, nothing is saved (internals.py warned once)."""
        phases = self.phases()
        if before is None or phases is None or not self.saving:
            return
        phases = phases - before
        if len(phases) != 1:
            raise ValueError(f"expected one new compiled graph, found {len(phases)}")
        stream = internals.func_graph_mindir(next(iter(phases)))
        parameters = None if stream is None else internals.mindir_parameters(stream)
        if parameters is None:
            return
        path = self.path(name, args, stream)
        for parameter_name, has_data in parameters:
            if has_data or parameter_name.split(":", 1)[-1] not in self.parameters:
                raise ValueError(
                    f"{path.stem}: parameter {parameter_name} is not one of the model's (or has "
                    "data)"
                )
        # Written under a temporary name and renamed, so a concurrent process never reads half a
        # file.
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(stream)
            os.replace(temporary, path)
        except OSError as error:
            self.saving = False
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            reason = error.strerror or error
            raise OSError(f"{reason}: {self.folder}; no more graphs saved") from None
        if not self.pruned:
            self.pruned = True
            prune(self.folder)


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def prune(folder):
    """Delete the graphs in `folder` not loaded for UNUSED_DAYS, and killed processes' temporary
    files; another process deleting the same file at once is no error."""
    now = time.time()
    for path in Path(folder).iterdir():
        try:
            age = now - path.stat().st_mtime
            if (path.suffix == ".mindir" and age > UNUSED_DAYS * _DAY) or (
                path.suffix == ".tmp" and age > STALE_TEMPORARY_SECONDS
            ):
                path.unlink()
        except OSError:
            pass
