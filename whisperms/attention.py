"""Attention kernels behind one function, `attention`.

"eager" is the reference math on any device, with scores and softmax in float32. "flash_attention_2"
runs Ascend's fused kernels (documented contract, Atlas A2: float16/bfloat16, layout BNSD, 1 in a
mask means discard), which return no attention weights: callers that need them (word timestamps) ask
for eager.
"""

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

EAGER = "eager"
FLASH = "flash_attention_2"
IMPLEMENTATIONS = (EAGER, FLASH)

# The fused kernels, looked up here at trace/call time so tests can substitute emulations of their
# contracts.
KERNELS = {
    "flash_attention_score": ops.flash_attention_score,
    "incre_flash_attention": ops.incre_flash_attention,
}

FLASH_DTYPES = (ms.float16, ms.bfloat16)
# (B, heads, seq, head_dim): how split_heads and the KV cache hold tensors
FLASH_LAYOUT = "BNSD"
# rightDownCausal: the causal diagonal ends in the bottom-right corner
CAUSAL_SPARSE_MODE = 3
# sparse modes 2-4 take this fixed-size mask whatever the sequence lengths
COMPRESSED_MASK_SIZE = 2048

# q @ k^T without materializing k^T: a swapaxes made the CPU graph copy the whole (cross-attention)
# cache every step.
_QK = ops.BatchMatMul(transpose_b=True)
# q @ k for keys held as (B, H, Dh, Tk) (split_heads_keys_last): cross-attention keys in the eager
# implementation. A step's few queries read a window's keys at every step, and the transposed read
# of (B, H, Tk, Dh) keys is a slower kernel than a plain one on some CPUs; same bits either way.
_QK_LAST = ops.BatchMatMul()
# Masked scores get this added, not -inf: exp() underflows to exactly 0 all the same, but fused
# (graph-kernel) exp and max kernels turn -inf into NaN.
MASKED = -1e9
_WV = ops.BatchMatMul()
_CONCAT_QUERIES = ops.Concat(axis=2)
# Eager attention over more queries than this runs in chunks of this many query rows: the encoder's
# float32 scores (B, H, 1500, 1500) and their softmax are held at once otherwise, for every head.
# Small enough that one head's chunk of scores (rows x 1500 floats) and the keys it is computed from
# (1500 x 64) fit together in a core's L2 (1 MB on current x86 server cores): larger chunks made the
# whole encoder slower, for every head count (benchmarks/bench_query_chunk.py times the sizes on any
# CPU). Each row's result is the same bits at any chunk size.
QUERY_CHUNK = 60
# The primitive, not ops.softmax: the graph frontend parses that wrapper's Python body into each
# graph.
_SOFTMAX = ops.Softmax(axis=-1)
_EXP = ops.Exp()
_MAXIMUM = ops.Maximum()
_MAX_KEEP = ops.ReduceMax(keep_dims=True)
_SUM_KEEP = ops.ReduceSum(keep_dims=True)


def compressed_causal_mask():
    """The (2048, 2048) mask `flash_attention_score` expects with sparse_mode 3: 1 above the
    diagonal = discard."""
    return Tensor(np.triu(np.ones((COMPRESSED_MASK_SIZE, COMPRESSED_MASK_SIZE), np.uint8), 1))


def split_heads(x, n_head):
    """(B, T, D) -> (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)


def split_heads_keys_last(x, n_head):
    """(B, T, D) -> (B, H, D/H, T): keys for `attention(..., keys_last=True)`."""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 3, 1)


def merge_heads(x):
    """(B, H, T, Dh) -> (B, T, H*Dh)."""
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def attention(
    q, k, v, implementation=EAGER, mask=None, causal_mask=None, kv_length=None, keys_last=False
):
    """Scaled dot-product attention of q (B, H, Tq, Dh) over k, v (B, H, Tk, Dh); with `keys_last`
    (eager only), k is (B, H, Dh, Tk).

    Returns the output (B, H, Tq, Dh) in q's dtype and the weights (B, H, Tq, Tk) float32, or None
    from the fused kernels. The masking is given in the form each implementation takes, and callers
    give both:
      mask         additive (0 keep, MASKED discard), used by "eager"; causal_mask  the compressed
      causal mask (`compressed_causal_mask`), used by "flash_attention_2" (sparse_mode 3:
                   query i sees keys j <= i + Tk - Tq);
      kv_length    int scalar Tensor, the number of valid keys, used by "flash_attention_2" for a
      decode step
                   (Tq == 1) over a preallocated cache whose positions from kv_length on are not
                   attended.
    """
    if implementation == EAGER:
        return eager_attention(q, k, v, mask, keys_last)
    return flash_attention(q, k, v, causal_mask, kv_length), None


def eager_attention(q, k, v, mask=None, keys_last=False):
    """Scaled dot-product attention on (B, H, T, Dh) tensors (k (B, H, Dh, Tk) with `keys_last`);
    `mask` is additive (0 keep, MASKED discard).

    Returns the output (B, H, Tq, Dh) and the attention weights (B, H, Tq, Tk), the latter for word
    timestamps.
    """
    # Scaling q rather than the scores keeps a (B, H, Tq, Tk) temporary out of the graph (the
    # encoder's are large); for Whisper's head size 64 the scale is 1/8, exact in binary, so the
    # results are bit-identical.
    scores = (_QK_LAST if keys_last else _QK)(q * (q.shape[-1] ** -0.5), k)
    if scores.dtype != ms.float32:
        scores = scores.astype(ms.float32)
    if mask is not None:
        scores = scores + mask
    weights = _SOFTMAX(scores)
    out = _WV(weights if v.dtype == ms.float32 else weights.astype(v.dtype), v)
    return out, weights


def attention_with_new(q, k, v, k_new, v_new, mask):
    """Eager attention of one-token queries q (B, H, 1, Dh) over a cache k, v (B, H, capacity, Dh)
    and the step's own key and value k_new, v_new (B, H, 1, Dh), kept apart from the cache: the
    cache is then an input the step only reads, and its new position is written outside the graph
    (kv_cache.HostKVCache) instead of the whole cache being rewritten. `mask` (additive, (B, 1, 1,
    capacity)) keeps the cache's filled positions. The softmax is spelled out over both parts."""
    q = q * (q.shape[-1] ** -0.5)  # exact, as in eager_attention
    cached, new = _QK(q, k), _QK(q, k_new)
    if v.dtype != ms.float32:  # scores and softmax in float32, as in eager_attention
        cached, new = cached.astype(ms.float32), new.astype(ms.float32)
    cached = cached + mask
    peak = _MAXIMUM(_MAX_KEEP(cached, -1), new)
    cached = _EXP(cached - peak)
    new = _EXP(new - peak)
    total = _SUM_KEEP(cached, -1) + new
    if v.dtype == ms.float32:
        return (_WV(cached, v) + new * v_new) / total
    weighted = _WV(cached.astype(v.dtype), v).astype(ms.float32) + new * v_new.astype(ms.float32)
    return (weighted / total).astype(v.dtype)


def in_chunks(queries: int) -> bool:
    """Whether unmasked eager attention over `queries` query rows runs in chunks
    (chunked_attention)."""
    return queries > QUERY_CHUNK


def chunked_attention(q, k, v, implementation=EAGER, keys_last=False):
    """Unmasked attention output; eager attention runs `QUERY_CHUNK` query rows at a time."""
    t = q.shape[2]
    if implementation != EAGER or not in_chunks(t):
        return attention(q, k, v, implementation, keys_last=keys_last)[0]
    starts = range(0, t, QUERY_CHUNK)
    return _CONCAT_QUERIES(
        [eager_attention(q[:, :, i : i + QUERY_CHUNK], k, v, None, keys_last)[0] for i in starts]
    )


def flash_attention(q, k, v, causal_mask=None, kv_length=None):
    """The fused kernels on BNSD tensors: `flash_attention_score` for full sequences,
    `incre_flash_attention` for a one-token step over a preallocated cache (told its valid length).
    Their scale keywords differ (`scalar_value`, `scale_value`); the kernel applies the scale, never
    q or k here. Head dim must be a multiple of 16."""
    b, n_head, _, head_dim = q.shape
    dtype = q.dtype
    if dtype not in FLASH_DTYPES:
        q, k, v = q.astype(ms.float16), k.astype(ms.float16), v.astype(ms.float16)
    scale = head_dim**-0.5
    if kv_length is not None:
        lengths = ops.broadcast_to(kv_length.astype(ms.int64).reshape(-1), (b,))
        out = KERNELS["incre_flash_attention"](
            q,
            [k],
            [v],
            actual_seq_lengths=lengths,
            num_heads=n_head,
            input_layout=FLASH_LAYOUT,
            scale_value=scale,
        )
    elif causal_mask is not None:
        out = KERNELS["flash_attention_score"](
            q,
            k,
            v,
            n_head,
            attn_mask=causal_mask,
            scalar_value=scale,
            input_layout=FLASH_LAYOUT,
            sparse_mode=CAUSAL_SPARSE_MODE,
        )
    else:
        out = KERNELS["flash_attention_score"](
            q, k, v, n_head, scalar_value=scale, input_layout=FLASH_LAYOUT
        )
    return out.astype(dtype)
