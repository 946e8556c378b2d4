"""The CPU's host-array self-attention cache (kv_cache.HostKVCache) and the step that reads it
(TextDecoder.step_apart): against the tensor cache the step graph rewrites (KVCache, as on Ascend),
and each cache operation against its plain NumPy meaning."""

import numpy as np
import pytest
from mindspore import Tensor

import whisperms.inference as inference_module
from whisperms.attention import MASKED, attention_with_new, eager_attention
from whisperms.inference import Inference
from whisperms.kv_cache import HostKVCache

from conftest import DATA, read_manifest, window_mel

LAYERS, HEADS, HEAD_DIM = 2, 3, 4


def _cache(rows=4, capacity=8, audios=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = (LAYERS, rows, HEADS, capacity, HEAD_DIM)
    cross = tuple(
        Tensor(rng.standard_normal((audios, HEADS, 5, HEAD_DIM)).astype(np.float32))
        for _ in range(LAYERS)
    )
    length = rng.integers(1, capacity - 1, rows)
    keys = rng.standard_normal(shape).astype(np.float32)
    values = rng.standard_normal(shape).astype(np.float32)
    return HostKVCache(keys, values, cross, cross, length)


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-6), (np.float16, 2e-3)])
def test_attention_with_the_new_position_apart_equals_attention_over_the_written_cache(
    dtype, tolerance
):
    """float32, and float16 (scores and softmax in float32) as a CPU --dtype float16 runs it."""
    rng = np.random.default_rng(1)
    b, capacity = 3, 7
    q, k_new, v_new = (rng.standard_normal((b, HEADS, 1, HEAD_DIM)).astype(dtype) for _ in range(3))
    k, v = (rng.standard_normal((b, HEADS, capacity, HEAD_DIM)).astype(dtype) for _ in range(2))
    offset = np.array([0, 3, 6])  # an empty cache, a middle and the last position
    positions = np.arange(capacity)[None, :]
    apart_mask = ((positions >= offset[:, None]) * MASKED).astype(np.float32)[:, None, None]
    apart = attention_with_new(*(Tensor(x) for x in (q, k, v, k_new, v_new, apart_mask)))
    written_k, written_v = k.copy(), v.copy()
    written_k[np.arange(b), :, offset] = k_new[:, :, 0]
    written_v[np.arange(b), :, offset] = v_new[:, :, 0]
    mask = ((positions > offset[:, None]) * MASKED).astype(np.float32)[:, None, None]
    reference, _ = eager_attention(*(Tensor(x) for x in (q, written_k, written_v, mask)))
    assert apart.dtype == reference.dtype
    np.testing.assert_allclose(
        apart.asnumpy().astype(np.float32),
        reference.asnumpy().astype(np.float32),
        rtol=10 * tolerance,
        atol=tolerance,
    )


@pytest.mark.parametrize("one_position", [False, True])
def test_written_puts_each_rows_new_position_at_its_length_and_nothing_else(one_position):
    """Rows at different positions, and all at one (written as a slice)."""
    cache = _cache()
    if one_position:
        cache.length[:] = 3
    before_k, before_v = cache.keys.copy(), cache.values.copy()
    new_k = np.full((LAYERS, 4, HEADS, 1, HEAD_DIM), 7.0, np.float32)
    new_v = np.full((LAYERS, 4, HEADS, 1, HEAD_DIM), -7.0, np.float32)
    length = cache.length.copy()
    after = cache.written(new_k, new_v)
    np.testing.assert_array_equal(after.length, length + 1)
    for row, position in enumerate(length):
        assert (after.keys[:, row, :, position] == 7.0).all()
        assert (after.values[:, row, :, position] == -7.0).all()
        before_k[:, row, :, position] = 7.0
        before_v[:, row, :, position] = -7.0
    np.testing.assert_array_equal(after.keys, before_k)
    np.testing.assert_array_equal(after.values, before_v)


@pytest.mark.parametrize("shared", [0, 1])
@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [1, 1, 2, 3], [3, 0, 0, 1], [2, 2, 2, 2]])
def test_follow_equals_a_gather_of_the_filled_positions(rows, shared):
    """`shared`: the first positions, the same in every row (a prompt the beams share), are left
    as they are."""
    cache = _cache(seed=2)
    cache.keys[:, :, :, :shared] = cache.keys[:, :1, :, :shared]
    cache.values[:, :, :, :shared] = cache.values[:, :1, :, :shared]
    keys, values, length = cache.keys.copy(), cache.values.copy(), cache.length.copy()
    after = cache.follow(rows, shared)
    np.testing.assert_array_equal(after.length, length[rows])
    for i, source in enumerate(rows):
        filled = length[source]
        np.testing.assert_array_equal(after.keys[:, i, :, :filled], keys[:, source, :, :filled])
        np.testing.assert_array_equal(after.values[:, i, :, :filled], values[:, source, :, :filled])
    # rows that continue themselves are not touched at all
    for i in np.flatnonzero(np.asarray(rows) == np.arange(4)):
        np.testing.assert_array_equal(after.keys[:, i], keys[:, i])


def test_follow_leaves_the_shared_positions_unwritten():
    cache = _cache(seed=4)
    cache.length[:] = 6
    cache.keys[:, 2, :, :2] = 99.0  # row 2 copies row 0 below: only from position 2 on
    after = cache.follow([0, 1, 0, 3], shared=2)
    assert (after.keys[:, 2, :, :2] == 99.0).all()
    np.testing.assert_array_equal(after.keys[:, 2, :, 2:6], after.keys[:, 0, :, 2:6])


def test_reorder_select_stack_and_grown_make_arrays_of_their_own():
    cache = _cache(seed=3)
    keys = cache.keys.copy()
    reordered = cache.reorder([2, 2, 0, 1])
    np.testing.assert_array_equal(reordered.keys, keys[:, [2, 2, 0, 1]])
    np.testing.assert_array_equal(reordered.length, cache.length[[2, 2, 0, 1]])
    selected = cache.select([2, 3], [1])
    np.testing.assert_array_equal(selected.values, cache.values[:, [2, 3]])
    np.testing.assert_array_equal(selected.cross_k[0].asnumpy(), cache.cross_k[0].asnumpy()[1:2])
    grown = cache.grown(12)
    assert grown.capacity == 12 and cache.grown(8) is cache
    np.testing.assert_array_equal(grown.keys[:, :, :, :8], keys)
    assert (grown.keys[:, :, :, 8:] == 0).all()
    other = _cache(rows=1, capacity=12, audios=1, seed=4)
    stacked = HostKVCache.stack([cache.select([0], [0]), other], group=2)
    assert stacked.keys.shape == (LAYERS, 4, HEADS, 12, HEAD_DIM)
    np.testing.assert_array_equal(stacked.keys[:, 0], grown.keys[:, 0])
    np.testing.assert_array_equal(stacked.keys[:, 1], grown.keys[:, 0])
    np.testing.assert_array_equal(stacked.keys[:, 3], other.keys[:, 0])
    assert stacked.cross_k[0].shape[0] == 2
    for made in (reordered, selected, grown, stacked):
        assert not np.shares_memory(made.keys, cache.keys)
        # C-contiguous: a strided array would be copied whole by every step's Tensor.from_numpy
        assert made.keys.flags.c_contiguous and made.values.flags.c_contiguous
    np.testing.assert_array_equal(cache.keys, keys)


def test_host_cache_steps_match_the_tensor_cache_steps(tiny_en_model):
    """Two windows with prompts of different lengths, then beam-like steps (rows reordered, forked
    and dropped) over both caches: the same logits within float32 rounding, the same best tokens,
    through cache growth past a capacity bucket."""
    host = tiny_en_model.inference
    assert host.host_cache
    tensors = Inference(tiny_en_model, host_cache=False)
    assert not tensors.host_cache
    mels = np.stack([window_mel(DATA / name) for name in ("jfk_inaugural_1961.flac",) * 2])
    features = host.embed_audio(mels)
    prompts = [[50257, 50363], [50360, 17250, 13, 50257, 50363]]
    gather = [[1], [4]]
    rng = np.random.default_rng(5)
    results = []
    for inference in (host, tensors):
        logits, cache = inference.start_batch(features, prompts, gather, group=3)
        steps = []
        tokens = np.repeat(logits[:, 0].argmax(-1), 3)
        for step in range(70):  # the cache grows from 64 to 128 positions
            rows = None
            if step % 3 == 1:
                rows = np.concatenate([np.sort(rng.integers(0, 3, 3)) + g * 3 for g in range(2)])
            out, cache = inference.step(tokens, cache, rows=rows)
            steps.append(out)
            tokens = out.argmax(-1)
        results.append((steps, cache.length))
    (host_steps, host_length), (tensor_steps, tensor_length) = results
    np.testing.assert_array_equal(host_length, tensor_length)
    for a, b in zip(host_steps, tensor_steps):
        assert np.abs(a - b).max() < 1e-3
        np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))


def test_wide_steps_on_transposed_weights_match_the_narrow_step(tiny_en_model, monkeypatch):
    """Steps of WIDE_STEP_ROWS rows or more (beams of several windows) run the decoder's Linear
    layers on transposed weight copies: the same logits and best tokens as the step graph on the
    model's own weights, over 20 steps of 4 windows x 5 rows, and the copies made once."""
    inference = tiny_en_model.inference
    names = [r["file"] for r in read_manifest() if r["language"] == "en"][:4]
    features = inference.embed_audio(np.stack([window_mel(DATA / name) for name in names]))
    prompt = [50257, 50362]  # <|startoftranscript|><|notimestamps|>
    group = 5
    assert len(names) * group >= inference_module.WIDE_STEP_ROWS
    runs = {}
    for wide in (True, False):
        if not wide:
            monkeypatch.setattr(inference_module, "WIDE_STEP_ROWS", 10**6)
        before = sum(inference._step_apart_wide.calls.values())
        logits, cache = inference.start_batch(features, [prompt] * 4, [[1]] * 4, group=group)
        tokens = np.repeat(logits[:, 0].argmax(-1), group)
        steps = []
        for _ in range(20):
            out, cache = inference.step(tokens, cache)
            steps.append(out)
            tokens = out.argmax(-1)
        runs[wide] = np.stack(steps)
        wide_calls = sum(inference._step_apart_wide.calls.values()) - before
        assert wide_calls == (20 if wide else 0)
    assert inference._wide is not None
    np.testing.assert_allclose(runs[True], runs[False], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(runs[True].argmax(-1), runs[False].argmax(-1))


def test_steps_of_many_rows_project_with_the_transposed_embedding(tiny_en_model, monkeypatch):
    """Steps of TRANSPOSED_PROJECTION_ROWS rows or more (a batch of windows) project onto the
    vocabulary with the transposed copy of the embedding, as one-row steps do: the same logits and
    best tokens as transpose_b on the embedding itself, over 20 steps of 8 windows."""
    inference = tiny_en_model.inference
    names = [r["file"] for r in read_manifest() if r["language"] == "en"][:8]
    features = inference.embed_audio(np.stack([window_mel(DATA / name) for name in names]))
    prompt = [50257, 50362]  # <|startoftranscript|><|notimestamps|>
    assert inference_module.TRANSPOSED_PROJECTION_ROWS <= len(names)
    assert len(names) < inference_module.WIDE_STEP_ROWS
    runs = {}
    for transposed in (True, False):
        if not transposed:
            monkeypatch.setattr(inference_module, "TRANSPOSED_PROJECTION_ROWS", 10**6)
        graphs = (inference._step_apart_t, inference._step_apart)
        before = [sum(graph.calls.values()) for graph in graphs]
        logits, cache = inference.start_batch(features, [prompt] * 8, [[1]] * 8)
        tokens = logits[:, 0].argmax(-1)
        steps = []
        for _ in range(20):
            out, cache = inference.step(tokens, cache)
            steps.append(out)
            tokens = out.argmax(-1)
        runs[transposed] = np.stack(steps)
        calls = [sum(graph.calls.values()) - b for graph, b in zip(graphs, before)]
        # the prompt's two tokens ran through the same step graph
        assert calls == ([22, 0] if transposed else [0, 22]), calls
    np.testing.assert_allclose(runs[True], runs[False], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(runs[True].argmax(-1), runs[False].argmax(-1))
