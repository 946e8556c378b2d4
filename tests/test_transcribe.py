"""Long-form transcription: segment bookkeeping on real and synthetic long audio, WER vs
faster-whisper."""

import sys
from pathlib import Path

import numpy as np
import pytest

from whisperms.audio import SAMPLE_RATE, load_audio

from conftest import DATA, faster_whisper_model, read_manifest

faster_whisper = pytest.importorskip(
    "faster_whisper", reason="reference engine: pip install -e .[test]"
)
# wer.py, shared with the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from wer import normalize, wer  # noqa: E402

SILENCE_S = 1.5
WER_MARGIN = 0.01  # whisperms may be at most 1 point worse than faster-whisper on the same weights


@pytest.fixture(scope="module")
def synthetic_long():
    """~3.5 minutes: every English clip under 12 s, in manifest order, separated by 1.5 s of
    silence."""
    rows = [r for r in read_manifest() if r["language"] == "en" and float(r["duration_s"]) < 12]
    gap = np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32)
    audio = np.concatenate(
        [part for r in rows for part in (load_audio(str(DATA / r["file"])), gap)]
    )
    return audio, " ".join(r["reference"] for r in rows)


@pytest.fixture(scope="module")
def fw_tiny_en(tiny_en_ct2_dir):
    return faster_whisper_model(tiny_en_ct2_dir)


def faster_whisper_text(model, audio):
    segments, _ = model.transcribe(audio, beam_size=1, best_of=1, language="en", vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


def check_segments(result, duration):
    segments = [s for s in result.segments if s.text]
    assert segments
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    for a, b in zip(segments, segments[1:]):
        assert a.end <= b.start + 1e-6, (a, b)
    for s in segments:
        assert 0 <= s.start <= s.end <= duration + 1e-6, s
    assert [s.id for s in result.segments] == list(range(len(result.segments)))


def test_jfk_transcript(tiny_en_model):
    result = tiny_en_model.transcribe(str(DATA / "jfk_inaugural_1961.flac"))
    # every sample (176000), as faster-whisper reports it
    assert result.language == "en" and result.info.duration == 11.0
    assert normalize(result.text) == normalize(
        "And so my fellow Americans ask not what your country can do for "
        "you ask what you can do for your country"
    )
    check_segments(result, 11.0)
    as_dict = result.to_dict()
    assert set(as_dict) == {"text", "segments", "language"} and as_dict["segments"][0]["tokens"]


@pytest.mark.parametrize(
    "clip", ["librivox_shakespeare-sonnet-001.mp3", "librivox_shakespeare-sonnet-002.mp3"]
)
def test_real_clip_over_30s(tiny_en_model, fw_tiny_en, clip):
    row = next(r for r in read_manifest() if r["file"] == clip)
    audio = load_audio(str(DATA / clip))
    result = tiny_en_model.transcribe(audio)
    duration = len(audio) / SAMPLE_RATE
    check_segments(result, duration)
    assert result.segments[-1].end > 30  # more than one window was transcribed
    ours, theirs = (
        wer(row["reference"], result.text),
        wer(row["reference"], faster_whisper_text(fw_tiny_en, audio)),
    )
    print(f"{clip}: WER whisperms {ours:.3f}, faster-whisper {theirs:.3f}")
    assert ours <= theirs + WER_MARGIN


def test_synthetic_long_clip(tiny_en_model, fw_tiny_en, synthetic_long):
    audio, reference = synthetic_long
    duration = len(audio) / SAMPLE_RATE
    assert duration > 180
    result = tiny_en_model.transcribe(audio)
    check_segments(result, duration)
    assert result.segments[-1].end > duration - 20  # reached the end
    ours, theirs = (
        wer(reference, result.text),
        wer(reference, faster_whisper_text(fw_tiny_en, audio)),
    )
    print(f"synthetic {duration:.0f} s: WER whisperms {ours:.3f}, faster-whisper {theirs:.3f}")
    assert ours <= theirs + WER_MARGIN
    # no text repeated at window boundaries: no 6-word sequence appears twice unless the reference
    # has it twice
    words = normalize(result.text).split()
    grams = [tuple(words[i : i + 6]) for i in range(len(words) - 5)]
    ref_words = normalize(reference).split()
    ref_grams = {tuple(ref_words[i : i + 6]) for i in range(len(ref_words) - 5)}
    repeated = {g for g in grams if grams.count(g) > 1 and g not in ref_grams}
    assert not repeated, repeated


def test_german_with_base(base_model, base_ct2_dir):
    """The dev set's one real clip over 60 s (68-s German): language detection inside transcribe,
    and WER vs faster-whisper on the same weights (the reference is forced-alignment text, the same
    for both)."""
    clip = "librivox_de_simplicissimus-titlepage.mp3"
    row = next(r for r in read_manifest() if r["file"] == clip)
    audio = load_audio(str(DATA / clip))
    result = base_model.transcribe(audio)
    assert result.language == "de" and result.info.language_probability > 0.5
    check_segments(result, 68.1)
    fw = faster_whisper_model(base_ct2_dir)
    segments, _ = fw.transcribe(audio, beam_size=1, best_of=1, vad_filter=False)
    theirs = " ".join(s.text.strip() for s in segments)
    ours_wer, theirs_wer = (
        wer(row["reference"], result.text, "de"),
        wer(row["reference"], theirs, "de"),
    )
    print(f"{clip}: WER whisperms {ours_wer:.3f}, faster-whisper {theirs_wer:.3f}")
    assert ours_wer <= theirs_wer + WER_MARGIN
    words = set(normalize(result.text, "de").split())
    assert {"grimmelshausen", "abenteuerliche", "wahrheit"} <= words, result.text


def speech_and_noise(noise_seconds, seed, *clips):
    """The clips in order, joined by `noise_seconds` of white noise (standard deviation 0.02,
    seeded)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, clip in enumerate(clips):
        if i:
            parts.append(
                (rng.normal(size=int(noise_seconds * SAMPLE_RATE)) * 0.02).astype(np.float32)
            )
        parts.append(load_audio(str(DATA / clip)))
    return np.concatenate(parts)


def test_hallucination_silence_threshold_skips_a_hallucination(tiny_en_model, fw_tiny_en):
    """JFK, 8 s of noise, a 2-s clip, 8 s of noise, JFK again (40 s): unguarded, tiny.en
    hallucinates in the second noise ("You can do for your country." twice, "Thank you."), as
    faster-whisper does; with hallucination_silence_threshold=2 both skip the noise around it and
    transcribe the last JFK instead: the same segments as faster-whisper's with the same option, and
    different from the unguarded ones."""
    audio = speech_and_noise(
        8, 0, "jfk_inaugural_1961.flac", "ljspeech_LJ001-0002.wav", "jfk_inaugural_1961.flac"
    )

    def both(**options):
        ours = tiny_en_model.transcribe(audio, word_timestamps=True, temperature=0.0, **options)
        segments, _ = fw_tiny_en.transcribe(
            audio,
            word_timestamps=True,
            temperature=0.0,
            beam_size=1,
            language="en",
            vad_filter=False,
            **options,
        )
        theirs = [(round(s.start, 2), round(s.end, 2), s.text) for s in segments]
        assert [(round(s.start, 2), round(s.end, 2), s.text) for s in ours.segments] == theirs
        return ours

    plain, guarded = both(), both(hallucination_silence_threshold=2.0)
    assert [s.text for s in plain.segments].count(" You can do for your country.") == 2
    assert "You can do" not in guarded.text and "Thank you" not in guarded.text
    assert guarded.text.count("ask what you can do for your country") == 2  # both speeches kept
    check_segments(guarded, len(audio) / SAMPLE_RATE)
