"""Token selection: greedy or sampled rows (GreedyDecoder), CTranslate2's beam search
(BeamSearchDecoder) with the cache row each beam keeps (beam_rows), and the ranking of finished
candidates (rank_score)."""

import math
from typing import Dict, Optional, Tuple

import numpy as np

from .logprobs import beam_candidates, exp_sums, log_softmax

# What a row whose filters left no token ends with (GreedyDecoder): float32's smallest number's
# log probability, finite, as avg_logprob goes into JSON.
NO_TOKEN_LOGPROB = float(np.log(np.finfo(np.float32).tiny))


class GreedyDecoder:
    """Argmax at temperature 0, else sampling from softmax(logits / temperature)."""

    def __init__(self, temperature: float, eot: int, rng: Optional[np.random.Generator] = None):
        self.temperature = temperature
        self.eot = eot
        self.rng = rng or np.random.default_rng()

    def select(self, logits: np.ndarray, tokens: np.ndarray, sum_logprobs: np.ndarray):
        """Return the next tokens (B,), updating sum_logprobs for rows not yet finished."""
        # a row its filters left no token (suppress_tokens and the timestamp rules together can):
        # it ends, where sampling would fail on NaN probabilities, at the log probability of
        # float32's smallest number (finite: avg_logprob goes into JSON)
        peak = logits.max(axis=-1)
        dead = ~(peak > -np.inf)
        if self.temperature == 0:
            next_tokens = logits.argmax(axis=-1)
        else:
            next_tokens = np.full(len(logits), self.eot)
            probs = np.exp(log_softmax(_scaled(logits[~dead], self.temperature)))
            next_tokens[~dead] = [self.rng.choice(len(p), p=p / p.sum()) for p in probs]
        next_tokens = np.where(dead, self.eot, next_tokens)
        # log_softmax(logits) at the chosen tokens, without writing out the whole array
        with np.errstate(invalid="ignore", divide="ignore"):  # a dead row: -inf - -inf
            total = exp_sums(logits, peak, logits.dtype)
            chosen = logits[np.arange(len(next_tokens)), next_tokens]
            current = np.where(dead, NO_TOKEN_LOGPROB, (chosen - peak) - np.log(total))
        finished = tokens[:, -1] == self.eot
        sum_logprobs += np.where(finished, 0.0, current)
        return np.where(finished, self.eot, next_tokens)


def _scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    """logits / temperature; a row where that is not finite (a temperature of ~1e-38 or below
    overflows float32, one below its smallest value divides by 0) scaled after subtracting its
    maximum instead, in float64: its sampling is then the argmax's, the limit as the temperature
    goes to 0, not NaN probabilities."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled = logits / temperature
        broken = (~np.isfinite(scaled) & np.isfinite(logits)).any(axis=-1)
        if broken.any():
            rows = logits[broken].astype(np.float64)
            scaled = scaled.astype(np.float64)
            scaled[broken] = (rows - rows.max(axis=-1, keepdims=True)) / np.float64(temperature)
    return scaled


def candidates_per_row(beam_size: int) -> int:
    """The continuations a beam search ranks at each step, CTranslate2's 2 * beam_size best of all
    beams': each row's best that many hold every one of them."""
    return 2 * beam_size


class BeamSearchDecoder:
    """Beam search for one audio as CTranslate2 (faster-whisper) runs it: beam_size rows decoded
    as one batch.

    Each step ranks the continuations of every beam by their sum of log probabilities and takes
    the 2 * beam_size best; the first beam_size are the next beams, except that one ending in EOT
    is a finished candidate and its place goes to the next best of the others that does not end.
    The search is complete once round(beam_size * patience) candidates have finished. (openai's
    takes each beam's beam_size + 1 best tokens and counts as finished every EOT ranked before the
    beam_size-th unfinished continuation, up to that number: on the same weights it found less
    likely texts than faster-whisper's, "thy known" for "thine own".)
    """

    def __init__(self, beam_size: int, eot: int, patience: Optional[float] = None):
        self.beam_size = beam_size
        self.eot = eot
        # C++'s std::round, as CTranslate2's: halves away from 0 (Python's round: to even)
        self.max_candidates = math.floor(beam_size * (patience or 1.0) + 0.5)
        self.candidates = candidates_per_row(beam_size)
        self.finished: Dict[Tuple[int, ...], float] = {}

    def update(
        self,
        tokens: np.ndarray,
        logits: Optional[np.ndarray],
        sum_logprobs: np.ndarray,
        candidates: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    ):
        """Return (next tokens (beam, T+1), source row of each, completed); sum_logprobs is
        rewritten in place. `candidates`: each row's `beam_candidates(logits, self.candidates)`,
        when computed for many windows at once (`logits` is then not read).

        Rows holding the same sequence (every row at the first step, where CTranslate2 expands
        the first beam only) propose once, from the last such row. A row's best 2 * beam_size
        tokens hold every continuation of it among the best 2 * beam_size of all.
        """
        same = (tokens[:, None, :] == tokens[None, :, :]).all(axis=2)  # rows holding one sequence
        # each distinct sequence once, in the order of its first row, proposed from its last row
        leaders = np.flatnonzero(same.argmax(axis=1) == np.arange(len(tokens)))
        source = len(tokens) - 1 - same[leaders, ::-1].argmax(axis=1)
        if candidates is None:
            top, top_logprobs = beam_candidates(logits[source], self.candidates)
        else:
            top, top_logprobs = candidates[0][source], candidates[1][source]
        candidate_rows = np.repeat(source, top.shape[1])
        candidate_tokens = top.reshape(-1)
        scores = sum_logprobs[candidate_rows] + top_logprobs.reshape(-1)
        order = np.argsort(-scores, kind="stable")
        head, rest = order[: self.beam_size], order[self.beam_size :]
        ending = candidate_tokens[head] == self.eot
        for i in head[ending]:
            sequence = tuple(tokens[candidate_rows[i]].tolist()) + (self.eot,)
            self.finished[sequence] = float(scores[i])
        # an ended beam's place goes to the next best continuation that does not end (always one
        # within the 2 * beam_size best: a row proposes EOT once)
        spares = rest[candidate_tokens[rest] != self.eot][: int(ending.sum())]
        kept = head.copy()
        kept[np.flatnonzero(ending)[: len(spares)]] = spares
        # (a vocabulary of a few tokens may leave too few: those places stay empty)
        kept = kept[candidate_tokens[kept] != self.eot]
        sum_logprobs[: len(kept)] = scores[kept]
        next_tokens = np.concatenate(
            [tokens[candidate_rows[kept]], candidate_tokens[kept, None]], axis=1
        )
        completed = len(self.finished) >= self.max_candidates
        return next_tokens.astype(np.int64), candidate_rows[kept].tolist(), completed

    def finalize(
        self, tokens: np.ndarray, sum_logprobs: np.ndarray
    ) -> Dict[Tuple[int, ...], float]:
        """Finished candidates; for a search the length limit ended before enough finished, every
        beam too (EOT appended), as CTranslate2 takes its last step's."""
        finished = dict(self.finished)
        if len(finished) < self.max_candidates:
            for row in np.argsort(-sum_logprobs, kind="stable"):
                finished[tuple(tokens[row].tolist()) + (self.eot,)] = float(sum_logprobs[row])
        return finished


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


def rank_score(sum_logprob: float, length: int, length_penalty: Optional[float]) -> float:
    """openai's MaximumLikelihoodRanker score of one candidate."""
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return sum_logprob / penalty if penalty else sum_logprob
