"""The decoding state of a batch's windows in a WindowSlots (decoding.BatchDecodingTask.start):
their rows' tokens, logits, sums of logprobs and rules, and how each step's next tokens are chosen,
greedy or sampled (SampledWindows) or by one beam search per window (BeamWindows)."""

from typing import List

import numpy as np

from .logprobs import beam_candidates
from .token_selection import BeamSearchDecoder, GreedyDecoder, beam_rows, candidates_per_row
from .window_slots import rows_of


class Windows:
    """The decoding state of a BatchDecodingTask's windows in a WindowSlots: their rows' tokens
    (the last initial token, then the sampled ones), logits, sums of logprobs and rules, `group`
    consecutive rows per window. `choose()` gives every row's next token: first the rest of the
    prompt when given no logits (the prompt fed through the batch's steps, as `start` feeds it
    alone), then the sampled tokens; the windows that end leave every array (and `slots`) at once.
    """

    def __init__(self, task, logits, no_speech, rng):
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
        # sampled tokens each row may take before its window's context is full (one more ends it,
        # as openai's rows grow one past the context)
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


class SampledWindows(Windows):
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
        done |= (next_tokens == eot) | (tokens.shape[1] - 1 > self.limits)
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


class BeamWindows(Windows):
    """One beam search per window (CTranslate2's), all windows' beams in one pass over their
    logits.

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
        top, top_logprobs = beam_candidates(logits, candidates_per_row(size))
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
                or grown.shape[1] - 1 > self.limits[j * size]
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


def _sampled(row: List[int], eot: int) -> List[int]:
    """A row's sampled tokens up to EOT."""
    return row[: row.index(eot)] if eot in row else row
