"""Log-probabilities over the vocabulary from a step's logits (B, V), computed in NumPy without
writing out a whole log-softmax where a few values are needed: each row's normaliser (exp_sums), its
k best tokens (top_k_rows), and both together for beam search (beam_candidates)."""

from typing import Tuple

import numpy as np

# values per block in top_k_rows' first pass (few blocks: ranking the chosen ones is short)
TOP_K_BLOCK = 64
# exp_sums works through this many bytes of rows at a time, so that its three passes (subtract,
# exp, sum) find the block in a core's cache instead of each streaming a whole batch's logits from
# memory (40 beam rows of 51865 tokens are 8 MB)
EXP_SUM_BLOCK_BYTES = 1 << 20


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


def logsumexp(values: np.ndarray) -> np.ndarray:
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
