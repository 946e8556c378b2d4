"""Decoder state for a batch of rows: preallocated self-attention cache, each row's position, and
the cross-attention K/V of the rows' windows.

Explicit and immutable: every decoder call takes a KVCache and returns the next one; nothing hides
in the model.
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
