"""The on-disk graph cache (graph_cache.py): a later process loads the MindIR graphs an earlier one
compiled and saved, instead of compiling them, and they compute what the compiled (jit) path
computes."""

import warnings

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor

from whisperms import graph_cache, load_model
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
    assert graph_cache.graph_folder() is None


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


def test_unreadable_file_is_saved_again(model, tmp_path):
    reference = _transcribe(model, tmp_path)
    (stem_file,) = [p for p in tmp_path.iterdir() if p.name.startswith("stem-")]
    # truncated, as by a crash mid-write without the rename
    stem_file.write_bytes(stem_file.read_bytes()[:1000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # removed and compiled quietly
        again = _transcribe(model, tmp_path)
    assert not model.inference._stem.loaded
    # Saved again whole: the next process loads it. (Not compared by size: the graph's node names
    # carry process-wide counters, so a second compile in the same process can differ by a few
    # bytes.)
    assert stem_file.stat().st_size > 1000
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
