"""Every use of MindSpore internals in whisperms: private modules and attributes, environment
variables, and the working-directory change around compiles.

Each internal is probed once per process. When it is missing or behaves differently (another
MindSpore release), its public-API fallback is used after one RuntimeWarning; the user gets no
exception from here but memory running out (errors.out_of_memory), which no fallback mends.
tests/test_internals.py checks each one against the installed MindSpore.
"""

import logging
import os
from contextlib import contextmanager, suppress
from pathlib import Path

import mindspore as ms

from .errors import out_of_memory, warn

# MindSpore's environment variables for graph-kernel fusion (see graph_kernel_fusion).
FLAGS_ENV = "MS_DEV_GRAPH_KERNEL_FLAGS"
CACHE_ENV = "MS_COMPILER_CACHE_PATH"
AKG_PATH_ENV = "AKG_WHITE_LIST_PATH"

_probed = {}  # internal's name -> what its probe returned, or None once its fallback is in use
_warned = set()


def _internal(name, probe, fallback):
    """`probe()` once per process: what it returns, or None (after one warning that `fallback` is
    used)."""
    if name not in _probed:
        try:
            _probed[name] = probe()
        except Exception as error:  # noqa: BLE001 (any failure: the fallback)
            _fall_back(name, error, fallback)
    return _probed[name]


def _fall_back(name, error, fallback):
    """`name` not used from now on, with a warning; unless `error` is memory running out, raised
    instead (compute_thread.run_graph says MindSpore's as a RuntimeMemoryError)."""
    if out_of_memory(error):
        raise error
    _probed[name] = None
    if name not in _warned:
        _warned.add(name)
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        warn(
            f"whisperms: {name} is not usable in MindSpore {ms.__version__} ({reason}); falling "
            "back to "
            f"{fallback}",
            RuntimeWarning,
        )


# --- The graph a jit call compiled, as MindIR (graph_cache.py)
# ---------------------------------------------------

PHASES = "mindspore.graph.api.ms_compile_cache"
GRAPH_PROTO = "JitExecutor_.get_func_graph_proto"
MINDIR_PROTO = "mindspore.train.mind_ir_pb2.ModelProto"
NOT_CACHED = "compiling graphs without the on-disk graph cache"


def _compile_registry():
    from mindspore.graph.api import ms_compile_cache

    if not hasattr(ms_compile_cache, "__iter__"):
        raise TypeError(
            f"ms_compile_cache is a {type(ms_compile_cache).__name__}, not a collection of phases"
        )
    return ms_compile_cache


def compile_phases():
    """The jit phases (compiled graphs' keys) of this process, or None when they cannot be listed.

    No public API names the graph a `mindspore.jit` call compiled; a new phase in jit's registry
    after the call is that graph's."""
    registry = _internal(PHASES, _compile_registry, NOT_CACHED)
    return None if registry is None else frozenset(registry)


def _graph_proto_getter():
    from mindspore._c_expression import JitExecutor_

    return JitExecutor_.get_instance().get_func_graph_proto


def func_graph_mindir(phase):
    """The graph jit compiled under `phase`, serialized as MindIR (parameters by name, without
    data), or None.

    No public API exports a jit function's compiled graph: `mindspore.export` needs a Cell, traces
    it again and writes the weights into the file."""
    get = _internal(GRAPH_PROTO, _graph_proto_getter, NOT_CACHED)
    if get is None:
        return None
    try:
        stream = get(phase, "mind_ir", False)
    except Exception as error:  # noqa: BLE001 (any failure: the fallback)
        _fall_back(GRAPH_PROTO, error, NOT_CACHED)
        return None
    if not isinstance(stream, bytes) or not stream:
        _fall_back(
            GRAPH_PROTO,
            TypeError(f"returned {type(stream).__name__} of length {len(stream or '')}"),
            NOT_CACHED,
        )
        return None
    return stream


def _model_proto():
    from mindspore.train.mind_ir_pb2 import ModelProto

    return ModelProto


def mindir_parameters(stream):
    """[(name, holds data)] of a MindIR graph's parameters, or None when MindIR cannot be read.

    MindSpore has no public MindIR reader short of `mindspore.load`, which builds the whole graph;
    the graph cache reads the parameters to refuse a graph that would carry weights or read a tensor
    that is not the model's."""
    model_proto = _internal(MINDIR_PROTO, _model_proto, NOT_CACHED)
    if model_proto is None:
        return None
    model = model_proto()
    try:
        model.ParseFromString(stream)
    except Exception as error:  # noqa: BLE001 (any failure: the fallback)
        _fall_back(MINDIR_PROTO, error, NOT_CACHED)
        return None
    return [(parameter.name, bool(parameter.raw_data)) for parameter in model.graph.parameter]


# --- Calls of a compiled GraphCell (inference.py)
# ----------------------------------------------------------------

RUNNER = "GraphCell run through _cell_graph_executor"
CALL_CELL = "calling the GraphCell"
CELL_ATTRIBUTES = ("_has_mutable_args_list", "sequence_modified", "phase")


def _graph_executor():
    from mindspore.graph.api import _cell_graph_executor

    return _cell_graph_executor, _cell_graph_executor._graph_executor.get_args_for_run


def runner(cell):
    """A function that calls `cell` (a GraphCell that has already compiled) as `cell(*args)` does.

    A GraphCell's `__call__` regenerates its compile key from every input on each call, a noticeable
    share of a decoder step; no public API runs the already-compiled graph, so this goes to the
    graph executor directly, with the arguments `Cell.compile_and_run` passes. Fallback: `cell`
    itself."""
    found = _internal(RUNNER, _graph_executor, CALL_CELL)
    missing = [name for name in CELL_ATTRIBUTES if not hasattr(cell, name)]
    if found is not None and missing:
        _fall_back(RUNNER, AttributeError(f"GraphCell has no {', '.join(missing)}"), CALL_CELL)
    if _probed.get(RUNNER) is None:
        return cell
    executor, args_for_run = found
    flags = list(cell._has_mutable_args_list or [])
    modified = cell.sequence_modified or []

    def run(*args):
        if _probed[RUNNER] is None:  # fell back since (a changed signature shows on the first call)
            return cell(*args)
        try:
            inputs = args_for_run(cell, args, {}, flags, modified, False, False)
            return executor(cell, *inputs, phase=cell.phase)
        except TypeError as error:
            _fall_back(RUNNER, error, CALL_CELL)
            return cell(*args)

    return run


# --- Graph-kernel fusion around compiles (fusion.py)
# -------------------------------------------------------------

LOGGER = "mindspore.log._get_logger"
FUSION = "graph-kernel fusion settings"


def set_graph_kernel(enabled):
    """`set_context(enable_graph_kernel=...)` without the deprecation warning it logs on every call.

    The option is deprecated without a replacement that fuses jit graphs on CPU (`jit_level="O1"`
    does not), and MindSpore's logger is reachable only through a private function. Fallback: the
    warning is logged."""
    logger = _internal(LOGGER, _logger, "leaving MindSpore's deprecation warnings on")
    level = logger.level if logger is not None else None
    if logger is not None:
        logger.setLevel(logging.ERROR)
    try:
        ms.set_context(enable_graph_kernel=bool(enabled))
    finally:
        if logger is not None:
            logger.setLevel(level)


def _logger():
    logger = ms.log._get_logger()
    if not isinstance(logger, logging.Logger):
        raise TypeError(f"_get_logger returned {type(logger).__name__}")
    return logger


def akg_config_folder():
    """AKG's tiling repositories inside MindSpore's package (a private path), or None where there is
    none."""
    folder = Path(ms.__file__).parent / "_akg" / "akg" / "config"
    return os.path.realpath(folder) if folder.is_dir() else None


@contextmanager
def graph_kernel_fusion(flags, kernel_cache):
    """Compile what runs inside with graph-kernel fusion (`flags`), generated kernels kept in
    `kernel_cache`; the environment, the context and the working directory are restored afterwards.

    No public API sets these per compile, so they are set around it, as process-wide state:
    - `$MS_DEV_GRAPH_KERNEL_FLAGS`: fusion options (the context's `graph_kernel_flags` is deprecated
      for it).
    - `$MS_COMPILER_CACHE_PATH`: where generated kernels go (MindSpore reuses them by content hash
      later).
    - the working directory: AKG writes a log into it, so compiling runs in the kernel cache.
    - `$AKG_WHITE_LIST_PATH` (unless the user set it): AKG reads its tiling repository (for CPU an
      empty one) only from there, else from the working directory, and without one prints a line
      per kernel to stdout.
    Fallback: if any of it cannot be set, nothing stays changed and the compile runs unfused."""
    if _probed.get(FUSION, True) is None:
        yield
        return
    saved_env = {name: os.environ.get(name) for name in (FLAGS_ENV, CACHE_ENV, AKG_PATH_ENV)}
    cwd = os.getcwd()
    saved_context = None
    try:
        saved_context = ms.get_context("enable_graph_kernel")
        os.environ[FLAGS_ENV] = flags
        os.environ[CACHE_ENV] = str(kernel_cache)
        config = akg_config_folder()
        if config is not None:
            os.environ.setdefault(AKG_PATH_ENV, config)
        set_graph_kernel(True)
        os.chdir(kernel_cache)
        _probed[FUSION] = True
    except Exception as error:  # noqa: BLE001 (any failure: the fallback)
        # The setting that failed may fail again when restored; everything else is restored first.
        with suppress(Exception):
            _restore(saved_env, saved_context, cwd)
        _fall_back(FUSION, error, "compiling without fusion")
        yield
        return
    try:
        yield
    finally:
        _restore(saved_env, saved_context, cwd)


def _restore(saved_env, saved_context, cwd):
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.chdir(cwd)
    if saved_context is not None:
        set_graph_kernel(saved_context)
