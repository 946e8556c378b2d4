"""Attention kernels behind one function.

"eager" is the reference math and runs on any device. Scores and softmax are computed in float32 whatever the
activation dtype, so float16 runs keep their precision where it matters.
"""
import mindspore as ms
from mindspore import ops

EAGER = "eager"


def split_heads(x, n_head):
    """(B, T, D) -> (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, Dh) -> (B, T, H*Dh)."""
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def eager_attention(q, k, v, mask=None):
    """Scaled dot-product attention on (B, H, T, Dh) tensors; `mask` is additive (0 keep, -inf discard).

    Returns the output (B, H, Tq, Dh) and the attention weights (B, H, Tq, Tk), the latter for word timestamps.
    """
    scale = q.shape[-1] ** -0.5
    scores = ops.matmul(q, k.swapaxes(-1, -2)).astype(ms.float32) * scale
    if mask is not None:
        scores = scores + mask
    weights = ops.softmax(scores, axis=-1)
    out = ops.matmul(weights.astype(v.dtype), v)
    return out, weights
