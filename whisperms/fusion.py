"""Graph-kernel fusion for the compiled CPU graphs, and where its kernels are cached.

MindSpore fuses chains of elementwise ops into one generated loop (AKG, LLVM) when `enable_graph_kernel` is set
while a graph compiles; `mindspore.jit(jit_level="O1")` does not do it on CPU. On CPU (tiny.en) it took the GELU
from ~20 ms to ~1.3 ms per (1500, 1536) activation (with model.erf) and the encoder from ~0.49 to ~0.33 s per window.
The setting is switched on only around our own compiles, so a user's other MindSpore code is left as it was.

- Select is kept out of fused kernels: AKG's broadcasting Select (the step's KV-cache write) gave wrong results.
- Generated kernels are cached on disk (MindSpore reuses them by content hash in later processes): the first
  compile in a fresh cache took ~4 s more for the encoder, a later process ~0.1 s per kernel. The cache is
  `$MS_COMPILER_CACHE_PATH` if set, else ~/.cache/whisperms/kernels/mindspore-<version>, else a temporary folder.
- AKG also writes a log into the current directory; compiling runs with the cache folder as current directory so
  no file lands in the user's.
- AKG reads its tiling repository (for CPU an empty `{}`, in its package's config folder) only from under
  `$AKG_WHITE_LIST_PATH` (default: the current directory) and otherwise prints "Please set tiling repo path
  specified by env AKG_WHITE_LIST_PATH or current path" to stdout, once per kernel generated, from its compile
  workers (`akg/composite/build_module.py`, read_repo_file). Compiling sets it to that config folder,
  unless the user set it: the same empty repository is read, without the line.
"""
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mindspore as ms

from .graph_cache import user_cache, writable

FLAGS_ENV = "MS_DEV_GRAPH_KERNEL_FLAGS"
CACHE_ENV = "MS_COMPILER_CACHE_PATH"
AKG_PATH_ENV = "AKG_WHITE_LIST_PATH"
FLAGS = "--disable_cluster_ops=Select"

_cache = None


def kernel_cache() -> Path:
    """The folder generated kernels are kept in (created on first use)."""
    global _cache
    if _cache is None:
        preferred = os.environ.get(CACHE_ENV)
        _cache = (writable(preferred) if preferred else user_cache("kernels")) or Path(
            tempfile.mkdtemp(prefix="whisperms-kernels-"))
    return _cache


@contextmanager
def fused_compile():
    """Compile whatever runs inside with graph-kernel fusion, then restore the settings and directory."""
    cache = kernel_cache()
    saved_env = {name: os.environ.get(name) for name in (FLAGS_ENV, CACHE_ENV, AKG_PATH_ENV)}
    saved_context = ms.get_context("enable_graph_kernel")
    cwd = os.getcwd()
    os.environ[FLAGS_ENV] = FLAGS
    os.environ[CACHE_ENV] = str(cache)
    os.environ.setdefault(AKG_PATH_ENV, _akg_config_folder())
    _set_graph_kernel(True)
    os.chdir(cache)
    try:
        yield
    finally:
        os.chdir(cwd)
        _set_graph_kernel(saved_context)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _set_graph_kernel(enabled):
    """`set_context(enable_graph_kernel=...)` without its deprecation warning on every compile."""
    logger = ms.log._get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        ms.set_context(enable_graph_kernel=bool(enabled))
    finally:
        logger.setLevel(level)


def _akg_config_folder() -> str:
    """The folder of AKG's tiling repositories, in MindSpore's package (where its compiler looks them up)."""
    return os.path.realpath(Path(ms.__file__).parent / "_akg" / "akg" / "config")
