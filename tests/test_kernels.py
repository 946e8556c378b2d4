"""Device kernels: the emulation's documented rules, whisperms' flash_attention_2 path against
eager, Ascend for real.

Without an Ascend card, the fused kernels' NumPy emulation (tests/emulation.py) is substituted for
them through the kernel tables (attention.KERNELS, device.CONV_KERNELS). NumPy cannot run inside a
graph, so those runs are PyNative: MS_JIT=0 makes MindSpore's jit-wrapped entry points run their
Python bodies. PyNative decoding is slow (0.2-1 s per token on this 2-core machine, by load), so the
greedy-token comparison runs DEFAULT_CLIPS clips of tiny.en by default (this whole file: ~1.5 min
idle) and every clip under 30 s only with `-m slow` (72 min under load: 34/35 identical for tiny.en
and for base). Tests marked `ascend` run the real kernels; elsewhere they are skipped with the
reason.

Precision: the flash model runs float16 weights and activations (LayerNorm, softmax and logits in
float32), the reference runs eager float32; the tolerances below are float16 ones, each with the
values measured here.
"""

import dataclasses
from contextlib import contextmanager

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from whisperms import OptionsError, load_model
from whisperms import attention as attn
from whisperms import device as devices
from whisperms.convert import read_checkpoint
from whisperms.decoding import DecodingOptions, DecodingTask
from whisperms.loading import build_model

import emulation
from conftest import DATA, window_mel

# Flash float16 vs eager float32 on jfk, measured: encoder relative RMS error 1.4e-3 (tiny.en) /
# 3.5e-3 (base), largest |diff| 0.3% / 5.4% of the largest |output| (base's float16 residual stream:
# eager float16 alone gives the same 1.3 at the same element); logits largest |diff| 0.04-0.07 of
# 38-61 (0.1%), argmax identical everywhere.
ENCODER_REL_RMS = 1e-2  # sqrt(mean(diff^2) / mean(eager^2))
ENCODER_MAX_RTOL = 0.1  # largest |diff| over the largest |eager output|
# largest |diff| over the largest |eager logit|, prompt rows and step rows separately
LOGITS_RTOL = 1e-2
MIN_SAME_ARGMAX = 0.95
MIN_IDENTICAL = 0.95
DEFAULT_CLIPS = 3  # tiny.en's; the full sweep (every clip under 30 s) runs with -m slow
STEPS = 8  # decode steps compared after the prompt

JFK = DATA / "jfk_inaugural_1961.flac"
rng = np.random.default_rng(0)
on_ascend = devices.ascend_available()
needs_ascend = pytest.mark.skipif(
    not on_ascend, reason="needs an Ascend device: MindSpore reports none here"
)


def f16(*shape):
    return Tensor(rng.standard_normal(shape).astype(np.float16))


def reference(q, k, v, scale, keep=None):
    """float64 softmax attention on (B, N, S1, D) / (B, N, S2, D) NumPy arrays; keep broadcasts to
    the scores."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scores = q @ k.swapaxes(-1, -2) * scale
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v


def close(actual, expected, atol=2e-3):
    actual = emulation.to_numpy(actual) if isinstance(actual, Tensor) else actual
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=2e-3)


def fas(q, k, v, **kwargs):
    kwargs.setdefault("input_layout", "BNSD")
    return emulation.flash_attention_score(q, k, v, kwargs.pop("head_num", q.shape[1]), **kwargs)


# ---- the emulation's rules ----


def test_flash_attention_score_rejects_float32_and_mixed_dtypes():
    q32 = Tensor(rng.standard_normal((1, 2, 4, 16)).astype(np.float32))
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        fas(q32, q32, q32)
    with pytest.raises(TypeError, match="same dtype"):
        fas(f16(1, 2, 4, 16), q32.astype(ms.float16), q32)
    q, k, v = (Tensor(emulation.to_numpy(f16(1, 2, 4, 16))).astype(ms.bfloat16) for _ in range(3))
    assert fas(q, k, v).dtype == ms.bfloat16


def test_layouts_are_views_of_the_same_attention():
    b, n, s1, s2, d = 2, 3, 5, 7, 16
    q, k, v = f16(b, n, s1, d), f16(b, n, s2, d), f16(b, n, s2, d)
    expected = reference(q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.25)
    close(fas(q, k, v, scalar_value=0.25), expected)

    def bsh(x):
        return Tensor(x.asnumpy().transpose(0, 2, 1, 3).reshape(b, x.shape[2], n * d))

    out = fas(bsh(q), bsh(k), bsh(v), head_num=n, scalar_value=0.25, input_layout="BSH")
    assert out.shape == (b, s1, n * d)
    close(out, expected.transpose(0, 2, 1, 3).reshape(b, s1, n * d))

    def bsnd(x):
        return Tensor(x.asnumpy().transpose(0, 2, 1, 3))

    close(
        fas(bsnd(q), bsnd(k), bsnd(v), head_num=n, scalar_value=0.25, input_layout="BSND"),
        expected.transpose(0, 2, 1, 3),
    )

    def sbh(x):
        return Tensor(x.asnumpy().transpose(2, 0, 1, 3).reshape(x.shape[2], b, n * d))

    close(
        fas(sbh(q), sbh(k), sbh(v), head_num=n, scalar_value=0.25, input_layout="SBH"),
        expected.transpose(2, 0, 1, 3).reshape(s1, b, n * d),
    )
    with pytest.raises(ValueError):
        fas(q, k, v, input_layout="NBSD")


def test_head_num_head_dim_and_grouped_heads():
    q, k, v = f16(1, 4, 3, 16), f16(1, 2, 6, 16), f16(1, 2, 6, 16)
    expected = reference(
        q.asnumpy(), np.repeat(k.asnumpy(), 2, 1), np.repeat(v.asnumpy(), 2, 1), 1.0
    )
    close(fas(q, k, v), expected)  # N2 = 2 divides N1 = 4: each key head serves two query heads
    with pytest.raises(RuntimeError, match="head_num"):
        fas(q, k, v, head_num=2)
    with pytest.raises(RuntimeError, match="multiple of 16"):
        fas(f16(1, 2, 3, 24), f16(1, 2, 3, 24), f16(1, 2, 3, 24))
    with pytest.raises(RuntimeError, match="divisible"):
        emulation.flash_attention_score(
            f16(1, 3, 48), f16(1, 3, 48), f16(1, 3, 48), 5, input_layout="BSH"
        )


def test_scale_is_scalar_value_and_nothing_else():
    q, k, v = f16(1, 2, 4, 64), f16(1, 2, 6, 64), f16(1, 2, 6, 64)
    args = q.asnumpy(), k.asnumpy(), v.asnumpy()
    close(fas(q, k, v), reference(*args, 1.0))  # the default scale is 1: no 1/sqrt(D) is implied
    close(fas(q, k, v, scalar_value=0.125), reference(*args, 0.125))
    assert not np.allclose(reference(*args, 1.0), reference(*args, 0.125), atol=1e-2)
    with pytest.raises(TypeError, match="scalar_value"):
        fas(q, k, v, scalar_value=1)
    with pytest.raises(TypeError):
        fas(q, k, v, scale_value=0.125)  # the incremental kernel's keyword is not this kernel's


def test_mask_one_means_discard():
    q, k, v = f16(1, 2, 3, 16), f16(1, 2, 5, 16), f16(1, 2, 5, 16)
    mask = np.zeros((3, 5), np.uint8)
    mask[:, 1] = 1
    mask[2, 4] = 1
    keep = mask == 0
    expected = reference(q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.5, keep)
    close(fas(q, k, v, attn_mask=Tensor(mask), scalar_value=0.5), expected)
    close(fas(q, k, v, attn_mask=Tensor(mask.astype(bool)), scalar_value=0.5), expected)
    close(
        fas(q, k, v, attn_mask=Tensor(np.zeros((3, 5), np.uint8)), scalar_value=0.5),
        reference(q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.5),
    )
    close(
        fas(
            q, k, v, attn_mask=Tensor(np.broadcast_to(mask, (1, 1, 3, 5)).copy()), scalar_value=0.5
        ),
        expected,
    )
    with pytest.raises(TypeError, match="bool or uint8"):
        fas(q, k, v, attn_mask=Tensor(mask.astype(np.float16)))
    with pytest.raises(RuntimeError, match="shape"):
        fas(q, k, v, attn_mask=Tensor(mask[:, :4]))


def test_sparse_mode_3_is_causal_from_the_bottom_right():
    causal = Tensor(np.triu(np.ones((2048, 2048), np.uint8), 1))
    q, k, v = f16(1, 2, 3, 16), f16(1, 2, 7, 16), f16(1, 2, 7, 16)
    i, j = np.arange(3)[:, None], np.arange(7)[None, :]
    args = q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.25
    bottom_right = fas(q, k, v, attn_mask=causal, sparse_mode=3, scalar_value=0.25)
    close(bottom_right, reference(*args, j <= i + 4))  # query i sees keys up to i + S2 - S1
    top_left = fas(q, k, v, attn_mask=causal, sparse_mode=2, scalar_value=0.25)
    close(top_left, reference(*args, j <= i))
    assert not np.allclose(
        emulation.to_numpy(bottom_right), emulation.to_numpy(top_left), atol=1e-2
    )
    square = f16(1, 2, 7, 16)  # S1 == S2: both corners give the usual causal mask
    causal_7 = np.arange(7)[None, :] <= np.arange(7)[:, None]
    expected = reference(square.asnumpy(), k.asnumpy(), v.asnumpy(), 0.25, causal_7)
    close(fas(square, k, v, attn_mask=causal, sparse_mode=3, scalar_value=0.25), expected)
    with pytest.raises(RuntimeError, match="2048"):
        fas(q, k, v, attn_mask=Tensor(np.triu(np.ones((3, 7), np.uint8), 1)), sparse_mode=3)
    with pytest.raises(RuntimeError, match="2048"):
        fas(q, k, v, sparse_mode=3)


def test_sparse_mode_3_with_a_flipped_mask_is_not_causal():
    """1 = keep (torch's polarity) in the compressed mask discards the causal past instead of the
    future."""
    flipped = Tensor(1 - np.triu(np.ones((2048, 2048), np.uint8), 1))
    q, k, v = f16(1, 2, 4, 16), f16(1, 2, 4, 16), f16(1, 2, 4, 16)
    i, j = np.arange(4)[:, None], np.arange(4)[None, :]
    out = emulation.to_numpy(fas(q, k, v, attn_mask=flipped, sparse_mode=3))
    close(
        out[:, :, :3], reference(q.asnumpy()[:, :, :3], k.asnumpy(), v.asnumpy(), 1.0, (j > i)[:3])
    )
    assert np.all(out[:, :, 3] == 0)  # the last query would see no key at all


def test_incre_flash_attention_reads_only_the_valid_lengths():
    b, n, s, d = 2, 2, 10, 64
    q, k, v = f16(b, n, 1, d), f16(b, n, s, d), f16(b, n, s, d)
    k_np, v_np = k.asnumpy().copy(), v.asnumpy().copy()
    lengths = [3, 7]
    for row, length in enumerate(lengths):  # stale cache positions hold garbage, even NaN
        k_np[row, :, length:] = np.nan
        v_np[row, :, length:] = np.nan
    out = emulation.incre_flash_attention(
        q,
        [Tensor(k_np)],
        [Tensor(v_np)],
        actual_seq_lengths=Tensor(np.array(lengths, np.int64)),
        num_heads=n,
        input_layout="BNSD",
        scale_value=0.125,
    )
    assert out.shape == (b, n, 1, d) and out.dtype == ms.float16
    for row, length in enumerate(lengths):
        expected = reference(
            q.asnumpy()[row], k.asnumpy()[row, :, :length], v.asnumpy()[row, :, :length], 0.125
        )
        close(out[row], expected)
    one = emulation.incre_flash_attention(
        q, [k], [v], actual_seq_lengths=(4,), num_heads=n, input_layout="BNSD"
    )
    # size 1: every row
    close(one, reference(q.asnumpy(), k.asnumpy()[:, :, :4], v.asnumpy()[:, :, :4], 1.0))
    with pytest.raises(TypeError, match="int64"):
        emulation.incre_flash_attention(
            q,
            [k],
            [v],
            actual_seq_lengths=Tensor(np.array(lengths, np.int32)),
            num_heads=n,
            input_layout="BNSD",
        )
    with pytest.raises(ValueError, match="range"):
        emulation.incre_flash_attention(
            q, [k], [v], actual_seq_lengths=(3, 11), num_heads=n, input_layout="BNSD"
        )
    with pytest.raises(ValueError, match="1 or B"):
        emulation.incre_flash_attention(
            q, [k], [v], actual_seq_lengths=(3, 4, 5), num_heads=n, input_layout="BNSD"
        )


def test_incre_flash_attention_scale_keyword_dtype_and_layouts():
    b, n, s, d = 1, 2, 6, 16
    q, k, v = f16(b, n, 1, d), f16(b, n, s, d), f16(b, n, s, d)
    expected = reference(q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.25)
    close(
        emulation.incre_flash_attention(
            q, [k], [v], num_heads=n, input_layout="BNSD", scale_value=0.25
        ),
        expected,
    )
    for wrong in ("scalar_value", "scale"):  # the other kernels' names for the scale
        with pytest.raises(TypeError):
            emulation.incre_flash_attention(
                q, [k], [v], num_heads=n, input_layout="BNSD", **{wrong: 0.25}
            )

    def bsh(x):
        return Tensor(x.asnumpy().transpose(0, 2, 1, 3).reshape(b, x.shape[2], n * d))

    close(
        emulation.incre_flash_attention(bsh(q), [bsh(k)], [bsh(v)], num_heads=n, scale_value=0.25),
        expected.transpose(0, 2, 1, 3).reshape(b, 1, n * d),
    )
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        emulation.incre_flash_attention(
            q.astype(ms.float32), [k], [v], num_heads=n, input_layout="BNSD"
        )
    with pytest.raises(TypeError, match="lists"):
        emulation.incre_flash_attention(q, k, v, num_heads=n, input_layout="BNSD")
    with pytest.raises(ValueError, match="one query token"):
        emulation.incre_flash_attention(f16(b, n, 2, d), [k], [v], num_heads=n, input_layout="BNSD")
    mask = np.zeros((b, 1, 1, s), np.uint8)
    mask[..., 2] = 1
    close(
        emulation.incre_flash_attention(
            q, [k], [v], attn_mask=Tensor(mask), num_heads=n, input_layout="BNSD"
        ),
        reference(q.asnumpy(), k.asnumpy(), v.asnumpy(), 1.0, np.arange(s) != 2),
    )


def conv_reference(x, w, b, stride, padding):
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding)))
    length = (x.shape[2] - w.shape[2]) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], length))
    for t in range(length):
        window = x[:, :, t * stride : t * stride + w.shape[2]]
        out[:, :, t] = np.einsum("bck,ock->bo", window, w) + b
    return out


def test_mint_conv1d_stride_padding_dtype():
    x, w, b = f16(2, 5, 11), f16(4, 5, 3), f16(4)
    for stride in (1, 2):
        out = emulation.conv1d(x, w, b, stride, 1)
        assert out.dtype == ms.float16 and out.shape == (2, 4, (11 + 2 - 3) // stride + 1)
        close(out, conv_reference(x.asnumpy(), w.asnumpy(), b.asnumpy(), stride, 1), atol=1e-2)
    close(
        emulation.conv1d(x, w, b, padding="same"),
        conv_reference(x.asnumpy(), w.asnumpy(), b.asnumpy(), 1, 1),
        atol=1e-2,
    )
    assert emulation.conv1d(x, w, padding="valid").shape == (2, 4, 9)
    assert emulation.conv1d(x[0], w, b, 2, (1,)).shape == (4, 6)
    x32, w32 = x.astype(ms.float32), w.astype(ms.float32)
    assert emulation.conv1d(x32, w32, b.astype(ms.float32), 1, 1).dtype == ms.float32
    with pytest.raises(TypeError, match="one dtype"):
        emulation.conv1d(x32, w, b, 1, 1)
    with pytest.raises(ValueError, match="stride 1"):
        emulation.conv1d(x, w, b, 2, "same")


# ---- choosing the kernels ----


def test_attn_implementation_choice():
    assert devices._attn_implementation("auto", "Ascend") == attn.FLASH
    assert devices._attn_implementation("auto", "CPU") == attn.EAGER
    assert devices._attn_implementation("eager", "Ascend") == attn.EAGER
    assert devices._attn_implementation("flash_attention_2", "Ascend") == attn.FLASH


@pytest.mark.skipif(on_ascend, reason="checks the defaults on a machine without Ascend")
def test_cpu_defaults(tiny_en_model):
    runtime = tiny_en_model.runtime
    assert (runtime.attn_implementation, runtime.conv, runtime.dtype) == (
        "eager",
        devices.MATMUL_TAPS,
        "float32",
    )
    assert tiny_en_model.decoder.blocks[0].attn.attn_implementation == attn.EAGER
    assert tiny_en_model.encoder.conv1.conv == devices.MATMUL_TAPS


@pytest.mark.skipif(on_ascend, reason="checks the error on a machine without Ascend")
def test_flash_attention_2_without_ascend_is_a_one_line_error(tiny_en_ct2_dir):
    with pytest.raises(OptionsError) as excinfo:
        load_model(tiny_en_ct2_dir, device="CPU", attn_implementation="flash_attention_2")
    message = str(excinfo.value)
    assert "\n" not in message and "Ascend" in message and "kernel unregistered" in message
    with pytest.raises(OptionsError, match="sdpa"):
        load_model(tiny_en_ct2_dir, attn_implementation="sdpa")


# ---- whisperms' flash_attention_2 path with the emulation ----


@contextmanager
def emulated_kernels():
    """The emulation in place of the Ascend kernels, and jit-wrapped entry points run as plain
    Python."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(attn.KERNELS, "flash_attention_score", emulation.flash_attention_score)
        patch.setitem(attn.KERNELS, "incre_flash_attention", emulation.incre_flash_attention)
        patch.setitem(devices.CONV_KERNELS, "conv1d", emulation.conv1d)
        patch.setenv("MS_JIT", "0")
        yield


def with_ascend_kernels(folder, dtype="float16"):
    """The model built for Ascend's runtime (flash attention, native conv1d; float16), on this
    machine."""
    runtime = dataclasses.replace(
        devices.select(dtype=dtype), attn_implementation=attn.FLASH, conv=devices.NATIVE_CONV1D
    )
    return build_model(read_checkpoint(folder), runtime)


@pytest.fixture(scope="module")
def flash_tiny_en(tiny_en_ct2_dir):
    return with_ascend_kernels(tiny_en_ct2_dir)


@pytest.fixture(scope="module")
def flash_base(base_ct2_dir):
    return with_ascend_kernels(base_ct2_dir)


def models(request, which):
    if which == "tiny.en":
        return request.getfixturevalue("tiny_en_model"), request.getfixturevalue("flash_tiny_en")
    return request.getfixturevalue("base_model"), request.getfixturevalue("flash_base")


def test_flash_model_runs_float16_with_the_native_conv(flash_tiny_en):
    assert flash_tiny_en.encoder.conv1.weight.dtype == ms.float16
    assert flash_tiny_en.decoder.blocks[0].attn.attn_implementation == attn.FLASH
    assert flash_tiny_en.encoder.conv2.conv == devices.NATIVE_CONV1D


@pytest.mark.parametrize("which", ["tiny.en", "base"])
def test_encoder_flash_float16_matches_eager_float32(which, request):
    eager, flash = models(request, which)
    mel = window_mel(JFK)[None]
    expected = eager.inference.embed_audio(mel).asnumpy()
    with emulated_kernels():
        ours = flash.inference.embed_audio(mel)
    assert ours.dtype == ms.float16
    diff = ours.astype(ms.float32).asnumpy() - expected
    rel_rms = np.sqrt(np.mean(diff**2) / np.mean(expected**2))
    largest = np.abs(diff).max() / np.abs(expected).max()
    print(
        f"{which}: encoder relative RMS error {rel_rms:.1e}, largest |diff| {largest:.1%} of the "
        "largest |output|"
    )
    assert rel_rms <= ENCODER_REL_RMS
    assert largest <= ENCODER_MAX_RTOL


def prompt_and_steps(model, mel):
    """A prompt (the initial tokens and all but the last STEPS tokens eager greedy decoding gives)
    and the rest."""
    initial = DecodingTask(model, DecodingOptions(language="en")).initial_tokens
    tokens = list(initial) + model.decode(mel, language="en").tokens
    return tokens[:-STEPS], tokens[-STEPS:]


def run_decoder(model, mel, prompt, steps):
    """Logits of every prompt position, then of each step fed the given tokens: (len(prompt) +
    len(steps), V)."""
    inference = model.inference
    features = inference.embed_audio(mel[None])
    logits, cache = inference.start(features, [prompt], list(range(len(prompt))))
    rows = [logits[0]]
    for token in steps:
        logits, cache = inference.step([token], cache)
        rows.append(logits)
    return np.concatenate(rows)


@pytest.mark.parametrize("which", ["tiny.en", "base"])
def test_logits_flash_float16_match_eager_float32(which, request):
    """Prefill (causal mask, sparse_mode 3) and decode steps (valid cache length) against eager, row
    by row.

    Fails if the causal mask's polarity is flipped, if a step attends to the wrong cache positions
    (aligned top-left: only the first key; or off by one) or if q.k is scaled twice.
    """
    eager, flash = models(request, which)
    mel = window_mel(JFK)
    prompt, steps = prompt_and_steps(eager, mel)
    expected = run_decoder(eager, mel, prompt, steps)
    with emulated_kernels():
        ours = run_decoder(flash, mel, prompt, steps)
    diff = np.abs(ours - expected).max(-1)
    scale = np.abs(expected).max()
    same = (ours.argmax(-1) == expected.argmax(-1)).mean()
    print(
        f"{which}: max |logit diff| prompt {diff[: len(prompt)].max():.3f}, steps "
        f"{diff[len(prompt) :].max():.3f} "
        f"of max |logit| {scale:.1f}; same argmax on {same:.0%} of {len(diff)} positions"
    )
    assert diff[: len(prompt)].max() <= LOGITS_RTOL * scale
    assert diff[len(prompt) :].max() <= LOGITS_RTOL * scale
    assert same >= MIN_SAME_ARGMAX


def greedy_sweep(eager, flash, clips, with_language):
    differing = []
    for row in clips:
        language = row["language"] if with_language else "en"
        mel = window_mel(DATA / row["file"])
        expected = eager.decode(mel, language=language).tokens
        with emulated_kernels():
            ours = flash.decode(mel, language=language)
        if ours.tokens != expected:
            differing.append(row["file"])
            print(f"DIFFERS {row['file']}: flash {ours.text!r}")
    print(f"identical on {len(clips) - len(differing)}/{len(clips)} clips")
    return 1 - len(differing) / len(clips)


# base's tokens (~35 s in PyNative) in the slow sweep over every clip below; its logits and encoder
# are checked above
def test_greedy_tokens_flash_float16_match_eager_float32(request, short_clips):
    """The DEFAULT_CLIPS shortest clips, tiny.en."""
    eager, flash = models(request, "tiny.en")
    shortest = sorted(short_clips, key=lambda row: float(row["duration_s"]))[:DEFAULT_CLIPS]
    assert greedy_sweep(eager, flash, shortest, False) >= MIN_IDENTICAL


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny.en", "base"])
def test_greedy_tokens_flash_float16_match_eager_float32_all_clips(which, request, short_clips):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the full sweep takes 15-70 min in PyNative: run it with -m slow")
    eager, flash = models(request, which)
    assert greedy_sweep(eager, flash, short_clips, which == "base") >= MIN_IDENTICAL


# ---- the flash path compiles under jit (graph-mode stand-ins written with MindSpore ops) ----


def graph_flash_attention_score(
    query, key, value, head_num, attn_mask=None, scalar_value=1.0, input_layout="BSH", sparse_mode=0
):
    scores = (
        ops.matmul(query.astype(ms.float32), key.astype(ms.float32).swapaxes(-1, -2)) * scalar_value
    )
    if attn_mask is not None:  # sparse_mode 3: the compressed mask's rows from S2 - S1 on
        s1, s2 = scores.shape[-2], scores.shape[-1]
        discard = attn_mask[s2 - s1 : s2, :s2].astype(ms.bool_)
        scores = ops.masked_fill(scores, discard, attn.MASKED)  # not -inf: see attention.MASKED
    return ops.matmul(ops.softmax(scores, -1), value.astype(ms.float32)).astype(query.dtype)


def graph_incre_flash_attention(
    query, key, value, actual_seq_lengths=None, num_heads=1, input_layout="BSH", scale_value=1.0
):
    k, v = key[0].astype(ms.float32), value[0].astype(ms.float32)
    scores = ops.matmul(query.astype(ms.float32), k.swapaxes(-1, -2)) * scale_value
    valid = ops.arange(k.shape[2]).reshape(1, 1, 1, -1) < actual_seq_lengths.reshape(-1, 1, 1, 1)
    scores = ops.masked_fill(scores, ops.logical_not(valid), attn.MASKED)
    return ops.matmul(ops.softmax(scores, -1), v).astype(query.dtype)


def graph_conv1d(x, weight, bias, stride, padding):
    y = ops.conv1d(
        x.astype(ms.float32),
        weight.astype(ms.float32),
        bias.astype(ms.float32),
        stride=stride,
        pad_mode="pad",
        padding=padding,
    )
    return y.astype(x.dtype)


def test_flash_path_compiles_under_jit(tiny_en_ct2_dir, tiny_en_model, monkeypatch):
    """The call sites trace in graph mode (kernel tables, list arguments, int64 lengths, float16
    casts of a float32 model) and give eager's tokens; the stand-ins only make the graph runnable on
    CPU."""
    monkeypatch.setitem(attn.KERNELS, "flash_attention_score", graph_flash_attention_score)
    monkeypatch.setitem(attn.KERNELS, "incre_flash_attention", graph_incre_flash_attention)
    monkeypatch.setitem(devices.CONV_KERNELS, "conv1d", graph_conv1d)
    flash = with_ascend_kernels(tiny_en_ct2_dir, dtype="float32")
    mel = window_mel(JFK)
    assert flash.decode(mel).tokens == tiny_en_model.decode(mel).tokens


# ---- the real kernels (Ascend only) ----


@pytest.mark.ascend
@needs_ascend
@pytest.mark.parametrize("layout", ["BNSD", "BSH"])
@pytest.mark.parametrize("sparse_mode", [0, 3])
def test_real_flash_attention_score_matches_emulation(layout, sparse_mode):
    b, n, s1, s2, d = 2, 6, 5, 9, 64
    q, k, v = f16(b, n, s1, d), f16(b, n, s2, d), f16(b, n, s2, d)
    if layout == "BSH":
        q, k, v = (
            Tensor(x.asnumpy().transpose(0, 2, 1, 3).reshape(b, x.shape[2], n * d))
            for x in (q, k, v)
        )
    kwargs = dict(scalar_value=d**-0.5, input_layout=layout, sparse_mode=sparse_mode)
    if sparse_mode == 3:
        kwargs["attn_mask"] = attn.compressed_causal_mask()
    real = ops.flash_attention_score(q, k, v, n, **kwargs)
    close(
        real, emulation.to_numpy(emulation.flash_attention_score(q, k, v, n, **kwargs)), atol=5e-3
    )


@pytest.mark.ascend
@needs_ascend
def test_real_incre_flash_attention_matches_emulation():
    b, n, s, d = 2, 6, 448, 64
    q, k, v = f16(b, n, 1, d), f16(b, n, s, d), f16(b, n, s, d)
    kwargs = dict(
        actual_seq_lengths=Tensor(np.array([5, 300], np.int64)),
        num_heads=n,
        input_layout="BNSD",
        scale_value=d**-0.5,
    )
    real = ops.incre_flash_attention(q, [k], [v], **kwargs)
    close(
        real, emulation.to_numpy(emulation.incre_flash_attention(q, [k], [v], **kwargs)), atol=5e-3
    )


@pytest.mark.ascend
@needs_ascend
def test_real_mint_conv1d_matches_emulation():
    from mindspore import mint

    x, w, b = f16(1, 80, 3000), f16(384, 80, 3), f16(384)
    for stride in (1, 2):
        close(
            mint.nn.functional.conv1d(x, w, b, stride, 1),
            emulation.to_numpy(emulation.conv1d(x, w, b, stride, 1)),
            atol=5e-2,
        )


@pytest.mark.ascend
@needs_ascend
def test_real_flash_model_matches_eager_on_ascend(tiny_en_ct2_dir):
    eager = load_model(
        tiny_en_ct2_dir, device="Ascend", dtype="float32", attn_implementation="eager"
    )
    flash = load_model(tiny_en_ct2_dir, device="Ascend")
    assert (flash.runtime.attn_implementation, flash.runtime.conv, flash.runtime.dtype) == (
        attn.FLASH,
        devices.NATIVE_CONV1D,
        "float16",
    )
    mel = window_mel(JFK)
    expected = eager.inference.embed_audio(mel[None]).asnumpy()
    diff = flash.inference.embed_audio(mel[None]).astype(ms.float32).asnumpy() - expected
    assert np.sqrt(np.mean(diff**2) / np.mean(expected**2)) <= ENCODER_REL_RMS
    assert np.abs(diff).max() <= ENCODER_MAX_RTOL * np.abs(expected).max()
    prompt, steps = prompt_and_steps(eager, mel)
    expected, ours = run_decoder(eager, mel, prompt, steps), run_decoder(flash, mel, prompt, steps)
    assert np.abs(ours - expected).max() <= LOGITS_RTOL * np.abs(expected).max()
    assert flash.decode(mel).tokens == eager.decode(mel).tokens
