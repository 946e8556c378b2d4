"""Writers: exact text of every format, hand-derived from openai/whisper's `whisper/utils.py`
semantics, and the atomic write (whole file or nothing, earlier output untouched on failure)."""

import copy
import io
import json
import os

import pytest

from whisperms.errors import OptionsError
from whisperms.writers import (
    WriteJSON,
    WriteSRT,
    WriteTSV,
    WriteTXT,
    WriteVTT,
    format_timestamp,
    get_writer,
)


def _segment(id, start, end, text, words=None):
    segment = {
        "id": id,
        "seek": int(start * 100) // 3000 * 3000,
        "start": start,
        "end": end,
        "text": text,
        "tokens": [50364, 2425 + id, 50489],
        "temperature": 0.0,
        "avg_logprob": -0.21,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.01,
    }
    if words is not None:
        segment["words"] = [
            {"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words
        ]
    return segment


# Segment-level result: "-->" and a tab to be escaped, VTT hours only past one hour, non-ASCII text.
RESULT = {
    "text": " Hello world. This --> that, said the\tteacher. Past the hour. Ça va? 日本語も。",
    "language": "en",
    "segments": [
        _segment(0, 0.0, 2.5, " Hello world."),
        _segment(1, 2.5, 5.76, " This --> that, said the\tteacher."),
        _segment(2, 3599.5, 3601.25, " Past the hour."),
        _segment(3, 3725.042, 3730.0, " Ça va? 日本語も。"),
    ],
}

# Word-level result: a pause of 5.4 s between the two segments.
FOX = [
    (" The", 10.0, 10.2),
    (" quick", 10.2, 10.5),
    (" brown", 10.5, 10.9),
    (" fox", 11.0, 11.3),
    (" jumps", 11.3, 11.7),
    (" over", 11.7, 12.0),
    (" the", 12.0, 12.1),
    (" lazy", 12.1, 12.6),
    (" dog.", 12.6, 14.2),
]
SLEPT = [(" Then", 18.0, 18.4), (" it", 18.4, 18.6), (" slept.", 18.6, 19.5)]
RESULT_WORDS = {
    "text": " The quick brown fox jumps over the lazy dog. Then it slept.",
    "language": "en",
    "segments": [
        _segment(0, 10.0, 14.2, " The quick brown fox jumps over the lazy dog.", FOX),
        _segment(1, 18.0, 19.5, " Then it slept.", SLEPT),
    ],
}

# One segment whose words leave a gap (1.6 -> 2.0) for highlight_words.
RESULT_HI = {
    "text": " Hi there, friend.",
    "language": "en",
    "segments": [
        _segment(
            0,
            1.0,
            2.5,
            " Hi there, friend.",
            [(" Hi", 1.0, 1.2), (" there,", 1.2, 1.6), (" friend.", 2.0, 2.5)],
        )
    ],
}

EMPTY = {"text": "", "language": "en", "segments": []}


def render(writer_cls, result, options=None, **kwargs):
    buffer = io.StringIO()
    writer_cls(".").write_result(result, file=buffer, options=options, **kwargs)
    return buffer.getvalue()


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- format_timestamp


@pytest.mark.parametrize(
    "seconds, hours, marker, expected",
    [
        (0, False, ".", "00:00.000"),
        (0, True, ".", "00:00:00.000"),
        (0, True, ",", "00:00:00,000"),
        (59.999, False, ".", "00:59.999"),
        (59.9996, False, ".", "01:00.000"),  # rounds up into the next minute
        (
            3599.9996,
            False,
            ".",
            "01:00:00.000",
        ),  # ... and into the first hour: hours appear unasked
        (3661.5, False, ".", "01:01:01.500"),
        (3725.042, True, ",", "01:02:05,042"),
        (360000.0, False, ".", "100:00:00.000"),  # hours are not capped at two digits
        (0.0625, False, ".", "00:00.062"),  # exactly 62.5 ms: Python round, ties to even
        (0.1875, False, ".", "00:00.188"),  # exactly 187.5 ms: ties to even, upwards
        (1.0004, False, ".", "00:01.000"),
        (1.0006, False, ".", "00:01.001"),
    ],
)
def test_format_timestamp(seconds, hours, marker, expected):
    assert format_timestamp(seconds, always_include_hours=hours, decimal_marker=marker) == expected


def test_format_timestamp_rejects_negative():
    with pytest.raises(AssertionError):
        format_timestamp(-0.001)


# ---------------------------------------------------------------- segment-level formats


def test_txt():
    assert render(WriteTXT, RESULT) == (
        "Hello world.\nThis --> that, said the\tteacher.\nPast the hour.\nÇa va? 日本語も。\n"
    )


def test_vtt():
    assert render(WriteVTT, RESULT) == (
        "WEBVTT\n\n"
        "00:00.000 --> 00:02.500\nHello world.\n\n"
        "00:02.500 --> 00:05.760\nThis -> that, said the\tteacher.\n\n"
        "59:59.500 --> 01:00:01.250\nPast the hour.\n\n"
        "01:02:05.042 --> 01:02:10.000\nÇa va? 日本語も。\n\n"
    )


def test_srt():
    assert render(WriteSRT, RESULT) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n"
        "2\n00:00:02,500 --> 00:00:05,760\nThis -> that, said the\tteacher.\n\n"
        "3\n00:59:59,500 --> 01:00:01,250\nPast the hour.\n\n"
        "4\n01:02:05,042 --> 01:02:10,000\nÇa va? 日本語も。\n\n"
    )


def test_tsv_integer_milliseconds():
    assert render(WriteTSV, RESULT) == (
        "start\tend\ttext\n"
        "0\t2500\tHello world.\n"
        "2500\t5760\tThis --> that, said the teacher.\n"
        "3599500\t3601250\tPast the hour.\n"
        "3725042\t3730000\tÇa va? 日本語も。\n"
    )


def test_empty_result():
    assert render(WriteTXT, EMPTY) == ""
    assert render(WriteVTT, EMPTY) == "WEBVTT\n\n"
    assert render(WriteSRT, EMPTY) == ""
    assert render(WriteTSV, EMPTY) == "start\tend\ttext\n"


def test_json_round_trip_keeps_non_ascii(tmp_path):
    path = WriteJSON(str(tmp_path))(RESULT, "/audio/clip.wav")
    assert path == str(tmp_path / "clip.json")
    raw = read(path)
    assert "Ça va? 日本語も。" in raw and "\\u" not in raw
    assert json.loads(raw) == RESULT


def test_a_cleared_first_segment_before_segments_without_words():
    """An empty segment is cleared to words [] with or without word timestamps (as openai clears
    it); where it came first and word timestamps were off, the subtitle writers took the word path
    from it and failed on the next segment (KeyError: a CLI traceback, a server's 500). Each segment
    is a cue, as when the empty one is not first."""
    cleared = {**_segment(0, 0.0, 0.0, ""), "tokens": [], "words": []}
    result = {
        "text": " Hello world.",
        "segments": [cleared, _segment(1, 0.0, 2.5, " Hello world.")],
    }
    assert render(WriteSRT, result) == (
        "1\n00:00:00,000 --> 00:00:00,000\n\n\n2\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n"
    )
    assert render(WriteVTT, result) == (
        "WEBVTT\n\n00:00.000 --> 00:00.000\n\n\n00:00.000 --> 00:02.500\nHello world.\n\n"
    )
    # with word timestamps every segment has words: the word path, as before
    worded = {**result, "segments": [cleared, _segment(1, 0.0, 2.5, " Hi.", [(" Hi.", 0.2, 0.9)])]}
    assert render(WriteSRT, worded) == "1\n00:00:00,200 --> 00:00:00,900\nHi.\n\n"
    # words None, as a faster-whisper segment has them without word timestamps: no words
    nones = {**result, "segments": [{**_segment(1, 0.0, 2.5, " Hello world."), "words": None}]}
    assert render(WriteSRT, nones) == "1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n"


def test_word_options_ignored_without_words():
    """Line options only act on word timings; segment-level results keep one cue per segment."""
    wrapped = render(WriteVTT, RESULT, max_line_width=5, max_line_count=1, highlight_words=True)
    assert wrapped == render(WriteVTT, RESULT)


# ---------------------------------------------------------------- word-level subtitles


def test_words_default_one_cue_per_segment():
    assert render(WriteVTT, RESULT_WORDS) == (
        "WEBVTT\n\n"
        "00:10.000 --> 00:14.200\nThe quick brown fox jumps over the lazy dog.\n\n"
        "00:18.000 --> 00:19.500\nThen it slept.\n\n"
    )


def test_line_width_and_count_reflow_and_break_at_long_pause():
    # 20 chars a line, 2 lines a cue: "dog." opens a third line -> new cue; the 5.4-s pause -> new
    # cue.
    expected = (
        "WEBVTT\n\n"
        "00:10.000 --> 00:12.600\nThe quick brown fox\njumps over the lazy\n\n"
        "00:12.600 --> 00:14.200\ndog.\n\n"
        "00:18.000 --> 00:19.500\nThen it slept.\n\n"
    )
    assert render(WriteVTT, RESULT_WORDS, max_line_width=20, max_line_count=2) == expected
    assert render(WriteVTT, RESULT_WORDS, {"max_line_width": 20, "max_line_count": 2}) == expected


def test_line_width_alone_wraps_lines_but_keeps_segments():
    assert render(WriteSRT, RESULT_WORDS, max_line_width=20) == (
        "1\n00:00:10,000 --> 00:00:14,200\nThe quick brown fox\njumps over the lazy\ndog.\n\n"
        "2\n00:00:18,000 --> 00:00:19,500\nThen it slept.\n\n"
    )


def test_max_words_per_line():
    assert render(WriteSRT, RESULT_WORDS, max_words_per_line=4) == (
        "1\n00:00:10,000 --> 00:00:11,300\nThe quick brown fox\n\n"
        "2\n00:00:11,300 --> 00:00:12,600\njumps over the lazy\n\n"
        "3\n00:00:12,600 --> 00:00:14,200\ndog.\n\n"
        "4\n00:00:18,000 --> 00:00:19,500\nThen it slept.\n\n"
    )


def test_max_words_per_line_has_no_effect_with_width_and_count():
    """openai: once both max_line_width and max_line_count are set, words are re-flowed and the word
    limit is moot."""
    assert render(
        WriteVTT, RESULT_WORDS, max_line_width=20, max_line_count=2, max_words_per_line=4
    ) == render(WriteVTT, RESULT_WORDS, max_line_width=20, max_line_count=2)


def test_highlight_words_underlines_each_word_and_fills_gaps():
    expected = (
        "WEBVTT\n\n"
        "00:01.000 --> 00:01.200\n<u>Hi</u> there,\nfriend.\n\n"
        "00:01.200 --> 00:01.600\nHi <u>there,</u>\nfriend.\n\n"
        "00:01.600 --> 00:02.000\nHi there,\nfriend.\n\n"
        "00:02.000 --> 00:02.500\nHi there,\n<u>friend.</u>\n\n"
    )
    assert (
        render(WriteVTT, RESULT_HI, highlight_words=True, max_line_width=10, max_line_count=2)
        == expected
    )
    options = {
        "highlight_words": True,
        "max_line_width": 10,
        "max_line_count": 2,
        "max_words_per_line": None,
    }
    assert render(WriteVTT, RESULT_HI, options) == expected


def test_highlight_words_srt():
    assert render(WriteSRT, RESULT_HI, highlight_words=True) == (
        "1\n00:00:01,000 --> 00:00:01,200\n<u>Hi</u> there, friend.\n\n"
        "2\n00:00:01,200 --> 00:00:01,600\nHi <u>there,</u> friend.\n\n"
        "3\n00:00:01,600 --> 00:00:02,000\nHi there, friend.\n\n"
        "4\n00:00:02,000 --> 00:00:02,500\nHi there, <u>friend.</u>\n\n"
    )


def test_word_timings_are_not_mutated():
    before = copy.deepcopy(RESULT_WORDS)
    render(WriteVTT, RESULT_WORDS, max_line_width=20, max_line_count=2, highlight_words=True)
    assert RESULT_WORDS == before


# ---------------------------------------------------------------- files, get_writer


def test_writer_call_writes_basename_file_with_kwargs(tmp_path):
    writer = get_writer("srt", str(tmp_path))
    path = writer(RESULT_WORDS, os.path.join("some", "dir", "talk.take2.mp3"), max_words_per_line=4)
    assert path == str(tmp_path / "talk.take2.srt")
    assert read(path) == render(WriteSRT, RESULT_WORDS, max_words_per_line=4)
    assert os.listdir(tmp_path) == ["talk.take2.srt"]


def test_all_writes_five_files(tmp_path):
    paths = get_writer("all", str(tmp_path))(
        RESULT, "/data/meeting.wav", {"highlight_words": False}
    )
    names = ["meeting.txt", "meeting.vtt", "meeting.srt", "meeting.tsv", "meeting.json"]
    assert paths == [str(tmp_path / n) for n in names]
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    assert read(tmp_path / "meeting.txt") == render(WriteTXT, RESULT)
    assert read(tmp_path / "meeting.vtt") == render(WriteVTT, RESULT)
    assert read(tmp_path / "meeting.srt") == render(WriteSRT, RESULT)
    assert read(tmp_path / "meeting.tsv") == render(WriteTSV, RESULT)
    assert json.loads(read(tmp_path / "meeting.json")) == RESULT


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError) as info:
        get_writer("docx", str(tmp_path))
    assert isinstance(info.value, OptionsError)
    for name in ("txt", "vtt", "srt", "tsv", "json", "all", "docx"):
        assert name in str(info.value)


def test_new_file_mode_follows_umask(tmp_path):
    mask = os.umask(0o027)
    try:
        path = WriteTXT(str(tmp_path))(RESULT, "a.wav")
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_existing_file_replaced_keeps_its_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old\n", encoding="utf-8")
    os.chmod(target, 0o604)
    WriteTXT(str(tmp_path))(RESULT, "a.wav")
    assert read(target) == render(WriteTXT, RESULT)
    assert os.stat(target).st_mode & 0o777 == 0o604


# ---------------------------------------------------------------- atomicity


def broken_result():
    """Two good segments, then one whose text is not a str: the writers fail after writing some
    lines."""
    result = copy.deepcopy(RESULT)
    result["segments"][2]["text"] = None
    return result


@pytest.mark.parametrize("writer_cls", [WriteTXT, WriteVTT, WriteSRT, WriteTSV])
def test_failure_leaves_no_file(tmp_path, writer_cls):
    with pytest.raises(AttributeError):
        writer_cls(str(tmp_path))(broken_result(), "clip.wav")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("writer_cls", [WriteTXT, WriteVTT, WriteSRT, WriteTSV])
def test_failure_leaves_earlier_output_untouched(tmp_path, writer_cls):
    target = tmp_path / f"clip.{writer_cls.extension}"
    target.write_text("earlier output\n", encoding="utf-8")
    with pytest.raises(AttributeError):
        writer_cls(str(tmp_path))(broken_result(), "clip.wav")
    assert read(target) == "earlier output\n"
    assert os.listdir(tmp_path) == [target.name]


def test_json_unserialisable_value_leaves_nothing(tmp_path):
    result = copy.deepcopy(RESULT)
    result["segments"][3]["tokens"] = object()
    with pytest.raises(TypeError):
        WriteJSON(str(tmp_path))(result, "clip.wav")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_after_partial_write(tmp_path, monkeypatch, error):
    target = tmp_path / "clip.vtt"
    target.write_text("WEBVTT\n\nold\n", encoding="utf-8")
    seen = {}

    def write_then_fail(self, result, file, options=None, **kwargs):
        file.write("WEBVTT\n\n00:00.000 --> 00:02.500\nHello")
        file.flush()
        seen["partial"] = file.name
        assert os.path.basename(file.name).startswith(".") and file.name.endswith(".partial")
        assert os.path.dirname(file.name) == str(tmp_path)
        raise error("disk on fire")

    monkeypatch.setattr(WriteVTT, "write_result", write_then_fail)
    with pytest.raises(error):
        WriteVTT(str(tmp_path))(RESULT, "clip.wav")
    assert not os.path.exists(seen["partial"])
    assert read(target) == "WEBVTT\n\nold\n"
    assert os.listdir(tmp_path) == ["clip.vtt"]


def test_all_stops_at_first_failing_format(tmp_path):
    """Each file is atomic on its own: formats written before the failure stay, the failing one
    leaves nothing."""
    result = copy.deepcopy(RESULT)
    result["language"] = {1, 2}  # only JSON (written last) cannot serialise a set
    with pytest.raises(TypeError):
        get_writer("all", str(tmp_path))(result, "clip.wav")
    assert sorted(os.listdir(tmp_path)) == ["clip.srt", "clip.tsv", "clip.txt", "clip.vtt"]


def test_a_read_only_transcript_is_refused_before_decoding(tmp_path):
    """A transcript is written whole and put in place (os.replace), which a read-only file does not
    stop: a user's write-protected talk.txt was replaced. openai's writers fail on it and keep it;
    whisperms now refuses it before decoding, in one line (a file no one may write, root too)."""
    from whisperms.errors import OutputError
    from whisperms.output_files import check_targets

    (tmp_path / "talk.txt").write_text("kept\n")
    (tmp_path / "talk.txt").chmod(0o444)
    check_targets("srt", str(tmp_path), "talk.wav")
    with pytest.raises(OutputError) as error:
        check_targets("all", str(tmp_path), "talk.wav")
    assert str(error.value) == f"cannot write {tmp_path / 'talk.txt'}: it is read-only"


def test_a_cleared_segment_has_no_words_as_openai_writes_it(tiny_en_model, tmp_path):
    """openai clears an empty segment (no duration or no text) to words [] with or without word
    timestamps, and its JSON says so; whisperms left the key out without them. Every text token
    suppressed, a window decodes to such a segment."""
    from whisperms.decoding import build_tokenizer
    from whisperms.writers import get_writer

    from conftest import DATA

    tokenizer = build_tokenizer(tiny_en_model, "en", "transcribe")
    clip = str(DATA / "ljspeech_LJ001-0002.wav")
    text_tokens = list(range(tokenizer.eot))
    result = tiny_en_model.transcribe(clip, temperature=0.0, suppress_tokens=text_tokens)
    assert [(s.text, s.words) for s in result.segments] == [("", [])]
    get_writer("json", str(tmp_path))(result.to_dict(), "clip.wav")
    written = json.loads((tmp_path / "clip.json").read_text())
    assert written["segments"][0]["words"] == [] and written["text"] == ""
