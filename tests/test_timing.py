"""Word timestamps: DTW and median filter on hand-built inputs, then real clips vs faster-whisper's
words."""

import numpy as np
import pytest

from whisperms.timing import WordTiming, dtw, median_filter, merge_punctuations

from conftest import DATA, faster_whisper_model, readme_claim

# README: mean |start/end diff| vs faster-whisper on the same weights, in seconds, printed to the
# millisecond; the margin is that rounding (a claim of 0.001 s holds below 0.0015 s).
_JFK_CLAIM, _LIBRISPEECH_CLAIM = readme_claim(
    r"mean \|start/end diff\| ([\d.]+) s on JFK and ([\d.]+) s on two LibriSpeech clips"
)
ROUNDING = 0.0005


def test_median_filter_reflects_at_edges():
    x = np.array([[1.0, 9.0, 2.0, 8.0, 3.0]])
    np.testing.assert_array_equal(median_filter(x, 3), [[9.0, 2.0, 8.0, 3.0, 8.0]])
    # too short: unchanged, as openai
    assert median_filter(np.array([[1.0]]), 7).tolist() == [[1.0]]


def reference_dtw(x):
    """openai's dtw_cpu + backtrace, transcribed literally (loops)."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1))
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    i, j = n, m
    trace[0, :], trace[:, 0] = 2, 1
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        if trace[i, j] == 0:
            i, j = i - 1, j - 1
        elif trace[i, j] == 1:
            i -= 1
        else:
            j -= 1
    return np.array(path[::-1]).T


@pytest.mark.parametrize("shape, seed", [((5, 20), 0), ((12, 60), 1), ((1, 7), 2), ((7, 7), 3)])
def test_dtw_equals_openai_loops(shape, seed):
    x = np.random.default_rng(seed).normal(size=shape)
    np.testing.assert_array_equal(dtw(x), reference_dtw(x))
    # many equal costs: tie-breaking matters
    ties = np.round(np.random.default_rng(seed).uniform(size=shape), 1)
    np.testing.assert_array_equal(dtw(ties), reference_dtw(ties))


def test_merge_punctuations():
    words = [
        WordTiming(w, [i], i, i + 1, 1.0) for i, w in enumerate([' "', "Hello", ",", " world", "."])
    ]
    merge_punctuations(words, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    assert [w.word for w in words] == ["", ' "Hello,', "", " world.", ""]
    assert words[1].tokens == [0, 1, 2]


@pytest.mark.parametrize(
    "clip, claim",
    [
        ("jfk_inaugural_1961.flac", _JFK_CLAIM),
        ("librispeech-dev-clean_1988-24833-0001.flac", _LIBRISPEECH_CLAIM),
        ("librispeech-test-clean_1995-1837-0001.wav", _LIBRISPEECH_CLAIM),
    ],
)
def test_words_match_faster_whisper(tiny_en_model, tiny_en_ct2_dir, clip, claim):
    pytest.importorskip("faster_whisper")
    fw = faster_whisper_model(tiny_en_ct2_dir)
    result = tiny_en_model.transcribe(
        str(DATA / clip), word_timestamps=True, beam_size=5, temperature=0.0
    )
    segments, _ = fw.transcribe(
        str(DATA / clip),
        word_timestamps=True,
        beam_size=5,
        temperature=0.0,
        language="en",
        vad_filter=False,
    )
    theirs = [w for s in segments for w in s.words]
    ours = [w for s in result.segments for w in s.words]
    previous_end = 0.0
    for segment in result.segments:
        for w in segment.words:
            assert segment.start - 1e-6 <= w["start"] <= w["end"] <= segment.end + 1e-6, (
                segment,
                w,
            )
            assert w["start"] >= previous_end - 1e-6
            previous_end = w["end"]
    assert [w["word"].strip() for w in ours] == [w.word.strip() for w in theirs]
    diffs = [abs(a["start"] - b.start) for a, b in zip(ours, theirs)] + [
        abs(a["end"] - b.end) for a, b in zip(ours, theirs)
    ]
    print(
        f"{clip}: {len(ours)} words, mean |diff| {np.mean(diffs):.5f} s, max {np.max(diffs):.3f} s"
    )
    assert np.mean(diffs) < claim + ROUNDING


def test_a_window_of_a_few_frames_gives_no_negative_times(tiny_en_model, tmp_path):
    """25 ms of speech: the alignment has one time column, and its path ended at index -1 (as
    openai's does): words and the segment at -0.02 s, which the CLI's printing refused with a
    traceback and the writers wrote as they were."""
    from whisperms.audio import SAMPLE_RATE, load_audio

    audio = load_audio(str(DATA / "jfk_inaugural_1961.flac"))
    start = round(1.5 * SAMPLE_RATE)
    short = audio[start : start + SAMPLE_RATE // 40]
    result = tiny_en_model.transcribe(short, word_timestamps=True, temperature=0.0)
    assert result.segments
    for segment in result.segments:
        assert 0 <= segment.start <= segment.end
        assert all(0 <= w["start"] <= w["end"] for w in segment.words)


def test_a_window_of_one_frame_is_timed(tiny_en_model):
    """Text in a window of one mel frame (10-20 ms: a short input, or the last window of a file, if
    the model writes text there): the alignment has no time column at all, and its softmax failed
    with NumPy's "zero-size array" ValueError after the whole decode. openai's path then puts
    every word at the window's start, as this does. (tiny.en writes no text for the one-frame
    inputs tried, so a real window's text is timed against one frame of its audio.)"""
    from whisperms.audio import log_mel_spectrogram, pad_or_trim
    from whisperms.decoding import build_tokenizer
    from whisperms.timing import add_word_timestamps

    clip = DATA / "ljspeech_LJ001-0002.wav"
    segments = tiny_en_model.transcribe(str(clip), temperature=0.0).segments
    assert [s.text for s in segments] == [" in being comparatively modern."]
    mel = pad_or_trim(log_mel_spectrogram(str(clip)), 3000)
    add_word_timestamps(
        segments=segments,
        model=tiny_en_model,
        tokenizer=build_tokenizer(tiny_en_model, "en", "transcribe"),
        audio_features=tiny_en_model.inference.embed_audio(mel[None]),
        num_frames=1,
        last_speech_timestamp=0.0,
    )
    words = segments[0].words
    assert [w["word"] for w in words] == [" in", " being", " comparatively", " modern."]
    assert all(w["start"] == w["end"] == 0 for w in words)


def test_a_window_without_words_seeks_to_its_segment_end_as_faster_whisper(
    tiny_en_model, tiny_en_ct2_dir
):
    """Every text token suppressed, and the timestamps before 1.00 (the latest a window may open
    with): each window decodes <|1.00|> alone, then the end of text, a segment without words (as
    music can decode). The next window starts at that segment's end, as openai's and
    faster-whisper's get_end fall back to it when there are no words: 8 s of audio in 8 windows.
    whisperms moved on to the window's end instead (one window). faster-whisper drops segments
    without text, so its windows are counted as it encodes them."""
    from whisperms.audio import load_audio
    from whisperms.decoding import build_tokenizer

    audio = load_audio(str(DATA / "jfk_inaugural_1961.flac"))[: 8 * 16000]
    tokenizer = build_tokenizer(tiny_en_model, "en", "transcribe")
    begin = tokenizer.timestamp_begin
    options = dict(word_timestamps=True, temperature=0.0, beam_size=5)
    options["suppress_tokens"] = list(range(tokenizer.eot)) + list(range(begin, begin + 50))
    ours = tiny_en_model.transcribe(audio, **options).segments
    fw = faster_whisper_model(tiny_en_ct2_dir)
    encoded = []
    encode = fw.encode
    fw.encode = lambda features: encoded.append(len(encoded)) or encode(features)
    theirs, _ = fw.transcribe(audio, language="en", **options)
    assert list(theirs) == [] and len(encoded) == 8
    assert [(s.seek, s.start, s.end, s.text) for s in ours] == [
        (100 * i, float(i), float(i + 1), "") for i in range(8)
    ]
