"""Decoding of one 30-second window: options, logit filters, token selection, language detection.

Mirrors openai/whisper's decoding.py semantics. Logits reach the host once per step (B, n_vocab) and
the filters run there in NumPy: on CPU that is cheaper than extra device graphs, and each rule stays
small and testable.
"""

import zlib
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import CHUNK_LENGTH, N_FRAMES
from .errors import OptionsError
from .tokenizer import Tokenizer, check_task, get_tokenizer, language_code
from .window_slots import WindowSlots, rows_of


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


# values per block in top_k_rows' first pass (few blocks: ranking the chosen ones is short)
TOP_K_BLOCK = 64
# exp_sums works through this many bytes of rows at a time, so that its three passes (subtract,
# exp, sum) find the block in a core's cache instead of each streaming a whole batch's logits from
# memory (40 beam rows of 51865 tokens are 8 MB)
EXP_SUM_BLOCK_BYTES = 1 << 20


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def exp_sums(logits: np.ndarray, peak: np.ndarray, dtype) -> np.ndarray:
    """`np.exp(logits - peak[:, None]).sum(axis=1, dtype=dtype)`: each row's sum of exp in the
    logits' precision, summed in `dtype`, computed a block of rows at a time (each row is summed
    alone, so the blocks change no value)."""
    n_rows, n = logits.shape
    step = max(1, EXP_SUM_BLOCK_BYTES // (n * logits.itemsize))
    sums = np.empty(n_rows, dtype)
    buffer = np.empty((min(step, n_rows), n), logits.dtype)
    for start in range(0, n_rows, step):
        rows = slice(start, start + step)
        block = buffer[: len(sums[rows])]
        np.subtract(logits[rows], peak[rows, None], out=block)
        np.exp(block, out=block)
        block.sum(axis=1, dtype=dtype, out=sums[rows])
    return sums


def _logsumexp(values: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) of each row; -inf for a row of -inf."""
    m = values.max(axis=1)
    finite = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        return finite + np.log(np.exp(values - finite[:, None]).sum(axis=1))


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """`np.argsort(-values, axis=1, kind="stable")[:, :k]`, ties by lower index, without sorting
    whole rows.

    One pass splits each row into `TOP_K_BLOCK`-value blocks (block j: positions j, j + n_blocks,
    ...) and takes each block's maximum: a row's k best values lie in its k blocks of highest
    maximum (each of those blocks holds a value at least the k-th highest maximum, so the row's k-th
    best value is at least that too, and a block of lower maximum holds nothing as good). Those
    blocks' values, in position order, are then ranked as a short row. A row whose k-th highest
    maximum is shared with another block (a tie) or is -inf, and rows too short to split, are ranked
    whole (`_top_k_by_argmax`).
    """
    n_rows, n = values.shape
    n_blocks = n // TOP_K_BLOCK
    if n_blocks < 2 * k:  # also every k >= n
        return _top_k_by_argmax(values, k)
    body = n_blocks * TOP_K_BLOCK
    block_max = values[:, :body].reshape(n_rows, TOP_K_BLOCK, n_blocks).max(axis=1)
    kth = np.partition(block_max, n_blocks - k, axis=1)[:, n_blocks - k]
    chosen = block_max >= kth[:, None]
    split = (chosen.sum(axis=1) == k) & (kth > -np.inf)  # NaN fails this too
    out = np.empty((n_rows, k), np.int64)
    rows = np.flatnonzero(split)
    if len(rows):
        blocks = np.nonzero(chosen[rows])[1].reshape(len(rows), k, 1)
        places = (blocks + n_blocks * np.arange(TOP_K_BLOCK)).reshape(len(rows), -1)
        places.sort(axis=1)
        # the positions past the last whole block are candidates in every row
        rest = np.broadcast_to(np.arange(body, n), (len(rows), n - body))
        places = np.concatenate([places, rest], axis=1)
        picked = _top_k_by_argmax(values[rows[:, None], places], k)
        out[rows] = np.take_along_axis(places, picked, axis=1)
    others = np.flatnonzero(~split)
    if len(others):
        out[others] = _top_k_by_argmax(values[others], k)
    return out


def _top_k_by_argmax(values: np.ndarray, k: int) -> np.ndarray:
    """top_k_rows by k argmax passes (argmax takes the lowest index of equal values), each pick
    hidden once taken. A row with fewer than k values above -inf is sorted whole, as its remaining
    picks are ties at -inf."""
    if k >= values.shape[1]:
        return np.argsort(-values, axis=1, kind="stable")
    work = values.copy()
    places = np.arange(len(values))
    out = np.empty((len(values), k), np.int64)
    exhausted = np.zeros(len(values), bool)  # a pick made when only -inf was left
    for j in range(k):
        out[:, j] = work.argmax(axis=1)
        exhausted |= work[places, out[:, j]] == -np.inf
        work[places, out[:, j]] = -np.inf
    short = np.flatnonzero(exhausted)
    if len(short):
        out[short] = np.argsort(-values[short], axis=1, kind="stable")[:, :k]
    return out


# ---- logit filters: each mutates logits (B, V) in place given the tokens so far (B, T) ----


class LogitFilter:
    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        raise NotImplementedError

    def select(self, rows: np.ndarray) -> "LogitFilter":
        """The filter for a batch of the rows `rows` of this one (a filter with a state per row
        keeps theirs)."""
        return self


class SuppressBlank(LogitFilter):
    """The first sampled token may be neither a blank nor EOT."""

    def __init__(self, tokenizer: Tokenizer, sample_begin: int):
        self.blank = tokenizer.encode(" ") + [tokenizer.eot]
        self.sample_begin = sample_begin

    def apply(self, logits, tokens):
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.blank] = -np.inf


class SuppressTokens(LogitFilter):
    def __init__(self, suppress_tokens: Sequence[int]):
        self.suppress_tokens = list(suppress_tokens)

    def apply(self, logits, tokens):
        logits[:, self.suppress_tokens] = -np.inf


class ApplyTimestampRules(LogitFilter):
    """openai's timestamp grammar: timestamps in pairs, never decreasing, a timestamp first (no
    later than max_initial_timestamp), and a timestamp whenever timestamps together outweigh the
    best text token."""

    def __init__(
        self, tokenizer: Tokenizer, sample_begin: int, max_initial_timestamp_index: Optional[int]
    ):
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.timestamp_begin = tokenizer.timestamp_begin
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def apply(self, logits, tokens):
        ts = self.timestamp_begin
        logits[:, self.no_timestamps] = -np.inf
        sampled = tokens[:, self.sample_begin :]
        n = sampled.shape[1]
        is_timestamp = sampled >= ts
        last_was_timestamp = is_timestamp[:, -1] if n >= 1 else np.zeros(len(tokens), bool)
        penultimate_was_timestamp = is_timestamp[:, -2] if n >= 2 else np.ones(len(tokens), bool)
        # a pair just closed: text or EOT
        logits[last_was_timestamp & penultimate_was_timestamp, ts:] = -np.inf
        open_segment = last_was_timestamp & ~penultimate_was_timestamp
        logits[open_segment, : self.eot] = -np.inf  # an open segment: only a timestamp or EOT
        if n >= 1:
            # never decrease; a new segment's start may equal the previous end, other timestamps
            # must advance
            has_timestamp = is_timestamp.any(axis=1)
            last_index = n - 1 - np.argmax(is_timestamp[:, ::-1], axis=1)
            last = sampled[np.arange(len(tokens)), last_index] + (~open_segment)
            blocked = np.arange(logits.shape[1] - ts)[None, :] < (last - ts)[:, None]
            logits[:, ts:][blocked & has_timestamp[:, None]] = -np.inf
        if n == 0:
            logits[:, :ts] = -np.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, ts + self.max_initial_timestamp_index + 1 :] = -np.inf
        # timestamps together more likely than the best text token: compared on logits, as the
        # log-softmax's normaliser is the same on both sides (no pass over the whole vocabulary)
        timestamp_logit = _logsumexp(logits[:, ts:])
        logits[timestamp_logit > logits[:, :ts].max(axis=1), :ts] = -np.inf


@dataclass(frozen=True)
class SuppressEarlyEnd(LogitFilter):
    """No end of text while a row's last segment ends before its window's `ends` (timestamp token
    ids, one per row): the batched mode knows its windows hold speech up to there (VAD pieces), and
    the model, left alone, may stop a few sentences early (or after the start of a segment it did
    not write), leaving them for another window."""

    eot: int
    timestamp_begin: int
    sample_begin: int
    ends: np.ndarray

    def apply(self, logits, tokens):
        sampled = tokens[:, self.sample_begin :]
        is_timestamp = sampled >= self.timestamp_begin
        # a segment's end: a timestamp after text (a timestamp after a timestamp starts a segment)
        closing = np.zeros_like(is_timestamp)
        closing[:, 1:] = is_timestamp[:, 1:] & ~is_timestamp[:, :-1]
        last_end = np.where(closing, sampled, 0).max(axis=1, initial=0)
        logits[last_end < self.ends, self.eot] = -np.inf

    def select(self, rows):
        return replace(self, ends=self.ends[rows])


# ---- token selection ----


class GreedyDecoder:
    """Argmax at temperature 0, else sampling from softmax(logits / temperature)."""

    def __init__(self, temperature: float, eot: int, rng: Optional[np.random.Generator] = None):
        self.temperature = temperature
        self.eot = eot
        self.rng = rng or np.random.default_rng()

    def select(self, logits: np.ndarray, tokens: np.ndarray, sum_logprobs: np.ndarray):
        """Return the next tokens (B,), updating sum_logprobs for rows not yet finished."""
        if self.temperature == 0:
            next_tokens = logits.argmax(axis=-1)
        else:
            probs = np.exp(log_softmax(logits / self.temperature))
            next_tokens = np.array([self.rng.choice(len(p), p=p / p.sum()) for p in probs])
        # log_softmax(logits) at the chosen tokens, without writing out the whole array
        peak = logits.max(axis=-1)
        total = exp_sums(logits, peak, logits.dtype)
        chosen = logits[np.arange(len(next_tokens)), next_tokens]
        current = (chosen - peak) - np.log(total)
        sum_logprobs += current * (tokens[:, -1] != self.eot)
        finished = tokens[:, -1] == self.eot
        return np.where(finished, self.eot, next_tokens)


def beam_candidates(logits: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Each row's k most likely tokens (ties: lower id first) and their log-probabilities. A row's
    log-softmax ranks its tokens as its logits do: the logits are ranked, and the log-probabilities
    (float64, to be summed over a sequence) computed for the chosen tokens only."""
    top = top_k_rows(logits, k)  # (rows, min(k, V))
    chosen = np.take_along_axis(logits, top, axis=1)
    peak = chosen[:, :1]  # the best token's logit is the row's maximum
    # exp in float32 (the logits' precision), summed in float64
    total = exp_sums(logits, peak[:, 0], np.float64)[:, None]
    return top, (chosen.astype(np.float64) - peak.astype(np.float64)) - np.log(total)


class BeamSearchDecoder:
    """openai's beam search for one audio: beam_size rows decoded as one batch.

    Each step proposes the top beam_size + 1 continuations of every row; the best beam_size
    unfinished sequences continue, and finished ones are kept until round(beam_size * patience) of
    them exist.
    """

    def __init__(self, beam_size: int, eot: int, patience: Optional[float] = None):
        self.beam_size = beam_size
        self.eot = eot
        self.max_candidates = round(beam_size * (patience or 1.0))
        self.finished: Dict[Tuple[int, ...], float] = {}

    def update(
        self,
        tokens: np.ndarray,
        logits: Optional[np.ndarray],
        sum_logprobs: np.ndarray,
        candidates: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    ):
        """Return (next tokens (beam, T+1), source row of each, completed); sum_logprobs is
        rewritten in place. `candidates`: each row's `beam_candidates(logits, beam_size + 1)`, when
        computed for many windows at once (`logits` is then not read).

        openai's candidate bookkeeping (a dict of sequences, sorted by score, stable) done with
        arrays: rows are ranked by their top beam_size + 1 tokens at once, and rows holding the same
        sequence (every row at the first step) propose once, from the last such row, as a dict keyed
        by sequence would keep them.
        """
        k = self.beam_size + 1
        same = (tokens[:, None, :] == tokens[None, :, :]).all(axis=2)  # rows holding one sequence
        # each distinct sequence once, in the order of its first row, proposed from its last row
        # (the last row of a sequence wins, as in a dict)
        leaders = np.flatnonzero(same.argmax(axis=1) == np.arange(len(tokens)))
        source = len(tokens) - 1 - same[leaders, ::-1].argmax(axis=1)
        if candidates is None:
            top, top_logprobs = beam_candidates(logits[source], k)
        else:
            top, top_logprobs = candidates[0][source], candidates[1][source]
        candidate_rows = np.repeat(source, top.shape[1])
        candidate_tokens = top.reshape(-1)
        scores = sum_logprobs[candidate_rows] + top_logprobs.reshape(-1)
        order = np.argsort(-scores, kind="stable")
        finished = candidate_tokens[order] == self.eot
        kept = order[~finished][: self.beam_size]
        cut = (
            np.flatnonzero(~finished)[self.beam_size - 1]
            if len(kept) == self.beam_size
            else len(order)
        )
        # finished candidates ranked before the beams filled up
        for i in order[: cut + 1][finished[: cut + 1]]:
            if len(self.finished) >= self.max_candidates:
                break
            sequence = tuple(tokens[candidate_rows[i]].tolist()) + (self.eot,)
            self.finished[sequence] = float(scores[i])
        sum_logprobs[: len(kept)] = scores[kept]
        next_tokens = np.concatenate(
            [tokens[candidate_rows[kept]], candidate_tokens[kept, None]], axis=1
        )
        completed = len(self.finished) >= self.max_candidates
        return next_tokens.astype(np.int64), candidate_rows[kept].tolist(), completed

    def finalize(
        self, tokens: np.ndarray, sum_logprobs: np.ndarray
    ) -> Dict[Tuple[int, ...], float]:
        """Finished candidates, topped up with the best unfinished beams (EOT appended) if fewer
        than beam_size."""
        finished = dict(self.finished)
        if len(finished) < self.beam_size:
            for row in np.argsort(-sum_logprobs, kind="stable"):
                finished[tuple(tokens[row].tolist()) + (self.eot,)] = float(sum_logprobs[row])
                if len(finished) >= self.beam_size:
                    break
        return finished


# ---- the decoding task ----


def build_tokenizer(model, language=None, task="transcribe") -> Tokenizer:
    if not model.is_multilingual and language is not None and language_code(language) != "en":
        raise OptionsError(f"this model is English-only; it cannot decode language '{language}'")
    return get_tokenizer(
        model.tokenizer_path,
        multilingual=model.is_multilingual,
        num_languages=model.num_languages,
        language=language,
        task=task,
    )


def _verify_options(options: DecodingOptions) -> DecodingOptions:
    if (
        not isinstance(options.temperature, (int, float))
        or not np.isfinite(options.temperature)
        or options.temperature < 0
    ):
        raise OptionsError(f"temperature must be a finite number >= 0, got {options.temperature!r}")
    if options.sample_len is not None and options.sample_len < 1:
        raise OptionsError(f"sample_len must be at least 1, got {options.sample_len}")
    if options.beam_size is not None and options.best_of is not None:
        raise OptionsError("beam_size and best_of can't be given together")
    if options.temperature == 0 and options.best_of is not None:
        raise OptionsError("best_of with greedy sampling (temperature 0) is not compatible")
    if options.patience is not None and options.beam_size is None:
        raise OptionsError("patience requires beam_size to be given")
    if options.length_penalty is not None and not 0 <= options.length_penalty <= 1:
        raise OptionsError("length_penalty (alpha) should be a value between 0 and 1")
    check_task(options.task)
    if options.beam_size is not None and options.beam_size < 1:
        raise OptionsError(f"beam_size must be at least 1, got {options.beam_size}")
    if options.best_of is not None and options.best_of < 1:
        raise OptionsError(f"best_of must be at least 1, got {options.best_of}")
    if options.patience is not None and round(options.beam_size * options.patience) < 1:
        raise OptionsError(f"patience {options.patience} leaves no finished candidate to wait for")
    return options


class DecodingTask:
    def __init__(self, model, options: DecodingOptions):
        self.model = model
        self.options = _verify_options(options)
        self.tokenizer = build_tokenizer(model, options.language or "en", options.task)
        self.n_ctx = model.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        tok = self.tokenizer
        self.sot_sequence = (
            tok.sot_sequence_including_notimestamps
            if options.without_timestamps
            else tok.sot_sequence
        )
        self.initial_tokens = self._initial_tokens()
        self.sample_begin = len(self.initial_tokens)
        self.sot_index = self.initial_tokens.index(tok.sot)
        self.logit_filters = self._logit_filters()

    def _encode_text(self, text):
        return self.tokenizer.encode(" " + text.strip()) if isinstance(text, str) else list(text)

    def _initial_tokens(self) -> Tuple[int, ...]:
        tokens = list(self.sot_sequence)
        if self.options.prefix:
            prefix = self._encode_text(self.options.prefix)
            max_prefix_len = self.n_ctx // 2 - self.sample_len
            tokens += prefix[-max_prefix_len:]  # openai's slice: 0 keeps the whole prefix
        if self.options.prompt:
            prompt = self._encode_text(self.options.prompt)
            tokens = [self.tokenizer.sot_prev] + prompt[-(self.n_ctx // 2 - 1) :] + tokens
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

    def _logit_filters(self, sample_begin=None) -> List[LogitFilter]:
        """The rules, for token rows whose sampled part starts at `sample_begin` (default: after
        the initial tokens)."""
        sample_begin = self.sample_begin if sample_begin is None else sample_begin
        filters: List[LogitFilter] = []
        if self.options.suppress_blank:
            filters.append(SuppressBlank(self.tokenizer, sample_begin))
        if self.options.suppress_tokens:
            filters.append(SuppressTokens(self.suppress_tokens()))
        if not self.options.without_timestamps:
            precision = CHUNK_LENGTH / self.model.dims.n_audio_ctx
            index = None
            if self.options.max_initial_timestamp:
                index = round(self.options.max_initial_timestamp / precision)
            filters.append(ApplyTimestampRules(self.tokenizer, sample_begin, index))
        return filters

    def run(
        self, audio_features, language: str, rng: Optional[np.random.Generator] = None
    ) -> DecodingResult:
        """Decode one window (batch of 1) whose audio features are already computed.

        At temperature > 0 with best_of, the samples are drawn one after another and ranked as
        openai does (sum of logprobs over length, or over the Google NMT penalty when length_penalty
        is set).
        """
        if self.options.beam_size is not None and self.options.temperature == 0:
            candidates = self._beam_search(audio_features)
        else:
            n_samples = (self.options.best_of or 1) if self.options.temperature > 0 else 1
            rng = rng or np.random.default_rng()
            candidates = [self._sample(audio_features, rng) for _ in range(n_samples)]
        scores = [
            rank_score(logprob, len(tokens), self.options.length_penalty)
            for tokens, logprob, _ in candidates
        ]
        sampled, sum_logprob, no_speech_prob = candidates[int(np.argmax(scores))]
        text = self.tokenizer.decode(sampled).strip()
        return DecodingResult(
            language=language,
            tokens=sampled,
            text=text,
            avg_logprob=sum_logprob / (len(sampled) + 1),
            no_speech_prob=no_speech_prob,
            temperature=self.options.temperature,
            compression_ratio=compression_ratio(text),
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
            if (next_tokens == tok.eot).all() or tokens.shape[1] >= self.n_ctx:
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
            if completed or tokens.shape[1] >= self.n_ctx:
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
        first = tasks[0].options
        for task in tasks[1:]:
            other = replace(task.options, **{name: getattr(first, name) for name in ROW_OPTIONS})
            if other != first:
                raise OptionsError(
                    "the windows of one batch may differ only in language, prompt and prefix: "
                    "decode the others in a separate batch"
                )
        self.tasks = tasks
        self.keys = list(range(len(tasks))) if keys is None else list(keys)
        self.options = first
        self.model = tasks[0].model
        self.eot = tasks[0].tokenizer.eot
        self.no_speech = tasks[0].tokenizer.no_speech
        self.sample_len = tasks[0].sample_len
        # one row of initial token, then the sampled part
        self.logit_filters = tasks[0]._logit_filters(sample_begin=1)
        self.beam = first.beam_size is not None and first.temperature == 0
        if self.beam:
            self.group = first.beam_size
        else:
            self.group = (first.best_of or 1) if first.temperature > 0 else 1
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
        kind = _BeamWindows if self.beam else _SampledWindows
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
        scores = [rank_score(lp, len(t), self.options.length_penalty) for t, lp in found]
        tokens, sum_logprob = found[int(np.argmax(scores))]
        text = task.tokenizer.decode(tokens).strip()
        return self.keys[index], DecodingResult(
            language=task.options.language,
            tokens=tokens,
            text=text,
            avg_logprob=sum_logprob / (len(tokens) + 1),
            no_speech_prob=float(no_speech),
            temperature=self.options.temperature,
            compression_ratio=compression_ratio(text),
        )


class _Windows:
    """The decoding state of a BatchDecodingTask's windows in a WindowSlots: their rows' tokens
    (the last initial token, then the sampled ones), logits, sums of logprobs and rules, `group`
    consecutive rows per window. `choose()` gives every row's next token: first the rest of the
    prompt when given no logits (the prompt fed through the batch's steps, as `start` feeds it
    alone), then the sampled tokens; the windows that end leave every array (and `slots`) at once.
    """

    def __init__(self, task: BatchDecodingTask, logits, no_speech, rng):
        prompts = [t.initial_tokens for t in task.tasks]
        group = task.group
        self.task = task
        self.index = np.arange(len(prompts))  # each window's place in task.tasks
        self.slots = np.arange(len(prompts))  # each window's slot, set by WindowSlots.join
        self.prompt = None  # (rows, length) tokens still to feed, and how many are fed
        # cache positions that hold the same in every row of a window (its prompt's), in all of
        # them: a beam's reorder need not copy them
        self.shared = min(len(p) for p in prompts)
        if logits is None:
            self.prompt, self.fed = np.repeat(np.array(prompts, np.int64), group, axis=0), 0
            self.sot_index = np.array([t.sot_index for t in task.tasks])
            no_speech = np.full(len(prompts), np.nan)
        else:
            logits = np.repeat(logits, group, axis=0)
        self.no_speech = np.asarray(no_speech)
        self.logits = logits
        self.tokens = np.repeat(np.array([[p[-1]] for p in prompts], np.int64), group, axis=0)
        # sampled tokens each row may take before its window's context is full
        self.limits = np.repeat([t.n_ctx - len(p) for t, p in zip(task.tasks, prompts)], group)
        self.sum_logprobs = np.zeros(len(self.tokens), np.float64)
        self.filters = list(task.logit_filters)
        self.rng = rng
        self.steps = 0

    def _leave(self, ended: np.ndarray):
        """Drop the windows `ended` (a mask over windows); returns the rows kept (an index)."""
        if not ended.any():
            return slice(None)
        kept = np.flatnonzero(~ended)
        rows = rows_of(kept, self.task.group)
        self.index, self.slots, self.no_speech = (
            x[kept] for x in (self.index, self.slots, self.no_speech)
        )
        self.tokens, self.sum_logprobs, self.limits = (
            x[rows] for x in (self.tokens, self.sum_logprobs, self.limits)
        )
        self.filters = [f.select(rows) for f in self.filters]
        return rows

    def choose(self):
        """(each kept row's next token, for beams the row of its window it continues (else None),
        [(key, result)] of the windows that ended)."""
        if self.prompt is not None:
            if self.fed:
                # the logits of position fed - 1, at a window's <|startoftranscript|>: P(no speech)
                at_sot = np.flatnonzero(self.sot_index == self.fed - 1)
                first_rows = self.logits[at_sot * self.task.group]
                self.no_speech[at_sot] = self.task.no_speech_probs(first_rows)
            if self.fed < self.prompt.shape[1]:
                self.fed += 1
                return self.prompt[:, self.fed - 1], None, []
            self.prompt = None  # the logits at the prompt's last position: the first to sample from
        return self._choose()


class _SampledWindows(_Windows):
    """Greedy or sampled rows."""

    def __init__(self, *args):
        super().__init__(*args)
        self.decoder = GreedyDecoder(self.task.options.temperature, self.task.eot, self.rng)
        self.done = np.zeros(len(self.tokens), bool)

    def _choose(self):
        task, eot, group = self.task, self.task.eot, self.task.group
        logits, tokens, sums, done = self.logits, self.tokens, self.sum_logprobs, self.done
        for logit_filter in self.filters:
            logit_filter.apply(logits, tokens)
        before = sums.copy()
        next_tokens = self.decoder.select(logits, tokens, sums)
        # rows stopped by their context limit take nothing more (EOT is ignored below)
        next_tokens = np.where(done, eot, next_tokens)
        sums[done] = before[done]
        tokens = np.concatenate([tokens, next_tokens[:, None]], axis=1)
        self.steps += 1
        done |= (next_tokens == eot) | (tokens.shape[1] - 1 >= self.limits)
        if self.steps >= task.sample_len:
            done[:] = True
        ended = done.reshape(-1, group).all(axis=1)
        results = []
        for j in np.flatnonzero(ended):
            rows = slice(j * group, (j + 1) * group)
            found = [_sampled(row, eot) for row in tokens[rows, 1:].tolist()]
            found = [(row, float(lp)) for row, lp in zip(found, sums[rows])]
            results.append(task.result(self.index[j], found, self.no_speech[j]))
        self.tokens = tokens
        rows = self._leave(ended)
        self.done = done[rows]
        return next_tokens[rows], None, results


class _BeamWindows(_Windows):
    """One beam search per window (openai's), all windows' beams in one pass over their logits.

    A beam stays in the cache row of the beam it continues where it is that beam's first
    continuation (`beam_rows`), so a step's reorder copies the cache rows of only the beams that
    branched off, not of every beam whose rank changed: each search sees its beams in rank order
    (`ranked`: the row of each), whatever rows hold them.
    """

    def __init__(self, *args):
        super().__init__(*args)
        options = self.task.options
        self.beams = [
            BeamSearchDecoder(options.beam_size, self.task.eot, options.patience)
            for _ in self.index
        ]
        self.ranked = np.tile(np.arange(self.task.group), (len(self.beams), 1))

    def _choose(self):
        task, size = self.task, self.task.group
        logits, tokens, sums = self.logits, self.tokens, self.sum_logprobs
        for logit_filter in self.filters:
            logit_filter.apply(logits, tokens)
        grown = np.empty((len(tokens), tokens.shape[1] + 1), np.int64)
        offsets = np.empty(len(tokens), np.int64)
        # every row's candidates in one pass over the batch's logits
        top, top_logprobs = beam_candidates(logits, size + 1)
        self.steps += 1
        ended = np.zeros(len(self.beams), bool)
        results = []
        for j, beam in enumerate(self.beams):
            ranked = j * size + self.ranked[j]
            beam_sums = sums[ranked]
            beam_tokens, picked, completed = beam.update(
                tokens[ranked], None, beam_sums, (top[ranked], top_logprobs[ranked])
            )
            parents = self.ranked[j][picked]
            self.ranked[j] = beam_rows(parents, size)
            rows = j * size + self.ranked[j]
            grown[rows], sums[rows], offsets[rows] = beam_tokens, beam_sums, parents
            if (
                completed
                or grown.shape[1] - 1 >= self.limits[j * size]
                or (self.steps >= task.sample_len)
            ):
                # a search still going when sample_len runs out ends with its beams as they are
                ended[j] = True
                finished = beam.finalize(beam_tokens, beam_sums)
                found = [(list(seq[1:-1]), logprob) for seq, logprob in finished.items()]
                results.append(task.result(self.index[j], found, self.no_speech[j]))
        self.tokens = grown
        self.beams = [beam for beam, end in zip(self.beams, ended) if not end]
        self.ranked = self.ranked[~ended]
        rows = self._leave(ended)
        return grown[rows, -1], offsets[rows], results


def beam_rows(parents: np.ndarray, size: int) -> np.ndarray:
    """The row (of a window's `size`) for each of its next beams, which continue the rows
    `parents`: a beam takes its parent's row if it is the parent's first continuation; the others
    take the rows no beam continues, in order."""
    parents = np.asarray(parents)
    rows = np.empty(len(parents), np.int64)
    first = np.zeros(len(parents), bool)
    first[np.unique(parents, return_index=True)[1]] = True
    rows[first] = parents[first]
    rows[~first] = np.setdiff1d(np.arange(size), parents)[: (~first).sum()]
    return rows


def _sampled(row: List[int], eot: int) -> List[int]:
    """A row's sampled tokens up to EOT."""
    return row[: row.index(eot)] if eot in row else row


def rank_score(sum_logprob: float, length: int, length_penalty: Optional[float]) -> float:
    """openai's MaximumLikelihoodRanker score of one candidate."""
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return sum_logprob / penalty if penalty else sum_logprob


def _features(model, mel):
    mel = np.asarray(mel, np.float32)
    if mel.ndim == 2:
        mel = mel[None]
    if mel.ndim != 3 or len(mel) == 0:
        raise OptionsError(
            f"mel must be (n_mels, {N_FRAMES}) or a batch (B, n_mels, {N_FRAMES}), got shape "
            f"{tuple(mel.shape)}"
        )
    if mel.shape[-2:] != (model.dims.n_mels, N_FRAMES):
        raise OptionsError(
            f"mel must be (n_mels={model.dims.n_mels}, {N_FRAMES}) for one window, got "
            f"{tuple(mel.shape[-2:])}: use pad_or_trim on the audio or the mel first"
        )
    if not np.isfinite(mel).all():
        raise OptionsError(
            "mel holds NaN or infinite values: compute it from finite audio (log_mel_spectrogram)"
        )
    return model.inference.embed_audio(mel)


def detect_language(model, mel, tokenizer: Optional[Tokenizer] = None, audio_features=None):
    """Most likely language of one window, and the probability of each language: a single prefill of
    <|sot|>."""
    if not model.is_multilingual:
        raise OptionsError(
            "language detection needs a multilingual model; this one is English-only"
        )
    tokenizer = tokenizer or build_tokenizer(model)
    if audio_features is None:
        audio_features = _features(model, mel)
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
    mel = np.asarray(mel, np.float32)
    single = mel.ndim == 2
    audio_features = _features(model, mel)
    n = audio_features.shape[0]
    if isinstance(options, (list, tuple)):
        if len(options) != n:
            raise OptionsError(f"{len(options)} DecodingOptions given for {n} windows")
        rows = [replace(o, **kwargs) for o in options]
    else:
        rows = [replace(options or DecodingOptions(), **kwargs)] * n
    tasks, language_probs = [], []
    for i, row in enumerate(rows):
        language, probs = row.language, None
        if language is None:
            if model.is_multilingual:
                features = audio_features[i : i + 1]
                language, probs = detect_language(model, None, audio_features=features)
            else:
                language = "en"
        tasks.append(DecodingTask(model, replace(row, language=language_code(language))))
        language_probs.append(probs)
    if single:
        task = tasks[0]
        result = task.run(audio_features, task.options.language)
        return replace(result, language_probs=language_probs[0])
    results = BatchDecodingTask(tasks).run(audio_features)
    return [replace(r, language_probs=p) for r, p in zip(results, language_probs)]
