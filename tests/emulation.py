"""NumPy emulation of the documented contracts of the Ascend-only kernels whisperms calls, for
machines without one.

Emulated: `mindspore.ops.flash_attention_score`, `mindspore.ops.incre_flash_attention` and
`mindspore.mint.nn.functional.conv1d`, as documented for MindSpore 2.10 (their docstrings; Atlas
A2). Each function has the real signature, takes and returns MindSpore Tensors, checks the
documented contract (raising the exception type the documentation lists), and computes in float32
NumPy (the kernels accumulate in float32), rounding the output to the input dtype. What the
documentation does not pin down and whisperms never relies on (dropout, positional shifts, prefix
and band modes, TND, quantization, paged caches) raises NotImplementedError rather than guessing.

Rules emulated, each pinned by tests/test_kernels.py:
- flash_attention_score: query/key/value float16 or bfloat16, one dtype (float32 is a TypeError);
  layouts BSH, BNSD,
  SBH, BSND; head_num = N1, N2 divides N1, head dim a multiple of 16 (at most 512); the scale is
  `scalar_value` (default 1.0: nothing implied); in attn_mask (bool/uint8) 1/True means discard;
  sparse_mode 0/1 take a full mask ((S1, S2), (B, 1, S1, S2) or (B, N1, S1, S2)); sparse_mode 2/3
  take the compressed (2048, 2048) mask, whose diagonal is laid on the top-left (2) or bottom-right
  (3) corner of the S1 x S2 scores: with sparse_mode 3 and triu(ones, 1), query i sees keys j <= i +
  S2 - S1; keep_prob 1.
- incre_flash_attention: one query token; key/value are lists (or tuples) of tensors; layouts BSH
  and BNSD;
  `actual_seq_lengths` (int64, size 1 or B) is the number of valid keys per row, positions from it
  on are not read; the scale is `scale_value` (passing `scalar_value` or `scale` is a TypeError, as
  for any unknown keyword).
- conv1d: input (N, C_in, L) or (C_in, L), weight (C_out, C_in, K), one dtype of
  float16/bfloat16/float32 for input, weight and bias; stride/padding/dilation ints or 1-tuples,
  padding also "same" (stride 1 only) or "valid".
Rows whose every key is discarded come out as zeros here; the real kernels' result for them is not
documented.
"""

import mindspore as ms
import numpy as np
from mindspore import Tensor

FLASH_DTYPES = (ms.float16, ms.bfloat16)
CONV_DTYPES = (ms.float16, ms.bfloat16, ms.float32)
FA_LAYOUTS = ("BSH", "BNSD", "SBH", "BSND")
IFA_LAYOUTS = ("BSH", "BNSD")
COMPRESSED_MASK_SIZE = 2048
INT_MAX = 2147483647


def to_numpy(t):
    """float32 (or integer/bool) NumPy copy of a Tensor; bfloat16 has no NumPy type."""
    if t.dtype == ms.bfloat16:
        return t.astype(ms.float32).asnumpy()
    a = t.asnumpy()
    return a.astype(np.float32) if a.dtype == np.float16 else a


def to_tensor(a, dtype):
    if dtype == ms.bfloat16:
        return Tensor(np.ascontiguousarray(a, np.float32)).astype(ms.bfloat16)
    return Tensor(np.ascontiguousarray(a, {ms.float16: np.float16, ms.float32: np.float32}[dtype]))


def _require_tensor(name, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a Tensor, got {type(x).__name__}")


def _require_float(name, x):
    if not isinstance(x, float):
        raise TypeError(f"'{name}' must be a float (double), got {type(x).__name__}")


def _not_emulated(**arguments):
    for name, value in arguments.items():
        if value is not None:
            raise NotImplementedError(f"'{name}' is not emulated (whisperms does not use it)")


def _to_bnsd(x, layout, n_head):
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.transpose(0, 2, 1, 3)
    if layout == "BSH":
        b, s, h = x.shape
        return x.reshape(b, s, n_head, h // n_head).transpose(0, 2, 1, 3)
    s, b, h = x.shape  # SBH
    return x.reshape(s, b, n_head, h // n_head).transpose(1, 2, 0, 3)


def _from_bnsd(x, layout):
    b, n, s, d = x.shape
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.transpose(0, 2, 1, 3)
    if layout == "BSH":
        return x.transpose(0, 2, 1, 3).reshape(b, s, n * d)
    return x.transpose(2, 0, 1, 3).reshape(s, b, n * d)  # SBH


def _heads_of(shape, layout, n_head):
    """(B, N, S, D) of a tensor in `layout`; for BSH/SBH, N is `n_head`."""
    if layout == "BNSD":
        return shape
    if layout == "BSND":
        return shape[0], shape[2], shape[1], shape[3]
    b, s, h = shape if layout == "BSH" else (shape[1], shape[0], shape[2])
    if h % n_head:
        raise RuntimeError(f"hidden size {h} is not divisible by the head number {n_head}")
    return b, n_head, s, h // n_head


def _attend(q, k, v, scale, keep):
    """float32 softmax attention on (B, N, S1, D) q and (B, N2, S2, D) k/v; `keep` broadcasts to (B,
    N, S1, S2)."""
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = np.matmul(q, k.swapaxes(-1, -2)) * np.float32(scale)
    keep = np.broadcast_to(keep, scores.shape)
    scores = np.where(keep, scores, -np.inf)
    top = scores.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    weights = np.where(keep, np.exp(scores - top), 0)
    total = weights.sum(-1, keepdims=True)
    weights = weights / np.where(total > 0, total, 1)
    return np.matmul(weights, v)


def _compressed_keep(mask, s1, s2, diagonal):
    """Keep-matrix (S1, S2) from the (2048, 2048) compressed mask laid with its diagonal on key j =
    i + diagonal.

    Score (i, j) reads the compressed mask at the same distance from its diagonal: (a, a + delta)
    with delta = j - i - diagonal; beyond the mask's reach, far above the diagonal is discarded and
    far below is kept.
    """
    delta = np.arange(s2)[None, :] - np.arange(s1)[:, None] - diagonal
    inside = np.abs(delta) < COMPRESSED_MASK_SIZE
    a = np.where(inside, np.maximum(0, -delta), 0)
    b = np.where(inside, a + delta, 0)
    discard = np.where(inside, mask[a, b] != 0, delta > 0)
    return ~discard


def flash_attention_score(
    query,
    key,
    value,
    head_num,
    real_shift=None,
    drop_mask=None,
    padding_mask=None,
    attn_mask=None,
    prefix=None,
    actual_seq_qlen=None,
    actual_seq_kvlen=None,
    keep_prob=1.0,
    scalar_value=1.0,
    pre_tokens=INT_MAX,
    next_tokens=INT_MAX,
    inner_precise=0,
    input_layout="BSH",
    sparse_mode=0,
):
    for name, x in (("query", query), ("key", key), ("value", value)):
        _require_tensor(name, x)
    if query.dtype not in FLASH_DTYPES:
        raise TypeError(
            f"flash_attention_score: query dtype {query.dtype} is not float16 or bfloat16"
        )
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError("flash_attention_score: query, key and value must have the same dtype")
    _require_float("scalar_value", scalar_value)
    _require_float("keep_prob", keep_prob)
    if not isinstance(input_layout, str):
        raise TypeError("input_layout must be a str")
    if input_layout == "TND":
        raise NotImplementedError("layout TND is not emulated")
    if input_layout not in FA_LAYOUTS:
        raise ValueError(f"input_layout '{input_layout}' is not one of BSH, BNSD, SBH, BSND, TND")
    if not isinstance(sparse_mode, int):
        raise TypeError("sparse_mode must be an int")
    if sparse_mode not in range(9):
        raise RuntimeError(f"sparse_mode {sparse_mode} is invalid")
    if sparse_mode not in (0, 1, 2, 3):
        raise NotImplementedError(f"sparse_mode {sparse_mode} is not emulated")
    if keep_prob != 1.0:
        raise NotImplementedError("dropout (keep_prob < 1) is not emulated")
    _not_emulated(
        real_shift=real_shift,
        drop_mask=drop_mask,
        padding_mask=padding_mask,
        prefix=prefix,
        actual_seq_qlen=actual_seq_qlen,
        actual_seq_kvlen=actual_seq_kvlen,
    )
    if not isinstance(head_num, int) or head_num <= 0:
        raise RuntimeError(f"head_num must be an int greater than 0, got {head_num!r}")
    b, n1, s1, d = _heads_of(query.shape, input_layout, head_num)
    if n1 != head_num:
        raise RuntimeError(f"head_num {head_num} is not N1 = {n1} of query")
    if input_layout in ("BSH", "SBH"):  # N2 follows from D
        h2 = key.shape[-1]
        if h2 % d:
            raise RuntimeError(f"key hidden size {h2} is not a multiple of the head dim {d}")
        n2 = h2 // d
    else:
        n2 = _heads_of(key.shape, input_layout, 1)[1]
    bk, _, s2, dk = _heads_of(key.shape, input_layout, n2)
    if tuple(value.shape) != tuple(key.shape):
        raise RuntimeError("value must have the shape of key")
    if dk != d or bk != b:
        raise RuntimeError("D-axis (and batch) of query, key and value must be the same")
    if n1 % n2:
        raise RuntimeError(f"head_num {n1} is not divisible by N2 = {n2}")
    if d % 16 or d > 512:
        raise RuntimeError(f"head dim {d} must be a multiple of 16 and at most 512")

    keep = np.ones((s1, s2), bool)
    if sparse_mode in (2, 3) and attn_mask is None:
        raise RuntimeError(f"sparse_mode {sparse_mode} needs the compressed (2048, 2048) attn_mask")
    if attn_mask is not None:
        _require_tensor("attn_mask", attn_mask)
        if attn_mask.dtype not in (ms.bool_, ms.uint8):
            raise TypeError(f"attn_mask dtype {attn_mask.dtype} is not bool or uint8")
        mask = attn_mask.asnumpy()
        if sparse_mode in (2, 3):
            if mask.shape != (COMPRESSED_MASK_SIZE, COMPRESSED_MASK_SIZE):
                raise RuntimeError(
                    f"sparse_mode {sparse_mode} needs attn_mask of shape (2048, 2048), got "
                    f"{mask.shape}"
                )
            keep = _compressed_keep(mask, s1, s2, 0 if sparse_mode == 2 else s2 - s1)
        else:
            if mask.shape not in ((s1, s2), (b, 1, s1, s2), (b, n1, s1, s2)):
                raise RuntimeError(
                    f"attn_mask shape {mask.shape} is not (S1, S2), (B, 1, S1, S2) or (B, N1, S1, "
                    "S2)"
                )
            keep = mask == 0
            if sparse_mode == 0:  # the pre/next_tokens band, counted from the top-left corner
                delta = np.arange(s2)[None, :] - np.arange(s1)[:, None]
                keep = keep & (delta <= next_tokens) & (-delta <= pre_tokens)
    q = _to_bnsd(to_numpy(query), input_layout, n1)
    k = _to_bnsd(to_numpy(key), input_layout, n2)
    v = _to_bnsd(to_numpy(value), input_layout, n2)
    out = _attend(q, k, v, scalar_value, keep)
    return to_tensor(_from_bnsd(out, input_layout), query.dtype)


def incre_flash_attention(
    query,
    key,
    value,
    attn_mask=None,
    actual_seq_lengths=None,
    pse_shift=None,
    dequant_scale1=None,
    quant_scale1=None,
    dequant_scale2=None,
    quant_scale2=None,
    quant_offset2=None,
    antiquant_scale=None,
    antiquant_offset=None,
    block_table=None,
    num_heads=1,
    input_layout="BSH",
    scale_value=1.0,
    num_key_value_heads=0,
    block_size=0,
    inner_precise=1,
    kv_padding_size=None,
):
    _require_tensor("query", query)
    if query.dtype not in FLASH_DTYPES:
        raise TypeError(
            f"incre_flash_attention: query dtype {query.dtype} is not float16 or bfloat16"
        )
    if not isinstance(key, (list, tuple)) or not isinstance(value, (list, tuple)):
        raise TypeError("incre_flash_attention: key and value are lists (or tuples) of Tensors")
    if len(key) != 1 or len(value) != 1:
        raise NotImplementedError("only one key and one value tensor are emulated")
    key, value = key[0], value[0]
    _require_tensor("key", key)
    _require_tensor("value", value)
    if key.dtype != value.dtype:
        raise TypeError("incre_flash_attention: key and value must have the same dtype")
    if key.dtype != query.dtype:
        raise NotImplementedError(
            "key/value of another dtype than query (int8 pseudo-quantization) is not emulated"
        )
    if tuple(key.shape) != tuple(value.shape):
        raise ValueError("key and value must have the same shape")
    _require_float("scale_value", scale_value)
    if not isinstance(input_layout, str):
        raise TypeError("input_layout must be a str")
    if input_layout not in IFA_LAYOUTS:
        raise ValueError(f"input_layout '{input_layout}' is not BSH or BNSD")
    if not isinstance(num_heads, int) or not isinstance(num_key_value_heads, int):
        raise TypeError("num_heads and num_key_value_heads must be ints")
    if num_heads <= 0:
        raise RuntimeError("num_heads must be greater than 0")
    _not_emulated(
        pse_shift=pse_shift,
        dequant_scale1=dequant_scale1,
        quant_scale1=quant_scale1,
        dequant_scale2=dequant_scale2,
        quant_scale2=quant_scale2,
        quant_offset2=quant_offset2,
        antiquant_scale=antiquant_scale,
        antiquant_offset=antiquant_offset,
        block_table=block_table,
        kv_padding_size=kv_padding_size,
    )
    kv_heads = num_key_value_heads or num_heads
    if num_heads % kv_heads:
        raise ValueError(
            f"num_heads {num_heads} is not divisible by num_key_value_heads {kv_heads}"
        )
    b, n, s1, d = _heads_of(query.shape, input_layout, num_heads)
    if n != num_heads:
        raise ValueError(f"num_heads {num_heads} does not match the query's {n} heads")
    if s1 != 1:
        raise ValueError(f"incre_flash_attention takes one query token per row, got {s1}")
    bk, nk, s, dk = _heads_of(key.shape, input_layout, kv_heads)
    if (bk, nk, dk) != (b, kv_heads, d):
        raise ValueError(
            f"key shape {tuple(key.shape)} does not fit query {tuple(query.shape)} in "
            f"{input_layout}"
        )

    keep = np.ones((b, 1, 1, s), bool)
    if actual_seq_lengths is not None:
        if isinstance(actual_seq_lengths, Tensor):
            if actual_seq_lengths.dtype != ms.int64:
                raise TypeError(f"actual_seq_lengths dtype {actual_seq_lengths.dtype} is not int64")
            lengths = actual_seq_lengths.asnumpy().reshape(-1)
        elif isinstance(actual_seq_lengths, (list, tuple)) and all(
            isinstance(x, int) for x in actual_seq_lengths
        ):
            lengths = np.asarray(actual_seq_lengths, np.int64).reshape(-1)
        else:
            raise TypeError("actual_seq_lengths must be an int64 Tensor or a tuple/list of ints")
        if lengths.size not in (1, b):
            raise ValueError(f"size of actual_seq_lengths is {lengths.size}, not 1 or B = {b}")
        if (lengths < 0).any() or (lengths > s).any():
            raise ValueError(
                f"actual_seq_lengths {lengths.tolist()} out of the key length range [0, {s}]"
            )
        keep = keep & (np.arange(s) < np.broadcast_to(lengths, (b,))[:, None, None, None])
    if attn_mask is not None:
        _require_tensor("attn_mask", attn_mask)
        if attn_mask.dtype not in (ms.bool_, ms.int8, ms.uint8):
            raise TypeError(f"attn_mask dtype {attn_mask.dtype} is not bool, int8 or uint8")
        if tuple(attn_mask.shape) not in ((b, s), (b, 1, s), (b, 1, 1, s)):
            raise RuntimeError(
                f"attn_mask shape {tuple(attn_mask.shape)} is not (B, S), (B, 1, S) or (B, 1, 1, S)"
            )
        keep = keep & (attn_mask.asnumpy().reshape(b, 1, 1, s) == 0)
    q = _to_bnsd(to_numpy(query), input_layout, n)
    k = _to_bnsd(to_numpy(key), input_layout, kv_heads)
    v = _to_bnsd(to_numpy(value), input_layout, kv_heads)
    # positions past a row's length are never read: garbage (even NaN) there cannot leak into the
    # result
    k = np.where(keep.transpose(0, 1, 3, 2), k, 0)
    v = np.where(keep.transpose(0, 1, 3, 2), v, 0)
    out = _attend(q, k, v, scale_value, keep)
    return to_tensor(_from_bnsd(out, input_layout), query.dtype)


def _one_int(name, x):
    if isinstance(x, (tuple, list)) and len(x) == 1:
        x = x[0]
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"'{name}' must be an int or a tuple/list of one int, got {x!r}")
    return x


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002 (mint's name)
    _require_tensor("input", input)
    _require_tensor("weight", weight)
    if input.dtype not in CONV_DTYPES:
        raise TypeError(f"conv1d: input dtype {input.dtype} is not float16, bfloat16 or float32")
    if weight.dtype != input.dtype or (bias is not None and bias.dtype != input.dtype):
        raise TypeError(
            f"conv1d: input {input.dtype}, weight {weight.dtype} and bias must have one dtype"
        )
    if groups != 1:
        raise NotImplementedError("grouped conv1d is not emulated")
    stride, dilation = _one_int("stride", stride), _one_int("dilation", dilation)
    if stride < 1 or dilation < 1:
        raise ValueError("stride and dilation must be at least 1")
    x = to_numpy(input)
    batched = x.ndim == 3
    if not batched:
        x = x[None]
    w = to_numpy(weight)
    c_out, c_in, width = w.shape
    if x.shape[1] != c_in:
        raise ValueError(f"input has {x.shape[1]} channels, weight expects {c_in}")
    span = dilation * (width - 1)
    if padding == "same":
        if stride != 1:
            raise ValueError("padding 'same' needs stride 1")
        left, right = span // 2, span - span // 2
    elif padding == "valid":
        left = right = 0
    else:
        left = right = _one_int("padding", padding)
        if left < 0:
            raise ValueError("padding must be at least 0")
    x = np.pad(x, ((0, 0), (0, 0), (left, right)))
    length = (x.shape[2] - span - 1) // stride + 1
    if length < 1:
        raise ValueError("the kernel is larger than the padded input")
    taps = [
        x[:, :, j * dilation : j * dilation + stride * (length - 1) + 1 : stride]
        for j in range(width)
    ]
    # (B, C_out, L_out)
    y = np.tensordot(w, np.stack(taps, 2), axes=([1, 2], [1, 2])).transpose(1, 0, 2)
    if bias is not None:
        y = y + to_numpy(bias)[None, :, None]
    return to_tensor(y if batched else y[0], input.dtype)
