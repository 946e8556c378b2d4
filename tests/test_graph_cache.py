"""The on-disk graph cache (graph_cache.py): a later process loads the MindIR graphs an earlier one
compiled and saved, instead of compiling them, and they compute what the compiled (jit) path
computes."""

import os
import time
import warnings
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor

from whisperms import CheckpointError, WhispermsWarning, graph_cache, load_model
from whisperms.inference import Inference, _Graph

from conftest import DATA

CLIP = str(DATA / "jfk_inaugural_1961.flac")


def test_signature_is_structure_shapes_and_dtypes():
    a = Tensor(np.zeros((2, 3), np.float32))
    b = Tensor(np.zeros((4,), np.int32))
    assert graph_cache.signature((a, (b, (a,)), ())) == [
        [[2, 3], "Float32"],
        [[[4], "Int32"], [[[2, 3], "Float32"]]],
        [],
    ]


def test_folder_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(graph_cache.GRAPH_CACHE_ENV, raising=False)
    assert (
        graph_cache.graph_folder()
        == tmp_path / "whisperms" / "graphs" / f"mindspore-{ms.__version__}"
    )
    for off in ("0", "off", ""):
        monkeypatch.setenv(graph_cache.GRAPH_CACHE_ENV, off)
        assert graph_cache.graph_folder() is None
    monkeypatch.setenv(graph_cache.GRAPH_CACHE_ENV, str(tmp_path / "mine"))
    assert graph_cache.graph_folder() == tmp_path / "mine"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(graph_cache.GRAPH_CACHE_ENV, str(blocked / "graphs"))
    with pytest.warns(WhispermsWarning) as caught:
        assert graph_cache.graph_folder() is None
    assert [str(w.message) for w in caught] == [
        f"{graph_cache.GRAPH_CACHE_ENV}={blocked / 'graphs'} is not a folder whisperms can use; "
        "every process compiles its graphs"
    ]
    # `~` and a relative path, as systemd's Environment= and docker -e leave them: made absolute
    # (a relative one was resolved again from the kernel folder compiles run in)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(graph_cache.GRAPH_CACHE_ENV, "~/graphs")
    assert graph_cache.graph_folder() == tmp_path / "home" / "graphs"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(graph_cache.GRAPH_CACHE_ENV, "relative")
    assert graph_cache.graph_folder() == tmp_path / "relative"
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says
    monkeypatch.delenv(graph_cache.GRAPH_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    assert graph_cache.graph_folder() == (
        tmp_path / "home" / ".cache" / "whisperms" / "graphs" / f"mindspore-{ms.__version__}"
    )


def test_no_home_folder_means_no_cache(monkeypatch):
    """HOME unset and the user not in the password database (a container's arbitrary uid, `env
    -i`): Path.home() raised RuntimeError, a traceback at the first transcription. The caches are
    off instead, and a named model says where to put it."""
    import pwd

    from whisperms.hub import WEIGHTS_ENV, weights_root
    from whisperms.user_dirs import cache_home

    def unknown(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    for name in ("HOME", "XDG_CACHE_HOME", graph_cache.GRAPH_CACHE_ENV, WEIGHTS_ENV):
        monkeypatch.delenv(name, raising=False)
    assert cache_home() is None and graph_cache.graph_folder() is None
    assert graph_cache.user_cache("kernels") is None
    # (a checkout's own weights/ folder, where there is one, is used before the home folder)
    if not (Path(graph_cache.__file__).resolve().parent.parent / "weights").is_dir():
        with pytest.raises(CheckpointError, match="^no folder to keep models in: the home folder"):
            weights_root()


def test_unused_graphs_and_stale_temporary_files_are_pruned(tmp_path):
    """Every code change and every new shape names new files, and nothing was ever deleted (a day of
    development left 640 files, 153 MB): graphs not loaded for UNUSED_DAYS go, and the temporary
    files of processes killed while saving."""
    now = time.time()
    ages = {"old.mindir": 31, "recent.mindir": 29, "old.123.tmp": 0.1, "new.456.tmp": 0.01}
    for name, days in ages.items():
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (now - days * 86400, now - days * 86400))
    graph_cache.prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.456.tmp", "recent.mindir"]


def _transcribe(model, graph_cache_folder, **options):
    model._inference = Inference(model, graph_cache=graph_cache_folder)
    return model.transcribe(CLIP, language="en", **options)


@pytest.fixture(scope="module")
def model(tiny_en_ct2_dir):
    return load_model(tiny_en_ct2_dir)


def test_cached_graphs_equal_compiled_graphs(model, tmp_path):
    """Saved by the first process (empty folder), loaded by the next (a new Inference over the same
    folder): the same tokens as without the cache, greedy and beam search; loading writes nothing
    and leaves no temporary file."""
    reference = _transcribe(model, False)
    assert model.inference.graph_cache is None
    saved = _transcribe(model, tmp_path)
    assert not model.inference._step_apart_t.loaded  # compiled, then saved
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert {name.split("-")[0] for name in files} == {
        "stem",
        "block",
        "post",
        "cross_kv_layer",
        "step_apart_t",
    }
    loaded = _transcribe(model, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == files
    for graph in ("_stem", "_block", "_post", "_cross_kv", "_step_apart_t"):
        assert getattr(model.inference, graph).loaded
    for result in (saved, loaded):
        assert [s.tokens for s in result.segments] == [s.tokens for s in reference.segments]
        assert result.text == reference.text
    beam_reference = _transcribe(model, False, beam_size=5)
    _transcribe(model, tmp_path, beam_size=5)
    beam_loaded = _transcribe(model, tmp_path, beam_size=5)
    assert model.inference._step_apart.loaded
    assert [s.tokens for s in beam_loaded.segments] == [s.tokens for s in beam_reference.segments]


def test_unreadable_file_is_saved_again(model, tmp_path, capfd):
    """A graph file cut short (a crash or a full disk) and one with a byte changed that still
    parses: MindSpore printed errors before it refused the first, and loaded the second silently
    (other numbers, kept for good). Each fails its name's digest now: removed, quietly, compiled
    and saved again."""
    reference = _transcribe(model, tmp_path)
    (stem_file,) = tmp_path.glob("stem-*.mindir")
    (post_file,) = tmp_path.glob("post-*.mindir")
    stem_file.write_bytes(stem_file.read_bytes()[:1000])
    changed = bytearray(post_file.read_bytes())
    changed[len(changed) // 2] ^= 1
    post_file.write_bytes(changed)
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # removed and compiled quietly
        again = _transcribe(model, tmp_path)
    assert not model.inference._stem.loaded and not model.inference._post.loaded
    assert "ERROR" not in capfd.readouterr().err
    # Saved again whole: the next process loads it. (Not compared by size: the graph's node names
    # carry process-wide counters, so a second compile in the same process can differ by a few
    # bytes, and names by their digest.)
    assert [p.stat().st_size > 1000 for p in tmp_path.glob("stem-*.mindir")] == [True]
    assert len(list(tmp_path.glob("post-*.mindir"))) == 1
    third = _transcribe(model, tmp_path)
    assert model.inference._stem.loaded
    for result in (again, third):
        assert [s.tokens for s in result.segments] == [s.tokens for s in reference.segments]


def test_parameters_are_bound_by_name_and_foreign_ones_not_saved(tmp_path):
    """A saved graph keeps its parameters' names, not their values: loaded, they are bound to the
    current model's parameters of those names (another checkpoint of the same size gives its own
    results), and a graph reading a parameter that is not the model's is not saved (a warning; the
    compiled graph still gives the right result)."""
    x = Tensor(np.arange(3, dtype=np.float32))

    def graph_over(weight):
        def scale(x):
            return x * weight

        return _Graph(
            "scale",
            scale,
            compiled=True,
            cache=graph_cache.GraphCache(tmp_path, ["test"], {weight.name: weight}),
        )

    first = Parameter(Tensor(np.full((3,), 2.0, np.float32)), name="w")
    assert np.array_equal(graph_over(first)(x.shape, x).asnumpy(), [0.0, 2.0, 4.0])
    assert len(list(tmp_path.iterdir())) == 1
    second = Parameter(Tensor(np.full((3,), 3.0, np.float32)), name="w")
    loaded = graph_over(second)
    assert np.array_equal(loaded(x.shape, x).asnumpy(), [0.0, 3.0, 6.0])
    assert loaded.loaded and np.array_equal(loaded(x.shape, x).asnumpy(), [0.0, 3.0, 6.0])

    # in use: touched when loaded (at most once a day), so prune keeps it
    (saved,) = tmp_path.glob("scale-*.mindir")
    month_ago = time.time() - 30 * 86400
    os.utime(saved, (month_ago, month_ago))
    assert graph_over(second)(x.shape, x).asnumpy().tolist() == [0.0, 3.0, 6.0]
    assert time.time() - saved.stat().st_mtime < 60

    foreign = Parameter(Tensor(np.full((3,), 2.0, np.float32)), name="foreign")

    def scale(x):
        return x * foreign

    graph = _Graph(
        "foreign", scale, compiled=True, cache=graph_cache.GraphCache(tmp_path / "f", ["test"], {})
    )
    with pytest.warns(RuntimeWarning, match="foreign.*is not one of the model's"):
        result = graph(x.shape, x)
    assert np.array_equal(result.asnumpy(), [0.0, 2.0, 4.0])
    assert list((tmp_path / "f").iterdir()) == []


def test_a_save_that_fails_is_said_once_and_not_tried_again(tmp_path):
    """A full disk or a folder gone read-only: each graph's save failed and warned in turn (19 lines
    on a full disk); the first failure now says so, naming the folder, and no more are tried. The
    graphs still compute."""
    x = Tensor(np.arange(3, dtype=np.float32))
    weight = Parameter(Tensor(np.full((3,), 2.0, np.float32)), name="w")
    folder = tmp_path / "graphs"
    cache = graph_cache.GraphCache(folder, ["test"], {weight.name: weight})
    folder.rmdir()
    folder.write_text("the folder is gone: saving fails as on a full disk")

    def double(x):
        return x * weight

    def triple(x):
        return x * weight * 1.5

    with pytest.warns(RuntimeWarning) as caught:
        first = _Graph("double", double, compiled=True, cache=cache)(x.shape, x)
        second = _Graph("triple", triple, compiled=True, cache=cache)(x.shape, x)
    assert [str(w.message) for w in caught] == [
        f"whisperms: graph cache: double: Not a directory: {folder}; no more graphs saved"
    ]
    assert first.asnumpy().tolist() == [0.0, 2.0, 4.0] and second.asnumpy().tolist() == [0, 3, 6]


def test_a_graph_run_out_of_memory_is_a_memory_error_not_a_fallback(tmp_path):
    """A graph MindSpore cannot allocate the memory of (here 16 PiB at once, beyond any machine): a
    RuntimeMemoryError (a MemoryError, which the CLI says in one line), fused or through the graph
    cache, at the first call and later ones. MindSpore's RuntimeError was taken for a failed fused
    compile (a warning, the graph compiled again unfused), then for a graph cache that does not
    work: near its memory limit, a CLI process could then not start a thread and aborted, or hung
    at exit."""
    from whisperms.errors import RuntimeMemoryError

    large, small = Tensor(np.ones((4, 4), np.float32)), Tensor(np.ones((1, 1), np.float32))

    def tiled(x):  # (4, 4) -> (2**26, 2**26); (1, 1) stays
        return ms.ops.softmax(ms.ops.tile(x, (x.shape[0] ** 12, x.shape[0] ** 12)), -1)

    for fuse, cache in ((True, None), (False, graph_cache.GraphCache(tmp_path, ["test"], {}))):
        graph = _Graph("tiled", tiled, compiled=True, fuse=fuse, cache=cache, on_graph_thread=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback taken
            warnings.simplefilter("error", WhispermsWarning)
            # a jit call that ran out of memory failed every later call with another RuntimeError
            for x in (large, large, small, large):
                if x is small:
                    assert graph(x.shape, x).asnumpy().tolist() == [[1.0]]
                    continue
                with pytest.raises(RuntimeMemoryError, match=r"^MindSpore could not allocate"):
                    graph(x.shape, x)
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["tiled"]  # the one that ran
    # graphs run without a _Graph (the VAD's) likewise; and the batched mode, which keeps an
    # input's failure to that input, ends with it (a CLI went on, then hung at exit)
    from whisperms.batch_feed import outcome
    from whisperms.compute_thread import run_graph

    bare = ms.jit(tiled)
    with pytest.raises(RuntimeMemoryError, match=r"^MindSpore could not allocate"):
        outcome(lambda index, audio: run_graph(bare, audio), 0, large)


@pytest.mark.parametrize(
    "text",
    [
        "\n#umsg#Memory not enough:#umsg#Device(id:0) memory isn't enough and alloc failed",
        "std::bad_alloc",
        "Device(id:0) memory isn't enough and alloc failed in output actor, kernel name: Add",
        "Allocate memory failed, maybe device memory(device id:0) isn't enough. Allocate size: 64",
    ],
)
def test_mindspores_allocation_failures_are_memory_errors(text):
    """Each way MindSpore's library words a failed allocation (texts from its C++ runtime) is a
    RuntimeMemoryError, which ends a CLI run in one line; the last two were taken for a bug of one
    file's, and the run went on with a runtime whose allocation had failed."""
    from whisperms.errors import RuntimeMemoryError, memory_error

    assert isinstance(memory_error(RuntimeError(text)), RuntimeMemoryError)
    assert memory_error(RuntimeError("The pointer[x] is null.")) is None
