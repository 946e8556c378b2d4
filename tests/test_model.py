"""The network's shape: every released configuration is expressible and has the published parameter
count."""

import numpy as np
import pytest

from whisperms.hub import RELEASED_DIMENSIONS
from whisperms.model import Whisper
from whisperms.state_layout import state_shapes

# Parameter counts including the encoder's sinusoidal table (as Hugging Face's model cards count
# them), and openai's published (rounded) sizes in millions.
EXACT = {
    "tiny": 37_760_640,
    "base": 72_593_920,
    "small": 241_734_912,
    "medium": 763_857_920,
    "large-v2": 1_543_304_960,
    "large-v3": 1_543_490_560,
    "large-v3-turbo": 808_878_080,
}
PUBLISHED_M = {
    "tiny": 39,
    "base": 74,
    "small": 244,
    "medium": 769,
    "large-v1": 1550,
    "large-v2": 1550,
    "large-v3": 1550,
    "large-v3-turbo": 809,
}


def count(dims):
    return sum(int(np.prod(shape)) for shape in state_shapes(dims).values())


@pytest.mark.parametrize("name", sorted(RELEASED_DIMENSIONS))
def test_parameter_count_matches_published_size(name):
    n = count(RELEASED_DIMENSIONS[name])
    base_name = name.replace(".en", "")
    if name in EXACT:
        assert n == EXACT[name]
    assert abs(n / 1e6 - PUBLISHED_M[base_name]) / PUBLISHED_M[base_name] < 0.04, n


def test_v3_and_turbo_shapes():
    v3, turbo = RELEASED_DIMENSIONS["large-v3"], RELEASED_DIMENSIONS["large-v3-turbo"]
    assert (v3.n_mels, v3.n_vocab) == (128, 51866)
    assert (turbo.n_text_layer, turbo.n_audio_layer) == (4, 32)


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_cells_have_openai_names_and_shapes(name):
    """The Cells' parameters are exactly the checkpoint names and shapes (larger sizes differ only
    in numbers, checked through state_shapes above; building them for real would hold gigabytes for
    the whole test run)."""
    dims = RELEASED_DIMENSIONS[name]
    model = Whisper(dims)
    cells = {n: tuple(p.shape) for n, p in model.parameters_and_names()}
    assert cells == {n: tuple(s) for n, s in state_shapes(dims).items()}
    assert "encoder.blocks.0.attn.key.bias" not in cells
    assert cells["decoder.token_embedding.weight"] == (dims.n_vocab, dims.n_text_state)


@pytest.mark.parametrize("case", ["encoder", "ragged", "one chunk"])
def test_encoder_attention_in_query_chunks_equals_one_pass(case):
    """The encoder's eager self-attention runs QUERY_CHUNK query rows at a time; the output must be
    that of one pass over all queries: over the encoder's 1500 positions, over a last chunk shorter
    than the others, and over exactly one chunk."""
    import mindspore as ms

    from whisperms import attention

    chunk = attention.QUERY_CHUNK
    t = {"encoder": 1500, "ragged": 5 * chunk + 10, "one chunk": chunk}[case]
    rng = np.random.default_rng(t)
    q, k, v = (ms.Tensor(rng.standard_normal((1, 6, t, 64)).astype(np.float32)) for _ in range(3))
    whole = attention.eager_attention(q, k, v)[0].asnumpy()
    chunked = ms.jit(attention.chunked_attention)(q, k, v).asnumpy()
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def conv1d_reference(x, weight, bias, stride):
    """torch's Conv1d (kernel 3, padding 1) in float64 NumPy: x (B, in, T), weight (out, in, 3)."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1)))
    t_out = (x.shape[2] - 1) // stride + 1
    taps = np.stack(
        [padded[:, :, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)], axis=-1
    )
    return np.einsum("bitk,oik->bot", taps, weight.astype(np.float64)) + bias[None, :, None]


@pytest.mark.parametrize("stride,t", [(1, 3000), (2, 3000), (1, 7), (2, 10), (2, 7)])
@pytest.mark.parametrize("compiled", [False, True])
def test_conv1d_matmul_over_taps_equals_convolution(stride, t, compiled):
    """The CPU conv stem (one MatMul over stacked taps) is torch's Conv1d: channels-first
    `construct` (openai's layout) and the stem's time-major `channels_last`, eager and compiled, at
    the encoder's strides and lengths."""
    import mindspore as ms

    from whisperms.model import Conv1d

    rng = np.random.default_rng(stride * 100 + t)
    n_in, n_out = 80 if stride == 1 else 48, 40
    conv = Conv1d(n_in, n_out, stride=stride)
    weight = rng.standard_normal((n_out, n_in, 3)).astype(np.float32) / 10
    bias = rng.standard_normal(n_out).astype(np.float32)
    conv.weight.set_data(ms.Tensor(weight))
    conv.bias.set_data(ms.Tensor(bias))
    x = rng.standard_normal((2, n_in, t)).astype(np.float32)
    expected = conv1d_reference(x, weight, bias, stride)
    run = ms.jit(conv.construct) if compiled else conv
    channels_first = run(ms.Tensor(x)).asnumpy()
    last = (ms.jit(conv.channels_last) if compiled else conv.channels_last)(
        ms.Tensor(x.transpose(0, 2, 1))
    )
    assert channels_first.shape == expected.shape
    np.testing.assert_allclose(channels_first, expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(last.asnumpy().transpose(0, 2, 1), expected, rtol=0, atol=2e-5)
