"""openai's logit rules as small filters: each sets the logits (B, V) of the tokens a row may not
take next to -inf, in place, given the tokens so far (B, T). Also CTranslate2's repetition rules,
which faster-whisper exposes (RepetitionPenalty, NoRepeatNgram)."""

import copy
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from .logprobs import logsumexp
from .tokenizer import Tokenizer


class LogitFilter:
    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        raise NotImplementedError

    def select(self, rows: np.ndarray) -> "LogitFilter":
        """The filter for a batch of the rows `rows` of this one (a filter with a state per row
        keeps theirs)."""
        return self


def row_texts(tokens: np.ndarray, begin: int, forced: Optional[np.ndarray]) -> np.ndarray:
    """Each row's text as CTranslate2's repetition rules read it (B, L): the forced prefix and the
    sampled tokens, timestamps included, not the prompt. The rows' text starts at `begin`; `forced`
    (B, F), when given, is each row's prefix, which its row of tokens leaves out (a batch's rows
    hold only the sampled part), padded on the left with -1 (rows' prefixes differ in length)."""
    text = tokens[:, begin:]
    return text if forced is None else np.concatenate([forced, text], axis=1)


class _ReadsRowTexts(LogitFilter):
    """A filter over each row's text (row_texts), from its `begin` and `forced` fields."""

    def text(self, tokens):
        return row_texts(tokens, self.begin, self.forced)

    def select(self, rows):
        return self if self.forced is None else replace(self, forced=self.forced[rows])


@dataclass(frozen=True)
class RepetitionPenalty(_ReadsRowTexts):
    """faster-whisper's repetition_penalty (CTranslate2's): the logit of each token already in a
    row's text (row_texts) divided by `penalty` where positive, multiplied by it where negative;
    once, however often the token occurs."""

    penalty: float
    begin: int
    forced: Optional[np.ndarray] = None

    def apply(self, logits, tokens):
        text = self.text(tokens)
        rows, places = np.nonzero(text >= 0)  # not the left padding of a shorter prefix
        ids = text[rows, places]
        scores = logits[rows, ids]  # read before any is written: a repeated token counts once
        # a penalty beyond float32's range is infinite there, without NumPy's overflow warnings
        # (a logit times it is -inf, over it 0)
        with np.errstate(over="ignore", invalid="ignore"):  # the branch np.where drops: 0 * inf
            penalty = logits.dtype.type(self.penalty)
            logits[rows, ids] = np.where(scores < 0, scores * penalty, scores / penalty)


@dataclass(frozen=True)
class NoRepeatNgram(_ReadsRowTexts):
    """faster-whisper's no_repeat_ngram_size (CTranslate2's): no row repeats an n-gram of its text
    (row_texts): wherever its last n - 1 tokens occurred before, the token that followed them is
    suppressed (n = 1: every token already written)."""

    size: int
    begin: int
    forced: Optional[np.ndarray] = None

    def apply(self, logits, tokens):
        text = self.text(tokens)
        n = self.size
        if text.shape[1] < n:
            return
        windows = np.lib.stride_tricks.sliding_window_view(text, n, axis=1)  # (B, L - n + 1, n)
        last = text[:, text.shape[1] - n + 1 :]  # the n - 1 tokens an n-gram would start with
        repeats = (windows[:, :, : n - 1] == last[:, None, :]).all(axis=2)
        followers = windows[:, :, n - 1]
        # not the left padding of a shorter prefix
        rows, places = np.nonzero(repeats & (followers >= 0))
        logits[rows, followers[rows, places]] = -np.inf


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
        self,
        tokenizer: Tokenizer,
        sample_begin: int,
        max_initial_timestamp_index: Optional[int],
        opened=False,
    ):
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.timestamp_begin = tokenizer.timestamp_begin
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index
        # rows (a bool, or one per row) after a prefix (faster-whisper's: <|0.00|> and text), read
        # as CTranslate2 reads them: the grammar sees only what is sampled after the prefix, and
        # the first sampled token is free (no timestamp forced there)
        self.opened = opened

    def select(self, rows):
        if np.ndim(self.opened) == 0:
            return self
        chosen = copy.copy(self)
        chosen.opened = self.opened[rows]
        return chosen

    def apply(self, logits, tokens):
        opened = np.broadcast_to(self.opened, (len(tokens),))
        if tokens.shape[1] > self.sample_begin or not opened.any():
            self._apply(logits, tokens)
            return
        # the first step: the rows after a prefix are free, but for <|notimestamps|>
        logits[opened, self.no_timestamps] = -np.inf
        rows = np.flatnonzero(~opened)
        part = logits[rows]
        self._apply(part, tokens[rows])
        logits[rows] = part

    def _apply(self, logits, tokens):
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
        timestamp_logit = logsumexp(logits[:, ts:])
        logits[timestamp_logit > logits[:, :ts].max(axis=1), :ts] = -np.inf


@dataclass(frozen=True)
class SuppressEarlyEnd(LogitFilter):
    """No end of text while a row's last segment would end before its window's `ends` (timestamp
    token ids, one per row): the batched mode knows its windows hold speech up to there (VAD
    pieces), and the model, left alone, may stop a few sentences early (or after the start of a
    segment it did not write), leaving them for another window. A segment ends at the timestamp
    after its text; one still open (text last) would end at the window's end, as a window that
    stops there is read (openai's rule), so the row may end there: forced on through such a
    segment, the model wrote on without a timestamp until the token limit (after a prompt, whose
    windows often hold no segment ends)."""

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
        # nothing sampled yet counts as no segment open
        text_last = ~is_timestamp[:, -1] if sampled.shape[1] else np.zeros(len(sampled), bool)
        logits[~text_last & (last_end < self.ends), self.eot] = -np.inf

    def select(self, rows):
        return replace(self, ends=self.ends[rows])
