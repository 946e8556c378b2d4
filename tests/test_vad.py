"""Silero VAD in MindSpore against faster-whisper's (onnxruntime on the same ONNX file), on real
clips and a synthetic file of speech, long silences and noise; the converter, the shipped weights,
the options and the chunk / timestamp-map helpers on hand-built cases.

The reference probabilities come from faster-whisper's own SileroVADModel (onnxruntime, its batching
and context handling) fed the padded audio exactly as its get_speech_timestamps feeds it.
"""

import dataclasses
import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from test_model import conv1d_reference

from whisperms.audio import load_audio
from whisperms.errors import AudioError, CheckpointError, OptionsError
from whisperms.vad import (
    OPTION_NAMES,
    SileroVADModel,
    SpeechTimestampsMap,
    VadOptions,
    collect_chunks,
    collect_speech,
    get_speech_timestamps,
    get_vad_model,
    parse_vad_parameters,
    restore_speech_timestamps,
    speech_probabilities,
    vad_options,
)
from whisperms.vad.convert import convert, faster_whisper_onnx, read_onnx
from whisperms.vad.model import ENCODER_CHANNELS, N_FRAMES, Conv, SileroVAD
from whisperms.vad.runner import (
    WINDOWS_PER_CALL,
    n_windows,
    silero_windows,
    windows_at,
)
from whisperms.vad.timestamps import speech_timestamps
from whisperms.vad.weights import DEFAULT_WEIGHTS, read_weights, state_shapes, write_weights

fw_vad = pytest.importorskip(
    "faster_whisper.vad", reason="test dependency faster-whisper missing: pip install -e .[test]"
)
onnx = pytest.importorskip("onnx", reason="test dependency onnx missing: pip install -e .[test]")

DATA = Path(__file__).parent / "data"
SR = 16000
TOLERANCE = 1e-4  # max abs difference of speech probabilities from onnxruntime's
DEFAULT_CLIPS = [
    "jfk_inaugural_1961.flac",
    "librispeech-dev-clean_1988-24833-0001.flac",
    "picovoice_fr_test_fr.wav",
    "ljspeech_LJ001-0008.wav",
]
ALL_CLIPS = sorted(p.name for p in DATA.iterdir() if p.suffix in (".wav", ".flac", ".mp3", ".opus"))


def reference_probabilities(audio):
    """faster-whisper's probabilities: its model on the audio padded as its get_speech_timestamps
    pads it."""
    padded = np.pad(audio, (0, 512 - audio.shape[0] % 512))
    return fw_vad.get_vad_model()(padded)


@pytest.fixture(scope="module")
def model():
    return get_vad_model()


@pytest.fixture(scope="module")
def synthetic():
    """~100 s: digital silence, speech, white noise, speech over noise, quiet hum, speech; the
    length chosen so the last window's final 64 samples (which faster-whisper zeroes) hold real
    noise, and longer than one call (WINDOWS_PER_CALL windows) so the state crosses a call boundary.
    Returns audio and the speech spans (samples)."""
    rng = np.random.default_rng(17)
    clips = [
        load_audio(DATA / name)
        for name in (
            "jfk_inaugural_1961.flac",
            "ljspeech_LJ001-0001.wav",
            "librivox_sense-and-sensibility-ch01_0870.wav",
        )
    ]
    hum = 0.02 * np.sin(2 * np.pi * 50 * np.arange(15 * SR) / SR)
    parts, spans, at = [], [], 0

    def put(x, speech=False):
        nonlocal at
        if speech:
            spans.append((at, at + len(x)))
        parts.append(np.asarray(x, np.float32))
        at += len(x)

    put(np.zeros(20 * SR))
    put(clips[0], speech=True)
    put(0.05 * rng.standard_normal(25 * SR))
    put(clips[1] + 0.01 * rng.standard_normal(len(clips[1])), speech=True)
    put(np.zeros(20 * SR))
    put(hum)
    put(clips[2], speech=True)
    put(0.003 * rng.standard_normal(4 * SR))
    audio = np.concatenate(parts)
    audio = audio[: (len(audio) // 512) * 512 - 12]  # len % 512 == 500
    assert n_windows(len(audio)) > WINDOWS_PER_CALL
    return audio, spans


# --- probabilities and timestamps against faster-whisper
# ----------------------------------------------------------


def check_clip(model, audio):
    ours, ref = model(audio), reference_probabilities(audio)
    assert ours.shape == ref.shape == (n_windows(len(audio)),)
    assert np.abs(ours - ref).max() < TOLERANCE
    assert get_speech_timestamps(audio) == fw_vad.get_speech_timestamps(audio)


@pytest.mark.parametrize("name", DEFAULT_CLIPS)
def test_clip_matches_faster_whisper(model, name):
    check_clip(model, load_audio(DATA / name))


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_CLIPS)
def test_every_dev_clip_matches_faster_whisper(model, name):
    check_clip(model, load_audio(DATA / name))


def test_synthetic_file_matches_faster_whisper(model, synthetic):
    audio, spans = synthetic
    assert len(audio) % 512 > 512 - 64
    ours = model(audio)
    assert np.abs(ours - reference_probabilities(audio)).max() < TOLERANCE
    found = get_speech_timestamps(audio)
    assert found == fw_vad.get_speech_timestamps(audio)
    # Every utterance is found, and nothing in the 20 s of digital silence at the start.
    for start, end in spans:
        assert any(s["start"] <= start + SR and s["end"] >= end - SR for s in found), (
            start,
            end,
            found,
        )
    assert found[0]["start"] >= 20 * SR - int(0.4 * SR)


def test_collect_speech_is_faster_whispers_vad_filter(synthetic):
    audio = synthetic[0][: 60 * SR]
    speech, chunks = collect_speech(audio, "min_silence_duration_ms=500")
    expected_chunks = fw_vad.get_speech_timestamps(
        audio, fw_vad.VadOptions(min_silence_duration_ms=500)
    )
    assert chunks == expected_chunks and len(chunks) >= 2
    assert np.array_equal(speech, np.concatenate(fw_vad.collect_chunks(audio, expected_chunks)[0]))
    speech, chunks = collect_speech(np.zeros(30 * SR, np.float32))
    assert chunks == [] and speech.shape == (0,) and speech.dtype == np.float32


def test_runs_without_onnx_onnxruntime_or_torch(tmp_path):
    """A fresh process: the VAD runs from the shipped weights and never imports onnx, onnxruntime or
    torch."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np; from whisperms.audio import load_audio; import whisperms.vad as "
        "v; "
        f"print(v.get_speech_timestamps(load_audio({str(DATA / DEFAULT_CLIPS[1])!r}))); "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found, modules = done.stdout.strip().splitlines()[-2:]
    assert (
        found == str(fw_vad.get_speech_timestamps(load_audio(DATA / DEFAULT_CLIPS[1])))
        and modules == "[]"
    )


def test_unfused_recurrence_matches(synthetic):
    """The recurrence unrolled in graphs (the path for devices without MindSpore's LSTM kernel), on
    CPU."""
    audio = synthetic[0][19 * SR : 27 * SR]  # the end of the first silence and JFK
    unfused = SileroVADModel(fused=False, windows_per_call=128, steps_per_call=16)
    assert not unfused.fused
    assert np.abs(unfused(audio) - reference_probabilities(audio)).max() < TOLERANCE


def test_a_graph_that_ran_out_of_memory_runs_again(model):
    """A VAD graph whose run MindSpore could not allocate (here 16 PiB at once, beyond any machine)
    is a RuntimeMemoryError, and later calls run: MindSpore fails every later call of a jit that
    ran out of memory at the same shapes ("Invalid output number for flatten stub output nodes"),
    and a server loads its VAD once."""
    import mindspore as ms
    from mindspore import Tensor

    from whisperms.errors import RuntimeMemoryError
    from whisperms.vad.runner import Compiled

    def tiled(x):  # (4, 4) -> (2**26, 2**26); (1, 1) stays
        return ms.ops.softmax(ms.ops.tile(x, (x.shape[0] ** 12, x.shape[0] ** 12)), -1)

    large, small = Tensor(np.ones((4, 4), np.float32)), Tensor(np.ones((1, 1), np.float32))
    graph = Compiled(tiled, on_graph_thread=True)
    for x in (large, large, small, large, large):
        if x is small:
            assert graph(x).asnumpy().tolist() == [[1.0]]
            continue
        with pytest.raises(RuntimeMemoryError, match=r"^MindSpore could not allocate"):
            graph(x)
    # two requests' calls queued at once (a server's inputs are made ready on several threads):
    # the one behind the failure runs the new jit, not the failed one (another error)
    import time
    from concurrent.futures import ThreadPoolExecutor

    from whisperms import compute_thread

    held = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(compute_thread.run, held.wait, 60)  # the graph thread, held
        while not compute_thread._calls.empty():  # it has taken the holding call
            time.sleep(0.01)
        calls = [pool.submit(graph, large) for _ in range(2)]
        deadline = time.monotonic() + 30
        while compute_thread._calls.qsize() < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        held.set()
        assert busy.result(timeout=60)
        for call in calls:
            with pytest.raises(RuntimeMemoryError, match=r"^MindSpore could not allocate"):
                call.result(timeout=60)
    assert graph(small).asnumpy().tolist() == [[1.0]]
    # the model's graphs are these
    assert all(isinstance(g, Compiled) for g in (model._whole, model._encode, model._decode))


def test_speech_probabilities_and_edge_lengths(model):
    assert np.array_equal(
        speech_probabilities(np.zeros(1000, np.float32)), model(np.zeros(1000, np.float32))
    )
    for length in (0, 1, 511, 512, 513, 1024):
        audio = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.1
        ours = model(audio)
        assert ours.shape == (length // 512 + 1,)
        assert np.abs(ours - reference_probabilities(audio)).max() < TOLERANCE
    assert get_speech_timestamps(np.zeros(0, np.float32)) == fw_vad.get_speech_timestamps(
        np.zeros(0, np.float32)
    )
    with pytest.raises(AudioError, match="1-D"):
        get_speech_timestamps(np.zeros((2, 1600), np.float32))


def padded_samples(audio: np.ndarray) -> np.ndarray:
    """The whole of `audio` as faster-whisper pads it, in one copy: zeros to a whole number of
    windows (a full window more when it is one already), the last 64 samples zeroed."""
    samples = np.zeros((len(audio) // 512 + 1) * 512, np.float32)
    samples[: len(audio)] = audio
    samples[-64:] = 0.0
    return samples


def test_windows_are_faster_whispers():
    audio = np.arange(3 * 512 + 500, dtype=np.float32)
    windows = silero_windows(audio)
    assert windows.shape == (4, 576)
    assert np.array_equal(windows[0, :64], np.zeros(64)) and np.array_equal(
        windows[0, 64:], audio[:512]
    )
    assert np.array_equal(windows[2, :64], audio[1024 - 64 : 1024]) and np.array_equal(
        windows[2, 64:], audio[1024:1536]
    )
    # The last window: its own samples, zero padding, and its final 64 samples zeroed as
    # faster-whisper does.
    assert np.array_equal(windows[3, 64 : 64 + 448], audio[1536 : 1536 + 448])
    assert not windows[3, -64:].any()
    # A later call's windows (the runner builds one call's at a time): the same rows, zeros past the
    # end.
    later = windows_at(audio, 2, 3)
    assert np.array_equal(later[:2], windows[2:]) and not later[2].any()
    # built from the audio as given (no padded copy of it): the windows of the padded copy, at
    # every length around a window's edges (the last 64 samples zeroed fall on real audio when
    # fewer than 64 samples of padding follow it) and for every call's first window
    for length in (0, 1, 448, 449, 500, 511, 512, 513, 1023, 1024, 5 * 512 + 470):
        audio = np.arange(1, length + 1, dtype=np.float32)
        padded = padded_samples(audio).reshape(-1, 512)
        context = np.concatenate([np.zeros((1, 64), np.float32), padded[:-1, -64:]])
        expected = np.concatenate([context, padded], axis=1)
        assert np.array_equal(silero_windows(audio), expected), length
        for first in range(len(expected)):
            for count in (1, 2, 3):
                got = windows_at(audio, first, count)
                rows = expected[first : first + count]
                assert np.array_equal(got[: len(rows)], rows) and not got[len(rows) :].any()


@pytest.mark.parametrize(
    "n_in, n_out, stride, length",
    [
        (n_in, n_out, stride, length)
        for (n_in, n_out, stride), length in zip(ENCODER_CHANNELS, (N_FRAMES, 4, 2, 1))
    ]
    + [(5, 3, 1, 3), (5, 3, 2, 3), (2, 4, 2, 5)],
)
def test_unrolled_conv_is_a_padded_conv1d(n_in, n_out, stride, length):
    from mindspore import Tensor

    rng = np.random.default_rng(length * 10 + stride)
    conv = Conv(n_in, n_out, stride, length)
    weight = rng.standard_normal((n_out, n_in, 3)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    conv.weight.set_data(Tensor(weight))
    conv.bias.set_data(Tensor(bias))
    x = rng.standard_normal((3, length, n_in)).astype(np.float32)
    # channels-last here, channels-first there; then the ReLU
    expected = np.maximum(conv1d_reference(x.transpose(0, 2, 1), weight, bias, stride), 0)
    expected = expected.transpose(0, 2, 1)
    got = conv(Tensor(x)).asnumpy()
    assert got.shape == expected.shape == (3, (length - 1) // stride + 1, n_out)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# --- the timestamp state machine, driven by the same probabilities in both implementations
# --------------------------

OPTION_SETS = [
    {},
    {"threshold": 0.6, "neg_threshold": 0.2, "min_silence_duration_ms": 160, "speech_pad_ms": 30},
    {"max_speech_duration_s": 3, "min_silence_duration_ms": 100, "min_speech_duration_ms": 250},
    {
        "max_speech_duration_s": 1.5,
        "min_silence_duration_ms": 0,
        "speech_pad_ms": 0,
        "threshold": 0.3,
    },
    {"max_speech_duration_s": 30, "min_silence_duration_ms": 160},
    {"speech_pad_ms": 1000, "min_silence_duration_ms": 500, "neg_threshold": 0.45},
    # silences long enough to split at (> 98 ms) but too short to end speech
    {"max_speech_duration_s": 3},
    {
        "max_speech_duration_s": 5,
        "min_silence_duration_ms": 1000,
        "speech_pad_ms": 100,
        "neg_threshold": 0.3,
    },
]


def random_probabilities(rng, n):
    """Runs of speech-like, silence-like and in-between probabilities, as a VAD produces them."""
    out = []
    while len(out) < n:
        level = rng.choice([0.02, 0.4, 0.97])
        out.extend(np.clip(level + 0.1 * rng.standard_normal(rng.integers(1, 80)), 0, 1))
    return np.array(out[:n], np.float32)


@pytest.mark.parametrize("options", OPTION_SETS)
def test_state_machine_matches_faster_whisper(monkeypatch, options):
    """faster-whisper's get_speech_timestamps with its model replaced by fixed probabilities,
    against ours on the same probabilities: every branch (max-duration splits, short silences,
    padding overlaps) on many sequences."""
    rng = np.random.default_rng(len(str(options)))
    for trial in range(40):
        n_samples = int(rng.integers(1, 900)) * 512 + int(rng.integers(0, 512))
        probs = random_probabilities(rng, n_samples // 512 + 1)
        monkeypatch.setattr(fw_vad, "get_vad_model", lambda probs=probs: lambda audio: probs)
        expected = fw_vad.get_speech_timestamps(
            np.zeros(n_samples, np.float32), fw_vad.VadOptions(**options)
        )
        assert speech_timestamps(probs, n_samples, vad_options(options)) == expected, (
            trial,
            options,
        )


def test_options_through_get_speech_timestamps(synthetic):
    # JFK, noise, the second utterance over noise: one call of the model
    audio = synthetic[0][18 * SR : 50 * SR]
    options = {"max_speech_duration_s": 4, "min_silence_duration_ms": 160, "speech_pad_ms": 100}
    expected = fw_vad.get_speech_timestamps(audio, fw_vad.VadOptions(**options))
    assert get_speech_timestamps(audio, options) == expected
    assert get_speech_timestamps(audio, VadOptions(**options)) == expected
    assert get_speech_timestamps(audio, **options) == expected
    assert (
        get_speech_timestamps(
            audio, {"max_speech_duration_s": 4}, min_silence_duration_ms=160, speech_pad_ms=100
        )
        == expected
    )


# --- options
# --------------------------------------------------------------------------------------------------


def test_defaults_are_faster_whispers():
    ours, theirs = VadOptions(), fw_vad.VadOptions()
    assert OPTION_NAMES == tuple(vars(theirs))
    assert all(getattr(ours, name) == getattr(theirs, name) for name in OPTION_NAMES)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"treshold": 0.5}, "unknown VAD parameter 'treshold'"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
        ({"threshold": -0.1}, "threshold must be between 0 and 1"),
        ({"neg_threshold": 2}, "neg_threshold must be between 0 and 1"),
        (
            {"min_silence_duration_ms": -1},
            "min_silence_duration_ms must be a duration of 0 or more",
        ),
        ({"speech_pad_ms": -400}, "speech_pad_ms must be a duration"),
        ({"min_speech_duration_ms": float("inf")}, "min_speech_duration_ms must be a duration"),
        ({"max_speech_duration_s": -5}, "max_speech_duration_s must be positive"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"threshold": True}, "threshold must be a number"),
        ({"threshold": float("nan")}, "threshold must be a number"),
    ],
)
def test_bad_options_are_one_line_errors(bad, message):
    for attempt in (
        lambda: vad_options(bad),
        lambda: vad_options(None, **bad),
        lambda: get_speech_timestamps(np.zeros(512, np.float32), bad),
    ):
        with pytest.raises(OptionsError, match=message) as error:
            attempt()
        assert "\n" not in str(error.value)
    assert issubclass(OptionsError, ValueError)


def test_options_fold_and_parse():
    base = VadOptions(threshold=0.6)
    assert vad_options(base, speech_pad_ms=10) == VadOptions(threshold=0.6, speech_pad_ms=10)
    assert vad_options({"threshold": 0.6}) == base and vad_options(None) == VadOptions()
    assert parse_vad_parameters('{"threshold": 0.6, "neg_threshold": null}') == base
    assert parse_vad_parameters(
        "threshold=0.6, min_silence_duration_ms=500, max_speech_duration_s=inf"
    ) == VadOptions(threshold=0.6, min_silence_duration_ms=500)
    assert vad_options("speech_pad_ms=0") == VadOptions(speech_pad_ms=0)
    for text, message in (
        ("threshold", "not name=value"),
        ("threshold=abc", "must be a number"),
        ("{bad json", "not valid JSON"),
        ("[1]", "not name=value"),
        ("foo=1", "unknown VAD"),
        # the last one taken, silently, as JSON parsers and dict() do
        ("threshold=0.5, threshold=0.6", "'threshold' is given twice"),
        ('{"speech_pad_ms": 30, "speech_pad_ms": 30}', "'speech_pad_ms' is given twice"),
    ):
        with pytest.raises(OptionsError, match=message):
            parse_vad_parameters(text)
    with pytest.raises(OptionsError) as twice:
        parse_vad_parameters('{"threshold": 0.5, "threshold": 0.6}')
    assert str(twice.value) == "VAD parameter 'threshold' is given twice"  # not "not valid JSON"
    with pytest.raises(OptionsError, match="dict or VadOptions"):
        vad_options(0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.threshold = 0.1


# --- weights: converter and shipped file
# -----------------------------------------------------------------------------


def test_conversion_equals_the_shipped_file(tmp_path):
    out = convert(faster_whisper_onnx(), tmp_path / "vad.safetensors")
    converted, shipped = read_weights(out), read_weights(DEFAULT_WEIGHTS)
    assert sorted(converted) == sorted(shipped) == sorted(state_shapes())
    for name in shipped:
        assert converted[name].dtype == shipped[name].dtype == np.float32
        assert np.array_equal(converted[name], shipped[name]), name
    assert out.read_bytes() == DEFAULT_WEIGHTS.read_bytes()  # the writer is deterministic
    assert DEFAULT_WEIGHTS.stat().st_size < 1_300_000
    notice = (DEFAULT_WEIGHTS.parent / "SILERO_VAD_LICENSE.txt").read_text()
    assert "MIT License" in notice and "Copyright (c) 2020-present Silero Team" in notice


def test_shipped_file_reads_with_safetensors_and_fits_the_cells():
    from safetensors.numpy import load_file

    library = load_file(str(DEFAULT_WEIGHTS))
    ours = read_weights()
    assert all(np.array_equal(library[name], ours[name]) for name in ours) and sorted(
        library
    ) == sorted(ours)
    cells = {name: tuple(p.shape) for name, p in SileroVAD().parameters_and_names()}
    assert cells == state_shapes()


def test_converted_lstm_matches_onnx_gates():
    """ONNX keeps gates as (i, o, f, c) with one bias row of W and R biases; the file has torch's
    (i, f, g, o)."""
    model = onnx.load(str(faster_whisper_onnx()))
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    w = stored[lstm.input[1]][0]
    state = read_weights()
    h = 128
    assert np.array_equal(state["decoder.rnn.weight_ih"][h : 2 * h], w[2 * h : 3 * h])  # f
    assert np.array_equal(state["decoder.rnn.weight_ih"][3 * h :], w[h : 2 * h])  # o
    # g == c
    assert np.array_equal(
        state["decoder.rnn.bias_hh"][2 * h : 3 * h], stored[lstm.input[3]][0, 7 * h :]
    )


def edited_onnx(tmp_path, edit):
    model = onnx.load(str(faster_whisper_onnx()))
    edit(model)
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


def _set_attribute(model, op_type, index, name, value):
    node = [n for n in model.graph.node if n.op_type == op_type][index]
    attribute = next(a for a in node.attribute if a.name == name)
    attribute.ints[:] = value


def _reshape_initializer(model, name_part, shape):
    tensor = next(t for t in model.graph.initializer if name_part in t.name)
    array = np.zeros(shape, np.float32)
    tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda m: m.graph.initializer.append(
                onnx.numpy_helper.from_array(np.zeros(3, np.float32), "spare")
            ),
            "tensor spare is not used by the network",
        ),
        (
            lambda m: _reshape_initializer(m, "conv_layers.1.weight", (64, 128, 5)),
            r"tensor encoder.conv_layers.1.weight has shape \(64, 128, 5\), "
            r"expected \(64, 128, 3\)",
        ),
        (
            lambda m: _set_attribute(m, "Conv", 2, "strides", [1]),
            r"has strides=\[1\], expected \[2\]",
        ),
        (
            lambda m: m.graph.node.remove(next(n for n in m.graph.node if n.op_type == "Sigmoid")),
            "is Reshape, expected Sigmoid",
        ),
        (
            lambda m: (
                m.graph.input[0].type.tensor_type.shape.dim[1].__setattr__("dim_value", 512 + 32)
            ),
            "inputs",
        ),
    ],
)
def test_converter_is_strict(tmp_path, edit, message):
    path = edited_onnx(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        read_onnx(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_converter_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="ONNX file not found"):
        read_onnx(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX file|not the Silero VAD v6"):
        read_onnx(garbage)


def corrupt_copies(tmp_path):
    data = DEFAULT_WEIGHTS.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    flipped = bytearray(data)
    flipped[8 + header_length + 1000] ^= 0x40
    header = json.loads(data[8 : 8 + header_length])
    header["__metadata__"]["format"] = "something-else"
    other = json.dumps(header).encode()
    other += b" " * (-len(other) % 8)
    cases = {
        "truncated": (data[: len(data) // 2], "truncated or corrupted"),
        "flipped": (bytes(flipped), "corrupted VAD weight file"),
        "empty": (b"", "truncated or corrupted"),
        "format": (
            struct.pack("<Q", len(other)) + other + data[8 + header_length :],
            "not a whisperms Silero VAD",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        yield path, message


def test_missing_or_corrupt_weight_file_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="VAD weight file not found") as error:
        SileroVADModel(tmp_path / "absent.safetensors")
    assert "\n" not in str(error.value)
    for path, message in corrupt_copies(tmp_path):
        with pytest.raises(CheckpointError, match=message) as error:
            SileroVADModel(path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_weights_with_a_wrong_tensor_are_refused(tmp_path):
    state = read_weights()
    state["decoder.conv1d.bias"] = np.zeros(2, np.float32)
    with pytest.raises(
        CheckpointError, match=r"decoder.conv1d.bias has shape \(2,\), expected \(1,\)"
    ):
        write_weights(state, tmp_path / "x.safetensors")
    state = read_weights()
    state["extra"] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError, match="unexpected VAD tensor extra"):
        write_weights(state, tmp_path / "x.safetensors")


# --- chunks and the timestamp map on hand-built cases
# ----------------------------------------------------------------


def test_collect_chunks_joins_speech():
    audio = np.arange(20 * SR, dtype=np.float32)
    chunks = [
        {"start": SR, "end": 2 * SR},
        {"start": 5 * SR, "end": 7 * SR},
        {"start": 10 * SR, "end": 10 * SR + 8},
    ]
    pieces, meta = collect_chunks(audio, chunks)
    assert len(pieces) == 1
    joined = np.concatenate(
        [audio[SR : 2 * SR], audio[5 * SR : 7 * SR], audio[10 * SR : 10 * SR + 8]]
    )
    assert np.array_equal(pieces[0], joined)
    assert meta == [{"offset": 0.0, "duration": 3 + 8 / SR, "segments": chunks}]
    theirs = fw_vad.collect_chunks(audio, chunks)
    assert np.array_equal(theirs[0][0], pieces[0]) and theirs[1] == meta


def test_collect_chunks_in_pieces_of_at_most_max_duration():
    audio = np.random.default_rng(0).standard_normal(100 * SR).astype(np.float32)
    chunks = [
        {"start": s * SR, "end": e * SR}
        for s, e in ((0, 12), (13, 25), (26, 30), (31, 40), (50, 89))
    ]
    pieces, meta = collect_chunks(audio, chunks, max_duration=30)
    # 12+12+4 fits 30; 9 would not; 39 is too long alone
    assert [len(p) / SR for p in pieces] == [28, 9, 39]
    assert [m["offset"] for m in meta] == [0, 28, 37] and [m["duration"] for m in meta] == [
        28,
        9,
        39,
    ]
    assert [m["segments"] for m in meta] == [chunks[:3], chunks[3:4], chunks[4:]]
    assert np.array_equal(pieces[1], audio[31 * SR : 40 * SR])
    theirs_pieces, theirs_meta = fw_vad.collect_chunks(audio, chunks, max_duration=30)
    assert all(np.array_equal(a, b) for a, b in zip(theirs_pieces, pieces))
    assert [(m["offset"], m["duration"]) for m in theirs_meta] == [
        (m["offset"], m["duration"]) for m in meta
    ]
    # faster-whisper leaves the first chunk of later pieces out of "segments", and starts with an
    # empty piece when the first chunk alone is too long; this does neither.
    assert theirs_meta[1]["segments"] == []
    long_first = [{"start": 0, "end": 40 * SR}, {"start": 41 * SR, "end": 42 * SR}]
    assert len(fw_vad.collect_chunks(audio, long_first, max_duration=30)[0][0]) == 0
    pieces, meta = collect_chunks(audio, long_first, max_duration=30)
    assert [len(p) for p in pieces] == [40 * SR, SR] and [m["offset"] for m in meta] == [0, 40]


def test_collect_chunks_without_speech():
    pieces, meta = collect_chunks(np.ones(SR, np.float32), [])
    assert len(pieces) == 1 and pieces[0].size == 0 and pieces[0].dtype == np.float32
    assert meta == [{"offset": 0, "duration": 0, "segments": []}]


CHUNKS = [
    {"start": 2 * SR, "end": 5 * SR},
    {"start": 10 * SR, "end": 12 * SR},
    {"start": 20 * SR, "end": 21 * SR},
]


def test_timestamp_map_by_hand():
    ts_map = SpeechTimestampsMap(CHUNKS, SR)
    # speech-only timeline: [0, 3) from 2 s, [3, 5) from 10 s, [5, 6) from 20 s.
    assert ts_map.get_original_time(0.0) == 2.0
    assert ts_map.get_original_time(2.5) == 4.5
    # a start at the boundary belongs to the next chunk
    assert ts_map.get_original_time(3.0) == 10.0
    # an end at the boundary to the chunk it ends
    assert ts_map.get_original_time(3.0, is_end=True) == 5.0
    assert ts_map.get_original_time(4.99) == 11.99
    assert ts_map.get_original_time(5.5) == 20.5
    assert ts_map.get_original_time(9.0) == 24.0  # past the end: the last chunk
    assert ts_map.get_original_time(3.2, chunk_index=0) == 5.2
    assert ts_map.get_original_time(1.234567) == 3.23


def test_timestamp_map_matches_faster_whisper():
    ours, theirs = SpeechTimestampsMap(CHUNKS, SR), fw_vad.SpeechTimestampsMap(CHUNKS, SR)
    for time in np.round(np.arange(0, 7.02, 0.02), 2):
        for is_end in (False, True):
            assert ours.get_original_time(time, is_end=is_end) == theirs.get_original_time(
                time, is_end=is_end
            )
            assert ours.get_chunk_index(time, is_end) == theirs.get_chunk_index(time, is_end)
        for index in range(3):
            assert ours.get_original_time(time, index) == theirs.get_original_time(time, index)


def test_restore_speech_timestamps():
    from whisperms.transcribe import Segment

    def segment(start, end, words=None):
        return Segment(
            id=0,
            seek=0,
            start=start,
            end=end,
            text="",
            tokens=[],
            temperature=0.0,
            avg_logprob=0.0,
            compression_ratio=1.0,
            no_speech_prob=0.0,
            words=words,
        )

    words = [
        {"word": " a", "start": 2.5, "end": 2.9, "probability": 0.9},
        # middle 3.03: second chunk
        {"word": " b", "start": 2.96, "end": 3.1, "probability": 0.9},
        {"word": " c", "start": 5.2, "end": 5.6, "probability": 0.9},
    ]
    restored = list(
        restore_speech_timestamps(
            [segment(0.0, 3.0), segment(2.5, 5.6, words), {"start": 4.0, "end": 5.0}], CHUNKS
        )
    )
    assert (restored[0].start, restored[0].end) == (2.0, 5.0)
    assert [(w["start"], w["end"]) for w in restored[1].words] == [
        (4.5, 4.9),
        (9.96, 10.1),
        (20.2, 20.6),
    ]
    assert (restored[1].start, restored[1].end) == (4.5, 20.6)
    assert restored[2] == {"start": 11.0, "end": 12.0}
    assert list(restore_speech_timestamps([segment(1.0, 2.0)], [])) == [segment(1.0, 2.0)]
    # an end 0.2 s into the next chunk: there with faster-whisper's mapping; with a slack of 0.3 s
    # at the end of its start's chunk (as the batched mode maps it, the VAD's padding as slack)
    late = [{"start": 1.0, "end": 3.2}, {"start": 1.0, "end": 3.4}]
    assert list(restore_speech_timestamps(late, CHUNKS, end_slack=0.3)) == [
        {"start": 3.0, "end": 5.0},
        {"start": 3.0, "end": 10.4},
    ]
    assert list(restore_speech_timestamps([{"start": 1.0, "end": 3.2}], CHUNKS)) == [
        {"start": 3.0, "end": 10.2}
    ]
    # chunks that touch (a pause shorter than twice the padding, split between them): no audio was
    # cut out, the later chunk opens on speech, and the end stays where it is
    touching = [{"start": 0, "end": SR}, {"start": SR, "end": 2 * SR}]
    assert list(
        restore_speech_timestamps([{"start": 0.5, "end": 1.3}], touching, end_slack=0.4)
    ) == [{"start": 0.5, "end": 1.3}]
