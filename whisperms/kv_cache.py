"""Decoder state for a batch of rows: preallocated self-attention cache, each row's position, and
the cross-attention K/V of the rows' windows.

Explicit: every decoder call takes a cache and returns the next one; nothing hides in the model.
A KVCache (device tensors) is immutable; on CPU a HostKVCache keeps the self-attention cache in host
arrays written in place, and a step consumes the one it is given.
"""

from dataclasses import dataclass, replace

import numpy as np
from mindspore import Tensor, ops


@dataclass(frozen=True)
class KVCache:
    # per layer (B, n_head, capacity <= n_text_ctx, head_dim); positions >= length: stale or padding
    self_k: tuple
    self_v: tuple
    # per layer (audios, n_head, n_audio_ctx, head_dim), once per window; rows grouped by audio
    cross_k: tuple
    cross_v: tuple
    length: np.ndarray  # (B,) positions filled in each row = the position of its next token

    on_host = False

    @property
    def batch_size(self):
        return self.self_k[0].shape[0]

    def reorder(self, source_indices):
        """Rows picked by beam search: row i of the result continues row source_indices[i].

        Only the self-attention cache is gathered: the rows of one audio share its cross-attention
        K/V (model.MultiHeadAttention), so reordering or expanding them within their audio's group
        leaves it as it is.
        """
        index = np.asarray(source_indices, np.int32)
        rows = Tensor(index)
        return replace(
            self,
            self_k=tuple(ops.gather(t, rows, 0) for t in self.self_k),
            self_v=tuple(ops.gather(t, rows, 0) for t in self.self_v),
            length=self.length[index],
        )

    def select(self, rows, audios):
        """A smaller batch: the rows `rows` (their self-attention caches and positions) of the
        windows `audios` (their cross-attention K/V), each kept window's rows consecutive, in the
        order given. Used to drop finished windows from a batch."""
        rows, audios = np.asarray(rows, np.int32), np.asarray(audios, np.int32)
        row_index, audio_index = Tensor(rows), Tensor(audios)
        return KVCache(
            tuple(ops.gather(t, row_index, 0) for t in self.self_k),
            tuple(ops.gather(t, row_index, 0) for t in self.self_v),
            tuple(ops.gather(t, audio_index, 0) for t in self.cross_k),
            tuple(ops.gather(t, audio_index, 0) for t in self.cross_v),
            self.length[rows],
        )

    @staticmethod
    def stack(caches, group=1):
        """One cache of single-row caches (one per audio), each row repeated `group` times (its
        beams or samples, consecutive); self-attention caches padded to the largest capacity."""
        capacity = max(cache.capacity for cache in caches)
        caches = [cache.grown(capacity) for cache in caches]
        rows = Tensor(np.repeat(np.arange(len(caches), dtype=np.int32), group))

        def rows_of(field):
            layers = zip(*(getattr(cache, field) for cache in caches))
            return tuple(ops.gather(ops.concat(layer, 0), rows, 0) for layer in layers)

        def audios_of(field):
            layers = zip(*(getattr(cache, field) for cache in caches))
            return tuple(ops.concat(layer, 0).contiguous() for layer in layers)

        length = np.repeat(np.concatenate([cache.length for cache in caches]), group)
        return KVCache(
            rows_of("self_k"), rows_of("self_v"), audios_of("cross_k"), audios_of("cross_v"), length
        )

    @property
    def capacity(self):
        return self.self_k[0].shape[2]

    def grown(self, capacity):
        """The same cache with its self-attention keys/values zero-padded to `capacity` positions
        (once per size)."""
        if capacity <= self.capacity:
            return self

        def pad(t):
            b, h, n, dh = t.shape
            return ops.concat((t, ops.zeros((b, h, capacity - n, dh), t.dtype)), 2)

        return replace(
            self,
            self_k=tuple(pad(t) for t in self.self_k),
            self_v=tuple(pad(t) for t in self.self_v),
        )


@dataclass(frozen=True)
class HostKVCache:
    """KVCache's form on CPU: the self-attention keys and values in host arrays (n_layer, B, n_head,
    capacity, head_dim), which the step graph reads through tensors sharing their memory (on CPU a
    graph input is not copied) and which are written in place: a step writes only its new position
    and a beam reorder copies only the rows that change, where a graph's cache output rewrites the
    whole cache every step. A step or `follow` consumes the cache it is given (same memory); the
    other methods return a cache of its own."""

    keys: np.ndarray
    values: np.ndarray
    cross_k: tuple
    cross_v: tuple
    length: np.ndarray  # (B,) positions filled in each row = the position of its next token

    on_host = True

    def tensors(self):
        """Per layer, tensors sharing the memory of keys[i] and values[i], for one graph call: made
        anew each time, as a tensor given to a graph before may be read from a copy MindSpore kept
        of it, blind to the writes since."""
        return (
            tuple(Tensor.from_numpy(layer) for layer in self.keys),
            tuple(Tensor.from_numpy(layer) for layer in self.values),
        )

    @classmethod
    def empty(cls, n_layer, batch, n_head, capacity, head_dim, cross_k, cross_v, dtype):
        shape = (n_layer, batch, n_head, capacity, head_dim)
        return cls(
            np.zeros(shape, dtype),
            np.zeros(shape, dtype),
            cross_k,
            cross_v,
            np.zeros(batch, np.int64),
        )

    @classmethod
    def of(cls, cache: KVCache):
        """A KVCache's content (its tensors read once) in host arrays."""
        keys = np.stack([t.asnumpy() for t in cache.self_k])
        values = np.stack([t.asnumpy() for t in cache.self_v])
        return cls(keys, values, cache.cross_k, cache.cross_v, cache.length.copy())

    @property
    def batch_size(self):
        return self.keys.shape[1]

    def with_cross(self, cross_k, cross_v):
        """The cache reading its cross-attention K/V from host arrays (one per layer), through
        tensors sharing their memory."""
        return replace(
            self,
            cross_k=tuple(Tensor.from_numpy(a) for a in cross_k),
            cross_v=tuple(Tensor.from_numpy(a) for a in cross_v),
        )

    @property
    def capacity(self):
        return self.keys.shape[3]

    def reorder(self, source_indices):
        """As KVCache.reorder, into arrays of its own."""
        index = np.asarray(source_indices, np.intp)
        return HostKVCache(
            np.take(self.keys, index, axis=1),
            np.take(self.values, index, axis=1),
            self.cross_k,
            self.cross_v,
            self.length[index],
        )

    def select(self, rows, audios):
        """As KVCache.select, into arrays of its own."""
        rows, audios = np.asarray(rows, np.intp), np.asarray(audios, np.int32)
        audio_index = Tensor(audios)
        return HostKVCache(
            np.take(self.keys, rows, axis=1),
            np.take(self.values, rows, axis=1),
            tuple(ops.gather(t, audio_index, 0) for t in self.cross_k),
            tuple(ops.gather(t, audio_index, 0) for t in self.cross_v),
            self.length[rows],
        )

    @staticmethod
    def stack(caches, group=1):
        """As KVCache.stack."""
        capacity = max(cache.capacity for cache in caches)
        caches = [cache.grown(capacity) for cache in caches]
        rows = np.repeat(np.arange(len(caches)), group)

        def audios_of(field_name):
            layers = zip(*(getattr(cache, field_name) for cache in caches))
            return tuple(ops.concat(layer, 0).contiguous() for layer in layers)

        return HostKVCache(
            np.take(np.concatenate([cache.keys for cache in caches], 1), rows, axis=1),
            np.take(np.concatenate([cache.values for cache in caches], 1), rows, axis=1),
            audios_of("cross_k"),
            audios_of("cross_v"),
            np.concatenate([cache.length for cache in caches])[rows],
        )

    def grown(self, capacity):
        """As KVCache.grown: zero-padded to `capacity` positions, in new arrays."""
        if capacity <= self.capacity:
            return self

        def pad(array):
            out = np.zeros(array.shape[:3] + (capacity,) + array.shape[4:], array.dtype)
            out[:, :, :, : self.capacity] = array
            return out

        return HostKVCache(
            pad(self.keys), pad(self.values), self.cross_k, self.cross_v, self.length
        )

    def follow(self, rows, shared=0):
        """Beam search's reorder in place (row i continues row rows[i]): only the rows that change
        are copied, and only their filled positions from `shared` on (the positions before it
        hold the same in every row: a prompt all the beams share)."""
        rows = np.asarray(rows, np.intp)
        changed = np.flatnonzero(rows != np.arange(len(rows)))
        if len(changed) == 0:
            return self
        source = rows[changed]
        filled = int(self.length[source].max())
        kept = slice(min(shared, filled), filled)
        # the right-hand side is read into a copy first, so overlapping rows are safe
        self.keys[:, changed, :, kept] = self.keys[:, source, :, kept]
        self.values[:, changed, :, kept] = self.values[:, source, :, kept]
        return replace(self, length=self.length[rows])

    def written(self, new_k, new_v):
        """The cache with each row's next position written in place: new_k, new_v (n_layer, B,
        n_head, 1, head_dim) from a step."""
        if (self.length == self.length[0]).all():
            # every row at one position (a batch that started together): a plain slice
            at = int(self.length[0])
            self.keys[:, :, :, at] = new_k[:, :, :, 0]
            self.values[:, :, :, at] = new_v[:, :, :, 0]
            return replace(self, length=self.length + 1)
        rows = np.arange(self.batch_size)
        # advanced indices on axes 1 and 3 put the rows first: (B, n_layer, n_head, head_dim)
        self.keys[:, rows, :, self.length] = new_k[:, :, :, 0].transpose(1, 0, 2, 3)
        self.values[:, rows, :, self.length] = new_v[:, :, :, 0].transpose(1, 0, 2, 3)
        return replace(self, length=self.length + 1)
