"""The on-disk graph cache (graph_cache.py): a later process loads exported MindIR graphs instead of compiling them,
and what they compute is what the compiled (jit) path computes."""
import os
import warnings

import numpy as np
import pytest
import mindspore as ms
from mindspore import Parameter, Tensor

from conftest import DATA
from whisperms import graph_cache, load_model
from whisperms.inference import Inference, _Graph

CLIP = str(DATA / "jfk_inaugural_1961.flac")


def test_flatten_round_trip():
    a, b, c, d = (Tensor(np.full((2,), i, np.float32)) for i in range(4))
    args = (a, (b, (c,)), (), d)
    flat, spec = graph_cache.flatten(args)
    assert flat == [a, b, c, d]
    assert spec == (None, (None, (None,)), (), None)
    rebuilt, end = graph_cache.unflatten(flat, spec, 0)
    assert end == 4
    assert rebuilt[0] is a and rebuilt[1][0] is b and rebuilt[1][1][0] is c and rebuilt[2] == () and rebuilt[3] is d


def test_folder_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(graph_cache.GRAPH_CACHE_ENV, raising=False)
    assert graph_cache.graph_folder() == tmp_path / "whisperms" / "graphs" / f"mindspore-{ms.__version__}"
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
    """Export (empty folder), then load (a new Inference over the same folder): the same tokens as jit-compiled
    graphs, for greedy and beam search; the second run writes nothing and leaves no temporary file."""
    reference = _transcribe(model, False)
    assert model.inference.graph_cache is None
    exported = _transcribe(model, tmp_path)
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    names = {name.split("-")[0] for name in files}
    assert {"stem", "block", "post", "cross_kv_layer", "step_t"} <= names
    assert not any(".tmp." in name for name in files)
    loaded = _transcribe(model, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == files  # all hits: nothing exported
    assert all(cell is not None and not cell.parameters_dict() for cell in model.inference._step_t.cells.values())
    for result in (exported, loaded):
        assert [s.tokens for s in result.segments] == [s.tokens for s in reference.segments]
        assert result.text == reference.text
    beam_reference = _transcribe(model, False, beam_size=5)
    beam_cached = _transcribe(model, tmp_path, beam_size=5)
    assert [s.tokens for s in beam_cached.segments] == [s.tokens for s in beam_reference.segments]
    assert any(name.startswith("step_rows-") for name in os.listdir(tmp_path))


def test_unreadable_file_is_exported_again(model, tmp_path):
    reference = _transcribe(model, tmp_path)
    (stem_file,) = [p for p in tmp_path.iterdir() if p.name.startswith("stem-")]
    os.chmod(stem_file, 0o600)
    stem_file.write_bytes(stem_file.read_bytes()[:1000])  # truncated, as by a crash mid-write without the rename
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re-exported quietly, not compiled instead with a warning
        again = _transcribe(model, tmp_path)
    assert stem_file.stat().st_size > 1000
    assert [s.tokens for s in again.segments] == [s.tokens for s in reference.segments]


def test_graph_holding_a_parameter_is_refused_and_compiled_instead(tmp_path):
    """A cached graph must not hold weights: the file is keyed by shapes, not values, so another checkpoint of the
    same size would run with these. Refused (by MindSpore's export for a model's parameter, or by the load-time
    check), and the entry point is compiled by jit with a warning instead."""
    weight = Parameter(Tensor(np.full((3,), 2.0, np.float32)), name="w")

    def scale(x):
        return x * weight

    x = Tensor(np.arange(3, dtype=np.float32))
    with pytest.raises(ValueError, match="Parameter"):
        graph_cache.GraphCache(tmp_path, ["test"]).load("scale", scale, (x,))
    graph = _Graph("scale", scale, compiled=True, cache=graph_cache.GraphCache(tmp_path / "again", ["test"]))
    with pytest.warns(RuntimeWarning, match="graph cache failed for scale"):
        first = graph(x.shape, x)
    assert np.array_equal(first.asnumpy(), [0.0, 2.0, 4.0])
    assert np.array_equal(graph(x.shape, x).asnumpy(), [0.0, 2.0, 4.0])
