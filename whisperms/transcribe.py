"""Long-form transcription: openai's sequential algorithm over 30-second windows.

Each window is encoded once and decoded at increasing temperatures until the result is neither too
repetitive nor too unlikely; segments are cut at timestamp pairs and the window advances to the last
complete timestamp. Options are checked once, up front, by `transcribe_options`: a value that cannot
work fails before the first window.
"""

import math
import numbers
import sys
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .audio import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    load_audio,
    log_mel_spectrogram,
    pad_or_trim,
)
from .decoding import (
    DecodingOptions,
    DecodingResult,
    DecodingTask,
    _verify_options,
    build_tokenizer,
    detect_language,
)
from .errors import OptionsError, WhispermsWarning
from .timing import (
    APPEND_PUNCTUATIONS,
    PREPEND_PUNCTUATIONS,
    add_word_timestamps,
    is_segment_anomaly,
    last_word_end,
    next_words_segment,
)
from .tokenizer import LANGUAGES, language_code
from .vad.options import VadOptions, vad_options
from .writers import format_timestamp

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class Segment:
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

    def __getitem__(self, key):
        return _item(self, key)


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float  # from language detection; 1.0 when the language was given
    duration: float  # seconds of audio
    # seconds of speech transcribed (= duration without the VAD filter)
    duration_after_vad: Optional[float] = None
    vad_options: Optional[VadOptions] = None  # the VAD options used; None without the VAD filter


@dataclass
class TranscriptionResult:
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

    def __getitem__(self, key):
        return _item(self, key)


def _item(result, key):
    """openai returns dicts, so `result["text"]` and `result["segments"][0]["start"]` work here
    too."""
    if key not in ("text", "segments", "language") and key not in Segment.__dataclass_fields__:
        raise KeyError(key)
    value = getattr(result, key, None)
    if value is None:
        raise KeyError(key)
    return value


@dataclass
class _SeekState:
    """Everything the seek loop carries from one window to the next."""

    seek: int  # current mel frame
    clips: List[Tuple[int, int]]  # (start, end) frames still to transcribe
    clip_index: int = 0
    all_tokens: List[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    n_segments: int = 0
    last_speech_timestamp: float = 0.0

    def frames_done(self, content_frames: int) -> int:
        """Frames of audio behind the seek point, counting only the clips to transcribe: the
        progress bar's count."""
        done = 0
        for i, (start, end) in enumerate(self.clips[: self.clip_index + 1]):
            start, end = min(start, content_frames), min(end, content_frames)
            done += (
                end - start if i < self.clip_index else min(max(self.seek - start, 0), end - start)
            )
        return done


def _progress_bar(total_frames: int, enabled: bool) -> tqdm:
    """A bar on stderr that counts mel frames and shows them as seconds of audio; a no-op when not
    enabled."""
    return tqdm(
        total=total_frames,
        unit_scale=1 / FRAMES_PER_SECOND,
        unit="s",
        disable=not enabled,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]",
    )


def _seek_clips(clip_seconds: Sequence[float], content_frames: int) -> List[Tuple[int, int]]:
    """(start, end) mel frames of each clip, cut at the end of the audio: a clip beyond the end is
    empty and ends at once, whatever the file's length (one clip_timestamps serves every file of a
    batch)."""
    points = [round(ts * FRAMES_PER_SECOND) for ts in clip_seconds] or [0]
    if len(points) % 2 == 1:
        points.append(content_frames)
    return [
        (min(start, content_frames), min(end, content_frames))
        for start, end in zip(points[::2], points[1::2])
    ]


@dataclass(frozen=True)
class TranscribeOptions:
    """transcribe()'s own options and the window decoding options, checked: build it with
    `transcribe_options`."""

    temperature: Tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: Optional[float] = 2.4
    logprob_threshold: Optional[float] = -1.0
    no_speech_threshold: Optional[float] = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: Optional[str] = None
    carry_initial_prompt: bool = False
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    # seconds: start, end, start, ...; a last end left out is the file's end
    clip_timestamps: Tuple[float, ...] = ()
    hallucination_silence_threshold: Optional[float] = None
    # transcribe only the speech the VAD finds (Transcriber)
    vad_filter: bool = False
    vad_parameters: Optional[VadOptions] = None  # the VAD's options; None: VadOptions()
    decoding: DecodingOptions = DecodingOptions()

    @property
    def vad_applies(self) -> bool:
        """vad_filter, and clip_timestamps left at the whole file ("0", as faster-whisper
        requires)."""
        return self.vad_filter and self.clip_timestamps in ((), (0.0,))

    def at_temperature(self, temperature: float) -> DecodingOptions:
        """The options of one decoding attempt: beam search at temperature 0, best_of sampling above
        (openai)."""
        options = replace(self.decoding, temperature=temperature)
        if temperature > 0:
            return replace(options, beam_size=None, patience=None)
        return replace(options, best_of=None)


_OWN_OPTIONS = {f.name for f in fields(TranscribeOptions)} - {"decoding"}
_DECODING_OPTIONS = {f.name for f in fields(DecodingOptions)} - {"temperature"}
# Numeric options and the values that can work (check_number's keywords); None is "unset" for each
# of them.
_NUMBER_OPTIONS = {
    "compression_ratio_threshold": {},
    "logprob_threshold": {},
    "no_speech_threshold": dict(low=0, high=1),
    "hallucination_silence_threshold": dict(low=0),
    "best_of": dict(low=1, integer=True),
    "beam_size": dict(low=1, integer=True),
    "sample_len": dict(low=1, integer=True),
    "patience": dict(low=0, strict_low=True),
    "length_penalty": dict(low=0, high=1),
    "max_initial_timestamp": dict(low=0),
}
_FLAG_OPTIONS = (
    "condition_on_previous_text",
    "carry_initial_prompt",
    "word_timestamps",
    "suppress_blank",
    "without_timestamps",
    "vad_filter",
)
_TEXT_OPTIONS = ("prepend_punctuations", "append_punctuations")


def transcribe_options(**kwargs) -> TranscribeOptions:
    """Check transcribe()'s keyword options (openai's names) without a model: an OptionsError names
    the first that cannot work. What needs the model (an English-only model's language, alignment
    heads, token ids beyond the vocabulary) is checked by Transcriber."""
    unknown = sorted(set(kwargs) - _OWN_OPTIONS - _DECODING_OPTIONS)
    if unknown:
        raise OptionsError(f"unknown option {unknown[0]!r}")
    checked = dict(kwargs)
    for name, limits in _NUMBER_OPTIONS.items():
        if name in checked:
            checked[name] = check_number(name, checked[name], optional=True, **limits)
    for name in _FLAG_OPTIONS:
        if name in checked and not isinstance(checked[name], (bool, np.bool_)):
            raise OptionsError(f"{name} must be True or False, got {checked[name]!r}")
    for name in _TEXT_OPTIONS + ("initial_prompt",):
        if (
            name in checked
            and not isinstance(checked[name], str)
            and not (name == "initial_prompt" and checked[name] is None)
        ):
            raise OptionsError(f"{name} must be a string, got {checked[name]!r}")
    if "temperature" in checked:
        checked["temperature"] = _temperatures(checked["temperature"])
    if "clip_timestamps" in checked:
        checked["clip_timestamps"] = _clip_seconds(checked["clip_timestamps"])
    if checked.get("vad_parameters") is not None or checked.get("vad_filter"):
        try:
            checked["vad_parameters"] = vad_options(checked.get("vad_parameters"))
        except OptionsError as error:
            raise OptionsError(f"vad_parameters: {error}") from None
    language = checked.get("language")
    if language is not None:
        if not isinstance(language, str):
            raise OptionsError(
                f"language must be a code or name such as 'de' or 'German', got {language!r}"
            )
        language_code(language)  # an OptionsError for an unknown one
    if "suppress_tokens" in checked:
        checked["suppress_tokens"] = _token_ids(
            "suppress_tokens", checked["suppress_tokens"], allow=(-1,)
        )
    for name in ("prompt", "prefix"):
        if not isinstance(checked.get(name), (str, type(None))):
            checked[name] = _token_ids(name, checked[name])
    own = {name: checked.pop(name) for name in list(checked) if name in _OWN_OPTIONS}
    options = TranscribeOptions(**own, decoding=DecodingOptions(**checked))
    if options.hallucination_silence_threshold is not None and not options.word_timestamps:
        raise OptionsError("hallucination_silence_threshold needs word_timestamps=True")
    if options.vad_filter and not options.vad_applies:
        warnings.warn(
            "vad_filter is ignored when clip_timestamps is given (as in faster-whisper)",
            WhispermsWarning,
            stacklevel=2,
        )
    for temperature in options.temperature:
        # decoding's own rules, for every attempt
        _verify_options(options.at_temperature(temperature))
    return options


def check_number(
    name, value, *, low=None, high=None, integer=False, optional=False, strict_low=False
):
    """`value` as a finite float (or int) within [low, high], or an OptionsError saying what was
    expected."""
    if value is None and optional:
        return None
    kind = numbers.Integral if integer else numbers.Real
    valid = isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
    if valid:
        number = int(value) if integer else float(value)
        valid = (
            math.isfinite(number)
            and (low is None or (number > low if strict_low else number >= low))
            and (high is None or number <= high)
        )
    if valid:
        return number
    wanted = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        wanted += f" from {low} to {high}"
    elif low is not None:
        wanted += f" {'>' if strict_low else '>='} {low}"
    raise OptionsError(f"{name} must be {wanted}{' or None' if optional else ''}, got {value!r}")


def _temperatures(value) -> Tuple[float, ...]:
    """A temperature or a sequence of them (tried in turn): each finite and >= 0."""
    if isinstance(value, (str, bytes)) or not isinstance(
        value, (numbers.Real, Sequence, np.ndarray)
    ):
        raise OptionsError(
            f"temperature must be a number >= 0 or a sequence of them, got {value!r}"
        )
    values = [value] if isinstance(value, numbers.Real) else list(value)
    if not values:
        raise OptionsError(
            "temperature must be a number >= 0 or a non-empty sequence of them, got an empty one"
        )
    return tuple(check_number("temperature", t, low=0) for t in values)


def _clip_seconds(value) -> Tuple[float, ...]:
    """clip_timestamps as seconds: "start,end,..." or a sequence of numbers, each finite and >= 0,
    end >= start."""
    if isinstance(value, str):
        try:
            value = [float(ts) for ts in value.split(",") if ts.strip()]
        except ValueError:
            raise OptionsError(
                f"clip_timestamps must be comma-separated seconds, got '{value}'"
            ) from None
    elif isinstance(value, numbers.Real):
        value = [value]
    if not isinstance(value, (Sequence, np.ndarray)):
        raise OptionsError(
            f"clip_timestamps must be 'start,end,...' seconds or a list of them, got {value!r}"
        )
    seconds = []
    for ts in value:
        if (
            not isinstance(ts, numbers.Real)
            or isinstance(ts, bool)
            or not math.isfinite(ts)
            or ts < 0
        ):
            raise OptionsError(f"clip_timestamps must be finite seconds >= 0, got {ts!r}")
        seconds.append(float(ts))
    if any(end < start for start, end in zip(seconds[::2], seconds[1::2])):
        raise OptionsError("clip_timestamps must be non-negative start,end pairs with end >= start")
    return tuple(seconds)


def _token_ids(name, value, allow=()):
    """Token ids as a tuple of ints (a string of comma-separated ids for suppress_tokens); each >= 0
    or in `allow`. Whether they are below the vocabulary size is checked with the model."""
    if value is None:
        return None
    ids = value
    if isinstance(value, str):
        try:
            ids = [int(t) for t in value.split(",") if t.strip()]
        except ValueError:
            raise OptionsError(f"{name} must be comma-separated token ids, got '{value}'") from None
    if not isinstance(ids, (Sequence, np.ndarray)) or not all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) and (t >= 0 or t in allow)
        for t in ids
    ):
        raise OptionsError(
            f"{name} must be token ids (integers >= 0{''.join(f' or {a}' for a in allow)}), "
            f"got {value!r}"
        )
    return tuple(int(t) for t in ids)


def _needs_fallback(
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


def _split_segments(
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


def _check_with_model(model, options: TranscribeOptions):
    """What transcribe_options cannot check without the model."""
    decoding = options.decoding
    if decoding.language is not None:
        # an English-only model refuses other languages
        build_tokenizer(model, decoding.language, decoding.task)
    if options.word_timestamps and not model.alignment_heads:
        raise OptionsError(
            "word_timestamps needs the checkpoint's alignment heads, and this one has none"
        )
    for name in ("suppress_tokens", "prompt", "prefix"):
        ids = getattr(decoding, name)
        if isinstance(ids, tuple) and any(t >= model.dims.n_vocab for t in ids):
            raise OptionsError(
                f"{name}: token id {max(ids)} is beyond this model's vocabulary of "
                f"{model.dims.n_vocab} tokens"
            )


class Transcriber:
    """One transcription in progress: options resolved, mel computed, segments produced by
    `segments()`; the seek loop's state lives in one small `_SeekState`, and segments are yielded as
    soon as their window is done.

    What is shown follows openai's `verbose`: None shows nothing, True prints each segment as it is
    decoded, False shows a tqdm bar over seconds of audio on stderr. `progress` overrides the bar
    alone (the CLI shows it next to the segment lines, on a terminal only).

    With `vad_filter=True` (faster-whisper's sequential VAD filter, whisperms.vad): the Silero VAD
    finds the speech, the speech alone is joined and transcribed (mel, language detection and the
    seek loop all see the speech-only audio, and `Segment.seek` counts its frames), and each
    segment's times, and its words', are moved back to the original timeline before the segment is
    printed or yielded. No speech: no segments. As in faster-whisper, VAD applies only when
    clip_timestamps is left at its default (the whole file): with clips given it is ignored, with a
    warning.
    """

    def __init__(
        self,
        model,
        audio,
        *,
        verbose=None,
        progress=None,
        options: Optional[TranscribeOptions] = None,
        **kwargs,
    ):
        """`options` as built by `transcribe_options`, or its keyword arguments (openai's transcribe
        options)."""
        if options is None:
            options = transcribe_options(**kwargs)
        elif kwargs:
            raise OptionsError(
                f"give options or keyword options, not both ({', '.join(sorted(kwargs))})"
            )
        _check_with_model(model, options)
        self.model = model
        self.verbose = verbose
        # openai: a bar iff verbose=False
        self.progress = verbose is False if progress is None else bool(progress)
        self.transcribe_options = options
        self.temperatures = options.temperature
        self.thresholds = (
            options.compression_ratio_threshold,
            options.logprob_threshold,
            options.no_speech_threshold,
        )
        self.word_timestamps = options.word_timestamps
        self.hallucination_silence_threshold = options.hallucination_silence_threshold
        self.punctuations = dict(
            prepend_punctuations=options.prepend_punctuations,
            append_punctuations=options.append_punctuations,
        )
        self.condition_on_previous_text = options.condition_on_previous_text
        self.carry_initial_prompt = options.carry_initial_prompt
        self.options = options.decoding
        # with the VAD filter: moves a window's segments back to the original timeline
        self.restore = None
        duration = None  # of the input, when what is transcribed is less (the speech alone)
        if options.vad_applies:
            # MindSpore: the model has imported it
            from .vad import collect_speech, restore_speech_timestamps

            audio = load_audio(audio)
            # as content_frames below counts it
            duration = len(audio) // HOP_LENGTH * HOP_LENGTH / SAMPLE_RATE
            audio, speech_chunks = collect_speech(audio, options.vad_parameters)
            if speech_chunks:
                self.restore = lambda segments: list(
                    restore_speech_timestamps(segments, speech_chunks)
                )
        self.mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
        self.content_frames = self.mel.shape[-1] - N_FRAMES
        self.duration = self.content_frames * HOP_LENGTH / SAMPLE_RATE  # of what is transcribed
        self.clips = _seek_clips(options.clip_timestamps, self.content_frames)
        self.language, probability = self._language()
        self.info = TranscriptionInfo(
            self.language,
            probability,
            self.duration if duration is None else duration,
            duration_after_vad=self.duration,
            vad_options=vad_options(options.vad_parameters) if options.vad_applies else None,
        )
        self.tokenizer = build_tokenizer(model, self.language, self.options.task)
        self.options = replace(self.options, language=self.language)
        prompt = options.initial_prompt
        self.initial_prompt_tokens = self.tokenizer.encode(" " + prompt.strip()) if prompt else []
        self.input_stride = N_FRAMES // model.dims.n_audio_ctx
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE

    def _language(self):
        if self.options.language is not None:
            code = language_code(self.options.language)
            return code, 1.0
        if not self.model.is_multilingual:
            return "en", 1.0
        start = self.clips[0][0]
        language, probs = detect_language(
            self.model, pad_or_trim(self.mel[:, start : start + N_FRAMES], N_FRAMES)
        )
        if self.verbose:
            print(f"Detected language: {LANGUAGES[language].title()}")
        return language, probs[language]

    def _decode_window(self, mel_segment, prompt):
        """(result, audio features): the window is encoded once for every temperature and for word
        timing."""
        audio_features = self.model.inference.embed_audio(mel_segment[None])
        result = None
        for t in self.temperatures:
            options = replace(self.transcribe_options, decoding=self.options).at_temperature(t)
            result = DecodingTask(self.model, replace(options, prompt=prompt)).run(
                audio_features, self.language
            )
            if not _needs_fallback(result, *self.thresholds):
                break
        return result, audio_features

    def _skip_hallucinations(
        self, current, state, window_seek, segment_frames, single_timestamp_ending
    ):
        """openai's hallucination_silence_threshold: skip silence before likely hallucinations.
        Returns the segments to keep and whether the whole window is to be skipped; moves
        state.seek."""
        threshold = self.hallucination_silence_threshold
        time_offset = window_seek * HOP_LENGTH / SAMPLE_RATE
        window_end_time = (window_seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
        segment_duration = segment_frames * HOP_LENGTH / SAMPLE_RATE
        if not single_timestamp_ending:
            end = last_word_end(current)
            if end is not None and end > time_offset:
                remaining = window_end_time - end
                state.seek = (
                    round(end * FRAMES_PER_SECOND)
                    if remaining > threshold
                    else window_seek + segment_frames
                )
        first = next_words_segment(current)
        if first is not None and is_segment_anomaly(first):
            gap = first.start - time_offset
            if gap > threshold:
                state.seek = window_seek + round(gap * FRAMES_PER_SECOND)
                return current, True
        hal_last_end = state.last_speech_timestamp
        for i, segment in enumerate(current):
            if not segment.words:
                continue
            if is_segment_anomaly(segment):
                following = next_words_segment(current[i + 1 :])
                hal_next_start = (
                    following.words[0]["start"]
                    if following is not None
                    else time_offset + segment_duration
                )
                silence_before = (
                    segment.start - hal_last_end > threshold
                    or segment.start < threshold
                    or segment.start - time_offset < 2.0
                )
                silence_after = (
                    hal_next_start - segment.end > threshold
                    or is_segment_anomaly(following)
                    or window_end_time - segment.end < 2.0
                )
                if silence_before and silence_after:
                    state.seek = round(max(time_offset + 1, segment.start) * FRAMES_PER_SECOND)
                    if self.duration - segment.end < threshold:
                        state.seek = self.content_frames
                    return current[:i], False
            hal_last_end = segment.end
        return current, False

    def _prompt(self, state: _SeekState) -> List[int]:
        if self.carry_initial_prompt:
            remaining = self.model.dims.n_text_ctx // 2 - 1 - len(self.initial_prompt_tokens)
            ignored = max(len(self.initial_prompt_tokens), state.prompt_reset_since)
            return self.initial_prompt_tokens + state.all_tokens[ignored:][-remaining:]
        return state.all_tokens[state.prompt_reset_since :]

    def segments(self) -> Iterator[Segment]:
        state = _SeekState(
            seek=self.clips[0][0], clips=self.clips, all_tokens=list(self.initial_prompt_tokens)
        )
        total = sum(end - start for start, end in self.clips)
        with _progress_bar(total, self.progress) as bar:
            while state.clip_index < len(state.clips):
                clip_start, clip_end = state.clips[state.clip_index]
                state.seek = max(state.seek, clip_start)
                # clips end at the end of the audio (_seek_clips): this loop ends
                if state.seek >= clip_end:
                    state.clip_index += 1
                    if state.clip_index < len(state.clips):
                        state.seek = state.clips[state.clip_index][0]
                    continue
                window_seek, segment_frames = state.seek, min(N_FRAMES, clip_end - state.seek)
                yield from self._window(state, segment_frames)
                # a window that ends where it began (a 0.00 s segment) moves on
                if state.seek <= window_seek:
                    state.seek = window_seek + segment_frames
                bar.update(max(state.frames_done(self.content_frames) - bar.n, 0))

    def _window(self, state: _SeekState, segment_frames: int) -> Iterator[Segment]:
        """Transcribe the window of `segment_frames` (> 0) at state.seek: yield its segments,
        advance state.seek."""
        _, logprob_threshold, no_speech_threshold = self.thresholds
        segment = self.mel[:, state.seek : state.seek + segment_frames]
        # Differs from openai: a constant log-mel carries no signal (digital silence, or sound more
        # than 80 dB below the file's loudest, which the log-mel floors) and is skipped undecoded.
        # openai and faster-whisper decode it, and tiny.en says "you"
        # there: their no-speech rule also needs the average log probability below
        # logprob_threshold, and that short text is likely enough to pass. Speech never reaches this
        # rule (a constant input is the same in every window).
        if no_speech_threshold is not None and segment.min() == segment.max():
            state.seek += segment_frames
            return
        time_offset = state.seek * HOP_LENGTH / SAMPLE_RATE
        mel_segment = pad_or_trim(segment, N_FRAMES)
        result, audio_features = self._decode_window(mel_segment, self._prompt(state))

        if (
            no_speech_threshold is not None
            and result.no_speech_prob > no_speech_threshold
            and not (logprob_threshold is not None and result.avg_logprob > logprob_threshold)
        ):
            state.seek += segment_frames  # silence: skip the whole window
            return

        pieces, advance, single_timestamp_ending = _split_segments(
            result.tokens,
            self.tokenizer.timestamp_begin,
            time_offset,
            segment_frames,
            self.time_precision,
            self.input_stride,
        )
        window_seek = state.seek
        state.seek += advance
        current = [
            Segment(
                id=0,
                seek=window_seek,
                start=start,
                end=end,
                text=self.tokenizer.decode([t for t in tokens if t < self.tokenizer.eot]),
                tokens=list(tokens),
                temperature=result.temperature,
                avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob,
            )
            for start, end, tokens in pieces
        ]
        if self.word_timestamps:
            add_word_timestamps(
                segments=current,
                model=self.model,
                tokenizer=self.tokenizer,
                audio_features=audio_features,
                num_frames=segment_frames,
                last_speech_timestamp=state.last_speech_timestamp,
                **self.punctuations,
            )
            end = last_word_end(current)
            if not single_timestamp_ending and end is not None and end > time_offset:
                state.seek = round(end * FRAMES_PER_SECOND)
            if self.hallucination_silence_threshold is not None:
                current, skip = self._skip_hallucinations(
                    current, state, window_seek, segment_frames, single_timestamp_ending
                )
                if skip:
                    return
            end = last_word_end(current)
            if end is not None:
                state.last_speech_timestamp = end
        empty = [segment.start == segment.end or not segment.text.strip() for segment in current]
        # the seek state above stays on the speech-only timeline, as faster-whisper's
        if self.restore is not None:
            current = self.restore(current)
        for segment, is_empty in zip(current, empty):
            if self.verbose:
                tqdm.write(
                    f"[{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}] "
                    f"{segment.text}",
                    file=sys.stdout,
                )
                sys.stdout.flush()  # the bar, if any, is cleared and redrawn around the line
            if is_empty:  # kept but cleared, as openai
                segment.text, segment.tokens, segment.words = (
                    "",
                    [],
                    ([] if self.word_timestamps else None),
                )
            segment.id = state.n_segments
            segment.start, segment.end = round(segment.start, 3), round(segment.end, 3)
            state.n_segments += 1
            state.all_tokens.extend(segment.tokens)
            yield segment
        if not self.condition_on_previous_text or result.temperature > 0.5:
            state.prompt_reset_since = len(state.all_tokens)

    def run(self) -> TranscriptionResult:
        segments = list(self.segments())
        all_tokens = [t for s in segments for t in s.tokens]
        return TranscriptionResult(
            text=self.tokenizer.decode(all_tokens),
            segments=segments,
            language=self.language,
            info=self.info,
        )


def transcribe(model, audio, **kwargs) -> TranscriptionResult:
    """Transcribe a file path or an array of 16 kHz samples (what arrays are taken: load_audio's
    docstring); keyword options as openai's transcribe(), plus faster-whisper's vad_filter and
    vad_parameters (a VadOptions, a dict of its fields or "name=value,..."; Transcriber's
    docstring), checked first (transcribe_options)."""
    return Transcriber(model, audio, **kwargs).run()
