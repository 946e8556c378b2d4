"""The network's shape: every released configuration is expressible and has the published parameter count."""
import numpy as np
import pytest

from whisperms.convert import state_shapes
from whisperms.hub import RELEASED_DIMENSIONS
from whisperms.model import Whisper

# Parameter counts including the encoder's sinusoidal table (as Hugging Face's model cards count them), and
# openai's published (rounded) sizes in millions.
EXACT = {"tiny": 37_760_640, "base": 72_593_920, "small": 241_734_912, "medium": 763_857_920,
         "large-v2": 1_543_304_960, "large-v3": 1_543_490_560, "large-v3-turbo": 808_878_080}
PUBLISHED_M = {"tiny": 39, "base": 74, "small": 244, "medium": 769, "large-v1": 1550, "large-v2": 1550,
               "large-v3": 1550, "large-v3-turbo": 809}


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
    """The Cells' parameters are exactly the checkpoint names and shapes (larger sizes differ only in numbers,
    checked through state_shapes above; building them for real would hold gigabytes for the whole test run)."""
    dims = RELEASED_DIMENSIONS[name]
    model = Whisper(dims)
    cells = {n: tuple(p.shape) for n, p in model.parameters_and_names()}
    assert cells == {n: tuple(s) for n, s in state_shapes(dims).items()}
    assert "encoder.blocks.0.attn.key.bias" not in cells
    assert cells["decoder.token_embedding.weight"] == (dims.n_vocab, dims.n_text_state)


@pytest.mark.parametrize("t", [1500, 300, 250])
def test_encoder_attention_in_query_chunks_equals_one_pass(t):
    """The encoder's eager self-attention runs QUERY_CHUNK query rows at a time (memory); the output must be that of
    one pass over all queries, including a last chunk shorter than the others (300 = 250 + 50)."""
    import mindspore as ms
    from whisperms import attention

    rng = np.random.default_rng(t)
    q, k, v = (ms.Tensor(rng.standard_normal((1, 6, t, 64)).astype(np.float32)) for _ in range(3))
    whole = attention.eager_attention(q, k, v)[0].asnumpy()
    chunked = ms.jit(attention.encoder_attention)(q, k, v).asnumpy()
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
