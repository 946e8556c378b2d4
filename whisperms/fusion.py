"""Graph-kernel fusion for the compiled CPU graphs, and where its generated kernels are cached.

MindSpore fuses chains of elementwise ops (the exact GELU among them) into one generated loop (AKG)
when graph-kernel fusion is on while a graph compiles; `mindspore.jit(jit_level="O1")` does not do
it on CPU. It is switched on only around whisperms' own compiles (internals.graph_kernel_fusion), so
a user's other MindSpore code is left as it was.
"""

import atexit
import functools
import glob
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from . import internals
from .errors import warn
from .graph_cache import user_cache, warn_unusable, writable
from .internals import AKG_PATH_ENV, CACHE_ENV, FLAGS_ENV  # noqa: F401 (the settings fused_compile changes)

# Select stays out of fused kernels: AKG's broadcasting Select (the step's KV-cache write) gave
# wrong results.
FLAGS = "--disable_cluster_ops=Select"

_cache = None
# A kernel description younger than this may be another process's, being written
BEING_WRITTEN_SECONDS = 60


def kernel_cache() -> Path:
    """The folder generated kernels are kept in (created on first use): `$MS_COMPILER_CACHE_PATH` if
    set, else ~/.cache/whisperms/kernels/mindspore-<version>, else a temporary folder. Kept across
    processes, because a later process reuses the kernels instead of generating them again."""
    global _cache
    if _cache is None:
        preferred = os.environ.get(CACHE_ENV)
        _cache = writable(preferred) if preferred else user_cache("kernels")
        if _cache is None:
            if preferred:
                warn_unusable(CACHE_ENV, preferred, "kernels are generated in every process")
            # this process's own, removed when it exits (one per process would fill the disk)
            _cache = Path(tempfile.mkdtemp(prefix="whisperms-kernels-"))
            atexit.register(shutil.rmtree, _cache, ignore_errors=True)
        else:
            # before MindSpore reads them (it warns, waits and fails on each broken one)
            drop_broken_kernels(_cache, older_than=BEING_WRITTEN_SECONDS)
    return _cache


def compiler_available() -> bool:
    """Whether MindSpore's kernel generator can build kernels: it calls g++, which a slim container
    image lacks (every fused compile then failed, printing pages of the generator's tracebacks).
    Said once when not."""
    if shutil.which("g++"):
        return True
    warn_unusable_compiler()
    return False


@functools.lru_cache(maxsize=None)
def warn_unusable_compiler():
    warn(
        "g++ is not on PATH: graphs are compiled without graph-kernel fusion (slower; install g++ "
        "to have it)"
    )


def drop_broken_kernels(folder=None, older_than: float = 0.0) -> int:
    """Remove the cached kernels whose description (`akg_kernel_meta/*.json`) does not parse, with
    their other files, so that they are generated again; how many. MindSpore's kernel generator
    writes it in place: a process killed or a disk full part way leaves it cut short, and every
    later compile using that kernel failed (the graph then ran unfused, in every process, with a
    warning). `older_than` seconds: a description another process may be writing now is left."""
    meta = Path(folder or kernel_cache()) / "akg_kernel_meta"
    removed, now = 0, time.time()
    for path in meta.glob("*.json") if meta.is_dir() else ():
        try:
            if now - path.stat().st_mtime < older_than:
                continue
            json.loads(path.read_bytes())
        except (OSError, ValueError):  # a bad encoding is a ValueError too
            for part in meta.glob(f"{glob.escape(path.stem)}.*"):
                part.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def fused_compile():
    """Compile whatever runs inside with graph-kernel fusion, then restore the settings and
    directory."""
    with internals.graph_kernel_fusion(FLAGS, kernel_cache()):
        yield
