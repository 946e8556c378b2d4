"""The MindSpore internals whisperms relies on (internals.py), checked against the installed
MindSpore: each test names the internal and what changed when it fails. The fallbacks are checked
too, by making an internal unusable (its probe's result, or the MindSpore attribute itself), and
give the same results as the internal path."""

import logging
import os
import warnings

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, mutable, nn
from mindspore.graph import api as graph_api

from whisperms import internals
from whisperms.graph_cache import GraphCache
from whisperms.inference import _Graph

CHANGED = f"changed in MindSpore {ms.__version__}"


@pytest.fixture(autouse=True)
def fresh_probes(monkeypatch):
    """Each test probes the internals itself, and leaves the process's probes as they were."""
    monkeypatch.setattr(internals, "_probed", {})
    monkeypatch.setattr(internals, "_warned", set())


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _compiled_with_phase(fn, *args):
    """fn jit-compiled on args: (its result, the one phase the compile added)."""
    before = internals.compile_phases()
    assert before is not None, f"{internals.PHASES} is not usable: {CHANGED}"
    out = ms.jit(fn)(*args)
    new = internals.compile_phases() - before
    assert len(new) == 1, (
        f"{internals.PHASES}: a jit compile added {len(new)} phases, not 1: {CHANGED}"
    )
    return out, next(iter(new))


def _scale_and_shift(name):
    """A toy entry point shaped like whisperms' own: a parameter read by name, and weights in a
    mutable tuple."""
    weight = Parameter(Tensor(np.array([1.5, -2.0, 0.5], np.float32)), name=name)

    def fn(x, weights):
        return x * weight * weights[0] + weights[1]

    weights = mutable(
        (Tensor(np.full((3,), 2.0, np.float32)), Tensor(np.full((3,), 0.25, np.float32)))
    )
    return fn, weight, weights


def _loaded(tmp_path, stream, parameters):
    """A saved graph loaded as graph_cache.py loads it: a GraphCell with its parameters bound by
    name."""
    path = tmp_path / "graph.mindir"
    path.write_bytes(stream)
    cell = nn.GraphCell(ms.load(str(path)))
    for name, parameter in cell.parameters_dict().items():
        parameter.set_data(Tensor.from_numpy(parameters[name].asnumpy()))
    return cell


def test_compile_registry_lists_each_jit_compile(no_warnings):
    def double(x):
        return x * 2.0

    out, phase = _compiled_with_phase(double, Tensor(np.ones((7, 5), np.float32)))
    assert isinstance(phase, str), (
        f"{internals.PHASES} holds {type(phase).__name__}, not phase names: {CHANGED}"
    )
    assert np.array_equal(out.asnumpy(), np.full((7, 5), 2.0, np.float32))


def test_func_graph_mindir_is_a_weightless_graph_that_loads(tmp_path, no_warnings):
    """get_func_graph_proto gives the compiled graph as MindIR whose parameters carry names but no
    data; loaded and bound to the parameters of those names, it computes what the compiled function
    does."""
    doc = internals._graph_proto_getter().__doc__ or ""
    assert "phase: str" in doc and "type: str" in doc and "incremental: bool" in doc, (
        f"{internals.GRAPH_PROTO}(phase, type, incremental) has a new signature "
        f"({doc.splitlines()[:1]}): {CHANGED}"
    )
    fn, weight, weights = _scale_and_shift("internals_w")
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    out, phase = _compiled_with_phase(fn, x, weights)
    stream = internals.func_graph_mindir(phase)
    assert stream, f"{internals.GRAPH_PROTO} gave no MindIR for a compiled phase: {CHANGED}"
    parameters = internals.mindir_parameters(stream)
    assert parameters is not None, f"{internals.MINDIR_PROTO} cannot parse the MindIR: {CHANGED}"
    assert [(name.split(":", 1)[-1], data) for name, data in parameters] == [
        ("internals_w", False)
    ], (
        f"{internals.GRAPH_PROTO}: the MindIR's parameters are {parameters}, not the one by name "
        "without data: "
        f"{CHANGED}"
    )
    cell = _loaded(tmp_path, stream, {weight.name: weight})
    assert np.array_equal(cell(x, weights).asnumpy(), out.asnumpy()), (
        f"{internals.GRAPH_PROTO}: the saved graph, loaded, computes something else: {CHANGED}"
    )


def test_runner_calls_a_loaded_graph_cell_as_its_call_does(tmp_path, no_warnings):
    """The direct executor call gives what `cell(*args)` gives, for new input values and mutable
    weight tuples."""
    doc = graph_api._cell_graph_executor._graph_executor.get_args_for_run.__doc__ or ""
    expected = (
        "obj: object, args: tuple, kwargs: dict, has_mutable_args_list: list, "
        "sequence_modified: list"
    )
    assert expected in doc and "is_predict: bool" in doc and "is_in_phase_cache: bool" in doc, (
        f"GraphExecutor_.get_args_for_run has a new signature ({doc.splitlines()[:1]}): {CHANGED}"
    )
    fn, weight, weights = _scale_and_shift("runner_w")
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    _, phase = _compiled_with_phase(fn, x, weights)
    cell = _loaded(tmp_path, internals.func_graph_mindir(phase), {weight.name: weight})
    first = cell(x, weights).asnumpy()  # compiles the GraphCell, as graph_cache's first call does
    for name in internals.CELL_ATTRIBUTES:
        assert hasattr(cell, name), f"a compiled GraphCell has no {name}: {CHANGED}"
    run = internals.runner(cell)
    assert run is not cell, f"{internals.RUNNER} is not usable: {CHANGED}"
    assert np.array_equal(run(x, weights).asnumpy(), first)
    y = Tensor(np.full((2, 3), -1.0, np.float32))
    other = mutable((Tensor(np.full((3,), 3.0, np.float32)), Tensor(np.zeros((3,), np.float32))))
    assert np.array_equal(run(y, other).asnumpy(), cell(y, other).asnumpy())
    assert internals._probed[internals.RUNNER] is not None, (
        f"{internals.RUNNER} fell back: {CHANGED}"
    )


def test_set_graph_kernel_sets_the_context_and_restores_the_logger(no_warnings):
    before = ms.get_context("enable_graph_kernel")
    level = ms.log._get_logger().level
    try:
        internals.set_graph_kernel(True)
        assert ms.get_context("enable_graph_kernel") is True
    finally:
        internals.set_graph_kernel(before)
    assert ms.get_context("enable_graph_kernel") == before
    logger = internals._probed[internals.LOGGER]
    assert isinstance(logger, logging.Logger), (
        f"{internals.LOGGER} returns no logging.Logger: {CHANGED}"
    )
    assert logger is ms.log._get_logger() and logger.level == level, (
        "set_graph_kernel left MindSpore's logger changed"
    )


def test_graph_kernel_fusion_sets_and_restores_env_context_and_directory(
    tmp_path, monkeypatch, no_warnings
):
    config = internals.akg_config_folder()
    assert config is not None and any(name.endswith(".json") for name in os.listdir(config)), (
        f"AKG's tiling repositories are no longer in mindspore/_akg/akg/config: {CHANGED}"
    )
    cwd, kernels = tmp_path / "cwd", tmp_path / "kernels"
    cwd.mkdir()
    kernels.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv(internals.CACHE_ENV, "users-own")
    monkeypatch.delenv(internals.FLAGS_ENV, raising=False)
    monkeypatch.delenv(internals.AKG_PATH_ENV, raising=False)
    context = ms.get_context("enable_graph_kernel")
    with pytest.raises(KeyError, match="inside"), internals.graph_kernel_fusion("--flags", kernels):
        assert os.environ[internals.FLAGS_ENV] == "--flags"
        assert os.environ[internals.CACHE_ENV] == str(kernels)
        assert os.environ[internals.AKG_PATH_ENV] == config
        assert os.getcwd() == str(kernels)
        assert ms.get_context("enable_graph_kernel") is True
        raise KeyError("inside")  # a failed compile: restored all the same
    assert os.getcwd() == str(cwd)
    assert os.environ[internals.CACHE_ENV] == "users-own"
    assert internals.FLAGS_ENV not in os.environ and internals.AKG_PATH_ENV not in os.environ
    assert ms.get_context("enable_graph_kernel") == context


def test_an_unusable_internal_warns_once_and_falls_back(monkeypatch):
    """A MindSpore without the registry (the attribute removed): None, one warning naming it, then
    quiet."""
    monkeypatch.delattr(graph_api, "ms_compile_cache")
    with pytest.warns(
        RuntimeWarning, match=r"whisperms: .*ms_compile_cache is not usable .*falling back to"
    ):
        assert internals.compile_phases() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert internals.compile_phases() is None


@pytest.mark.parametrize(
    "internal", [internals.PHASES, internals.GRAPH_PROTO, internals.MINDIR_PROTO]
)
def test_without_graph_export_nothing_is_cached_and_results_are_the_same(
    internal, tmp_path, no_warnings
):
    internals._probed[internal] = None
    weight = Parameter(Tensor(np.full((3,), 2.0, np.float32)), name="w")

    def scale(x):
        return x * weight

    x = Tensor(np.arange(3, dtype=np.float32))
    graph = _Graph(
        "scale", scale, compiled=True, cache=GraphCache(tmp_path, ["test"], {"w": weight})
    )
    assert np.array_equal(graph(x.shape, x).asnumpy(), [0.0, 2.0, 4.0])
    assert np.array_equal(graph(x.shape, x).asnumpy(), [0.0, 2.0, 4.0])
    assert list(tmp_path.iterdir()) == []


def test_runner_falls_back_to_calling_the_cell(tmp_path, no_warnings):
    fn, weight, weights = _scale_and_shift("fallback_w")
    x = Tensor(np.ones((2, 3), np.float32))
    out, phase = _compiled_with_phase(fn, x, weights)
    cell = _loaded(tmp_path, internals.func_graph_mindir(phase), {weight.name: weight})
    # compiled, as before a runner is made
    assert np.array_equal(cell(x, weights).asnumpy(), out.asnumpy())
    internals._probed[internals.RUNNER] = None
    assert internals.runner(cell) is cell
    # A changed signature shows on the first call: that call and the later ones go through the cell.
    executor = graph_api._cell_graph_executor

    def changed(*args):
        raise TypeError("get_args_for_run(): incompatible function arguments")

    internals._probed[internals.RUNNER] = (executor, changed)
    run = internals.runner(cell)
    with pytest.warns(RuntimeWarning, match="falling back to calling the GraphCell"):
        assert np.array_equal(run(x, weights).asnumpy(), out.asnumpy())
    assert internals._probed[internals.RUNNER] is None
    assert np.array_equal(run(x, weights).asnumpy(), out.asnumpy())


def test_fusion_falls_back_to_an_unfused_compile(tmp_path, monkeypatch):
    """Settings that cannot be made (here the kernel folder is missing): nothing stays changed, one
    warning, and the body compiles unfused; afterwards fusion is not tried again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(internals.FLAGS_ENV, raising=False)
    context = ms.get_context("enable_graph_kernel")

    def triple(x):
        return x * 3.0

    with (
        warnings.catch_warnings(record=True) as caught,
        internals.graph_kernel_fusion("--flags", tmp_path / "no"),
    ):
        warnings.simplefilter("always")
        assert internals.FLAGS_ENV not in os.environ and os.getcwd() == str(tmp_path)
        assert ms.get_context("enable_graph_kernel") == context
        out = ms.jit(triple)(Tensor(np.ones((2, 2), np.float32)))
    expected = (
        f"whisperms: {internals.FUSION} is not usable in MindSpore {ms.__version__} ([Errno 2] No "
        "such file "
        f"or directory: '{tmp_path / 'no'}'); falling back to compiling without fusion"
    )
    assert [str(w.message) for w in caught if "whisperms" in str(w.message)] == [expected]
    assert np.array_equal(out.asnumpy(), np.full((2, 2), 3.0, np.float32))
    assert internals.FLAGS_ENV not in os.environ and os.getcwd() == str(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with internals.graph_kernel_fusion("--flags", tmp_path):
            assert internals.FLAGS_ENV not in os.environ


def test_without_the_logger_the_context_is_still_set(no_warnings):
    internals._probed[internals.LOGGER] = None
    before = ms.get_context("enable_graph_kernel")
    try:
        internals.set_graph_kernel(not before)
        assert ms.get_context("enable_graph_kernel") is (not before)
    finally:
        internals.set_graph_kernel(before)
    assert ms.get_context("enable_graph_kernel") == before
