"""What the batched mode takes besides paths and samples: an input with options of its own
(BatchInput), inputs that arrive while others are decoded (InputQueue, a server's requests), and
the result of one given up (Cancelled)."""

import queue
import threading
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .errors import WhispermsError


@dataclass(frozen=True)
class BatchInput:
    """An input with options of its own: `audio` (a path or 16-kHz samples, as transcribe takes)
    and the `language` and `initial_prompt` for it alone (None: the transcriber's). These two may
    differ within a batch; inputs differing in any other option need a transcriber of their own."""

    audio: Any
    language: Optional[str] = None
    initial_prompt: Optional[str] = None


class InputQueue:
    """Inputs that arrive while others are being decoded (a server's requests), for
    `BatchedTranscriber.results`: `put` (from any thread) returns the input's index, and the
    transcriber takes what has arrived whenever its batch has room. Its `results` ends once nothing
    is in flight and nothing has arrived: run it again for inputs put later."""

    def __init__(self):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # indices in the order items are queued
        self._count = 0
        self._cancelled: set = set()

    def put(self, audio) -> int:
        """Queue an input (what `results` takes: a path, samples or a BatchInput); its index."""
        with self._lock:
            index = self._count
            self._count += 1
            self._items.put((index, audio))
        return index

    def take(self) -> Optional[Tuple[int, Any]]:
        """(index, input) of the oldest input not yet taken, or None if there is none now."""
        try:
            return self._items.get_nowait()
        except queue.Empty:
            return None

    def cancel(self, index: int):
        """Give up the input `index` (from any thread; its requester is gone): `results` decodes
        no more of it and gives it as Cancelled at once."""
        with self._lock:
            self._cancelled.add(index)

    def cancelled(self, index: int) -> bool:
        with self._lock:
            return index in self._cancelled

    def turn_over(self) -> bool:
        """Whether `results` should hand control back between batches (TURN_OVER): a worker
        serving other queues has requests waiting there. The inputs it holds stay with it, and
        iterating on goes on with them."""
        return False


# What `results` gives when its queue's turn is over (InputQueue.turn_over): no input's result
TURN_OVER = (None, None)


class Cancelled(WhispermsError):
    """The result of an input given up (InputQueue.cancel) before it was done."""

    def __init__(self):
        super().__init__("given up before it was transcribed")
