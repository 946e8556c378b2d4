"""The batched mode's inputs cut into pieces: what each input and piece holds while decoded, the
turns pieces take in batches, and the times a piece's segments may take."""

from collections import deque
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .segments import Segment


@dataclass
class Source:
    """One input: where its pieces are, and what its result needs."""

    index: int  # position in the inputs
    duration: float  # seconds of the input
    duration_after_vad: float  # seconds transcribed
    # the VAD's chunks (samples), through which times are restored; None without the VAD
    speech_chunks: Optional[List[dict]]
    language: Optional[str]  # None: detected in each piece
    prompt_tokens: List[int]  # the initial prompt of every window
    pieces: List["Piece"] = field(default_factory=list)
    remaining: int = 0  # pieces not yet done
    # what its result reports as its language where the pieces' are detected; None: the first
    # piece's (BatchedTranscriber._language)
    reported_language: Optional[str] = None


@dataclass
class Piece:
    """A piece of one input, transcribed window by window: its own seek point, language and text."""

    source: Source
    # the piece's audio until its log-mel is made: when it first joins a batch, so that the mels
    # held at once are those of the pieces being decoded, not of every piece of a long input
    samples: Optional[np.ndarray]
    offset: float  # seconds before the piece on its input's transcribed timeline
    seek: int = 0  # mel frame within the piece
    language: Optional[str] = None
    language_probability: float = 1.0
    all_language_probs: Optional[List[Tuple[str, float]]] = None  # where it was detected
    tokens: List[int] = field(default_factory=list)  # text decoded so far: the prompt within it
    prompt_reset_since: int = 0
    # the text was reset (condition_on_previous_text off, or a hot fallback): the initial prompt
    # goes too, unless carried, as in the sequential mode (all its tokens were text before that)
    prompt_reset: bool = False
    segments: List[Segment] = field(default_factory=list)
    # windows of it taken into batches so far, those skipped as constant (digital silence) too
    windows: int = 0
    # the end of its last word timed (word timing's "last speech"); None until its first window
    # with text is timed (speech_before)
    last_speech_timestamp: Optional[float] = None
    # its speech runs to the input's end (a recording cut mid-sentence): no silence after its
    # last words, so a window that ends early leaves the rest to a next window (sequential mode)
    ends_input: bool = False
    mel: Optional[np.ndarray] = None  # log-mel with a window of padding, while being decoded
    content_frames: int = field(init=False)  # mel frames of the piece's audio
    end: float = field(init=False)  # seconds where the piece ends on the transcribed timeline
    # word timing of a piece decoded in one window aligns over its length in whole seconds, as
    # faster-whisper's pipeline aligns a chunk (aligned to its exact end, its last word ended early)
    aligned_frames: int = field(init=False)

    def __post_init__(self):
        self.content_frames = len(self.samples) // HOP_LENGTH
        whole_seconds = -(-len(self.samples) // SAMPLE_RATE)
        self.aligned_frames = min(N_FRAMES, whole_seconds * FRAMES_PER_SECOND)
        self.end = self.offset + len(self.samples) / SAMPLE_RATE

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames

    @property
    def opens_input(self) -> bool:
        """Its next window is its input's first (where a prefix goes, as in the sequential mode):
        not a clip's that starts after 0 s."""
        return self.seek == 0 and self.offset == 0

    def speech_before(self) -> float:
        """Word timing's "last speech" for the piece's first window timed (the pause before its
        first word limits that word's length): 0 at the input's start, as the sequential mode
        begins; the piece before read in one window gives its last word's end, as faster-whisper's
        pipeline carries it from chunk to chunk; read in more, its rest may not be decoded yet
        (that depends on the batches), and this piece's start stands, where the speech before it
        ends on the VAD's timeline (a clip's: nothing before it is read). An input's pieces take
        their first windows in order (take_in_turn), so the piece before has taken its first."""
        pieces = self.source.pieces
        index = next(i for i, piece in enumerate(pieces) if piece is self)
        if index == 0:
            return 0.0
        earlier = pieces[index - 1]
        if earlier.done and earlier.windows == 1 and earlier.last_speech_timestamp is not None:
            return earlier.last_speech_timestamp
        return self.offset

    @property
    def frame_offset(self) -> int:
        return round(self.offset * FRAMES_PER_SECOND)


def take_in_turn(pending: deque, size: int) -> List[Piece]:
    """Up to `size` pieces of `pending` for the next batch, its inputs in turn: the first piece of
    each input (in the queue's order), then the second of each, ... An input queued behind a long
    one is in the next batch, not after all the long one's pieces. Each input's pieces keep their
    order, and a piece still being decoded (queued first) keeps its place."""
    turns, ranked = {}, []
    for position, piece in enumerate(pending):
        turn = turns.get(piece.source.index, 0)
        turns[piece.source.index] = turn + 1
        ranked.append((turn, position))
    chosen = sorted(position for _, position in sorted(ranked)[:size])
    batch = [pending[position] for position in chosen]
    taken = set(chosen)
    kept = [piece for position, piece in enumerate(pending) if position not in taken]
    pending.clear()
    pending.extend(kept)
    return batch


def clamp_to_piece(segment: Segment, piece: Piece):
    """The segment's (and its words') times kept within its piece, half a sample inside: the VAD's
    map finds a time's chunk from its sample, so a time on the piece's edge or past it (the window
    starts on a whole mel frame, timestamps are 20 ms apart) would be moved through the
    neighbouring piece's chunk, a whole pause away."""
    low, high = piece.offset + 0.5 / SAMPLE_RATE, piece.end - 0.5 / SAMPLE_RATE
    segment.start = min(max(segment.start, low), high)
    segment.end = min(max(segment.end, low), high)
    for word in segment.words or []:
        word["start"] = min(max(word["start"], low), high)
        word["end"] = min(max(word["end"], low), high)


def clip_spans(clip_seconds, n_samples: int) -> List[Tuple[float, float]]:
    """(start, end) seconds of each clip to transcribe, cut at the end of the audio; no clips: the
    whole input."""
    length = n_samples / SAMPLE_RATE
    points = list(clip_seconds) or [0.0]
    if len(points) % 2 == 1:
        points.append(length)
    spans = [(min(s, length), min(e, length)) for s, e in zip(points[::2], points[1::2])]
    return [(s, e) for s, e in spans if e > s]
