"""The compiled path against the eager reference: identical tokens and transcripts on real clips.

The compiled path differs from `load_model(jit=False)` in everything issue #5 added for speed:
graphs per entry point compiled with graph-kernel fusion, the encoder run block by block with
weights as inputs, short prompts fed through the step graph, the transposed projection for
single-row steps, beam reordering inside the step graph, prompt buckets; every graph is compiled
from its first call, so each of those paths runs.
"""

import numpy as np
import pytest

from whisperms import load_model
from whisperms.audio import SAMPLE_RATE, load_audio
from whisperms.inference import transposed

from conftest import DATA, read_manifest

ENGLISH = [
    row["file"]
    for row in read_manifest()
    if row["language"] == "en" and float(row["duration_s"]) < 30.0
]
# two sources in the default run (beam search has jfk; test_parity holds the compiled path to
# CTranslate2 on every clip); the others with -m slow
DEFAULT_CLIPS = ENGLISH[::16]
# its first LONG_SECONDS: two windows, the second with a prompt bucket (the whole 53 s add nothing
# to that, and the eager path is slow)
LONG_CLIP = "librivox_shakespeare-sonnet-001.mp3"
LONG_SECONDS = 36


@pytest.fixture(scope="module")
def eager_model(tiny_en_ct2_dir):
    model = load_model(tiny_en_ct2_dir, jit=False)
    assert not model.runtime.jit
    return model


@pytest.fixture(scope="module")
def compiled_model(tiny_en_ct2_dir):
    model = load_model(tiny_en_ct2_dir)
    # CPU float32: compiled with graph-kernel fusion (fusion.py), as users run it
    assert model.inference.fuse
    return model


def _same(compiled, eager):
    assert [s.tokens for s in compiled.segments] == [s.tokens for s in eager.segments]
    assert compiled.text == eager.text
    assert [(s.start, s.end) for s in compiled.segments] == [
        (s.start, s.end) for s in eager.segments
    ]


def _check(compiled_model, eager_model, clip, seconds=None, **options):
    audio = load_audio(DATA / clip)
    audio = audio if seconds is None else audio[: seconds * SAMPLE_RATE]
    compiled = compiled_model.transcribe(audio, language="en", **options)
    eager = eager_model.transcribe(audio, language="en", **options)
    assert compiled.text.strip()
    _same(compiled, eager)
    return compiled


@pytest.mark.parametrize("clip", DEFAULT_CLIPS)
def test_greedy_transcripts_identical(compiled_model, eager_model, clip):
    _check(compiled_model, eager_model, clip, temperature=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("clip", [c for c in ENGLISH if c not in DEFAULT_CLIPS])
def test_greedy_transcripts_identical_all_clips(compiled_model, eager_model, clip):
    _check(compiled_model, eager_model, clip, temperature=0.0)


def test_beam_search_identical(compiled_model, eager_model):
    _check(compiled_model, eager_model, "jfk_inaugural_1961.flac", temperature=0.0, beam_size=5)


def test_long_form_with_prompt_identical(compiled_model, eager_model):
    """Two windows; the second is conditioned on the first's text, so its prompt goes through a
    prefill bucket."""
    compiled = _check(compiled_model, eager_model, LONG_CLIP, LONG_SECONDS, temperature=0.0)
    assert compiled.segments[-1].seek > 0  # a second window was decoded
    # through the compiled prompt graph
    assert sum(compiled_model.inference._prompt_block.calls.values()) > 0


def test_decoder_forward_matches_compiled_start(compiled_model):
    """The network's own eager API (TextDecoder.cross_kv + forward over the whole prompt, the block
    code the compiled prompt graph runs) against the compiled path (per-layer cross K/V graph, the
    prompt fed through the step graph): the same next-token logits."""
    import numpy as np
    from mindspore import Tensor

    from conftest import window_mel

    features = compiled_model.inference.embed_audio(
        window_mel(DATA / "jfk_inaugural_1961.flac")[None]
    )
    # <|startoftranscript|> <|notimestamps|> and three text tokens
    prompt = [[50257, 50362, 400, 370, 616]]
    compiled, _ = compiled_model.inference.start(features, prompt, [4])
    decoder = compiled_model.decoder
    eager = decoder.forward(Tensor(np.asarray(prompt, np.int32)), decoder.cross_kv(features))[
        0
    ].asnumpy()[:, 4:5]
    assert compiled.shape == eager.shape == (1, 1, compiled_model.dims.n_vocab)
    assert np.abs(compiled - eager).max() < 1e-3
    assert compiled.argmax() == eager.argmax()


def test_whisper_forward_is_openais(compiled_model):
    """`model(mel, tokens)` is openai's forward: the logits of every position, equal to the compiled
    encoder and prompt graphs' (a 10-token prompt, so the prefill graph and its bucket padding are
    used)."""
    import numpy as np
    from mindspore import Tensor

    from conftest import window_mel

    mel = window_mel(DATA / "jfk_inaugural_1961.flac")[None]
    tokens = [[50257, 50362, 400, 370, 616, 7442, 4736, 1265, 407, 644]]
    forward = compiled_model(Tensor(mel), Tensor(np.asarray(tokens, np.int32))).asnumpy()
    features = compiled_model.inference.embed_audio(mel)
    compiled, _ = compiled_model.inference.start(features, tokens, list(range(10)))
    assert forward.shape == compiled.shape == (1, 10, compiled_model.dims.n_vocab)
    assert np.abs(forward - compiled).max() < 1e-3
    assert (forward.argmax(-1) == compiled.argmax(-1)).all()


@pytest.mark.parametrize("rows", [1, 1023, 1024, 2500])
def test_transposed_copy_is_the_exact_transpose(rows):
    matrix = np.random.default_rng(rows).standard_normal((rows, 24)).astype(np.float32)
    out = transposed(matrix, block=1024)
    assert out.flags.c_contiguous and out.shape == (24, rows)
    np.testing.assert_array_equal(out, matrix.T)


def test_one_row_steps_project_with_the_embedding_transposed(compiled_model):
    weight = compiled_model.decoder.token_embedding.weight.asnumpy()
    np.testing.assert_array_equal(compiled_model.inference.embedding_t.asnumpy(), weight.T)
