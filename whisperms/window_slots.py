"""Windows decoded in the slots of one step batch, joining it and leaving it as they go.

Every window takes a slot of `group` consecutive cache rows (its beams or samples). A step feeds one
token to every row: each joined set of windows (a decoding state: decoding.BatchDecodingTask's
window groups) chooses its rows' next tokens from their logits, a free slot's rows idle on EOT, and
one step call serves them all. A window that ends frees its slot at once; a new window can take it
in the next step (continuous batching), so a batch no longer runs as long as its longest window
while the others wait. Each window's rows see only their own positions and audio (per-row lengths,
per-slot cross-attention K/V), so a window decodes to the same tokens in any slot, with any
neighbours.

Joining a batch already running needs the self-attention cache in host arrays (HostKVCache, CPU);
with KVCache (tensors, Ascend) windows join only an empty batch. (No MindSpore import here: the
caches bring their own.)
"""

from dataclasses import replace

import numpy as np


def rows_of(slots: np.ndarray, group: int) -> np.ndarray:
    """The rows of the slots `slots`, `group` consecutive rows each."""
    return (np.asarray(slots)[:, None] * group + np.arange(group)).reshape(-1)


def slot_count(windows: int, limit=None) -> int:
    """Slots for `windows` windows: the next power of two (so that few step-graph shapes are ever
    compiled), at most `limit` unless more windows than that are decoding."""
    size = 1 << (windows - 1).bit_length() if windows else 1
    return max(min(size, limit), windows) if limit else size


def _rows(array: np.ndarray, slots: np.ndarray, group: int) -> np.ndarray:
    """array[rows_of(slots, group)]: a view when the slots are consecutive (a lone batch's are), as
    a beam batch's logits are megabytes to copy every step."""
    if len(slots) and np.array_equal(slots, np.arange(slots[0], slots[0] + len(slots))):
        return array[slots[0] * group : (slots[-1] + 1) * group]
    return array[rows_of(slots, group)]


class WindowSlots:
    """The windows decoding together in `group` rows each; `limit`: the most slots to open (a batch
    size), None for a power of two above what joins.

    `join(state, cache)` puts a decoding state's windows (and their prompts' cache) in free slots;
    `step()` advances every window by one token and returns the (key, DecodingResult) of those that
    ended.
    """

    def __init__(self, inference, group: int, eot: int, limit=None):
        self.inference = inference
        self.group = group
        self.eot = eot
        self.limit = limit
        self.states = []  # decoding states, each with `slots`: the slot of each of its windows
        self.cache = None
        self.n_slots = 0
        # host copies of the cross-attention K/V, once windows join a running batch
        self.cross = None

    @property
    def busy(self) -> bool:
        return bool(self.states)

    @property
    def occupied(self) -> int:
        return sum(len(state.slots) for state in self.states)

    def room(self) -> int:
        """How many windows may join now: a free slot each up to `limit`; with a tensor cache, only
        an empty batch takes windows."""
        if self.busy and not self.cache.on_host:
            return 0
        return (self.limit or max(self.n_slots, 1)) - self.occupied

    def join(self, state, cache):
        """Add the windows of `state` (cache: their prompts', `group` rows per window)."""
        n = len(state.slots)
        if not self.busy:
            self.cache, self.cross, self.n_slots = cache, None, n
            state.slots = np.arange(n)
            wanted = slot_count(n, self.limit)
            if wanted > n:
                # idle slots up to the step graph's shape: copies of the last window's rows
                filler = np.concatenate([np.arange(n), np.full(wanted - n, n - 1)])
                self.cache = cache.select(rows_of(filler, self.group), filler)
                self.n_slots = wanted
            self.states = [state]
            return
        if not self.cache.on_host:
            raise ValueError("windows join a running batch only with a host cache")
        self._own_cross()
        if len(self._free()) < n:
            self._resize(slot_count(self.occupied + n, self.limit))
        slots = self._free()[:n]
        rows = rows_of(slots, self.group)
        if cache.capacity > self.cache.capacity:
            self.cache = self.cache.grown(cache.capacity)
        cache = cache.grown(self.cache.capacity)
        self.cache.keys[:, rows] = cache.keys
        self.cache.values[:, rows] = cache.values
        self.cache.length[rows] = cache.length
        for mine, theirs in zip(self.cross, (cache.cross_k, cache.cross_v)):
            for layer, tensor in zip(mine, theirs):
                layer[slots] = tensor.asnumpy()
        state.slots = slots
        self.states.append(state)

    def step(self, shrink: bool = True) -> list:
        """Every window's next token and one step call; returns [(key, DecodingResult)] of the
        windows that ended. `shrink`: once at most half the slots are taken, move the windows into
        fewer (a caller expecting more windows to join keeps them)."""
        group = self.group
        tokens = np.full(self.n_slots * group, self.eot, np.int64)
        source = np.arange(self.n_slots * group)
        ended = []
        for state in self.states:
            next_tokens, offsets, done = state.choose()
            ended.extend(done)
            rows = rows_of(state.slots, group)
            tokens[rows] = next_tokens
            if offsets is not None:
                # a beam continues a row of its own window
                source[rows] = np.repeat(state.slots * group, group) + offsets
        self.states = [state for state in self.states if len(state.slots)]
        if not self.states:
            self.cache = self.cross = None
            self.n_slots = 0
            return ended
        rows = None if np.array_equal(source, np.arange(len(source))) else source
        if shrink and slot_count(self.occupied) < self.n_slots:
            tokens = tokens[self._compact(source)]
            rows = None
        cache = self.cache
        if cache.on_host:
            # a free slot's rows stay at position 0, so they never run past the context
            cache.length[rows_of(self._free(), group)] = 0
            if self.cross is not None:
                cache = cache.with_cross(*self.cross)
        shared = min(state.shared for state in self.states)
        logits, self.cache = self.inference.step(tokens, cache, rows=rows, shared=shared)
        for state in self.states:
            state.logits = _rows(logits, state.slots, group)
        return ended

    def _free(self) -> np.ndarray:
        """The slots no window holds, in order."""
        taken = [state.slots for state in self.states]
        return np.setdiff1d(np.arange(self.n_slots), np.concatenate(taken) if taken else [])

    def _compact(self, source):
        """Move the windows into a batch of slot_count(occupied) slots (topped up with free ones),
        the beams' reorder (`source`) applied in the same gather; returns the old row of each new
        one."""
        size = slot_count(self.occupied)
        filler = self._free()[: size - self.occupied]
        kept = np.sort(np.concatenate([np.concatenate([s.slots for s in self.states]), filler]))
        place = np.full(self.n_slots, -1)
        place[kept] = np.arange(len(kept))
        rows = rows_of(kept, self.group)
        if self.cross is None:
            self.cache = self.cache.select(source[rows], kept)
        else:
            cache = self.cache
            self.cache = replace(
                cache,
                keys=np.take(cache.keys, source[rows], axis=1),
                values=np.take(cache.values, source[rows], axis=1),
                length=cache.length[source[rows]],
            )
            self.cross = tuple(tuple(np.take(a, kept, axis=0) for a in side) for side in self.cross)
        for state in self.states:
            state.slots = place[state.slots]
        self.n_slots = len(kept)
        return rows

    def _own_cross(self):
        """Host copies of the cross-attention K/V, which joining windows are written into."""
        if self.cross is None:
            self.cross = tuple(
                tuple(np.array(t.asnumpy()) for t in side)
                for side in (self.cache.cross_k, self.cache.cross_v)
            )

    def _resize(self, size):
        """Grow the batch to `size` slots (the new ones free)."""
        extra = size - self.n_slots
        cache = self.cache

        def padded(array, axis, count):
            shape = list(array.shape)
            shape[axis] = count
            return np.concatenate([array, np.zeros(shape, array.dtype)], axis=axis)

        rows = extra * self.group
        self.cache = replace(
            cache,
            keys=padded(cache.keys, 1, rows),
            values=padded(cache.values, 1, rows),
            length=padded(cache.length, 0, rows),
        )
        self.cross = tuple(tuple(padded(a, 0, extra) for a in side) for side in self.cross)
        self.n_slots = size
