"""The batched long-form mode, `transcribe(..., batch_size=N)`: windows of many pieces of speech,
of one file or many, decoded together.

faster-whisper's BatchedInferencePipeline semantics: the Silero VAD finds the speech (pauses of
160 ms split it), the speech is joined into pieces of up to 30 s, no text is carried from one piece
to the next (`initial_prompt` goes to every piece), each piece's language is detected when none is
given, and segment times are moved back to the original timeline.

Where it differs, so that no words are dropped: a piece is transcribed with openai's seek rule, so
when decoding stops at a timestamp before the piece's end, the rest of the piece is decoded as
another window in a later batch; windows failing the compression or log-probability thresholds are
decoded again together at the next temperature (openai's fallback; faster-whisper's batched mode
uses the first temperature only); timestamps are on by default (`without_timestamps=True` gives one
segment per piece, as faster-whisper's default). Without the VAD filter each clip (the whole file
by default) is one piece of any length, transcribed window by window as the sequential mode does.

Files are read only when the batch needs more windows, and each file's result is given as soon as
its last piece is done, so a long list of files streams through a fixed amount of memory. Inputs may
also arrive while others are decoded (`InputQueue`, a server's requests) and may each have their own
language and initial prompt (`BatchInput`; both in batch_inputs.py): they join the next batch, the
inputs taking turns, so that one behind a long input is not kept waiting for all its pieces.
"""

from collections import deque
from dataclasses import replace
from os import PathLike
from typing import Iterable, Iterator, List, Optional, Tuple, Union

from tqdm import tqdm

from . import sigint
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
from .batch_feed import BatchFeed
from .batch_inputs import TURN_OVER, BatchInput, Cancelled, InputQueue
from .batched_pieces import Piece, Source, clamp_to_piece, clip_spans, take_in_turn
from .decoding import (
    BatchDecodingTask,
    DecodingTask,
    build_tokenizer,
    detect_language,
    encode_windows,
    model_language,
)
from .errors import OptionsError, WhispermsError
from .segments import (
    TranscriptionInfo,
    TranscriptionResult,
    best_attempt,
    finish_segment,
    is_constant,
    is_empty,
    is_silence,
    needs_fallback,
    print_language,
    print_segment,
    window_segments,
)
from .timing import add_word_timestamps, last_word_end
from .tokenizer import language_code
from .transcribe_options import (
    TranscribeOptions,
    check_decodable,
    check_with_model,
    checked_prompt_tokens,
    prompt_tokens,
    transcribe_options,
)

# faster-whisper's BatchedInferencePipeline default
DEFAULT_BATCH_SIZE = 8
# Within a VAD piece every second is speech, yet the model often ends a window a few sentences
# early (in the sequential mode the next window starts there). Here end of text waits until the
# last timestamp is within this many seconds of the piece's end, and a window so ended has read its
# piece: the rest of the piece would cost a whole window's encoding for a fraction of a second.
EARLY_END_MARGIN = 1.0
# Where a piece's speech runs to the recording's end its rest is decoded however short (a cut
# sentence's last words have no silence after them), except a rest shorter than this (seconds): no
# word fits there, and a window of a few frames of audio makes the model write text at every
# temperature of the fallback, all of which falls past the piece's end and is dropped.
END_SLIVER = 0.1


class BatchedTranscriber:
    """The batched mode over any number of inputs: `run(audio)` for one, `results(audios)` for a
    stream of them ((index, result or WhispermsError) pairs, each as soon as it is done).

    `verbose` as openai's: True prints each input's segments when it is done (below openai's
    "Detected language" line where it was detected), False shows a bar over pieces of speech (no
    language line: it would stand unnamed between the inputs' results); `progress` overrides the
    bar alone.
    """

    def __init__(
        self,
        model,
        *,
        verbose=None,
        progress=None,
        options: Optional[TranscribeOptions] = None,
        **kwargs,
    ):
        if options is None:
            options = transcribe_options(**{"batch_size": DEFAULT_BATCH_SIZE, **kwargs})
        elif kwargs:
            raise OptionsError(
                f"give options or keyword options, not both ({', '.join(sorted(kwargs))})"
            )
        if not options.batched:
            raise OptionsError("the batched mode needs options built with a batch_size")
        options = check_with_model(model, options)
        self.model = model
        self.options = options
        self.batch_size = options.batch_size
        self.verbose = verbose
        self.progress = verbose is False if progress is None else bool(progress)
        self.thresholds = (
            options.compression_ratio_threshold,
            options.logprob_threshold,
            options.no_speech_threshold,
        )
        self.language = (
            language_code(options.decoding.language) if options.decoding.language else None
        )
        if self.language is None and not model.is_multilingual:
            self.language = "en"
        # the language an input's result reports when its pieces' are detected: a language given
        # with multilingual, as faster-whisper's pipeline reports it (None: the first piece's; an
        # input's own language replaces it, Source.reported_language)
        self.reported_language = None
        if options.multilingual:
            # each piece's detected, as faster-whisper's pipeline does (an input's own stays)
            self.reported_language, self.language = self.language, None
        self.tokenizer = build_tokenizer(model, self.language, options.decoding.task)
        self.initial_prompt_tokens = prompt_tokens(self.tokenizer, options.initial_prompt)
        check_decodable(model, options, self.language, self.initial_prompt_tokens)
        # windows of VAD pieces hold speech to their end (EARLY_END_MARGIN)
        self.early_end = options.vad_applies and not options.decoding.without_timestamps
        # a VAD piece decoded without timestamps is one segment (faster-whisper's): its decode has
        # read it all, and openai's seek to the last word's end would decode its tail again alone
        self.one_segment_per_piece = options.vad_applies and options.decoding.without_timestamps
        self.input_stride = N_FRAMES // model.dims.n_audio_ctx
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE
        # what has been decoded: batches, their windows, the most windows in one
        self.batches = self.windows = self.largest_batch = 0

    def run(self, audio) -> TranscriptionResult:
        """One input (a path or 16-kHz samples, as transcribe takes): its result, or its error
        raised."""
        ((_, result),) = self.results([audio])
        if isinstance(result, WhispermsError):
            raise result
        return result

    def results(
        self, audios: Union[Iterable, InputQueue]
    ) -> Iterator[Tuple[int, Union[TranscriptionResult, WhispermsError]]]:
        """(index, result) for every input (a path, samples or a BatchInput), in the order they
        finish; an input that cannot be read, or whose options the model cannot take, gives (index,
        its WhispermsError) and the others go on. From an InputQueue: the inputs put before the
        queue is found empty with nothing in flight, and TURN_OVER between batches when the queue
        asks for it (InputQueue.turn_over)."""
        if isinstance(audios, (str, bytes, bytearray, memoryview, PathLike)) or hasattr(
            audios, "read"
        ):  # iterated, one input made an input of each letter, byte or line
            raise OptionsError("results() takes a list of inputs, not one input: put it in a list")
        found = self._results(audios)
        while True:
            # MindSpore's work between the graphs sets its SIGINT handler too: the caller's back
            # whenever a result is handed out (sigint.py)
            with sigint.kept():
                item = next(found, None)
            if item is None:
                return
            yield item

    def _results(self, audios):
        # arriving inputs (a server's requests) are taken while fewer inputs than a batch are
        # decoding, however many pieces those have, and made ready on threads of their own: one
        # behind a long input is decoded at once; inputs to be read (files) only when the pieces
        # run short, which bounds the audio held (batch_feed.py)
        feed = BatchFeed(audios, self._prepare, self.batch_size)
        turn_over = audios.turn_over if isinstance(audios, InputQueue) else lambda: False
        pending: deque = deque()  # pieces with windows left, in the order they are to be decoded
        with tqdm(total=0, unit="piece", disable=not self.progress) as bar:
            try:
                while True:
                    # the pieces of inputs given up are decoded no further
                    gone = {p.source.index for p in pending if feed.cancelled(p.source.index)}
                    if gone:
                        pending = deque(p for p in pending if p.source.index not in gone)
                        for index in sorted(gone):
                            yield index, Cancelled()
                    inputs = len({p.source.index for p in pending})
                    for index, source in feed.ready(len(pending), inputs):
                        if not isinstance(source, Source):  # an error, or given up
                            yield index, source
                            continue
                        if not source.pieces:
                            yield source.index, self._finish(source)
                        pending.extend(source.pieces)
                        bar.total += len(source.pieces)
                        bar.refresh()
                    if not pending:
                        if feed.idle():
                            return
                        if turn_over():  # inputs still being read: the other queues go meanwhile
                            yield TURN_OVER
                        continue
                    batch = take_in_turn(pending, self.batch_size)
                    self._advance(batch)
                    # a piece not yet done goes first into the next batch: its input finishes
                    # sooner
                    for piece in reversed(batch):
                        if not piece.done:
                            pending.appendleft(piece)
                            continue
                        bar.update(1)
                        piece.mel = None
                        piece.source.remaining -= 1
                        if piece.source.remaining == 0:
                            yield piece.source.index, self._finish(piece.source)
                    # a worker with other queues waiting takes control back between batches
                    if turn_over():
                        yield TURN_OVER
            finally:
                feed.close()

    # ---- an input into pieces ----

    def _prepare(self, index: int, audio) -> Source:
        language, prompt = self.language, self.initial_prompt_tokens
        reported = self.reported_language
        if isinstance(audio, BatchInput):
            if audio.language is not None:
                # English on an English-only model; refuses a language the model does not know
                language = model_language(self.model, audio.language, self.options.decoding.task)
                reported = language  # the input's own, or None ("auto"): its pieces' detected
            if audio.initial_prompt is not None:
                prompt = checked_prompt_tokens(self.model, self.tokenizer, audio.initial_prompt)
                check_decodable(self.model, self.options, language, prompt)
            audio = audio.audio
        audio = load_audio(audio)
        duration = len(audio) / SAMPLE_RATE  # as faster-whisper reports it: every sample
        if self.options.vad_applies:
            # MindSpore: the model has imported it
            from .vad import collect_chunks, get_speech_timestamps

            chunks = get_speech_timestamps(audio, self.options.vad_parameters)
            longest = self.options.longest_piece
            pieces, metadata = collect_chunks(audio, chunks, max_duration=longest)
            # no speech: one empty piece, dropped below
            spans = [(m["offset"], p) for m, p in zip(metadata, pieces)]
            source = Source(
                index,
                duration,
                sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE,
                chunks,
                language,
                prompt,
            )
        else:
            spans = [
                (start, audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)])
                for start, end in clip_spans(self.options.clip_timestamps, len(audio))
            ]
            transcribed = sum(len(p) for _, p in spans) / SAMPLE_RATE
            source = Source(index, duration, transcribed, None, language, prompt)
        source.reported_language = reported
        for offset, samples in spans:
            piece = Piece(source, samples, offset, language=language)
            if piece.content_frames > 0:
                source.pieces.append(piece)
        if source.pieces and source.speech_chunks:
            source.pieces[-1].ends_input = source.speech_chunks[-1]["end"] > len(audio) - HOP_LENGTH
        source.remaining = len(source.pieces)
        return source

    # ---- one batch of windows ----

    def _advance(self, batch: List[Piece]):
        """Decode the next window of every piece of `batch` together; keep their segments and move
        their seek points."""
        _, logprob_threshold, no_speech_threshold = self.thresholds
        live, mels, frames = [], [], []
        for piece in batch:
            piece.windows += 1
            if piece.mel is None:
                # over the whole piece, as the sequential mode's over the whole input: the floor
                # of the log-mel is set by the piece's loudest frame
                n_mels = self.model.dims.n_mels
                piece.mel = log_mel_spectrogram(piece.samples, n_mels, padding=N_SAMPLES)
                piece.samples = None
            segment_frames = min(N_FRAMES, piece.content_frames - piece.seek)
            segment = piece.mel[:, piece.seek : piece.seek + segment_frames]
            if no_speech_threshold is not None and is_constant(segment):
                piece.seek += segment_frames
                continue
            live.append(piece)
            mels.append(pad_or_trim(segment, N_FRAMES))
            frames.append(segment_frames)
        if not live:
            return
        self.batches += 1
        self.windows += len(live)
        self.largest_batch = max(self.largest_batch, len(live))
        features = encode_windows(self.model, mels)
        for piece, window in zip(live, features):
            if piece.language is None:
                detected = self._detect(window)
                piece.language, piece.language_probability, piece.all_language_probs = detected
        results = self._decode(live, features, frames)
        for piece, window, segment_frames, result in zip(live, features, frames, results):
            if is_silence(result, logprob_threshold, no_speech_threshold):
                piece.seek += segment_frames
                continue
            self._keep(piece, window, segment_frames, result)

    def _detect(self, window) -> Tuple[str, float, List[Tuple[str, float]]]:
        language, probs = detect_language(self.model, None, audio_features=window)
        return language, probs[language], sorted(probs.items(), key=lambda item: -item[1])

    def _prompt(self, piece: Piece) -> List[int]:
        """The initial prompt (until the text is reset), then the piece's text since the last reset.
        The decoder keeps the prompt's last n_text_ctx // 2 - 1 tokens: with carry_initial_prompt
        the text is cut to fit first, so that the initial prompt stays (the sequential mode's rule,
        openai's)."""
        initial, text = piece.source.prompt_tokens, piece.tokens[piece.prompt_reset_since :]
        if self.options.carry_initial_prompt:
            text = text[-(self.model.dims.n_text_ctx // 2 - 1 - len(initial)) :]
        elif piece.prompt_reset:
            return text
        return initial + text

    def _decode(self, pieces: List[Piece], features: list, frames) -> list:
        """One DecodingResult per window: every window at the first temperature, then those that
        need it again together at the next (openai's fallback)."""
        results = [None] * len(pieces)
        attempts = [[] for _ in pieces]  # of the windows that needed a fallback
        todo = list(range(len(pieces)))
        for temperature in self.options.temperature:
            options = self.options.at_temperature(temperature)
            tasks = [
                DecodingTask(
                    self.model,
                    replace(
                        options,
                        language=pieces[i].language,
                        prompt=self._prompt(pieces[i]),
                        # the input's first window, as the sequential mode's (faster-whisper's
                        # pipeline ignores a prefix)
                        prefix=options.prefix if pieces[i].opens_input else None,
                    ),
                )
                for i in todo
            ]
            # padded to a power of two (or the batch size) with copies of the last window, so
            # that few step-graph shapes are compiled (a copy finishes when its original does)
            padding = min(1 << (len(todo) - 1).bit_length(), self.batch_size) - len(todo)
            rows = [features[i] for i in todo] + [features[todo[-1]]] * padding
            ends = None
            if self.early_end:
                ends = [max(frames[i] / FRAMES_PER_SECOND - EARLY_END_MARGIN, 0) for i in todo]
                ends += [ends[-1]] * padding
            decoded = BatchDecodingTask(tasks + [tasks[-1]] * padding, speech_ends=ends).run(rows)
            for i, task, result in zip(todo, tasks, decoded):
                # the prefix is part of the window's text (and a segment's), as in faster-whisper's
                # sequential mode
                results[i] = replace(result, tokens=list(task.prefix_tokens) + result.tokens)
            todo = [i for i in todo if needs_fallback(results[i], *self.thresholds)]
            for i in todo:
                attempts[i].append(results[i])
            if not todo:
                break
        for i in todo:  # every temperature failed
            results[i] = best_attempt(attempts[i], self.thresholds[0])
        return results

    def _keep(self, piece: Piece, window, segment_frames: int, result):
        """A window's segments, on its input's transcribed timeline, added to its piece."""
        tokenizer = build_tokenizer(self.model, piece.language, self.options.decoding.task)
        window_seek = piece.seek
        # on whole frames, as word timing reads the window's place from Segment.seek
        time_offset = (piece.frame_offset + window_seek) * HOP_LENGTH / SAMPLE_RATE
        current, advance, single_timestamp_ending = window_segments(
            result,
            tokenizer,
            piece.frame_offset + window_seek,
            segment_frames,
            time_offset,
            self.time_precision,
            self.input_stride,
        )
        piece.seek += advance
        if self.options.word_timestamps:
            if piece.last_speech_timestamp is None:  # its first window timed
                piece.last_speech_timestamp = piece.speech_before()
            whole = self.options.vad_applies and segment_frames == piece.content_frames
            add_word_timestamps(
                segments=current,
                model=self.model,
                tokenizer=tokenizer,
                audio_features=window,
                num_frames=piece.aligned_frames if whole else segment_frames,
                last_speech_timestamp=piece.last_speech_timestamp,
                prepend_punctuations=self.options.prepend_punctuations,
                append_punctuations=self.options.append_punctuations,
            )
            end = last_word_end(current)
            seek_to_last_word = not (single_timestamp_ending or self.one_segment_per_piece)
            if seek_to_last_word and end is not None and end > time_offset:
                piece.seek = round(end * FRAMES_PER_SECOND) - piece.frame_offset
            if end is not None:
                piece.last_speech_timestamp = end
        window_end = window_seek + segment_frames
        # a window that ends where it began (a 0.00 s segment) moves on
        margin = END_SLIVER if piece.ends_input else EARLY_END_MARGIN
        if piece.seek <= window_seek or (
            self.early_end and window_end - piece.seek <= margin * FRAMES_PER_SECOND
        ):
            piece.seek = window_end
        piece.segments.extend(current)
        piece.tokens.extend(t for segment in current for t in segment.tokens)
        reset = self.options.prompt_reset_on_temperature
        if not self.options.condition_on_previous_text or result.temperature > reset:
            piece.prompt_reset_since = len(piece.tokens)
            piece.prompt_reset = True

    # ---- an input's result ----

    def _finish(self, source: Source) -> TranscriptionResult:
        """The input's result, its pieces let go: each piece refers back to its input, so a
        long-running caller (the server, a bulk worker) would otherwise keep every finished input's
        pieces and their mels until the garbage collector's next full pass."""
        result = self._result(source)
        source.pieces.clear()
        return result

    def _result(self, source: Source) -> TranscriptionResult:
        segments = [segment for piece in source.pieces for segment in piece.segments]
        for piece in source.pieces if source.speech_chunks else ():
            for segment in piece.segments:
                clamp_to_piece(segment, piece)
        # after the clamp: text wholly past its piece's end (in the window's padding) is cleared
        empty = [is_empty(segment) for segment in segments]
        if source.speech_chunks:
            from .vad import restore_speech_timestamps

            # an end in a chunk's opening padding ends with the chunk before (faster-whisper's
            # pipeline gives its pieces no segment times to compare)
            slack = self.options.vad_parameters.speech_pad_ms / 1000
            segments = list(
                restore_speech_timestamps(segments, source.speech_chunks, end_slack=slack)
            )
        language, probability, ranked = self._language(source)
        if self.verbose and ranked is not None:
            # openai's line, above the input's segments: its first piece's language (with a bar
            # alone it would stand unnamed between the inputs' results)
            print_language(language)
        for i, (segment, cleared) in enumerate(zip(segments, empty)):
            if self.verbose:  # before an empty one is cleared, as the sequential mode and openai
                print_segment(segment)
            finish_segment(segment, i, cleared)
        info = TranscriptionInfo(
            language,
            probability,
            source.duration,
            duration_after_vad=source.duration_after_vad,
            vad_options=self.options.vad_parameters if self.options.vad_applies else None,
            all_language_probs=ranked,
        )
        return TranscriptionResult(
            text=self.tokenizer.decode([t for s in segments for t in s.tokens]),
            segments=segments,
            language=language,
            info=info,
        )

    def _language(self, source: Source) -> Tuple[str, float, Optional[List[Tuple[str, float]]]]:
        """The language an input's result reports, its probability and (where it was detected)
        every language's: the one given, else its first piece's with a language (a piece whose
        windows were all skipped as digital silence has none), else English."""
        given = source.language or source.reported_language
        first = next((p for p in source.pieces if p.language is not None), None)
        if given is not None or first is None:
            return given or "en", 1.0, None
        return first.language, first.language_probability, first.all_language_probs
