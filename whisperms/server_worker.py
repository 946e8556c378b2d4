"""The server's worker: one thread decodes every request through the batched mode. Requests that
decode alike (task, temperature, word timestamps) are one group, whose inputs go into an InputQueue
run through a BatchedTranscriber; groups take turns (_Turn), a batch at a time while others have
requests waiting, so that neither a steady stream nor one long request of one kind holds the
others back."""

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Set, Tuple

from .batch_inputs import TURN_OVER, BatchInput, InputQueue
from .batched import DEFAULT_BATCH_SIZE, BatchedTranscriber

# What a request without options of its own asks for
DEFAULT_REQUEST = {"task": "transcribe", "word_timestamps": False}


@dataclass
class _Group:
    """Requests that decode alike: their transcriber, queue and the futures waiting on them."""

    transcriber: BatchedTranscriber
    inputs: InputQueue = field(default_factory=InputQueue)
    futures: Dict[int, concurrent.futures.Future] = field(default_factory=dict)
    # the results of the turn under way, handed back between batches for other groups' turns
    running: Optional[Iterator] = None
    turn: Optional["_Turn"] = None


class _Turn(InputQueue):
    """A group's queue for one turn of the worker: it hands out the inputs queued when the turn
    began (at least a batch of them), and later ones only while no other group has requests
    waiting. A busy group would otherwise keep its turn for as long as its requests arrive, and a
    request of another kind (word timestamps, a translation) would wait all that time."""

    def __init__(self, queue: InputQueue, quota: int, others_waiting):
        self._queue, self._quota, self._others_waiting = queue, quota, others_waiting
        self.taken: Set[int] = set()  # the inputs this turn took

    def put(self, audio) -> int:
        return self._queue.put(audio)

    def cancel(self, index: int):
        self._queue.cancel(index)

    def cancelled(self, index: int) -> bool:
        return self._queue.cancelled(index)

    def take(self):
        if len(self.taken) >= self._quota and self._others_waiting():
            return None
        item = self._queue.take()
        if item is not None:
            self.taken.add(item[0])
        return item

    def turn_over(self) -> bool:
        return self._others_waiting()


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
        self._default = _key({})
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
        key = _key(options)
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
                self._take_turn(group)
            with self._lock:
                # a group of its own for every temperature asked for: dropped once idle
                for key, group in list(self._groups.items()):
                    if key != self._default and not group.futures and group.running is None:
                        del self._groups[key]
                if any(group.futures for group in self._groups.values()):
                    self._wake.set()  # a turn ended with requests left: another round

    def _take_turn(self, group: _Group):
        """The group's requests decoded until none is left, or for a batch when other groups have
        requests waiting (the turn then goes on at the next round)."""
        if group.running is None:
            with self._lock:
                quota = max(self.batch_size, len(group.futures))
            group.turn = _Turn(group.inputs, quota, lambda: self._others_waiting(group))
            group.running = group.transcriber.results(group.turn)
        try:
            for item in group.running:
                if item is TURN_OVER:
                    return
                index, result = item
                with self._lock:
                    future = group.futures.pop(index)
                # a request given up (its client gone) is not answered
                if future.set_running_or_notify_cancel():
                    future.set_result(result)
        except Exception as error:  # a bug: fail the requests this turn took, go on
            with self._lock:
                failed = [group.futures.pop(i) for i in group.turn.taken if i in group.futures]
            for future in failed:
                if future.set_running_or_notify_cancel():
                    future.set_exception(error)
        group.running = group.turn = None

    def _others_waiting(self, group: _Group) -> bool:
        with self._lock:
            return any(g.futures for g in self._groups.values() if g is not group)


def _key(options: dict) -> Tuple:
    """The group of requests asking for `options` (over DEFAULT_REQUEST)."""
    return tuple(sorted({**DEFAULT_REQUEST, **options}.items()))
