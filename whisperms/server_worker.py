"""The server's worker: one thread decodes every request through the batched mode. Requests that
decode alike (task, temperature, word timestamps) are one group, whose inputs go into an InputQueue
run through a BatchedTranscriber; groups take turns (_Turn), so that a steady stream of one kind
does not hold the others back."""

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Dict, Tuple

from .batch_inputs import BatchInput, InputQueue
from .batched import DEFAULT_BATCH_SIZE, BatchedTranscriber

# What a request without options of its own asks for
DEFAULT_REQUEST = {"task": "transcribe", "word_timestamps": False}


@dataclass
class _Group:
    """Requests that decode alike: their transcriber, queue and the futures waiting on them."""

    transcriber: BatchedTranscriber
    inputs: InputQueue = field(default_factory=InputQueue)
    futures: Dict[int, concurrent.futures.Future] = field(default_factory=dict)


class _Turn(InputQueue):
    """A group's queue for one turn of the worker: it hands out the inputs queued when the turn
    began (at least a batch of them), and later ones only while no other group has requests
    waiting. A busy group would otherwise keep its turn for as long as its requests arrive, and a
    request of another kind (word timestamps, a translation) would wait all that time."""

    def __init__(self, queue: InputQueue, quota: int, others_waiting):
        self._queue, self._quota, self._others_waiting = queue, quota, others_waiting
        self._taken = 0

    def put(self, audio) -> int:
        return self._queue.put(audio)

    def cancel(self, index: int):
        self._queue.cancel(index)

    def cancelled(self, index: int) -> bool:
        return self._queue.cancelled(index)

    def take(self):
        if self._taken >= self._quota and self._others_waiting():
            return None
        item = self._queue.take()
        self._taken += item is not None
        return item


class BatchingWorker:
    """One thread that decodes every request: each group's queued inputs go through its
    transcriber in shared batches, and each request's future gets its result (or WhispermsError).

    `start=False` leaves the thread to `start()`: requests queue up meanwhile (tests use it to
    put several requests into one batch for certain)."""

    def __init__(
        self, model, *, batch_size: int = DEFAULT_BATCH_SIZE, start: bool = True, **options
    ):
        self.model = model
        self.batch_size = batch_size
        self.options = options
        self._groups: Dict[Tuple, _Group] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="whisperms-batching", daemon=True)
        # the plain requests' group now: options the batched mode refuses fail at once
        self._group(DEFAULT_REQUEST)
        if start:
            self.start()

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped = True
        self._wake.set()

    def alive(self) -> bool:
        """Whether the thread is decoding requests (started, not stopped, not ended)."""
        return self._thread.is_alive() and not self._stopped

    def queued(self) -> int:
        """Requests waiting for their result (not those given up)."""
        with self._lock:
            futures = [f for group in self._groups.values() for f in group.futures.values()]
        return sum(not f.cancelled() for f in futures)

    def cancel(self, future: concurrent.futures.Future):
        """Give up a request (its client is gone): what is left of its input is not decoded, and
        it no longer counts as queued."""
        with self._lock:
            for group in self._groups.values():
                index = next((i for i, f in group.futures.items() if f is future), None)
                if index is not None:
                    group.inputs.cancel(index)
        future.cancel()
        self._wake.set()

    def submit(self, item: BatchInput, **options) -> concurrent.futures.Future:
        """A future of `item`'s TranscriptionResult (or WhispermsError); `options` (task,
        temperature, word_timestamps) choose its group. Options the mode refuses raise
        OptionsError here."""
        with self._lock:
            group = self._group(options)
            future: concurrent.futures.Future = concurrent.futures.Future()
            # registered before the worker can take the input
            group.futures[group.inputs.put(item)] = future
        self._wake.set()
        return future

    def _group(self, options: dict) -> _Group:
        key = tuple(sorted({**DEFAULT_REQUEST, **options}.items()))
        group = self._groups.get(key)
        if group is None:
            settings = {**self.options, **dict(key)}
            transcriber = BatchedTranscriber(
                self.model, progress=False, batch_size=self.batch_size, **settings
            )
            group = self._groups[key] = _Group(transcriber)
        return group

    def _run(self):
        while not self._stopped:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                groups = list(self._groups.values())
            for group in groups:
                with self._lock:
                    quota = max(self.batch_size, len(group.futures))
                turn = _Turn(group.inputs, quota, lambda g=group: self._others_waiting(g))
                try:
                    for index, result in group.transcriber.results(turn):
                        with self._lock:
                            future = group.futures.pop(index)
                        # a request given up (its client gone) is not answered
                        if future.set_running_or_notify_cancel():
                            future.set_result(result)
                except Exception as error:  # a bug: fail the group's waiting requests, go on
                    with self._lock:
                        waiting = list(group.futures.values())
                        group.futures.clear()
                        while group.inputs.take() is not None:
                            pass
                    for future in waiting:
                        if future.set_running_or_notify_cancel():
                            future.set_exception(error)
            with self._lock:
                if any(group.futures for group in self._groups.values()):
                    self._wake.set()  # a turn ended with requests left: another round

    def _others_waiting(self, group: _Group) -> bool:
        with self._lock:
            return any(g.futures for g in self._groups.values() if g is not group)
