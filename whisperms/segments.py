"""What a transcription returns (Segment, TranscriptionInfo, TranscriptionResult) and the rules
every long-form mode (sequential or batched) applies to a decoded window: when to fall back to a
higher temperature, when the window is silence, and how its tokens are cut into segments at
timestamp pairs."""

import os
import sys
from dataclasses import asdict, dataclass, replace
from typing import List, Optional, Tuple

from tqdm import tqdm

from .audio import HOP_LENGTH, SAMPLE_RATE
from .decoding import DecodingResult
from .errors import warn
from .tokenizer import LANGUAGES
from .vad.options import VadOptions
from .writers import format_timestamp


class _AsDict:
    """openai returns dicts, so the dict idioms work here too: `result["text"]`,
    `result["segments"][0]["start"]`, `result.get("language")`, `"words" in segment`,
    `dict(result)`, over the keys of `to_dict()` (which gives plain dicts, for JSON)."""

    def keys(self):
        raise NotImplementedError

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key, default=None):
        return self[key] if key in self.keys() else default

    def __contains__(self, key):
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        return [(key, self[key]) for key in self.keys()]

    def values(self):
        return [self[key] for key in self.keys()]


@dataclass
class Segment(_AsDict):
    id: int
    seek: int  # mel frame where this segment's window started
    start: float  # seconds
    end: float
    text: str
    tokens: List[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: Optional[list] = None

    def to_dict(self):
        d = asdict(self)
        if d["words"] is None:
            del d["words"]
        return d

    def keys(self):
        return [f for f in self.__dataclass_fields__ if f != "words" or self.words is not None]


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float  # from language detection; 1.0 when the language was given
    duration: float  # seconds of audio
    # seconds of speech transcribed (= duration without the VAD filter)
    duration_after_vad: Optional[float] = None
    vad_options: Optional[VadOptions] = None  # the VAD options used; None without the VAD filter
    # faster-whisper's: every language's probability, likeliest first, where it was detected
    all_language_probs: Optional[List[Tuple[str, float]]] = None


@dataclass
class TranscriptionResult(_AsDict):
    text: str
    segments: List[Segment]
    language: str
    info: TranscriptionInfo

    def to_dict(self):
        """openai's result layout: text, segments (dicts), language."""
        return {
            "text": self.text,
            "segments": [s.to_dict() for s in self.segments],
            "language": self.language,
        }

    def keys(self):
        return ["text", "segments", "language"]


def needs_fallback(
    result: DecodingResult, compression_ratio_threshold, logprob_threshold, no_speech_threshold
):
    too_repetitive = (
        compression_ratio_threshold is not None
        and result.compression_ratio > compression_ratio_threshold
    )
    too_unlikely = logprob_threshold is not None and result.avg_logprob < logprob_threshold
    silence = (
        no_speech_threshold is not None
        and result.no_speech_prob > no_speech_threshold
        and logprob_threshold is not None
        and result.avg_logprob < logprob_threshold
    )
    return (too_repetitive or too_unlikely) and not silence


def best_attempt(attempts: List[DecodingResult], compression_ratio_threshold) -> DecodingResult:
    """A window's result when every temperature needed a fallback, as faster-whisper chooses it:
    the best average log probability among the attempts that were not too repetitive (among all
    when none was), with the last temperature tried, which prompt_reset_on_temperature reads.
    openai keeps the last attempt, a sample at the highest temperature: often nonsense where a
    likelier decode was made."""
    kept = [
        a
        for a in attempts
        if compression_ratio_threshold is None or a.compression_ratio <= compression_ratio_threshold
    ]
    best = max(kept or attempts, key=lambda a: a.avg_logprob)  # the first of equals
    return replace(best, temperature=attempts[-1].temperature)


def split_segments(
    tokens: List[int],
    timestamp_begin: int,
    time_offset: float,
    segment_frames: int,
    time_precision: float,
    input_stride: int,
):
    """Cut a window's tokens at timestamp pairs: [(start, end, tokens)], and how many frames to
    advance."""
    is_ts = [t >= timestamp_begin for t in tokens]
    single_timestamp_ending = is_ts[-2:] == [False, True]
    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    pieces = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
        last = 0
        for current in slices:
            part = tokens[last:current]
            pieces.append(
                (
                    time_offset + (part[0] - timestamp_begin) * time_precision,
                    time_offset + (part[-1] - timestamp_begin) * time_precision,
                    part,
                )
            )
            last = current
        advance = (
            segment_frames
            if single_timestamp_ending
            else (tokens[last - 1] - timestamp_begin) * input_stride
        )
    else:
        duration = segment_frames * HOP_LENGTH / SAMPLE_RATE
        timestamps = [t for t in tokens if t >= timestamp_begin]
        if timestamps and timestamps[-1] != timestamp_begin:
            duration = (timestamps[-1] - timestamp_begin) * time_precision
        pieces.append((time_offset, time_offset + duration, tokens))
        advance = segment_frames
    return pieces, advance, single_timestamp_ending


def is_silence(result: DecodingResult, logprob_threshold, no_speech_threshold) -> bool:
    """openai's no-speech rule: the window is skipped when <|nospeech|> is likely and the text is
    not."""
    return (
        no_speech_threshold is not None
        and result.no_speech_prob > no_speech_threshold
        and not (logprob_threshold is not None and result.avg_logprob > logprob_threshold)
    )


def is_constant(mel_segment) -> bool:
    """A constant log-mel carries no signal (digital silence, or sound more than 80 dB below the
    file's loudest, which the log-mel floors): the window is skipped undecoded. Differs from openai
    and faster-whisper, which decode it (tiny.en says "you" there, likely enough to pass their
    no-speech rule). Speech never reaches this rule."""
    return mel_segment.min() == mel_segment.max()


def window_segments(
    result: DecodingResult,
    tokenizer,
    window_seek: int,
    segment_frames: int,
    time_offset: float,
    time_precision: float,
    input_stride: int,
):
    """A decoded window's segments (times from `time_offset`, ids still 0), how many frames to
    advance, and whether the tokens end on a single timestamp."""
    pieces, advance, single_timestamp_ending = split_segments(
        result.tokens,
        tokenizer.timestamp_begin,
        time_offset,
        segment_frames,
        time_precision,
        input_stride,
    )
    segments = [
        Segment(
            id=0,
            seek=window_seek,
            start=start,
            end=end,
            text=tokenizer.decode([t for t in tokens if t < tokenizer.eot]),
            tokens=list(tokens),
            temperature=result.temperature,
            avg_logprob=result.avg_logprob,
            compression_ratio=result.compression_ratio,
            no_speech_prob=result.no_speech_prob,
        )
        for start, end, tokens in pieces
    ]
    return segments, advance, single_timestamp_ending


def print_segment(segment: Segment):
    """openai's verbose line (print_line)."""
    start, end = format_timestamp(segment.start), format_timestamp(segment.end)
    print_line(f"[{start} --> {end}] {segment.text}")


def print_language(language: str):
    """openai's line for a detected language ("Detected language: English")."""
    print_line(f"Detected language: {LANGUAGES[language].title()}")


def print_line(line: str):
    """A line on stdout, above a progress bar if there is one (tqdm clears and redraws it).

    Printing never stops a transcription: characters the stream cannot encode are escaped (a
    Japanese line on an ASCII console), and a stream that cannot be written (a closed pipe, a full
    disk) is given up with one warning, the transcripts still written."""
    out = sys.stdout
    if out is None:  # no stdout at all (pythonw, a closed descriptor): nothing to print to
        return
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        line = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
    try:
        tqdm.write(line, file=out)
        out.flush()
    except (OSError, ValueError) as error:  # ValueError: a closed file
        _give_up_stdout(error)


def _give_up_stdout(error: Exception):
    """Standard output on /dev/null from now on (what is buffered, and what Python flushes at exit,
    would fail again), after one warning."""
    reason = getattr(error, "strerror", None) or error
    warn(f"cannot print segments to standard output ({reason}); printing stopped")
    sink = open(os.devnull, "w")
    try:
        os.dup2(sink.fileno(), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor of its own (a closed file)
        sys.stdout = sink
    else:
        sink.close()


def is_empty(segment: Segment) -> bool:
    return segment.start == segment.end or not segment.text.strip()


def finish_segment(segment: Segment, segment_id: int, empty: bool):
    """The segment as returned: numbered, times rounded to the millisecond, and an empty one (no
    duration or no text) kept but cleared, as openai does (its words [] with or without word
    timestamps, as openai's JSON has them)."""
    if empty:
        segment.text, segment.tokens, segment.words = "", [], []
    segment.id = segment_id
    segment.start, segment.end = round(segment.start, 3), round(segment.end, 3)
    return segment
