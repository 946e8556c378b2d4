"""transcribe(vad_filter=True) and the CLI's --vad_filter / --vad_parameters (issue 17), on tiny.en,
against faster-whisper's sequential `vad_filter` on the same CTranslate2 weights, greedy
(beam_size=None here, 1 there).

The built file (`built`): four English dev clips (JFK 11 s, LibriSpeech 1988-24833-0001, CMU ARCTIC
a0003, Sense and Sensibility 0870) joined in that order with 20 s of digital silence, 40 s of white
noise (standard deviation 0.01, seeded) and 60 s of digital silence between them: 149.5 s, 29.5 s of
it the clips. Each clip's span is where its samples lie in the file, so a segment can be checked
against the clip it must come from.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from user_env import user_env

from whisperms.audio import SAMPLE_RATE, load_audio
from whisperms.errors import OptionsError, WhispermsWarning
from whisperms.transcribe import transcribe_options
from whisperms.vad import OPTION_NAMES, VadOptions

from cli_harness import cli_checks
from conftest import DATA, faster_whisper_model, read_manifest

faster_whisper = pytest.importorskip(
    "faster_whisper", reason="reference engine: pip install -e .[test]"
)
pytest.importorskip(
    "whisper_normalizer",
    reason="test dependency whisper_normalizer missing: pip install -e .[test]",
)
# wer.py, shared with the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from wer import wer  # noqa: E402

BUILT_CLIPS = (
    "jfk_inaugural_1961.flac",
    "librispeech-dev-clean_1988-24833-0001.flac",
    "cmuarctic_aew_arctic_a0003.wav",
    "librivox_sense-and-sensibility-ch01_0870.wav",
)
# seconds, after each clip but the last
BUILT_GAPS = (("silence", 20), ("noise", 40), ("silence", 60))
# a speech chunk reaches this far beyond the speech it holds
PAD = VadOptions().speech_pad_ms / 1000
# The default run's parity clips: two with long leading or trailing silence, a two-sentence one, a
# 2-s one.
PARITY_CLIPS = (
    "librispeech-test-clean_1995-1837-0001.wav",
    "ljspeech_LJ001-0001.wav",
    "librispeech-dev-clean_1988-24833-0001.flac",
    "cmuarctic_unknown-speaker_arctic_a0010.wav",
)
# issue 17: identical to faster-whisper's on at least this share of the English dev clips
PARITY_SHARE = 0.9
REFERENCES = {row["file"]: row["reference"] for row in read_manifest()}
ENGLISH = [row["file"] for row in read_manifest() if row["language"] == "en"]


@pytest.fixture(scope="module")
def fw(tiny_en_ct2_dir):
    return faster_whisper_model(tiny_en_ct2_dir)


def noise(seconds, seed=0):
    return (np.random.default_rng(seed).normal(size=round(seconds * SAMPLE_RATE)) * 0.01).astype(
        np.float32
    )


def silence(seconds):
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


@pytest.fixture(scope="module")
def built():
    """(audio, [(start, end) seconds of each clip in it]): see the module docstring."""
    pieces, spans, at = [], [], 0
    for i, name in enumerate(BUILT_CLIPS):
        clip = load_audio(str(DATA / name))
        pieces.append(clip)
        spans.append((at / SAMPLE_RATE, (at + len(clip)) / SAMPLE_RATE))
        at += len(clip)
        if i < len(BUILT_GAPS):
            kind, seconds = BUILT_GAPS[i]
            pieces.append(silence(seconds) if kind == "silence" else noise(seconds))
            at += len(pieces[-1])
    return np.concatenate(pieces), spans


def ours(model, audio, **options):
    """(start, end, text) of each segment with text: faster-whisper yields no empty segment,
    whisperms (as openai) keeps them cleared."""
    result = model.transcribe(audio, beam_size=None, **options)
    return [(s.start, s.end, s.text) for s in result.segments if s.text], result


def theirs(fw, audio, **options):
    segments, info = fw.transcribe(audio, beam_size=1, language="en", **options)
    segments = list(segments)
    return [(round(s.start, 3), round(s.end, 3), s.text) for s in segments], segments, info


def inside(span, start, end):
    return span[0] - PAD <= start <= end <= span[1] + PAD


def test_built_file(tiny_en_model, fw, built):
    """With vad_filter=True every segment and every word lies within one clip's span (widened by the
    VAD's padding), so none falls in a gap of silence or noise (without the VAD some do), the
    segments of each clip transcribe that clip (WER < 0.25 against its reference, where another
    clip's text scores near 1), the whole WER is no worse than without the VAD, and segments, words
    and info equal faster-whisper's with vad_filter=True."""
    audio, spans = built
    got, result = ours(tiny_en_model, audio, vad_filter=True, word_timestamps=True)
    expected, fw_segments, fw_info = theirs(fw, audio, vad_filter=True, word_timestamps=True)
    assert got == expected
    words = [(w["start"], w["end"], w["word"]) for s in result.segments for w in s.words]
    fw_words = [(w.start, w.end, w.word) for s in fw_segments for w in s.words]
    assert [w for _, _, w in words] == [w for _, _, w in fw_words]
    assert max(abs(a - b) for (a, _, _), (b, _, _) in zip(words, fw_words)) <= 0.02
    assert max(abs(a - b) for (_, a, _), (_, b, _) in zip(words, fw_words)) <= 0.02

    by_clip = [[] for _ in spans]
    for segment in result.segments:
        if not segment.text:
            continue
        home = [i for i, span in enumerate(spans) if inside(span, segment.start, segment.end)]
        assert len(home) == 1, (segment.start, segment.end, segment.text)
        assert all(inside(spans[home[0]], w["start"], w["end"]) for w in segment.words), (
            segment.words
        )
        by_clip[home[0]].append(segment.text)
    for name, texts in zip(BUILT_CLIPS, by_clip):
        assert texts and wer(REFERENCES[name], "".join(texts)) < 0.25, (name, texts)

    info = result.info
    assert info.duration == len(audio) / SAMPLE_RATE == fw_info.duration
    assert info.duration_after_vad == fw_info.duration_after_vad
    assert info.vad_options == VadOptions()
    # the gaps are gone, the clips' own pauses mostly kept
    speech = sum(end - start for start, end in spans)
    assert 0.9 * speech < info.duration_after_vad < speech + 2 * PAD * len(spans)

    references = [REFERENCES[name] for name in BUILT_CLIPS]
    plain, _ = ours(tiny_en_model, audio)
    reference = " ".join(references)
    assert wer(reference, "".join(t for _, _, t in got)) <= wer(
        reference, "".join(t for _, _, t in plain)
    )
    # Without the VAD the same check fails: segments start in the gaps (at 60 s and 120 s, window
    # starts).
    assert any(not any(inside(span, start, end) for span in spans) for start, end, _ in plain)


@pytest.mark.parametrize(
    "audio", [silence(30), noise(30), silence(0)], ids=["silence", "noise", "empty"]
)
def test_no_speech_no_segments(tiny_en_model, fw, audio):
    """30 s of digital silence, 30 s of white noise, an empty array: the VAD finds no speech, so
    nothing is decoded and there are no segments, as in faster-whisper."""
    _, result = ours(tiny_en_model, audio, vad_filter=True)
    assert result.segments == [] and result.text == ""
    assert (result.info.duration, result.info.duration_after_vad) == (len(audio) / SAMPLE_RATE, 0.0)
    assert theirs(fw, audio, vad_filter=True)[0] == []


def test_clip_timestamps_switch_the_vad_off(tiny_en_model, fw):
    """As in faster-whisper, vad_filter is ignored when clip_timestamps is given (here with a
    warning): the segments are those without it; the default clip_timestamps ("0" or none) keeps it
    on."""
    audio = np.concatenate([silence(5), load_audio(str(DATA / BUILT_CLIPS[0]))])
    with pytest.warns(
        WhispermsWarning, match="vad_filter is ignored when clip_timestamps is given"
    ):
        clipped, result = ours(tiny_en_model, audio, vad_filter=True, clip_timestamps="8.5,13")
    assert clipped == ours(tiny_en_model, audio, clip_timestamps="8.5,13")[0]
    assert clipped == theirs(fw, audio, vad_filter=True, clip_timestamps="8.5,13")[0]
    assert (
        result.info.vad_options is None and result.info.duration_after_vad == result.info.duration
    )
    for default in ("0", (), [0.0]):
        assert transcribe_options(vad_filter=True, clip_timestamps=default).vad_applies


def test_vad_options_are_checked_up_front():
    """vad_parameters are taken as VadOptions, a dict of its fields or "name=value,..."/JSON text,
    and a bad one is a one-line OptionsError naming it, before any model is involved; vad_filter is
    a bool."""
    assert transcribe_options().vad_parameters is None
    assert transcribe_options(vad_filter=True).vad_parameters == VadOptions()
    wanted = VadOptions(threshold=0.6, min_silence_duration_ms=500)
    for given in (
        wanted,
        {"threshold": 0.6, "min_silence_duration_ms": 500},
        "threshold=0.6,min_silence_duration_ms=500",
        '{"threshold": 0.6, "min_silence_duration_ms": 500}',
    ):
        assert transcribe_options(vad_filter=True, vad_parameters=given).vad_parameters == wanted
    bad = {
        "unknown key": (
            {"speech_pad": 10},
            f"vad_parameters: unknown VAD parameter 'speech_pad': use {', '.join(OPTION_NAMES)}",
        ),
        "negative": (
            "speech_pad_ms=-1",
            "vad_parameters: VAD parameter speech_pad_ms must be a duration of 0 or "
            "more milliseconds, got -1",
        ),
        "threshold": (
            {"threshold": 1.5},
            "vad_parameters: VAD parameter threshold must be between 0 and 1, got 1.5",
        ),
    }
    for parameters, message in bad.values():
        with pytest.raises(OptionsError) as error:
            transcribe_options(vad_filter=True, vad_parameters=parameters)
        assert str(error.value) == message
    with pytest.raises(OptionsError, match="^vad_filter must be True or False, got 'yes'$"):
        transcribe_options(vad_filter="yes")


def _same_as_faster_whisper(model, fw, name):
    audio = load_audio(str(DATA / name))
    return ours(model, audio, vad_filter=True)[0] == theirs(fw, audio, vad_filter=True)[0]


@pytest.mark.parametrize("name", PARITY_CLIPS)
def test_dev_clip_same_as_faster_whisper(tiny_en_model, fw, name):
    """Segments (times and text) identical to faster-whisper's with vad_filter=True."""
    assert _same_as_faster_whisper(tiny_en_model, fw, name)


@pytest.mark.slow
def test_every_english_dev_clip(tiny_en_model, fw):
    """Identical to faster-whisper's with vad_filter=True on at least PARITY_SHARE of the English
    dev clips."""
    different = [name for name in ENGLISH if not _same_as_faster_whisper(tiny_en_model, fw, name)]
    assert len(different) <= (1 - PARITY_SHARE) * len(ENGLISH), different


# --- the command line
# -----------------------------------------------------------------------------------------------

# 1.9 s and 1.8 s at 22.05 kHz
CLIP_A, CLIP_B = "ljspeech_LJ001-0002.wav", "ljspeech_LJ001-0008.wav"


def test_cli_vad_filter_writes_original_times(tiny_en_ct2_dir, tiny_en_model, tmp_path):
    """--vad_filter True on 25 s of silence, a clip, 20 s of noise, a clip: the JSON transcript and
    the segment lines printed while decoding both carry times on the file's timeline, equal to the
    Python API's with the same options: the first segment starts in the first clip, the last ends in
    the second, and every start and end lies in a clip (a segment may run from one clip into the
    next: the speech is decoded joined, as in faster-whisper)."""
    a, b = load_audio(str(DATA / CLIP_A)), load_audio(str(DATA / CLIP_B))
    audio = np.concatenate([silence(25), a, noise(20), b])
    spans = [(25, 25 + len(a) / SAMPLE_RATE), (45 + len(a) / SAMPLE_RATE, len(audio) / SAMPLE_RATE)]
    path = tmp_path / "gaps.wav"
    soundfile.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisperms",
            str(path),
            "--model",
            str(tiny_en_ct2_dir),
            "--vad_filter",
            "True",
            "--beam_size",
            "None",
            "--output_format",
            "json",
            "--output_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=user_env(),
    )
    assert proc.returncode == 0, proc.stderr
    written = [
        (s["start"], s["end"], s["text"])
        for s in json.loads((tmp_path / "gaps.json").read_text())["segments"]
    ]
    api = [
        (s.start, s.end, s.text)
        for s in tiny_en_model.transcribe(str(path), vad_filter=True).segments
    ]
    assert written == api and written
    assert inside(spans[0], written[0][0], written[0][0]) and inside(
        spans[1], written[-1][1], written[-1][1]
    )
    assert all(
        any(inside(span, t, t) for span in spans) for start, end, _ in written for t in (start, end)
    ), written
    assert "comparatively modern" in written[0][2] and "never been surpassed" in written[-1][2]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert printed == [f"[{clock(start)} --> {clock(end)}] {text}" for start, end, text in written]


def clock(seconds):
    """The CLI's segment-line time, mm:ss.mmm (under an hour)."""
    return f"{int(seconds // 60):02d}:{seconds % 60:06.3f}"


def test_cli_bad_vad_parameters_are_usage_errors(tmp_path):
    """A bad --vad_parameters (unknown key, negative duration, threshold 1.5, broken JSON) or
    --vad_filter value is one line and exit 2, before MindSpore is imported (one fresh interpreter
    runs every argument list)."""
    names = ", ".join(OPTION_NAMES)
    cases = {
        "speech_pad=100": f"--vad_parameters: unknown VAD parameter 'speech_pad': use {names}",
        "min_silence_duration_ms=-100": "--vad_parameters: VAD parameter min_silence_duration_ms "
        "must be a duration "
        "of 0 or more milliseconds, got -100",
        '{"threshold": 1.5}': "--vad_parameters: VAD parameter threshold must be between 0 and 1, "
        "got 1.5",
        '{"threshold": ': "--vad_parameters: VAD parameters are not valid JSON: Expecting value: "
        "line 1 column 14 "
        "(char 13)",
    }
    checks = [
        (
            ["missing.wav", "--vad_filter", "True", "--vad_parameters", text],
            2,
            [f"whisperms: error: {message}"],
        )
        for text, message in cases.items()
    ]
    checks.append(
        (
            ["missing.wav", "--vad_filter", "maybe"],
            2,
            [
                "whisperms: error: argument --vad_filter: expected True or False, got 'maybe' (see "
                "whisperms --help)"
            ],
        )
    )
    assert cli_checks(checks, cwd=tmp_path) == len(checks)
