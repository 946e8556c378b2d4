"""Long-form transcription: openai's sequential algorithm over 30-second windows.

Each window is encoded once; the window is decoded at increasing temperatures until the result is neither too
repetitive nor too unlikely; segments are cut at timestamp pairs and the window advances to the last complete
timestamp. The loop's state lives in one small `_SeekState`; segments are yielded as soon as a window is done.

What is shown while it runs follows openai's `verbose`: None shows nothing, True prints each segment as it is
decoded, False shows a tqdm progress bar over seconds of audio on stderr. `progress` overrides the bar alone (the
CLI shows it next to the segment lines, on a terminal only).
"""
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from .decoding import DecodingOptions, DecodingResult, DecodingTask, build_tokenizer, detect_language
from .errors import OptionsError
from .timing import (APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, add_word_timestamps, is_segment_anomaly,
                     last_word_end, next_words_segment)
from .tokenizer import LANGUAGES, language_code

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class Segment:
    id: int
    seek: int                 # mel frame where this segment's window started
    start: float              # seconds
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
    language_probability: float   # from language detection; 1.0 when the language was given
    duration: float               # seconds of audio


@dataclass
class TranscriptionResult:
    text: str
    segments: List[Segment]
    language: str
    info: TranscriptionInfo

    def to_dict(self):
        """openai's result layout: text, segments (dicts), language."""
        return {"text": self.text, "segments": [s.to_dict() for s in self.segments], "language": self.language}

    def __getitem__(self, key):
        return _item(self, key)


def _item(result, key):
    """openai returns dicts, so `result["text"]` and `result["segments"][0]["start"]` work here too."""
    if key not in ("text", "segments", "language") and key not in Segment.__dataclass_fields__:
        raise KeyError(key)
    value = getattr(result, key, None)
    if value is None:
        raise KeyError(key)
    return value


@dataclass
class _SeekState:
    """Everything the seek loop carries from one window to the next."""
    seek: int                      # current mel frame
    clips: List[Tuple[int, int]]   # (start, end) frames still to transcribe
    clip_index: int = 0
    all_tokens: List[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    n_segments: int = 0
    last_speech_timestamp: float = 0.0

    def frames_done(self, content_frames: int) -> int:
        """Frames of audio behind the seek point, counting only the clips to transcribe: the progress bar's count."""
        done = 0
        for i, (start, end) in enumerate(self.clips[:self.clip_index + 1]):
            start, end = min(start, content_frames), min(end, content_frames)
            done += end - start if i < self.clip_index else min(max(self.seek - start, 0), end - start)
        return done


def _progress_bar(total_frames: int, enabled: bool) -> tqdm:
    """A bar on stderr that counts mel frames and shows them as seconds of audio; a no-op when not enabled."""
    return tqdm(total=total_frames, unit_scale=1 / FRAMES_PER_SECOND, unit="s", disable=not enabled,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")


def _seek_clips(clip_timestamps: Union[str, Sequence[float]], content_frames: int) -> List[Tuple[int, int]]:
    if isinstance(clip_timestamps, str):
        try:
            clip_timestamps = [float(ts) for ts in clip_timestamps.split(",") if ts.strip()]
        except ValueError:
            raise OptionsError(f"clip_timestamps must be comma-separated seconds, got '{clip_timestamps}'") from None
    points = [round(ts * FRAMES_PER_SECOND) for ts in clip_timestamps] or [0]
    if len(points) % 2 == 1:
        points.append(content_frames)
    clips = list(zip(points[::2], points[1::2]))
    if any(end < start or start < 0 for start, end in clips):
        raise OptionsError("clip_timestamps must be non-negative start,end pairs with end >= start")
    return clips


def _needs_fallback(result: DecodingResult, compression_ratio_threshold, logprob_threshold, no_speech_threshold):
    too_repetitive = compression_ratio_threshold is not None and result.compression_ratio > compression_ratio_threshold
    too_unlikely = logprob_threshold is not None and result.avg_logprob < logprob_threshold
    silence = (no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold
               and logprob_threshold is not None and result.avg_logprob < logprob_threshold)
    return (too_repetitive or too_unlikely) and not silence


def _split_segments(tokens: List[int], timestamp_begin: int, time_offset: float, segment_frames: int,
                    time_precision: float, input_stride: int):
    """Cut a window's tokens at timestamp pairs: [(start, end, tokens)], and how many frames to advance."""
    is_ts = [t >= timestamp_begin for t in tokens]
    single_timestamp_ending = is_ts[-2:] == [False, True]
    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    pieces = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
        last = 0
        for current in slices:
            part = tokens[last:current]
            pieces.append((time_offset + (part[0] - timestamp_begin) * time_precision,
                           time_offset + (part[-1] - timestamp_begin) * time_precision, part))
            last = current
        advance = segment_frames if single_timestamp_ending else (tokens[last - 1] - timestamp_begin) * input_stride
    else:
        duration = segment_frames * HOP_LENGTH / SAMPLE_RATE
        timestamps = [t for t in tokens if t >= timestamp_begin]
        if timestamps and timestamps[-1] != timestamp_begin:
            duration = (timestamps[-1] - timestamp_begin) * time_precision
        pieces.append((time_offset, time_offset + duration, tokens))
        advance = segment_frames
    return pieces, advance, single_timestamp_ending


class Transcriber:
    """One transcription in progress: options resolved, mel computed, segments produced by `segments()`."""

    def __init__(self, model, audio, *, verbose=None, progress=None, temperature=DEFAULT_TEMPERATURES,
                 compression_ratio_threshold=2.4, logprob_threshold=-1.0, no_speech_threshold=0.6,
                 condition_on_previous_text=True, initial_prompt=None, carry_initial_prompt=False,
                 word_timestamps=False, prepend_punctuations=PREPEND_PUNCTUATIONS,
                 append_punctuations=APPEND_PUNCTUATIONS, clip_timestamps="0", hallucination_silence_threshold=None,
                 **decode_options):
        if hallucination_silence_threshold is not None and not word_timestamps:
            raise OptionsError("hallucination_silence_threshold needs word_timestamps=True")
        self.hallucination_silence_threshold = hallucination_silence_threshold
        if word_timestamps and not model.alignment_heads:
            raise OptionsError("word_timestamps needs the checkpoint's alignment heads, and this one has none")
        self.word_timestamps = word_timestamps
        self.punctuations = dict(prepend_punctuations=prepend_punctuations, append_punctuations=append_punctuations)
        self.model = model
        self.verbose = verbose
        self.progress = verbose is False if progress is None else bool(progress)  # openai: a bar iff verbose=False
        self.temperatures = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
        self.thresholds = (compression_ratio_threshold, logprob_threshold, no_speech_threshold)
        self.condition_on_previous_text = condition_on_previous_text
        self.carry_initial_prompt = carry_initial_prompt
        self.options = DecodingOptions(**decode_options)
        self.mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
        self.content_frames = self.mel.shape[-1] - N_FRAMES
        self.duration = self.content_frames * HOP_LENGTH / SAMPLE_RATE
        self.clips = _seek_clips(clip_timestamps, self.content_frames)
        self.language, probability = self._language()
        self.info = TranscriptionInfo(self.language, probability, self.duration)
        self.tokenizer = build_tokenizer(model, self.language, self.options.task)
        self.options = replace(self.options, language=self.language)
        self.initial_prompt_tokens = self.tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
        self.input_stride = N_FRAMES // model.dims.n_audio_ctx
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE

    def _language(self):
        if self.options.language is not None:
            code = language_code(self.options.language)
            return code, 1.0
        if not self.model.is_multilingual:
            return "en", 1.0
        start = self.clips[0][0]
        language, probs = detect_language(self.model, pad_or_trim(self.mel[:, start:start + N_FRAMES], N_FRAMES))
        if self.verbose:
            print(f"Detected language: {LANGUAGES[language].title()}")
        return language, probs[language]

    def _decode_window(self, mel_segment, prompt):
        """(result, audio features): the window is encoded once for every temperature and for word timing."""
        audio_features = self.model.inference.embed_audio(mel_segment[None])
        result = None
        for t in self.temperatures:
            options = replace(self.options, temperature=t, prompt=prompt)
            if t > 0:
                options = replace(options, beam_size=None, patience=None)
            else:
                options = replace(options, best_of=None)
            result = DecodingTask(self.model, options).run(audio_features, self.language)
            if not _needs_fallback(result, *self.thresholds):
                break
        return result, audio_features

    def _skip_hallucinations(self, current, state, window_seek, segment_frames, single_timestamp_ending):
        """openai's hallucination_silence_threshold: skip silence before likely hallucinations. Returns the
        segments to keep and whether the whole window is to be skipped; moves state.seek."""
        threshold = self.hallucination_silence_threshold
        time_offset = window_seek * HOP_LENGTH / SAMPLE_RATE
        window_end_time = (window_seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
        segment_duration = segment_frames * HOP_LENGTH / SAMPLE_RATE
        if not single_timestamp_ending:
            end = last_word_end(current)
            if end is not None and end > time_offset:
                remaining = window_end_time - end
                state.seek = round(end * FRAMES_PER_SECOND) if remaining > threshold else window_seek + segment_frames
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
                following = next_words_segment(current[i + 1:])
                hal_next_start = following.words[0]["start"] if following is not None \
                    else time_offset + segment_duration
                silence_before = (segment.start - hal_last_end > threshold or segment.start < threshold
                                  or segment.start - time_offset < 2.0)
                silence_after = (hal_next_start - segment.end > threshold or is_segment_anomaly(following)
                                 or window_end_time - segment.end < 2.0)
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
        return state.all_tokens[state.prompt_reset_since:]

    def segments(self) -> Iterator[Segment]:
        state = _SeekState(seek=self.clips[0][0], clips=self.clips, all_tokens=list(self.initial_prompt_tokens))
        total = sum(min(end, self.content_frames) - min(start, self.content_frames) for start, end in self.clips)
        with _progress_bar(total, self.progress) as bar:
            while state.clip_index < len(state.clips):
                yield from self._window(state)
                bar.update(max(state.frames_done(self.content_frames) - bar.n, 0))

    def _window(self, state: _SeekState) -> Iterator[Segment]:
        """Transcribe the window at state.seek (or move on to the next clip): yield its segments, advance state."""
        _, logprob_threshold, no_speech_threshold = self.thresholds
        clip_start, clip_end = state.clips[state.clip_index]
        state.seek = max(state.seek, clip_start)
        if state.seek >= clip_end:
            state.clip_index += 1
            if state.clip_index < len(state.clips):
                state.seek = state.clips[state.clip_index][0]
            return
        time_offset = state.seek * HOP_LENGTH / SAMPLE_RATE
        segment_frames = min(N_FRAMES, self.content_frames - state.seek, clip_end - state.seek)
        mel_segment = pad_or_trim(self.mel[:, state.seek:state.seek + segment_frames], N_FRAMES)
        result, audio_features = self._decode_window(mel_segment, self._prompt(state))

        if no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold and not (
                logprob_threshold is not None and result.avg_logprob > logprob_threshold):
            state.seek += segment_frames  # silence: skip the whole window
            return

        pieces, advance, single_timestamp_ending = _split_segments(
            result.tokens, self.tokenizer.timestamp_begin, time_offset, segment_frames, self.time_precision,
            self.input_stride)
        window_seek = state.seek
        state.seek += advance
        current = [Segment(id=0, seek=window_seek, start=start, end=end, text=self.tokenizer.decode(
            [t for t in tokens if t < self.tokenizer.eot]), tokens=list(tokens), temperature=result.temperature,
            avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
            no_speech_prob=result.no_speech_prob) for start, end, tokens in pieces]
        if self.word_timestamps:
            add_word_timestamps(segments=current, model=self.model, tokenizer=self.tokenizer,
                                audio_features=audio_features, num_frames=segment_frames,
                                last_speech_timestamp=state.last_speech_timestamp, **self.punctuations)
            end = last_word_end(current)
            if not single_timestamp_ending and end is not None and end > time_offset:
                state.seek = round(end * FRAMES_PER_SECOND)
            if self.hallucination_silence_threshold is not None:
                current, skip = self._skip_hallucinations(current, state, window_seek, segment_frames,
                                                          single_timestamp_ending)
                if skip:
                    return
            end = last_word_end(current)
            if end is not None:
                state.last_speech_timestamp = end
        for segment in current:
            if self.verbose:
                tqdm.write(f"[{_clock(segment.start)} --> {_clock(segment.end)}] {segment.text}", file=sys.stdout)
                sys.stdout.flush()  # the bar, if any, is cleared and redrawn around the line
            if segment.start == segment.end or not segment.text.strip():  # kept but cleared, as openai
                segment.text, segment.tokens, segment.words = "", [], ([] if self.word_timestamps else None)
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
        return TranscriptionResult(text=self.tokenizer.decode(all_tokens), segments=segments,
                                   language=self.language, info=self.info)


def _clock(seconds: float) -> str:
    milliseconds = round(seconds * 1000.0)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    seconds, milliseconds = divmod(milliseconds, 1_000)
    return (f"{hours:02d}:" if hours else "") + f"{minutes:02d}:{seconds:02d}.{milliseconds:03d}"


def transcribe(model, audio, **kwargs) -> TranscriptionResult:
    """Transcribe a file path or a float32 16 kHz waveform; keyword options as openai's transcribe()."""
    return Transcriber(model, audio, **kwargs).run()
