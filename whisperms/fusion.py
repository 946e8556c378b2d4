"""Graph-kernel fusion for the compiled CPU graphs, and where its generated kernels are cached.

MindSpore fuses chains of elementwise ops (the exact GELU among them) into one generated loop (AKG)
when graph-kernel fusion is on while a graph compiles; `mindspore.jit(jit_level="O1")` does not do
it on CPU. It is switched on only around whisperms' own compiles (internals.graph_kernel_fusion), so
a user's other MindSpore code is left as it was.
"""

import atexit
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import internals
from .graph_cache import user_cache, warn_unusable, writable
from .internals import AKG_PATH_ENV, CACHE_ENV, FLAGS_ENV  # noqa: F401 (the settings fused_compile changes)

# Select stays out of fused kernels: AKG's broadcasting Select (the step's KV-cache write) gave
# wrong results.
FLAGS = "--disable_cluster_ops=Select"

_cache = None


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
    return _cache


@contextmanager
def fused_compile():
    """Compile whatever runs inside with graph-kernel fusion, then restore the settings and
    directory."""
    with internals.graph_kernel_fusion(FLAGS, kernel_cache()):
        yield
