"""The batched mode's inputs made ready to decode (read, their speech found, cut into pieces), as
its batches need them.

From a list (files, arrays) each input is made ready when the batch needs more pieces, in the
caller's thread, so a long list streams through a fixed amount of memory. From an InputQueue (a
server's requests) an input declaring more than INLINE_SECONDS of audio, or whose length is not
known before it is read, is made ready on a thread of its own while the batches go on: reading an
input and finding its speech takes seconds per hour of audio, and done in the batches' thread it
held every other request's batch for as long (a request for a few seconds of speech sent just
after a 12-hour one waited most of a minute). Shorter ones are read in the batches' thread, as
before: on threads of their own, many short requests at once made the batches slower.
"""

import concurrent.futures
import os
import time
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from .audio import SAMPLE_RATE
from .audio_files import declared_seconds as file_seconds
from .batch_inputs import BatchInput, Cancelled, InputQueue
from .errors import RuntimeMemoryError, WhispermsError, stopped_by, unforeseen

# An arriving input declaring at most this much audio is read in the batches' thread (a few tenths
# of a second at most); a longer one on a thread of its own.
INLINE_SECONDS = 300
# Threads reading long inputs at once.
LONG_READERS = 2

# How long the batches' thread waits at most, with nothing to decode, for all the inputs being made
# ready, before it decodes those that are: requests arriving together share their first batch, and
# one that takes longer (hours of audio) joins a later one.
GATHER_SECONDS = 1.0


def outcome(prepare: Callable, index: int, audio):
    """prepare(index, audio), or the WhispermsError it raised (one no check foresaw, wrapped as
    one): an input's failure is its own; but MindSpore's runtime failing an allocation (its VAD's
    graphs) is the process's, raised."""
    try:
        return prepare(index, audio)
    except WhispermsError as error:
        return error
    except RuntimeMemoryError:
        raise
    except Exception as error:
        if stopped_by(error) is not None:  # Ctrl-C or SIGTERM, in a library's error
            raise
        return unforeseen(error)


def declared_seconds(audio) -> Optional[float]:
    """The seconds of audio an input holds, as far as known before it is read: an array's length,
    a file's header (audio_files.declared_seconds); None otherwise (content given as bytes, a
    file whose header does not say)."""
    if isinstance(audio, BatchInput):
        audio = audio.audio
    if isinstance(audio, np.ndarray):
        return max(audio.shape, default=0) / SAMPLE_RATE
    if isinstance(audio, (str, os.PathLike)):
        return file_seconds(audio, vouched=True)
    return None


class BatchFeed:
    """`ready(pieces_pending, inputs_pending)` gives (index, outcome) for inputs made ready: an
    outcome is what `prepare` returns (its pieces), a WhispermsError, or Cancelled for an input
    given up. `size`: the batch size; inputs are taken while fewer than it are in flight."""

    def __init__(self, audios, prepare: Callable, size: int):
        self.prepare, self.size = prepare, size
        self.arriving = isinstance(audios, InputQueue)
        if self.arriving:
            self.take, self.cancelled = audios.take, audios.cancelled
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=LONG_READERS, thread_name_prefix="whisperms-input"
            )
        else:
            inputs = enumerate(audios)
            self.take = lambda: next(inputs, None)
            self.cancelled = lambda index: False
            self._pool = None
        self._preparing: dict = {}  # future -> index, in the order taken

    def idle(self) -> bool:
        """True when no input is being made ready."""
        return not self._preparing

    def ready(self, pieces_pending: int, inputs_pending: int) -> Iterator[Tuple[int, object]]:
        """Inputs made ready now. From a list: taken and made ready while fewer than a batch of
        pieces wait (the caller adds each one's pieces before the next is taken). From a queue:
        arrivals are started while fewer than a batch of inputs are in flight, and those finished
        are given; with no piece to decode it first waits for those being made ready, and for
        those arriving meanwhile, up to GATHER_SECONDS."""
        if not self.arriving:
            while pieces_pending < self.size:
                item = self.take()
                if item is None:
                    return
                if self.cancelled(item[0]):
                    yield item[0], Cancelled()
                    continue
                result = outcome(self.prepare, *item)
                pieces_pending += len(getattr(result, "pieces", ()))
                yield item[0], result
            return
        given_up, now = [], []  # inputs given up, and those read here: (index, outcome)
        deadline = time.monotonic() + GATHER_SECONDS
        while True:
            taken = 0
            while inputs_pending + len(now) + len(self._preparing) < self.size:
                item = self.take()
                if item is None:
                    break
                if self.cancelled(item[0]):
                    given_up.append(item[0])
                    continue
                seconds = declared_seconds(item[1])
                if seconds is not None and seconds <= INLINE_SECONDS:
                    now.append((item[0], outcome(self.prepare, *item)))
                    continue
                self._preparing[self._pool.submit(outcome, self.prepare, *item)] = item[0]
                taken += 1
            # with nothing to decode: the inputs being read are waited for, and those arriving
            # meanwhile taken too, so that requests sent together share their first batch (as
            # when each was read in turn, and the next had arrived by then)
            to_decode = pieces_pending or any(getattr(result, "pieces", ()) for _, result in now)
            if to_decode or not self._preparing:
                break
            if not taken and all(future.done() for future in self._preparing):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            concurrent.futures.wait(self._preparing, timeout=remaining)
        for index in given_up:
            yield index, Cancelled()
        yield from now
        for future in [f for f in self._preparing if f.done()]:
            index = self._preparing.pop(future)
            yield index, Cancelled() if self.cancelled(index) else future.result()

    def close(self):
        """Stop making inputs ready: those not started are dropped (their requests are answered by
        whoever drops them), those running finish on their own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
