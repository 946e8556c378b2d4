"""Long-form transcription: openai's sequential algorithm over 30-second windows.

Each window is encoded once and decoded at increasing temperatures until the result is neither too
repetitive nor too unlikely; segments are cut at timestamp pairs and the window advances to the last
complete timestamp. Options are checked once, up front, by `transcribe_options`: a value that cannot
work fails before the first window. With `batch_size`, transcribe() runs the batched mode instead
(batched.py).
"""

from dataclasses import dataclass, field, replace
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .audio import (
    CHUNK_LENGTH,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    load_audio,
    log_mel_spectrogram,
    pad_or_trim,
)
from .batched import BatchedTranscriber
from .decoding import DecodingTask, build_tokenizer, detect_language
from .errors import OptionsError
from .segments import (
    Segment,
    TranscriptionInfo,
    TranscriptionResult,
    best_attempt,
    finish_segment,
    is_constant,
    is_empty,
    is_silence,
    needs_fallback,
    print_language,
    print_line,
    print_segment,
    window_segments,
)
from .timing import (
    add_word_timestamps,
    is_segment_anomaly,
    last_word_end,
    next_words_segment,
)
from .tokenizer import language_code
from .transcribe_options import (
    DEFAULT_TEMPERATURES,
    TranscribeOptions,
    check_number,
    check_with_model,
    prompt_tokens,
    transcribe_options,
)
from .vad.options import vad_options

# what callers import from here
__all__ = [
    "DEFAULT_TEMPERATURES",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "TranscriptionInfo",
    "TranscriptionResult",
    "check_number",
    "transcribe",
    "transcribe_options",
]


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
    batch), as does one that ends before it starts (openai and faster-whisper skip it)."""
    # past the end is the end (a time too large for frames, 1e308 s, too)
    points = [round(min(ts * FRAMES_PER_SECOND, content_frames)) for ts in clip_seconds] or [0]
    if len(points) % 2 == 1:
        points.append(content_frames)
    return [
        (min(start, content_frames), max(min(end, content_frames), min(start, content_frames)))
        for start, end in zip(points[::2], points[1::2])
    ]


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
        options = check_with_model(model, options)
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
        audio = load_audio(audio)  # once: what it warns of is said once
        # as faster-whisper reports them: every sample, of the input and of what is transcribed
        duration = len(audio) / SAMPLE_RATE
        if options.vad_applies:
            # MindSpore: the model has imported it
            from .vad import collect_speech, restore_speech_timestamps

            audio, speech_chunks = collect_speech(audio, options.vad_parameters)
            if speech_chunks:
                self.restore = lambda segments: list(
                    restore_speech_timestamps(segments, speech_chunks)
                )
        self.mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
        self.content_frames = self.mel.shape[-1] - N_FRAMES
        self.duration = self.content_frames * HOP_LENGTH / SAMPLE_RATE  # of what is transcribed
        self.clips = _seek_clips(options.clip_timestamps, self.content_frames)
        language, probability, all_probs = self._language()
        self.info = TranscriptionInfo(
            language,
            probability,
            duration,
            duration_after_vad=len(audio) / SAMPLE_RATE,
            vad_options=vad_options(options.vad_parameters) if options.vad_applies else None,
            all_language_probs=all_probs,
        )
        self._use_language(language)
        self.initial_prompt_tokens = prompt_tokens(self.tokenizer, options.initial_prompt)
        self.input_stride = N_FRAMES // model.dims.n_audio_ctx
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE

    def _use_language(self, language: str):
        """Decode (and time words) in `language` from here on."""
        self.language = language
        self.tokenizer = build_tokenizer(self.model, language, self.options.task)
        self.options = replace(self.options, language=language)

    def _language(self):
        """(language, its probability, every language's probability or None): the given language,
        English on an English-only model, else detected as faster-whisper does: from the first
        window of the first clip, or from up to language_detection_segments windows in a row, the
        first whose likeliest language is above language_detection_threshold deciding, else the
        language most windows found, at its highest probability."""
        if self.options.language is not None:
            return language_code(self.options.language), 1.0, None
        if not self.model.is_multilingual:
            return "en", 1.0, None
        options, start = self.transcribe_options, self.clips[0][0]
        end = min(start + options.language_detection_segments * N_FRAMES, self.content_frames + 1)
        if self.verbose:
            seconds = options.language_detection_segments * CHUNK_LENGTH
            print_line(
                f"Detecting language using up to the first {seconds} seconds. Use `--language` to "
                "specify the language"
            )
        found = {}
        for seek in range(start, max(end, start + 1), N_FRAMES):
            window = pad_or_trim(self.mel[:, seek : seek + N_FRAMES], N_FRAMES)
            language, probs = detect_language(self.model, window)
            probability = probs[language]
            if probability > options.language_detection_threshold:
                break
            found.setdefault(language, []).append(probability)
        else:
            language = max(found, key=lambda code: len(found[code]))
            probability = max(found[language])
        if self.verbose is not None:  # openai: with the progress bar too
            print_language(language)
        ranked = sorted(probs.items(), key=lambda item: -item[1])
        return language, probability, ranked

    def _decode_window(self, mel_segment, prompt, first: bool):
        """(result, audio features): the window is encoded once for every temperature and for word
        timing. The prefix goes to the audio's first window only, and is part of its text, as in
        faster-whisper (openai puts it in every window and leaves it out of the text)."""
        audio_features = self.model.inference.embed_audio(mel_segment[None])
        if self.transcribe_options.multilingual:
            # faster-whisper's multilingual: each window in its own language, given one or not
            language, _ = detect_language(self.model, None, audio_features=audio_features)
            self._use_language(language)
        attempts = []
        for t in self.temperatures:
            options = replace(self.transcribe_options, decoding=self.options).at_temperature(t)
            options = replace(options, prompt=prompt, prefix=options.prefix if first else None)
            task = DecodingTask(self.model, options)
            result = task.run(audio_features, self.language)
            result = replace(result, tokens=list(task.prefix_tokens) + result.tokens)
            if not needs_fallback(result, *self.thresholds):
                return result, audio_features
            attempts.append(result)
        return best_attempt(attempts, self.thresholds[0]), audio_features

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
        if no_speech_threshold is not None and is_constant(segment):
            state.seek += segment_frames
            return
        time_offset = state.seek * HOP_LENGTH / SAMPLE_RATE
        mel_segment = pad_or_trim(segment, N_FRAMES)
        result, audio_features = self._decode_window(
            mel_segment, self._prompt(state), first=state.seek == 0
        )
        if is_silence(result, logprob_threshold, no_speech_threshold):
            state.seek += segment_frames  # silence: skip the whole window
            return
        window_seek = state.seek
        current, advance, single_timestamp_ending = window_segments(
            result,
            self.tokenizer,
            window_seek,
            segment_frames,
            time_offset,
            self.time_precision,
            self.input_stride,
        )
        state.seek += advance
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
        empty = [is_empty(segment) for segment in current]
        # the seek state above stays on the speech-only timeline, as faster-whisper's
        if self.restore is not None:
            current = self.restore(current)
        for segment, cleared in zip(current, empty):
            if self.verbose:
                print_segment(segment)
            finish_segment(segment, state.n_segments, cleared)
            state.n_segments += 1
            state.all_tokens.extend(segment.tokens)
            yield segment
        reset = self.transcribe_options.prompt_reset_on_temperature
        if not self.condition_on_previous_text or result.temperature > reset:
            state.prompt_reset_since = len(state.all_tokens)

    def run(self) -> TranscriptionResult:
        segments = list(self.segments())
        all_tokens = [t for s in segments for t in s.tokens]
        return TranscriptionResult(
            text=self.tokenizer.decode(all_tokens),
            segments=segments,
            language=self.info.language,
            info=self.info,
        )


def transcribe(model, audio, **kwargs) -> TranscriptionResult:
    """Transcribe a file path or an array of 16 kHz samples (what arrays are taken: load_audio's
    docstring); keyword options as openai's transcribe(), plus faster-whisper's vad_filter and
    vad_parameters (a VadOptions, a dict of its fields or "name=value,..."; Transcriber's
    docstring) and batch_size with chunk_length (the batched mode: batched.py), checked first
    (transcribe_options)."""
    shown = {name: kwargs.pop(name) for name in ("verbose", "progress") if name in kwargs}
    for name, value in shown.items():
        # openai's verbose is three-way: None (nothing shown), False (a bar), True (the segments)
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise OptionsError(f"{name} must be True, False or None, got {value!r}")
        shown[name] = None if value is None else bool(value)  # read as `verbose is False`
    if "log_progress" in kwargs:  # faster-whisper's name for the progress bar
        log_progress = kwargs.pop("log_progress")
        if not isinstance(log_progress, (bool, np.bool_)):
            raise OptionsError(f"log_progress must be True or False, got {log_progress!r}")
        shown.setdefault("progress", bool(log_progress))
    options = transcribe_options(**kwargs)
    if options.batched:
        return BatchedTranscriber(model, options=options, **shown).run(audio)
    return Transcriber(model, audio, options=options, **shown).run()
