"""Word timestamps: cross-attention of the alignment heads, median filter, DTW, openai's word
heuristics.

Same algorithm and constants as openai/whisper's timing.py. DTW is NumPy over anti-diagonals (every
cell on a diagonal depends only on the two before it), with openai's tie-breaking, so no numba or
torch is needed.
"""

import itertools
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .audio import HOP_LENGTH, SAMPLE_RATE, TOKENS_PER_SECOND
from .errors import warn

MEDFILT_WIDTH = 7
SENTENCE_END_MARKS = ".。!！?？"
MAX_MEDIAN_DURATION = 0.7  # seconds: cap of the median word duration used by the heuristics
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass
class WordTiming:
    word: str
    tokens: List[int]
    start: float
    end: float
    probability: float


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of `width` (odd) along the last axis, reflect-padded."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.sort(windows, axis=-1)[..., pad]


def dtw(x: np.ndarray):
    """Minimum-cost monotonic path through cost matrix x (N, M): (text indices, time indices)."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf)
    trace = np.full((n + 1, m + 1), -1, np.int8)
    cost[0, 0] = 0
    for d in range(2, n + m + 1):  # cells (i, j) with i + j = d, i in 1..n, j in 1..m
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        cost[i, j] = x[i - 1, j - 1] + np.choose(t, [c0, c1, c2])
        trace[i, j] = t
    return _backtrace(trace)


def _backtrace(trace: np.ndarray):
    i, j = trace.shape[0] - 1, trace.shape[1] - 1
    trace[0, :] = 2
    trace[:, 0] = 1
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(path[::-1]).T


def find_alignment(
    model,
    tokenizer,
    text_tokens: List[int],
    audio_features,
    num_frames: int,
    *,
    medfilt_width: int = MEDFILT_WIDTH,
    qk_scale: float = 1.0,
) -> List[WordTiming]:
    if not text_tokens:
        return []
    # the start of the transcript, <|notimestamps|>, the text and <|endoftext|> run through the
    # decoder at once: a window's text past the context that leaves (a long prefix, a run-on window
    # of max_new_tokens) failed deep in MindSpore after the whole decode; its last words go untimed
    room = model.dims.n_text_ctx - len(tokenizer.sot_sequence) - 2
    if len(text_tokens) > room:
        warn(
            f"word timestamps: a window's text of {len(text_tokens)} tokens is more than the "
            f"{room} the model can align; the words past those have no timings"
        )
        # whole words only: the last one cut may be a piece of a word
        word_tokens = tokenizer.split_to_word_tokens(text_tokens[:room])[1]
        text_tokens = [token for word in word_tokens[:-1] for token in word]
    tokens = [*tokenizer.sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]
    logits, scores = model.inference.cross_attention(audio_features, tokens, model.alignment_heads)
    n_sot = len(tokenizer.sot_sequence)
    sampled = logits[n_sot:, : tokenizer.eot].astype(np.float64)
    probs = np.exp(sampled - sampled.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    text_token_probs = probs[np.arange(len(text_tokens)), text_tokens]

    # heads x tokens x frames
    weights = scores[:, :, : num_frames // 2].astype(np.float64) * qk_scale
    if weights.shape[-1]:  # a window of one mel frame has no attention frames: every word at 0
        weights = np.exp(weights - weights.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # one token: 0/0, NaN as torch makes it
        weights = (weights - weights.mean(-2, keepdims=True)) / weights.std(-2, keepdims=True)
    weights = median_filter(weights, medfilt_width)
    matrix = weights.mean(axis=0)[n_sot:-1]
    text_indices, time_indices = dtw(-matrix)

    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    # a path that reaches the first frame before the first token ends at index -1 (openai's
    # too: a 25-ms window gave times of -0.02 s, which the writers refuse)
    jump_times = np.maximum(time_indices[jumps], 0) / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    probabilities = [
        float(np.mean(text_token_probs[i:j])) for i, j in zip(boundaries[:-1], boundaries[1:])
    ]
    return [
        WordTiming(w, t, float(s), float(e), p)
        for w, t, s, e, p in zip(words, word_tokens, starts, ends, probabilities)
    ]


def merge_punctuations(alignment: List[WordTiming], prepended: str, appended: str):
    """Attach opening punctuation to the following word and closing punctuation to the previous
    one."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def add_word_timestamps(
    *,
    segments,
    model,
    tokenizer,
    audio_features,
    num_frames: int,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    last_speech_timestamp: float,
) -> float:
    """Set `words` (dicts: word, start, end, probability) on one window's segments, adjusting
    segment bounds as openai does; returns the updated last speech timestamp."""
    if not segments:
        return last_speech_timestamp
    text_tokens_per_segment = [[t for t in s.tokens if t < tokenizer.eot] for s in segments]
    text_tokens = list(itertools.chain.from_iterable(text_tokens_per_segment))
    alignment = find_alignment(model, tokenizer, text_tokens, audio_features, num_frames)
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median_duration = min(
        MAX_MEDIAN_DURATION, float(np.median(durations)) if len(durations) else 0.0
    )
    max_duration = median_duration * 2
    if len(durations):  # truncate long words at sentence boundaries
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in SENTENCE_END_MARKS:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in SENTENCE_END_MARKS:
                    alignment[i].start = alignment[i].end - max_duration
    merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    time_offset = segments[0].seek * HOP_LENGTH / SAMPLE_RATE
    word_index = 0
    for segment, tokens in zip(segments, text_tokens_per_segment):
        saved, words = 0, []
        while word_index < len(alignment) and saved < len(tokens):
            timing = alignment[word_index]
            if timing.word:
                words.append(
                    dict(
                        word=timing.word,
                        start=round(time_offset + timing.start, 2),
                        end=round(time_offset + timing.end, 2),
                        probability=timing.probability,
                    )
                )
            saved += len(timing.tokens)
            word_index += 1
        if words:
            last_speech_timestamp = _adjust_bounds(
                segment, words, median_duration, max_duration, last_speech_timestamp
            )
        segment.words = words
    return last_speech_timestamp


def _adjust_bounds(segment, words, median_duration, max_duration, last_speech_timestamp) -> float:
    """openai's boundary heuristics: shorten over-long first words after a pause, and reconcile
    segment bounds."""
    first, second = words[0], words[1] if len(words) > 1 else None
    if first["end"] - last_speech_timestamp > median_duration * 4 and (
        first["end"] - first["start"] > max_duration
        or (second is not None and second["end"] - first["start"] > max_duration * 2)
    ):
        if second is not None and second["end"] - second["start"] > max_duration:
            boundary = max(second["end"] / 2, second["end"] - max_duration)
            first["end"] = second["start"] = boundary
        first["start"] = max(0, first["end"] - max_duration)
    if segment.start < first["end"] and segment.start - 0.5 > first["start"]:
        first["start"] = max(0, min(first["end"] - median_duration, segment.start))
    else:
        segment.start = first["start"]
    last = words[-1]
    if segment.end > last["start"] and segment.end + 0.5 < last["end"]:
        last["end"] = max(last["start"] + median_duration, segment.end)
    else:
        segment.end = last["end"]
    return segment.end


def last_word_end(segments) -> Optional[float]:
    """The end of the last word, else of the last segment (openai's and faster-whisper's get_end):
    a window whose text has no words (a lone timestamp, as in music) still moves the seek point
    and the last speech to where its segments end."""
    ends = [w["end"] for s in segments for w in (s.words or [])]
    if ends:
        return ends[-1]
    return segments[-1].end if segments else None


PUNCTUATION = PREPEND_PUNCTUATIONS + APPEND_PUNCTUATIONS


def word_anomaly_score(word: dict) -> float:
    """openai's heuristic: improbable, very short or very long words suggest a hallucination."""
    probability = word.get("probability", 0.0)
    duration = word["end"] - word["start"]
    score = 0.0
    if probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_segment_anomaly(segment) -> bool:
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w["word"] not in PUNCTUATION][:8]
    score = sum(word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def next_words_segment(segments):
    return next((s for s in segments if s.words), None)
