"""Decoding of 30-second windows, alone or several together: options, results, the decoding tasks,
language detection, `decode`.

Mirrors openai/whisper's decoding.py semantics. Logits reach the host once per step (B, n_vocab) and
the rules run there in NumPy (logit_filters.py; token_selection.py picks the tokens): on CPU that is
cheaper than extra device graphs, and each rule stays small and testable.
"""

import zlib
from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import CHUNK_LENGTH
from .batch_windows import BeamWindows, SampledWindows
from .decoding_checks import check_fp16, check_vocabulary, checked_mel, mel_array, verify_options
from .errors import OptionsError, warn
from .logit_filters import (
    ApplyTimestampRules,
    LogitFilter,
    NoRepeatNgram,
    RepetitionPenalty,
    SuppressBlank,
    SuppressEarlyEnd,
    SuppressTokens,
)
from .logprobs import log_softmax
from .token_selection import BeamSearchDecoder, GreedyDecoder, beam_rows, rank_score
from .tokenizer import Tokenizer, detect_requested, get_tokenizer, language_code
from .window_slots import WindowSlots

# Windows per encoder call on CPU: one at a time runs as fast per window (slower batched on an AVX2
# CPU), holds one window's activations instead of a batch's, and reuses the sequential mode's graph
CPU_ENCODER_GROUP = 1


@dataclass(frozen=True)
class DecodingOptions:
    task: str = "transcribe"  # "transcribe" or "translate" (X -> English)
    language: Optional[str] = None  # code or name; None = detect (multilingual models)
    temperature: float = 0.0  # 0 = greedy argmax; > 0 = sampling
    sample_len: Optional[int] = None  # max tokens to sample; None = n_text_ctx // 2
    # independent samples at temperature > 0, best one kept
    best_of: Optional[int] = None
    beam_size: Optional[int] = None  # beams at temperature 0; None = greedy
    # beam search: stop after round(beam_size * patience) finished
    patience: Optional[float] = None
    # None = length-normalised sum of logprobs, else Google NMT alpha
    length_penalty: Optional[float] = None
    prompt: Optional[Union[str, List[int]]] = None  # previous text (after <|startofprev|>)
    prefix: Optional[Union[str, List[int]]] = None  # forced start of the current text
    suppress_tokens: Optional[Union[str, Sequence[int]]] = "-1"  # "-1" = openai's non-speech set
    suppress_blank: bool = True  # no blank/EOT as the first sampled token
    without_timestamps: bool = False  # <|notimestamps|>: text tokens only
    max_initial_timestamp: Optional[float] = 1.0  # seconds; the first timestamp may not be later
    # openai's switch, taken so that its calls run: the precision is load_model's dtype, and a
    # value that disagrees with it is a warning (openai's own on a CPU), not a change
    fp16: Optional[bool] = None
    # faster-whisper's (CTranslate2's): above 1, a penalty on the logits of the tokens already in
    # the window's text (logit_filters.RepetitionPenalty)
    repetition_penalty: float = 1.0
    # faster-whisper's: no n-gram of this many tokens repeated within a window's text; 0 = off
    no_repeat_ngram_size: int = 0
    # faster-whisper's: words the model should expect, put after <|startofprev|> before the prompt,
    # in every window without a prefix
    hotwords: Optional[str] = None


@dataclass(frozen=True)
class DecodingResult:
    language: str
    tokens: List[int] = field(default_factory=list)
    text: str = ""
    avg_logprob: float = np.nan
    no_speech_prob: float = np.nan
    temperature: float = np.nan
    compression_ratio: float = np.nan
    language_probs: Optional[Dict[str, float]] = None
    # openai's: the window's encoder output (n_audio_ctx, n_audio_state), a MindSpore tensor; decode
    # fills it (transcribe's results do not keep it, as openai's do not)
    audio_features: Optional[object] = field(default=None, compare=False, repr=False)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ---- the decoding task ----


def model_language(model, language, task="transcribe"):
    """The language code a decode of `language` (a code or a name; None: detected) uses on `model`:
    English on an English-only model, with a WhispermsWarning if another was asked for, as openai's
    CLI and faster-whisper do; an OptionsError for a language no model (or not this one) knows."""
    if language is None:
        return None
    if detect_requested(language):  # an English-only model has nothing to detect
        return None if model.is_multilingual else "en"
    code = language_code(language)
    if not model.is_multilingual and code != "en":
        warn(
            f"this model is English-only; language '{language}' is ignored and the audio is "
            "transcribed as English"
        )
        code = "en"
    build_tokenizer(model, code, task)  # a language beyond the model's (yue before large-v3)
    return code


def build_tokenizer(model, language=None, task="transcribe") -> Tokenizer:
    """The tokenizer for `model` in `language` and `task`; an English-only model's takes neither
    (openai's get_tokenizer)."""
    return get_tokenizer(
        model.tokenizer_path,
        multilingual=model.is_multilingual,
        num_languages=model.num_languages,
        language=language,
        task=task,
    )


class DecodingTask:
    def __init__(self, model, options: DecodingOptions):
        self.model = model
        self.options = verify_options(options)
        self.tokenizer = build_tokenizer(model, options.language or "en", options.task)
        self.n_ctx = model.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        tok = self.tokenizer
        self.sot_sequence = (
            tok.sot_sequence_including_notimestamps
            if options.without_timestamps
            else tok.sot_sequence
        )
        check_vocabulary(options, model.dims.n_vocab)
        # the prefix opens the first segment when <|0.00|> is put before it
        self.prefix_tokens, self.opened = self._prefix_tokens()
        self.initial_tokens = self._initial_tokens()
        if len(self.initial_tokens) >= self.n_ctx:
            raise OptionsError(
                f"the prompt and prefix make {len(self.initial_tokens)} tokens, more than the "
                f"model's {self.n_ctx}-token context takes"
            )
        self.sample_begin = len(self.initial_tokens)
        self.sot_index = self.initial_tokens.index(tok.sot)
        self.logit_filters = self._logit_filters()

    def _encode_text(self, text):
        return self.tokenizer.encode(" " + text.strip()) if isinstance(text, str) else list(text)

    def _prefix_tokens(self) -> Tuple[Tuple[int, ...], bool]:
        """The forced start of the text: the prefix (openai's slice of it), after <|0.00|> when
        timestamps are on and it starts with text, as CTranslate2 and faster-whisper put it
        (openai forces a timestamp right after the prefix, and the model then mostly ends the
        window with nothing); and whether <|0.00|> was put there."""
        if not self.options.prefix:
            return (), False
        prefix = self._encode_text(self.options.prefix)
        max_prefix_len = self.n_ctx // 2 - self.sample_len
        if max_prefix_len > 0:  # openai's slice; a sample_len from n_ctx // 2 up keeps it whole
            prefix = prefix[-max_prefix_len:]
        ts = self.tokenizer.timestamp_begin
        if self.options.without_timestamps or not prefix or prefix[0] >= ts:
            return tuple(prefix), False
        return (ts, *prefix), True

    def _initial_tokens(self) -> Tuple[int, ...]:
        """[<|startofprev|>, hotwords, prompt], the start tokens, the prefix. As in faster-whisper,
        the hotwords keep their first n_text_ctx // 2 - 1 tokens and the prompt its last as many,
        and a window with a prefix has no hotwords."""
        tokens = list(self.sot_sequence) + list(self.prefix_tokens)
        half = self.n_ctx // 2 - 1
        previous = self._encode_text(self.options.prompt)[-half:] if self.options.prompt else []
        hotwords = []
        if self.options.hotwords and not self.options.prefix:
            hotwords = self._encode_text(self.options.hotwords)[:half]
        if 1 + len(hotwords) + len(previous) + len(tokens) >= self.n_ctx:  # 1: <|startofprev|>
            # past the context (faster-whisper then fails): the prompt section keeps openai's
            # budget, the hotwords first
            previous = previous[len(previous) - max(half - len(hotwords), 0) :]
        if previous or hotwords:
            tokens = [self.tokenizer.sot_prev] + hotwords + previous + tokens
        return tuple(tokens)

    def suppress_tokens(self) -> Tuple[int, ...]:
        tok = self.tokenizer
        requested = self.options.suppress_tokens
        if isinstance(requested, str):
            requested = [int(t) for t in requested.split(",") if t.strip()]
        requested = list(requested or [])
        if -1 in requested:
            requested = [t for t in requested if t >= 0] + list(tok.non_speech_tokens)
        requested += [
            tok.transcribe,
            tok.translate,
            tok.sot,
            tok.sot_prev,
            tok.sot_lm,
            tok.no_speech,
        ]
        return tuple(sorted(set(requested)))

    def _logit_filters(self, sample_begin=None, opened=None, forced=None) -> List[LogitFilter]:
        """The rules, for token rows whose sampled part starts at `sample_begin` (default: after
        the initial tokens), and whose first segment a prefix `opened` (a bool or one per row;
        default: this task's). Rows that start at their sampled part give each one's prefix as
        `forced` (logit_filters.row_texts)."""
        filters: List[LogitFilter] = []
        # where the rows' text starts: the prefix, when the rows hold it
        text_begin = sample_begin
        if sample_begin is None:
            sample_begin = self.sample_begin
            text_begin = sample_begin - len(self.prefix_tokens)
        if self.options.repetition_penalty != 1:
            filters.append(RepetitionPenalty(self.options.repetition_penalty, text_begin, forced))
        if self.options.no_repeat_ngram_size > 0:
            filters.append(NoRepeatNgram(self.options.no_repeat_ngram_size, text_begin, forced))
        opened = self.opened if opened is None else opened
        if self.options.suppress_blank:
            filters.append(SuppressBlank(self.tokenizer, sample_begin))
        if self.options.suppress_tokens:
            filters.append(SuppressTokens(self.suppress_tokens()))
        if not self.options.without_timestamps:
            n_ctx = self.model.dims.n_audio_ctx
            precision = CHUNK_LENGTH / n_ctx
            index = None
            if self.options.max_initial_timestamp:
                # past the window's last timestamp is no limit (and 1e308 s no overflow)
                index = round(min(self.options.max_initial_timestamp / precision, n_ctx))
            filters.append(ApplyTimestampRules(self.tokenizer, sample_begin, index, opened))
        return filters

    def run(
        self, audio_features, language: str, rng: Optional[np.random.Generator] = None
    ) -> DecodingResult:
        """Decode one window (batch of 1) whose audio features are already computed.

        At temperature > 0 with best_of, the samples are drawn one after another and ranked as
        openai does (sum of logprobs over length, or over the Google NMT penalty when length_penalty
        is set).
        """
        # openai's choice: beam search whenever beam_size is given (its temperature is reported,
        # not used); transcribe gives beam_size only to temperature 0
        if self.options.beam_size is not None:
            candidates = self._beam_search(audio_features)
        else:
            n_samples = (self.options.best_of or 1) if self.options.temperature > 0 else 1
            rng = rng or np.random.default_rng()
            candidates = [self._sample(audio_features, rng) for _ in range(n_samples)]
        forced = len(self.prefix_tokens)
        scores = [
            rank_score(logprob, forced + len(tokens), self.options.length_penalty)
            for tokens, logprob, _ in candidates
        ]
        sampled, sum_logprob, no_speech_prob = candidates[int(np.argmax(scores))]
        return self.make_result(language, sampled, sum_logprob, no_speech_prob)

    def make_result(self, language, tokens, sum_logprob, no_speech_prob) -> DecodingResult:
        """The result of the chosen candidate. A prefix counts as CTranslate2 counts it (and
        faster-whisper after it): its tokens add to the length (here, and in the ranking of the
        candidates) and its text to the compressed text, not their log probabilities."""
        text = self.tokenizer.decode(tokens).strip()
        forced = len(self.prefix_tokens)
        whole = self.tokenizer.decode([*self.prefix_tokens, *tokens]).strip() if forced else text
        return DecodingResult(
            language=language,
            tokens=tokens,
            text=text,
            avg_logprob=sum_logprob / (forced + len(tokens) + 1),
            no_speech_prob=float(no_speech_prob),
            temperature=self.options.temperature,
            compression_ratio=compression_ratio(whole),
        )

    def _sample(self, audio_features, rng):
        """One sequence: (sampled tokens without EOT, sum of logprobs incl. EOT, no-speech
        probability)."""
        inference = self.model.inference
        tok = self.tokenizer
        tokens = np.array([self.initial_tokens], np.int64)
        decoder = GreedyDecoder(self.options.temperature, tok.eot, rng)
        sum_logprobs = np.zeros(1, np.float64)
        logits, cache = inference.start(
            audio_features, tokens, [self.sot_index, self.sample_begin - 1]
        )
        no_speech_prob = float(
            np.exp(log_softmax(logits[:, 0].astype(np.float64)))[0, tok.no_speech]
        )
        logits = logits[:, 1]
        for _ in range(self.sample_len):
            for logit_filter in self.logit_filters:
                logit_filter.apply(logits, tokens)
            next_tokens = decoder.select(logits, tokens, sum_logprobs)
            tokens = np.concatenate([tokens, next_tokens[:, None]], axis=1)
            # openai's bound: a row may grow one past the context (its last position is fed)
            if (next_tokens == tok.eot).all() or tokens.shape[1] > self.n_ctx:
                break
            logits, cache = inference.step(next_tokens, cache)
        sampled = tokens[0, self.sample_begin :].tolist()
        if tok.eot in sampled:
            sampled = sampled[: sampled.index(tok.eot)]
        return sampled, float(sum_logprobs[0]), no_speech_prob

    def _beam_search(self, audio_features):
        """Candidates (tokens without EOT, sum of logprobs, no-speech probability) from one batched
        beam search.

        The prompt runs once (batch 1) and its cache is copied to the beams; the window's
        cross-attention K/V is shared by every beam (kept batch 1), so reordering after each step
        only gathers the self-attention cache.
        """
        inference = self.model.inference
        tok = self.tokenizer
        beam = BeamSearchDecoder(self.options.beam_size, tok.eot, self.options.patience)
        logits, cache = inference.start(
            audio_features, np.array([self.initial_tokens]), [self.sot_index, self.sample_begin - 1]
        )
        no_speech_prob = float(
            np.exp(log_softmax(logits[:, 0].astype(np.float64)))[0, tok.no_speech]
        )
        # the cross K/V stays batch 1: beams share it (model.py)
        cache = cache.reorder([0] * beam.beam_size)
        tokens = np.array([self.initial_tokens] * beam.beam_size, np.int64)
        logits = np.repeat(logits[:, 1], beam.beam_size, axis=0)
        sum_logprobs = np.zeros(beam.beam_size, np.float64)
        # the cache row of each beam, in rank order (as _BeamWindows keeps them)
        ranked = np.arange(beam.beam_size)
        step_tokens, source = np.empty_like(ranked), np.empty_like(ranked)
        for _ in range(self.sample_len):
            for logit_filter in self.logit_filters:
                logit_filter.apply(logits, tokens)
            tokens, picked, completed = beam.update(tokens, logits, sum_logprobs)
            if completed or tokens.shape[1] > self.n_ctx:
                break
            parents = ranked[picked]
            ranked = beam_rows(parents, beam.beam_size)
            step_tokens[ranked], source[ranked] = tokens[:, -1], parents
            # every beam holds the initial tokens: their positions are never copied
            logits, cache = inference.step(
                step_tokens, cache, rows=source, shared=len(self.initial_tokens)
            )
            logits = logits[ranked]
        finished = beam.finalize(tokens, sum_logprobs)
        return [
            (list(seq[self.sample_begin : -1]), logprob, no_speech_prob)
            for seq, logprob in finished.items()
        ]


# Options that may differ between the windows of one batch; the others set how the batch decodes.
ROW_OPTIONS = ("language", "prompt", "prefix")


class BatchDecodingTask:
    """Several windows decoded together: every row of every window goes through one step call.

    Each window has its own initial tokens (language, prompt, prefix) and position; its beams or
    samples are consecutive rows sharing its cross-attention K/V. The rules see each row as its
    last initial token followed by the sampled tokens (they only read the sampled part), so rows
    with prompts of different lengths fit one array. Rows finish independently: a finished row is
    fed EOT, and a finished window leaves its slot (window_slots.WindowSlots), where another window
    may join: `start` gives the windows' decoding state to join a running WindowSlots, `run` decodes
    them alone. `keys`: what the results are reported under (default: the windows' indices).
    """

    def __init__(
        self,
        tasks: List[DecodingTask],
        speech_ends: Optional[Sequence[float]] = None,
        keys: Optional[Sequence] = None,
    ):
        _check_alike(tasks)
        first = tasks[0].options
        self.tasks = tasks
        self.keys = list(range(len(tasks))) if keys is None else list(keys)
        self.options = first
        self.model = tasks[0].model
        self.eot = tasks[0].tokenizer.eot
        self.no_speech = tasks[0].tokenizer.no_speech
        self.sample_len = tasks[0].sample_len
        self.beam = first.beam_size is not None  # at any temperature, as openai (DecodingTask.run)
        if self.beam:
            self.group = first.beam_size
        else:
            self.group = (first.best_of or 1) if first.temperature > 0 else 1
        # one row of initial token, then the sampled part; the rows a prefix opened, per row
        opened = np.repeat([task.opened for task in tasks], self.group)
        self.logit_filters = tasks[0]._logit_filters(
            sample_begin=1, opened=opened, forced=_prefixes(tasks, self.group)
        )
        if speech_ends is not None and not first.without_timestamps:
            precision = CHUNK_LENGTH / self.model.dims.n_audio_ctx
            seconds = np.asarray(speech_ends, np.float64)
            # a window shorter than the margin has no end to wait for (0: never suppressed)
            timestamp_begin = tasks[0].tokenizer.timestamp_begin
            ends = np.where(seconds > 0, timestamp_begin + np.floor(seconds / precision), 0)
            self.logit_filters.append(
                SuppressEarlyEnd(
                    self.eot, timestamp_begin, 1, np.repeat(ends.astype(np.int64), self.group)
                )
            )

    def slots(self, limit=None) -> WindowSlots:
        """An empty batch for windows decoded as these are (`limit`: the most windows in it)."""
        return WindowSlots(self.model.inference, self.group, self.eot, limit)

    def start(self, audio_features, rng=None):
        """The windows' decoding state, to join a WindowSlots, and its cache: their prompts run
        now (inference.start_batch), or, for prompts of one length that `start` feeds by steps, an
        empty cache and a state that feeds them through the batch's own steps first (a window
        joining a running batch then costs no step calls of its own)."""
        prompts = [task.initial_tokens for task in self.tasks]
        inference, rng = self.model.inference, rng or np.random.default_rng()
        kind = BeamWindows if self.beam else SampledWindows
        if len({len(p) for p in prompts}) == 1:
            cache = inference.empty_start(audio_features, len(prompts[0]), self.group)
            if cache is not None:
                return kind(self, None, None, rng), cache
        gather_at = [[task.sot_index, task.sample_begin - 1] for task in self.tasks]
        logits, cache = inference.start_batch(audio_features, prompts, gather_at, self.group)
        return kind(self, logits[:, 1], self.no_speech_probs(logits[:, 0]), rng), cache

    def no_speech_probs(self, logits: np.ndarray) -> np.ndarray:
        """P(<|nospeech|>) from logits at the windows' <|startoftranscript|> (one row each)."""
        return np.exp(log_softmax(logits.astype(np.float64)))[:, self.no_speech]

    def run(self, audio_features, rng=None, limit=None) -> List[DecodingResult]:
        """The windows decoded together (`limit`: as WindowSlots takes it), each one's result."""
        slots = self.slots(limit)
        slots.join(*self.start(audio_features, rng))
        results = {}
        while slots.busy:
            results.update(slots.step())
        return [results[key] for key in self.keys]

    def result(self, index: int, found, no_speech: float):
        """(key, DecodingResult) of window `index` from its candidates `found` ((tokens without
        EOT, sum of logprobs) each)."""
        task = self.tasks[index]
        forced = len(task.prefix_tokens)
        scores = [rank_score(lp, forced + len(t), self.options.length_penalty) for t, lp in found]
        tokens, sum_logprob = found[int(np.argmax(scores))]
        return self.keys[index], task.make_result(
            task.options.language, tokens, sum_logprob, no_speech
        )


def _check_alike(tasks: List[DecodingTask]):
    """The windows of one batch decode alike but for ROW_OPTIONS, else an OptionsError."""
    first = tasks[0].options
    for task in tasks[1:]:
        other = replace(task.options, **{name: getattr(first, name) for name in ROW_OPTIONS})
        if other != first:
            raise OptionsError(
                "the windows of one batch may differ only in language, prompt and prefix: "
                "decode the others in a separate batch"
            )


def _prefixes(tasks: List[DecodingTask], group: int) -> Optional[np.ndarray]:
    """Each row's prefix tokens (rows: `group` per task), padded on the left with -1; None when no
    task has a prefix."""
    width = max(len(task.prefix_tokens) for task in tasks)
    if not width:
        return None
    rows = [[-1] * (width - len(t.prefix_tokens)) + list(t.prefix_tokens) for t in tasks]
    return np.repeat(np.array(rows, np.int64), group, axis=0)


def encode_windows(model, mels) -> list:
    """Each window's audio features (1, n_audio_ctx, D) from mels (a batch or a list of windows),
    encoded in groups whose sizes are powers of two, so that few encoder shapes are ever compiled;
    on CPU, of CPU_ENCODER_GROUP."""
    largest = CPU_ENCODER_GROUP if model.runtime.device == "CPU" else len(mels)
    windows, start = [], 0
    while start < len(mels):
        size = 1 << (min(len(mels) - start, largest).bit_length() - 1)
        group = model.inference.embed_audio(np.stack(mels[start : start + size]))
        windows.extend(group[i : i + 1] for i in range(size))
        start += size
    return windows


def detect_language(model, mel, tokenizer: Optional[Tokenizer] = None, audio_features=None):
    """Most likely language of one window, and the probability of each language: a single prefill of
    <|sot|>. A batch of windows (B, n_mels, 3000) gives a list of each, as openai's does."""
    if not model.is_multilingual:
        raise OptionsError(
            "language detection needs a multilingual model; this one is English-only"
        )
    tokenizer = tokenizer or build_tokenizer(model)
    if audio_features is None:
        mel = mel_array(mel)
        windows = encode_windows(model, checked_mel(model, mel))
        if mel.ndim == 3:
            found = [detect_language(model, None, tokenizer, window) for window in windows]
            return [code for code, _ in found], [probs for _, probs in found]
        audio_features = windows[0]
    logits, _ = model.inference.start(audio_features, [[tokenizer.sot]], [0])
    logits = logits[0, 0].astype(np.float64)
    ids = np.array(tokenizer.all_language_tokens)
    mask = np.full_like(logits, -np.inf)
    mask[ids] = 0
    probs = np.exp(log_softmax(logits + mask))
    language_probs = {code: float(probs[i]) for code, i in zip(tokenizer.all_language_codes, ids)}
    return max(language_probs, key=language_probs.get), language_probs


def decode(model, mel, options=None, **kwargs):
    """Decode 30-second windows: mel (n_mels, 3000) gives one DecodingResult; a batch
    (B, n_mels, 3000) gives a list, one per window, decoded together. `options` is one
    DecodingOptions for every window, or a list of one per window that differ only in language,
    prompt and prefix."""
    mel = mel_array(mel)
    single = mel.ndim == 2
    mel = checked_mel(model, mel)
    n = len(mel)
    given = options if isinstance(options, (list, tuple)) else [options] * n
    if len(given) != n:
        raise OptionsError(f"{len(given)} DecodingOptions given for {n} windows")
    for row in given:
        if row is not None and not isinstance(row, DecodingOptions):  # replace() failed on it
            raise OptionsError(
                "options must be a DecodingOptions or a list of one per window (or the fields "
                f"as keywords), got {type(row).__name__}"
            )
    unknown = sorted(set(kwargs) - {f.name for f in fields(DecodingOptions)})
    if unknown:  # a TypeError traceback from the dataclass
        hint = " (openai's name: sample_len)" if unknown[0] == "max_new_tokens" else ""
        raise OptionsError(f"unknown decoding option {unknown[0]!r}{hint}")
    rows = [replace(row or DecodingOptions(), **kwargs) for row in given]
    for row in rows:
        verify_options(row)  # before the language is read from it
    # NumPy's numbers as Python's: the results' temperature goes out as JSON
    rows = [replace(row, temperature=float(row.temperature)) for row in rows]
    for fp16 in {row.fp16 for row in rows}:
        check_fp16(model, fp16)
    # the tasks check what the options say of the model (token ids, the context's length) before
    # the encoder runs; a row whose language is to be detected is checked as English (the start
    # of the text is as long in every language) and made again once the audio has told it
    tasks = []
    for row in rows:
        language = model_language(model, row.language, row.task)
        if language is None and not model.is_multilingual:
            language = "en"
        tasks.append(DecodingTask(model, replace(row, language=language)))
    if not single:
        _check_alike(tasks)
    windows = encode_windows(model, mel)
    language_probs = [None] * n
    for i, row in enumerate(rows):
        if tasks[i].options.language is None:
            language, language_probs[i] = detect_language(model, None, audio_features=windows[i])
            tasks[i] = DecodingTask(model, replace(row, language=language))
    if single:
        task = tasks[0]
        result = task.run(windows[0], task.options.language)
        return replace(result, language_probs=language_probs[0], audio_features=windows[0][0])
    results = BatchDecodingTask(tasks).run(windows)
    return [
        replace(r, language_probs=p, audio_features=window[0])
        for r, p, window in zip(results, language_probs, windows)
    ]
