"""From speech probabilities to speech timestamps, speech-only audio, and back to the original
timeline.

Semantics are faster-whisper's (`faster_whisper/vad.py`), so that the same probabilities give the
same samples: `speech_timestamps` is its get_speech_timestamps after the model, `collect_chunks` its
collect_chunks, and `SpeechTimestampsMap` / `restore_speech_timestamps` its timestamp restoration.
Timestamps are dicts {"start": sample, "end": sample} at 16 kHz, as there.
"""

import bisect
from typing import Iterable, List, Optional, Tuple

import numpy as np

from .model import SAMPLE_RATE, WINDOW_SAMPLES
from .options import VadOptions

# an over-long speech segment may be split at a silence longer than this
SPLIT_SILENCE_MS = 98
# neg_threshold None: threshold - this, but at least NEG_THRESHOLD_FLOOR
NEG_THRESHOLD_OFFSET = 0.15
NEG_THRESHOLD_FLOOR = 0.01


def _samples(milliseconds):
    return SAMPLE_RATE * milliseconds / 1000


def speech_timestamps(probs, n_samples: int, options: VadOptions) -> List[dict]:
    """Speech segments of `n_samples` samples of audio whose WINDOW_SAMPLES windows have
    probabilities `probs`."""
    threshold = options.threshold
    neg_threshold = options.neg_threshold
    if neg_threshold is None:
        neg_threshold = max(threshold - NEG_THRESHOLD_OFFSET, NEG_THRESHOLD_FLOOR)
    min_speech = _samples(options.min_speech_duration_ms)
    pad = _samples(options.speech_pad_ms)
    max_speech = SAMPLE_RATE * options.max_speech_duration_s - WINDOW_SAMPLES - 2 * pad
    min_silence = _samples(options.min_silence_duration_ms)
    split_silence = _samples(SPLIT_SILENCE_MS)

    speeches = []
    start = None  # start of the open speech segment; None outside speech
    silence_start = 0  # first window below neg_threshold in the open segment (0: none yet)
    split_at = 0  # end of the segment's last silence longer than split_silence (0: none)
    resume_at = 0  # where speech came back after that silence (0: not yet)
    for i, prob in enumerate(probs):
        position = WINDOW_SAMPLES * i
        if prob >= threshold and silence_start:
            silence_start = 0
            if resume_at < split_at:
                resume_at = position
        if prob >= threshold and start is None:
            start = position
            continue
        if start is not None and position - start > max_speech:
            # split at the last long silence; continue from where speech resumed, if it did
            if split_at:
                speeches.append({"start": start, "end": split_at})
                start = resume_at if resume_at >= split_at else None
                split_at = resume_at = silence_start = 0
            else:  # no silence to split at: cut here
                speeches.append({"start": start, "end": position})
                start = None
                split_at = resume_at = silence_start = 0
                continue
        if prob < neg_threshold and start is not None:
            if not silence_start:
                silence_start = position
            if position - silence_start > split_silence:
                split_at = silence_start
            if position - silence_start < min_silence:
                continue
            if silence_start - start > min_speech:
                speeches.append({"start": start, "end": silence_start})
            start = None
            split_at = resume_at = silence_start = 0
    if start is not None and n_samples - start > min_speech:
        speeches.append({"start": start, "end": n_samples})
    _pad(speeches, pad, n_samples)
    return speeches


def _pad(speeches, pad, n_samples):
    """Widen every segment by `pad` samples each side; neighbours closer than 2 pad split the gap
    between them."""
    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i + 1 == len(speeches):
            speech["end"] = int(min(n_samples, speech["end"] + pad))
            continue
        following = speeches[i + 1]
        gap = following["start"] - speech["end"]
        if gap < 2 * pad:
            speech["end"] += int(gap // 2)
            following["start"] = int(max(0, following["start"] - gap // 2))
        else:
            speech["end"] = int(min(n_samples, speech["end"] + pad))
            following["start"] = int(max(0, following["start"] - pad))


def collect_chunks(
    audio: np.ndarray, chunks: List[dict], max_duration: float = float("inf")
) -> Tuple[List[np.ndarray], List[dict]]:
    """The speech of `audio` (16 kHz) cut at `chunks` and joined into pieces of at most
    `max_duration` seconds (a single chunk longer than that is a piece of its own), with each
    piece's metadata: "offset" (seconds before it on the speech-only timeline), "duration" (seconds)
    and "segments" (its chunks).

    faster-whisper's collect_chunks, except that each piece's "segments" lists all of its chunks
    (faster-whisper leaves out the first chunk of every piece after the first) and that no empty
    piece comes first when the first chunk alone is longer than max_duration. No chunks: one empty
    piece. Sequential transcription uses one piece (max_duration inf): all speech joined; batched
    transcription uses 30-s pieces.
    """
    if not chunks:
        return [np.zeros(0, np.float32)], [{"offset": 0.0, "duration": 0.0, "segments": []}]
    limit = max_duration * SAMPLE_RATE
    groups, lengths = [], []
    for chunk in chunks:
        length = chunk["end"] - chunk["start"]
        if groups and lengths[-1] + length <= limit:
            groups[-1].append(chunk)
            lengths[-1] += length
        else:
            groups.append([chunk])
            lengths.append(length)
    pieces, metadata, before = [], [], 0
    for group, length in zip(groups, lengths):
        pieces.append(
            np.concatenate([audio[c["start"] : c["end"]] for c in group]).astype(
                np.float32, copy=False
            )
        )
        metadata.append(
            {
                "offset": before / SAMPLE_RATE,
                "duration": length / SAMPLE_RATE,
                "segments": [dict(c) for c in group],
            }
        )
        before += length
    return pieces, metadata


class SpeechTimestampsMap:
    """Times on the speech-only timeline (the chunks joined) -> times in the original audio.

    `get_original_time(t, chunk_index=None, is_end=False)` adds the audio removed before chunk
    `chunk_index` (by default the chunk `t` falls in; with `is_end`, a time exactly at a chunk's end
    belongs to that chunk, not the next), rounded to `time_precision` decimals, as faster-whisper's
    SpeechTimestampsMap.
    """

    def __init__(
        self, chunks: List[dict], sampling_rate: int = SAMPLE_RATE, time_precision: int = 2
    ):
        if not chunks:
            raise ValueError("SpeechTimestampsMap needs at least one chunk")
        self.sampling_rate = sampling_rate
        self.time_precision = time_precision
        self.chunk_end_sample = []  # each chunk's end on the speech-only timeline
        self.total_silence_before = []  # seconds removed before each chunk
        removed, previous_end = 0, 0
        for chunk in chunks:
            removed += chunk["start"] - previous_end
            previous_end = chunk["end"]
            self.chunk_end_sample.append(chunk["end"] - removed)
            self.total_silence_before.append(removed / sampling_rate)

    def get_chunk_index(self, time: float, is_end: bool = False) -> int:
        sample = int(time * self.sampling_rate)
        if is_end and sample in self.chunk_end_sample:
            return self.chunk_end_sample.index(sample)
        return min(bisect.bisect(self.chunk_end_sample, sample), len(self.chunk_end_sample) - 1)

    def get_original_time(
        self, time: float, chunk_index: Optional[int] = None, is_end: bool = False
    ) -> float:
        if chunk_index is None:
            chunk_index = self.get_chunk_index(time, is_end)
        return round(self.total_silence_before[chunk_index] + time, self.time_precision)


def _get(item, key):
    return item[key] if isinstance(item, dict) else getattr(item, key)


def _set(item, key, value):
    if isinstance(item, dict):
        item[key] = value
    else:
        setattr(item, key, value)


def restore_speech_timestamps(
    segments: Iterable,
    speech_chunks: List[dict],
    sampling_rate: int = SAMPLE_RATE,
    end_slack: float = 0.0,
) -> Iterable:
    """Segments transcribed from the joined speech, with times moved to the original timeline
    (changed in place and yielded), as faster-whisper does: with words, each word is mapped through
    the chunk its middle falls in and the segment spans its first word's start to its last word's
    end; without, the start is mapped through the chunk it falls in and the end through the chunk it
    ends (`is_end`). Segments and words may be objects or dicts with "start", "end" (and
    "words").

    `end_slack` (seconds; 0: faster-whisper's mapping): a segment without words whose end falls at
    most this far into a later chunk than its start ends with the chunk before, when audio was cut
    out between the two: the opening padding of a chunk after a pause is silence, and an end just
    past a chunk's speech was moved a whole pause later (a subtitle shown through minutes of
    silence)."""
    if not speech_chunks:
        yield from segments
        return
    ts_map = SpeechTimestampsMap(speech_chunks, sampling_rate)
    for segment in segments:
        words = (
            segment.get("words") if isinstance(segment, dict) else getattr(segment, "words", None)
        )
        if words:
            for word in words:
                start, end = _get(word, "start"), _get(word, "end")
                index = ts_map.get_chunk_index((start + end) / 2)
                _set(word, "start", ts_map.get_original_time(start, index))
                _set(word, "end", ts_map.get_original_time(end, index))
            _set(segment, "start", _get(words[0], "start"))
            _set(segment, "end", _get(words[-1], "end"))
        else:
            start, end = _get(segment, "start"), _get(segment, "end")
            end_index = ts_map.get_chunk_index(end, is_end=True)
            # only past a pause the VAD cut out: chunks that touch split a short pause between
            # them, and the later one opens on speech
            if (
                end_slack
                and end_index > ts_map.get_chunk_index(start)
                and speech_chunks[end_index]["start"] > speech_chunks[end_index - 1]["end"]
            ):
                opening = ts_map.chunk_end_sample[end_index - 1] / sampling_rate
                if end - opening <= end_slack:
                    end, end_index = opening, end_index - 1
            _set(segment, "start", ts_map.get_original_time(start))
            _set(segment, "end", ts_map.get_original_time(end, end_index))
        yield segment
