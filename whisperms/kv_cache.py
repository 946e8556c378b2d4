"""Decoder state for one window: preallocated self-attention cache plus the window's cross-attention
K/V.

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
    cross_k: tuple  # per layer (B, n_head, n_audio_ctx, head_dim), computed once per window
    cross_v: tuple
    length: int  # positions filled so far = position of the next token

    @property
    def batch_size(self):
        return self.self_k[0].shape[0]

    def reorder(self, source_indices):
        """Rows picked by beam search: row i of the result continues row source_indices[i].

        Only the self-attention cache is gathered: beams of one audio share its cross-attention K/V
        (batch 1, see model._cross_attention), so reordering or expanding them leaves it as it is.
        """
        index = Tensor(np.asarray(source_indices, np.int32))
        return replace(
            self,
            self_k=tuple(ops.gather(t, index, 0) for t in self.self_k),
            self_v=tuple(ops.gather(t, index, 0) for t in self.self_v),
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
