"""The batched mode's inputs made ready to decode (read, their speech found, cut into pieces), as
its batches need them.

From a list (files, arrays) each input is made ready when the batch needs more pieces, in the
caller's thread, so a long list streams through a fixed amount of memory. From an InputQueue (a
server's requests) each is made ready on a thread of its own while the batches go on: reading an
input and finding its speech takes seconds per hour of audio, and done in the batches' thread it
held every other request's batch for as long (a request for a few seconds of speech sent just
after a 12-hour one waited most of a minute).
"""

import concurrent.futures
from typing import Callable, Iterator, Tuple

from .batch_inputs import Cancelled, InputQueue
from .errors import WhispermsError

# How long the batches' thread waits at most, with nothing to decode, for all the inputs being made
# ready, before it decodes those that are and looks for new arrivals: requests arriving together
# share their first batch, and one that takes longer (hours of audio) joins a later one.
GATHER_SECONDS = 1.0


def outcome(prepare: Callable, index: int, audio):
    """prepare(index, audio), or the WhispermsError it raised (one no check foresaw, wrapped as
    one): an input's failure is its own."""
    try:
        return prepare(index, audio)
    except WhispermsError as error:
        return error
    except Exception as error:
        return WhispermsError(f"cannot transcribe it: {type(error).__name__}: {error}")


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
                max_workers=size, thread_name_prefix="whisperms-input"
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
        are given; with no piece to decode it first waits for those being made ready, up to
        GATHER_SECONDS."""
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
        while inputs_pending + len(self._preparing) < self.size:
            item = self.take()
            if item is None:
                break
            if self.cancelled(item[0]):
                yield item[0], Cancelled()
                continue
            self._preparing[self._pool.submit(outcome, self.prepare, *item)] = item[0]
        if not pieces_pending and self._preparing:
            concurrent.futures.wait(self._preparing, timeout=GATHER_SECONDS)
        for future in [f for f in self._preparing if f.done()]:
            index = self._preparing.pop(future)
            yield index, Cancelled() if self.cancelled(index) else future.result()

    def close(self):
        """Stop making inputs ready: those not started are dropped (their requests are answered by
        whoever drops them), those running finish on their own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
