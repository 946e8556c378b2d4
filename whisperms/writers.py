"""Transcript writers: txt, vtt, srt, tsv, json, with the exact output of openai/whisper's
`whisper/utils.py`.

Input is openai's result dict: {"text", "language", "segments": [{"start", "end", "text", ...,
optional "words": [{"word", "start", "end", "probability"}]}]}. Two deliberate differences from
openai: a file is written whole or not at all (temporary file in the same folder, then
`os.replace`), so a crash never leaves a truncated transcript or destroys the previous one; and
subtitles are cut from word timings only where every segment has them (openai reads the first
segment's, and failed where only that one had any).
"""

import json
import os
import re
import tempfile
from typing import Callable, Iterator, List, Optional, TextIO, Tuple

from .errors import OptionsError

# a gap this long starts a new subtitle when lines are re-wrapped (openai's rule)
LONG_PAUSE_SECONDS = 3.0
UNLIMITED = 1000  # openai's stand-in for "no limit" on line width and words per line


def format_timestamp(
    seconds: float, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    """[HH:]MM:SS.mmm, rounded to the millisecond as openai does (Python `round`, ties to even)."""
    assert seconds >= 0, "non-negative timestamp expected"
    milliseconds = int(round(seconds * 1000.0))  # int(): numpy<2 floats round to floats
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    seconds, milliseconds = divmod(milliseconds, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{seconds:02d}{decimal_marker}{milliseconds:03d}"


def get_start(segments: List[dict]) -> Optional[float]:
    """Start of the first word, else of the first segment: where the first subtitle begins."""
    return next(
        (w["start"] for s in segments for w in s["words"]),
        segments[0]["start"] if segments else None,
    )


def get_end(segments: List[dict]) -> Optional[float]:
    """End of the last word, else of the last segment."""
    return next(
        (w["end"] for s in reversed(segments) for w in reversed(s["words"])),
        segments[-1]["end"] if segments else None,
    )


def _umask() -> int:
    """The process umask, read without changing it where possible (os.umask is a racy
    set-and-restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a file the user creates gets: 0o666 minus the umask."""
    return 0o666 & ~_umask()


def _file_mode(path: str) -> int:
    """The mode `open(path, "w")` would leave: the existing file's, else new_file_mode(). Needed
    because temporary files are created 0o600."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return new_file_mode()


class ResultWriter:
    """Writes one format to `<output_dir>/<audio basename without extension>.<extension>`."""

    extension: str

    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def output_path(self, audio_path: str) -> str:
        audio_basename = os.path.splitext(os.path.basename(audio_path))[0]
        return os.path.join(self.output_dir, audio_basename + "." + self.extension)

    def __call__(
        self, result: dict, audio_path: str, options: Optional[dict] = None, **kwargs
    ) -> str:
        """Write atomically and return the final path; on any error nothing new is left and the old
        file stays."""
        output_path = self.output_path(audio_path)
        # an existing symbolic link is written through, as open(path, "w") would, not replaced
        target = os.path.realpath(output_path)
        tmp = tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            delete=False,
            dir=os.path.dirname(target),
            prefix=".",
            suffix=".partial",
        )
        try:
            with tmp as f:
                self.write_result(result, file=f, options=options, **kwargs)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.chmod(tmp.name, _file_mode(target))
            os.replace(tmp.name, target)
        except BaseException:
            try:
                os.unlink(tmp.name)
            except OSError:
                pass
            raise
        return output_path

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        raise NotImplementedError


class WriteTXT(ResultWriter):
    extension: str = "txt"

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        for segment in result["segments"]:
            print(segment["text"].strip(), file=file, flush=True)


def _iterate_subtitles(
    segments: List[dict],
    max_line_width: int,
    max_line_count: Optional[int],
    max_words_per_line: int,
    preserve_segments: bool,
) -> Iterator[List[dict]]:
    """openai's word grouping: lists of word timings (copies) whose "word" carries its spacing and
    line breaks.

    With `preserve_segments` every segment, and every run of `max_words_per_line` words in it,
    starts a new subtitle. Otherwise words are re-flowed into lines of at most `max_line_width`
    characters and subtitles of at most `max_line_count` lines, breaking also at pauses over
    LONG_PAUSE_SECONDS; `max_words_per_line` then has no effect (as in openai, whose chunk index
    only feeds the segment-break test).
    """
    line_len = 0
    line_count = 1
    subtitle: List[dict] = []
    last: float = get_start(segments) or 0.0
    for segment in segments:
        for index, original_timing in enumerate(segment["words"]):
            timing = original_timing.copy()
            long_pause = not preserve_segments and timing["start"] - last > LONG_PAUSE_SECONDS
            has_room = line_len + len(timing["word"]) <= max_line_width
            seg_break = index % max_words_per_line == 0 and len(subtitle) > 0 and preserve_segments
            if line_len > 0 and has_room and not long_pause and not seg_break:
                line_len += len(timing["word"])  # same line
            else:
                timing["word"] = timing["word"].strip()
                if (
                    len(subtitle) > 0
                    and max_line_count is not None
                    and (long_pause or line_count >= max_line_count)
                    or seg_break
                ):
                    yield subtitle  # new subtitle
                    subtitle = []
                    line_count = 1
                elif line_len > 0:
                    line_count += 1  # new line in this subtitle
                    timing["word"] = "\n" + timing["word"]
                line_len = len(timing["word"].strip())
            subtitle.append(timing)
            last = timing["start"]
    if len(subtitle) > 0:
        yield subtitle


def _underline(word: str) -> str:
    """`<u>` around the word, leaving its leading spacing (or line break) outside."""
    return re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", word)


class SubtitlesWriter(ResultWriter):
    """Cues from word timings when every segment has them, else one cue per segment."""

    always_include_hours: bool
    decimal_marker: str

    def iterate_result(
        self,
        result: dict,
        options: Optional[dict] = None,
        *,
        max_line_width: Optional[int] = None,
        max_line_count: Optional[int] = None,
        highlight_words: bool = False,
        max_words_per_line: Optional[int] = None,
    ) -> Iterator[Tuple[str, str, str]]:
        """(start, end, text) per cue. Keyword arguments win over `options` (openai's CLI passes
        either)."""
        options = options or {}
        max_line_width = max_line_width or options.get("max_line_width")
        max_line_count = max_line_count or options.get("max_line_count")
        highlight_words = highlight_words or options.get("highlight_words", False)
        max_words_per_line = max_words_per_line or options.get("max_words_per_line")
        preserve_segments = max_line_count is None or max_line_width is None
        max_line_width = max_line_width or UNLIMITED
        max_words_per_line = max_words_per_line or UNLIMITED

        segments = result["segments"]
        # Word timings where every segment has them. openai looks at the first segment only, but
        # an empty segment is cleared to words [] with or without word timestamps: a cleared first
        # segment before others without words failed (KeyError) there, as did words None (a
        # faster-whisper segment's, without word timestamps).
        if not (segments and all(segment.get("words") is not None for segment in segments)):
            for segment in segments:
                text = segment["text"].strip().replace("-->", "->")
                yield (
                    self.format_timestamp(segment["start"]),
                    self.format_timestamp(segment["end"]),
                    text,
                )
            return

        for subtitle in _iterate_subtitles(
            segments, max_line_width, max_line_count, max_words_per_line, preserve_segments
        ):
            subtitle_start = self.format_timestamp(subtitle[0]["start"])
            subtitle_end = self.format_timestamp(subtitle[-1]["end"])
            words = [timing["word"] for timing in subtitle]
            subtitle_text = "".join(words)
            if not highlight_words:
                yield subtitle_start, subtitle_end, subtitle_text
                continue
            last = subtitle_start
            for i, timing in enumerate(subtitle):
                start = self.format_timestamp(timing["start"])
                end = self.format_timestamp(timing["end"])
                if last != start:
                    yield last, start, subtitle_text  # the gap before this word, nothing underlined
                yield (
                    start,
                    end,
                    "".join(_underline(w) if j == i else w for j, w in enumerate(words)),
                )
                last = end

    def format_timestamp(self, seconds: float) -> str:
        return format_timestamp(seconds, self.always_include_hours, self.decimal_marker)


class WriteVTT(SubtitlesWriter):
    extension: str = "vtt"
    always_include_hours: bool = False
    decimal_marker: str = "."

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        print("WEBVTT\n", file=file)
        for start, end, text in self.iterate_result(result, options, **kwargs):
            print(f"{start} --> {end}\n{text}\n", file=file, flush=True)


class WriteSRT(SubtitlesWriter):
    extension: str = "srt"
    always_include_hours: bool = True
    decimal_marker: str = ","

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        for i, (start, end, text) in enumerate(
            self.iterate_result(result, options, **kwargs), start=1
        ):
            print(f"{i}\n{start} --> {end}\n{text}\n", file=file, flush=True)


class WriteTSV(ResultWriter):
    """`start<TAB>end<TAB>text` with integer milliseconds: no locale can turn a decimal point into a
    comma."""

    extension: str = "tsv"

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        print("start", "end", "text", sep="\t", file=file)
        for segment in result["segments"]:
            print(int(round(1000 * segment["start"])), file=file, end="\t")
            print(int(round(1000 * segment["end"])), file=file, end="\t")
            print(segment["text"].strip().replace("\t", " "), file=file, flush=True)


class WriteJSON(ResultWriter):
    """The result dict as is; non-ASCII text stays readable (UTF-8, not \\u escapes)."""

    extension: str = "json"

    def write_result(self, result: dict, file: TextIO, options: Optional[dict] = None, **kwargs):
        json.dump(result, file, ensure_ascii=False)


WRITERS = {"txt": WriteTXT, "vtt": WriteVTT, "srt": WriteSRT, "tsv": WriteTSV, "json": WriteJSON}


def get_writer(output_format: str, output_dir: str) -> Callable[..., object]:
    """A writer for one format, or for "all" one that writes the five formats (each file
    atomically)."""
    if output_format == "all":
        all_writers = [writer(output_dir) for writer in WRITERS.values()]

        def write_all(
            result: dict, audio_path: str, options: Optional[dict] = None, **kwargs
        ) -> List[str]:
            return [writer(result, audio_path, options, **kwargs) for writer in all_writers]

        return write_all
    if output_format not in WRITERS:
        valid = ", ".join([*WRITERS, "all"])
        raise OptionsError(f"unknown output format {output_format!r}; expected one of: {valid}")
    return WRITERS[output_format](output_dir)
