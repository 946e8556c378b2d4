"""The Whisper network as a tree of MindSpore Cells, with openai's names and structure.

`Whisper(dims)(mel, tokens)` returns the logits of openai's forward. The decoder also runs a prompt
and one-token steps over an explicit self-attention cache, through the same block code. A block's
Cells may be given the block's parameters as `params` (a dict keyed by their names within the block,
with each Cell's `prefix`): that lets the runtime compile one graph for all layers. Without it each
Cell uses its own.
"""

from dataclasses import asdict, dataclass

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from .attention import (
    EAGER,
    FLASH,
    MASKED,
    attention,
    attention_with_new,
    chunked_attention,
    compressed_causal_mask,
    in_chunks,
    merge_heads,
    split_heads,
    split_heads_keys_last,
)
from .device import CONV_KERNELS, MATMUL_TAPS, NATIVE_CONV1D

LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def to_dict(self):
        return asdict(self)


def sinusoids(length, channels, max_timescale=10000):
    """openai's sinusoidal position table for the encoder (also stored in checkpoints)."""
    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32)


def _zeros(shape, dtype):
    # Lazily initialized: loading replaces every parameter, so these zeros are never materialized.
    return initializer("zeros", shape, dtype)


# Primitives rather than their functional wrappers (ops.gather, ops.softmax, ...): the graph
# frontend parses a wrapper's Python body into every graph that calls it, which shows in compile
# time.
_LAYER_NORM = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=LAYER_NORM_EPS)
_MATMUL_T = ops.MatMul(transpose_b=True)  # x @ W^T without a transposed copy of W
# a broadcasting `+` over a large output is a slow kernel on CPU; same bits
_BIAS_ADD = ops.BiasAdd()
_GATHER = ops.Gather()
_MINIMUM = ops.Minimum()
_MAXIMUM = ops.Maximum()
_RECIPROCAL = ops.Reciprocal()
_MATMUL = ops.MatMul()
_CONCAT_TIME = ops.Concat(1)
_CONCAT_LAST = ops.Concat(-1)
_STACK = ops.Stack(0)


def layer_norm(x, weight, bias):
    """LayerNorm computed in float32 (also for float16 weights)."""
    # no casts: each one parsed costs compile time
    if x.dtype == ms.float32 and weight.dtype == ms.float32:
        return _LAYER_NORM(x, weight, bias)[0]
    y = _LAYER_NORM(x.astype(ms.float32), weight.astype(ms.float32), bias.astype(ms.float32))[0]
    return y.astype(x.dtype)


def linear(x, weight, bias=None, transposed=False):
    """x @ weight^T (+ bias) for `weight` (n_out, n_in); with `transposed`, `weight` is its
    (n_in, n_out) copy and the product a plain one."""
    lead = x.shape[:-1]
    y = (_MATMUL if transposed else _MATMUL_T)(x.reshape(-1, x.shape[-1]), weight)
    if bias is not None:
        y = _BIAS_ADD(y, bias)
    return y.reshape(lead + (y.shape[-1],))


# erf as Eigen's (and XLA's) float32 rational approximation, |error| < 5e-7 (tested against
# math.erf): multiply-adds that graph-kernel fusion turns into one loop, where MindSpore's Erf
# kernel cannot be fused and is slow on CPU.
_ERF_CLIP = 4.0  # |erf(x)| rounds to 1 in float32 beyond this
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
_SQRT_HALF = 0.7071067811865476


def erf(x):
    z = _MINIMUM(_MAXIMUM(x, -_ERF_CLIP), _ERF_CLIP)
    z2 = z * z
    p = _ERF_P[0] * z2 + _ERF_P[1]
    for c in _ERF_P[2:]:
        p = p * z2 + c
    q = _ERF_Q[0] * z2 + _ERF_Q[1]
    for c in _ERF_Q[2:]:
        q = q * z2 + c
    return z * p * _RECIPROCAL(q)


def gelu(x):
    """Exact (erf) GELU, as openai's nn.GELU(). float32 through `erf`; float16 through the native
    kernel, since the rational approximation's coefficients underflow in float16."""
    if x.dtype == ms.float32:
        return (0.5 * x) * (1.0 + erf(x * _SQRT_HALF))
    return ops.gelu(x, approximate="none")


class LayerNorm(nn.Cell):
    def __init__(self, n_state, dtype=ms.float32):
        super().__init__()
        self.weight = Parameter(initializer("ones", (n_state,), dtype), name="weight")
        self.bias = Parameter(_zeros((n_state,), dtype), name="bias")

    def construct(self, x, params=None, prefix=""):
        if params is None:
            return layer_norm(x, self.weight, self.bias)
        return layer_norm(x, params[prefix + "weight"], params[prefix + "bias"])


class Linear(nn.Cell):
    def __init__(self, n_in, n_out, bias=True, dtype=ms.float32):
        super().__init__()
        self.weight = Parameter(_zeros((n_out, n_in), dtype), name="weight")
        self.bias = Parameter(_zeros((n_out,), dtype), name="bias") if bias else None

    def construct(self, x, params=None, prefix=""):
        """With `params` (a block's parameters by name), the weight is params[prefix + "weight"],
        or its transposed copy params[prefix + "weight_t"] where given (inference.wide_layers)."""
        if params is None:
            return linear(x, self.weight, self.bias)
        bias = None if self.bias is None else params[prefix + "bias"]
        if prefix + "weight_t" in params:
            return linear(x, params[prefix + "weight_t"], bias, transposed=True)
        return linear(x, params[prefix + "weight"], bias)


class GELU(nn.Cell):
    def construct(self, x):
        return gelu(x)


class MLP(nn.SequentialCell):
    """openai's `nn.Sequential(Linear, GELU, Linear)`, with its parameter names (mlp.0, mlp.2)."""

    def __init__(self, n_state, n_mlp, dtype=ms.float32):
        super().__init__(
            [Linear(n_state, n_mlp, dtype=dtype), GELU(), Linear(n_mlp, n_state, dtype=dtype)]
        )

    def construct(self, x, params=None, prefix=""):
        return self[2](self[1](self[0](x, params, prefix + "0.")), params, prefix + "2.")


class Conv1d(nn.Cell):
    """Kernel-3, padding-1 1-D convolution with openai's (out, in, k) weight.

    MATMUL_TAPS (any device): the padded input's kernel taps stacked along the channels times the
    weight laid out as (out, k * in), one MatMul, the kernel the rest of the network runs on;
    MindSpore's CPU Conv2D (what its Conv1d is built on) picks very different kernels by CPU and can
    cost more than the whole encoder. NATIVE_CONV1D: `mint` conv1d, Ascend only.
    """

    def __init__(
        self, n_in, n_out, kernel_size=3, stride=1, padding=1, conv=MATMUL_TAPS, dtype=ms.float32
    ):
        super().__init__()
        if (kernel_size, padding) != (3, 1) or stride not in (1, 2):
            raise ValueError(
                "Conv1d supports Whisper's stem only: kernel 3, padding 1, stride 1 or 2"
            )
        self.weight = Parameter(_zeros((n_out, n_in, kernel_size), dtype), name="weight")
        self.bias = Parameter(_zeros((n_out,), dtype), name="bias")
        self.stride = stride
        self.padding = padding
        self.conv = conv

    def construct(self, x):
        """(B, in, T) -> (B, out, T_out), as torch's Conv1d."""
        if self.conv == NATIVE_CONV1D:
            return CONV_KERNELS["conv1d"](x, self.weight, self.bias, self.stride, self.padding)
        return self.channels_last(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    def channels_last(self, x):
        """(B, T, in) -> (B, T_out, out) by one MatMul over the stacked taps (the stem runs
        time-major)."""
        b, t, c = x.shape
        n_out = self.weight.shape[0]
        # (out, k * in), tap-major like `taps`
        weight = self.weight.transpose(0, 2, 1).reshape(n_out, -1)
        if self.stride == 1:
            pad = ops.zeros((b, self.padding, c), x.dtype)
            padded = _CONCAT_TIME((pad, x, pad))  # (B, T + 2, in)
            taps = _CONCAT_LAST((padded[:, :t], padded[:, 1 : t + 1], padded[:, 2:]))
        else:
            # Output frame i reads input frames 2i-1, 2i, 2i+1 (-1 and T are the padding). The input
            # as pairs of frames, (2i, 2i+1) in row i, holds the last two taps; the previous row,
            # (2i-2, 2i-1), holds the first in its second half. So each row is put beside the one
            # before it and multiplied by (0, w0, w1, w2): a third more multiply-adds, all of them
            # by exact zeros, where picking out half a row was a slow strided copy on CPU.
            t_out = (t + 1) // 2
            if t % 2:  # the right padding pairs an odd T
                x = _CONCAT_TIME((x, ops.zeros((b, 1, c), x.dtype)))
            pairs = x.reshape(b, t_out, 2 * c)
            before = _CONCAT_TIME((ops.zeros((b, 1, 2 * c), x.dtype), pairs[:, :-1]))
            taps = _CONCAT_LAST((before, pairs))
            weight = _CONCAT_LAST((ops.zeros((n_out, c), weight.dtype), weight))
        return linear(taps, weight.astype(x.dtype), self.bias.astype(x.dtype))


class Embedding(nn.Cell):
    def __init__(self, n_vocab, n_state, dtype=ms.float32):
        super().__init__()
        self.weight = Parameter(_zeros((n_vocab, n_state), dtype), name="weight")

    def construct(self, tokens):
        return _GATHER(self.weight, tokens, 0)


class MultiHeadAttention(nn.Cell):
    """`keys_last`: key_value() gives keys as (B, H, Dh, T) and the attention reads them so
    (attention.split_heads_keys_last); eager attention only."""

    def __init__(
        self, n_state, n_head, attn_implementation=EAGER, dtype=ms.float32, keys_last=False
    ):
        super().__init__()
        self.n_head = n_head
        self.attn_implementation = attn_implementation
        self.keys_last = keys_last
        self.query = Linear(n_state, n_state, dtype=dtype)
        self.key = Linear(n_state, n_state, bias=False, dtype=dtype)
        self.value = Linear(n_state, n_state, dtype=dtype)
        self.out = Linear(n_state, n_state, dtype=dtype)

    def key_value(self, x, params=None, prefix=""):
        """Keys and values of `x` split into heads: (B, H, T, Dh) each (keys (B, H, Dh, T) with
        `keys_last`)."""
        k = self.key(x, params, prefix + "key.")
        v = self.value(x, params, prefix + "value.")
        split_keys = split_heads_keys_last if self.keys_last else split_heads
        return split_keys(k, self.n_head), split_heads(v, self.n_head)

    def construct(self, x, k, v, mask=None, params=None, prefix="", need_weights=False):
        """The queries of `x` attend over keys and values (B, H, Tk, Dh); returns the output and the
        attention weights (None from the fused kernels; `need_weights` computes them the eager way).

        `mask` holds the masking in every form the implementations take (attention.attention):
        additive, the fused kernels' causal mask, and the number of valid keys of a one-token step;
        or None for no masking.
        """
        q = split_heads(self.query(x, params, prefix + "query."), self.n_head)
        implementation = EAGER if need_weights else self.attn_implementation
        additive, causal, kv_length = (None, None, None) if mask is None else mask
        keys_last = self.keys_last
        b, h, t, dh = q.shape
        audios = k.shape[0]
        if t == 1 and b > audios:
            # One-token queries of several rows per audio (beams, samples; rows grouped by audio)
            # over each audio's K/V: a group's queries attend as one sequence, so the step reads
            # each window's K/V once instead of keeping a copy per row.
            grouped = q.reshape(audios, b // audios, h, dh).transpose(0, 2, 1, 3)
            out, qk = attention(
                grouped, k, v, implementation, additive, causal, kv_length, keys_last
            )
            out = out.transpose(0, 2, 1, 3).reshape(b, h, 1, dh)
        elif mask is None and not need_weights and in_chunks(t):
            # memory and cache reuse: see attention.QUERY_CHUNK
            out, qk = chunked_attention(q, k, v, implementation, keys_last), None
        else:
            out, qk = attention(q, k, v, implementation, additive, causal, kv_length, keys_last)
        return self.out(merge_heads(out), params, prefix + "out."), qk

    def attend_step(self, x, k, v, k_new, v_new, mask, params=None, prefix=""):
        """A one-token step's queries of `x` over a cache k, v it only reads and the step's own
        k_new, v_new (attention.attention_with_new; eager); the output projected."""
        q = split_heads(self.query(x, params, prefix + "query."), self.n_head)
        out = attention_with_new(q, k, v, k_new, v_new, mask)
        return self.out(merge_heads(out), params, prefix + "out.")


class ResidualAttentionBlock(nn.Cell):
    def __init__(
        self, n_state, n_head, cross_attention=False, attn_implementation=EAGER, dtype=ms.float32
    ):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head, attn_implementation, dtype)
        self.attn_ln = LayerNorm(n_state, dtype)
        # Eager cross-attention holds its keys keys-last (attention._QK_LAST); the fused kernels
        # take BNSD.
        self.cross_attn = (
            MultiHeadAttention(
                n_state, n_head, attn_implementation, dtype, attn_implementation == EAGER
            )
            if cross_attention
            else None
        )
        self.cross_attn_ln = LayerNorm(n_state, dtype) if cross_attention else None
        self.mlp = MLP(n_state, 4 * n_state, dtype)
        self.mlp_ln = LayerNorm(n_state, dtype)

    def construct(self, x, xa_kv=None, mask=None, cache=None, params=None, need_weights=False):
        """One block over the positions `x` (B, T, D); returns (x, (k, v), cross-attention weights).

        xa_kv: the window's cross-attention keys and values (decoder blocks). cache: for a one-token
        step, the self-attention cache (k, v, write): `write` (1, 1, capacity, 1) is 1 at the new
        position and 0 elsewhere, and the position's keys and values are blended in there; or
        `write` None: the cache is only read, the step's own key and value attended apart from it
        (`mask` then its additive mask alone). (k, v) returned are the positions' own keys and
        values, or with a `write`, the updated cache.
        """
        h = self.attn_ln(x, params, "attn_ln.")
        k, v = self.attn.key_value(h, params, "attn.")
        if cache is not None and cache[2] is None:
            x = x + self.attn.attend_step(h, cache[0], cache[1], k, v, mask, params, "attn.")
        else:
            if cache is not None:
                # cache * (1 - write) + new * write is exact for a 0/1 `write` and fuses into one
                # loop (fusion.py).
                cached_k, cached_v, write = cache
                k = cached_k * (1 - write) + k * write
                v = cached_v * (1 - write) + v * write
            x = x + self.attn(h, k, v, mask, params, "attn.")[0]
        cross_qk = None
        if self.cross_attn is not None:
            h = self.cross_attn_ln(x, params, "cross_attn_ln.")
            out, cross_qk = self.cross_attn(
                h, xa_kv[0], xa_kv[1], None, params, "cross_attn.", need_weights
            )
            x = x + out
        x = x + self.mlp(self.mlp_ln(x, params, "mlp_ln."), params, "mlp.")
        return x, (k, v), cross_qk


class AudioEncoder(nn.Cell):
    def __init__(
        self,
        n_mels,
        n_ctx,
        n_state,
        n_head,
        n_layer,
        attn_implementation=EAGER,
        conv=MATMUL_TAPS,
        dtype=ms.float32,
    ):
        super().__init__()
        self.conv1 = Conv1d(n_mels, n_state, conv=conv, dtype=dtype)
        self.conv2 = Conv1d(n_state, n_state, stride=2, conv=conv, dtype=dtype)
        self.positional_embedding = Parameter(
            Tensor(sinusoids(n_ctx, n_state), dtype),
            name="positional_embedding",
            requires_grad=False,
        )
        self.blocks = nn.CellList(
            [
                ResidualAttentionBlock(n_state, n_head, False, attn_implementation, dtype)
                for _ in range(n_layer)
            ]
        )
        self.ln_post = LayerNorm(n_state, dtype)

    def stem(self, mel):
        """mel (B, n_mels, 2 * n_audio_ctx) -> the first block's input (B, n_audio_ctx, n_state)."""
        x = mel.astype(self.conv1.weight.dtype)
        if self.conv1.conv == NATIVE_CONV1D:
            x = gelu(self.conv2(gelu(self.conv1(x)))).transpose(0, 2, 1)
        else:
            x = gelu(self.conv2.channels_last(gelu(self.conv1.channels_last(x.transpose(0, 2, 1)))))
        return x + self.positional_embedding

    def construct(self, mel):
        """mel (B, n_mels, 2 * n_audio_ctx) -> audio features (B, n_audio_ctx, n_state)."""
        x = self.stem(mel)
        for block in self.blocks:
            x = block(x)[0]
        return self.ln_post(x)


class TextDecoder(nn.Cell):
    def __init__(
        self, n_vocab, n_ctx, n_state, n_head, n_layer, attn_implementation=EAGER, dtype=ms.float32
    ):
        super().__init__()
        self.n_ctx = n_ctx
        self.token_embedding = Embedding(n_vocab, n_state, dtype)
        self.positional_embedding = Parameter(
            _zeros((n_ctx, n_state), dtype), name="positional_embedding"
        )
        self.blocks = nn.CellList(
            [
                ResidualAttentionBlock(n_state, n_head, True, attn_implementation, dtype)
                for _ in range(n_layer)
            ]
        )
        self.ln = LayerNorm(n_state, dtype)
        self.causal_mask = Tensor(np.triu(np.full((n_ctx, n_ctx), MASKED, np.float32), 1))
        self.flash_causal_mask = compressed_causal_mask() if attn_implementation == FLASH else None
        self.positions = Tensor(np.arange(n_ctx, dtype=np.int32))
        self.project = ops.MatMul(transpose_b=True)

    def construct(self, tokens, xa):
        """openai's forward: tokens (B, T) from position 0, audio features xa -> logits (B, T,
        n_vocab)."""
        return self.forward(tokens, self.cross_kv(xa))[0]

    def forward(self, tokens, cross_kv, need_weights=False):
        """Logits of `tokens` (B, T) from position 0 over a window's cross K/V, and each layer's
        cross-attention weights (B, H, T, n_audio_ctx) when `need_weights` (word timestamps)."""
        x = self.embed(tokens)
        mask = self.prompt_mask(tokens.shape[1])
        weights = []
        for i, block in enumerate(self.blocks):
            x, _, qk = block(x, (cross_kv[0][i], cross_kv[1][i]), mask, need_weights=need_weights)
            weights.append(qk)
        return self.logits(x), tuple(weights)

    def cross_kv(self, audio_features):
        """Cross-attention keys and values, a tuple of (B, H, n_audio_ctx, Dh) per layer; once per
        window."""
        ks, vs = [], []
        for block in self.blocks:
            k, v = block.cross_attn.key_value(audio_features)
            ks.append(k)
            vs.append(v)
        return tuple(ks), tuple(vs)

    def embed(self, tokens):
        """Token plus position embeddings of a prompt (B, T) starting at position 0."""
        return self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]

    def prompt_mask(self, t):
        """Causal masking of a T-token prompt, in every implementation's form
        (attention.attention)."""
        return self.causal_mask[:t, :t], self.flash_causal_mask, None

    def logits(self, x, embedding_t=None):
        """Tied output projection; (B, T, D) -> (B, T, n_vocab) float32.

        By default MatMul(transpose_b) on the (n_vocab, D) embedding, without a transposed copy.
        `embedding_t`, a (D, n_vocab) copy, serves single-row steps on CPU, where reading the
        embedding transposed is slower.
        """
        x = self.ln(x)
        b, t, d = x.shape
        if embedding_t is None:
            y = self.project(x.reshape(b * t, d), self.token_embedding.weight)
        else:
            y = _MATMUL(x.reshape(b * t, d), embedding_t)
        return y.astype(ms.float32).reshape(b, t, -1)

    def step(self, tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=None, rows=None):
        """Decode one token per row (B, 1), row i at position offset[i], over the self-attention
        caches (per layer, (B, H, capacity, Dh)); returns logits (B, n_vocab) and the new caches.

        The cross-attention K/V may hold fewer audios than rows: rows are then grouped by audio
        (B // audios consecutive rows each). `rows` (B,) first reorders the self-attention caches
        (beam search: row i continues row rows[i]), inside the same graph.
        """
        x, positions, offsets = self._step_input(tokens, offset, self_k[0].shape[2])
        b = x.shape[0]
        write = (positions == offsets).astype(x.dtype).reshape(b, 1, -1, 1)
        mask = (
            ((positions > offsets).astype(ms.float32) * MASKED).reshape(b, 1, 1, -1),
            None,
            offset + 1,
        )
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            cached_k, cached_v = self_k[i], self_v[i]
            if rows is not None:
                cached_k, cached_v = _GATHER(cached_k, rows, 0), _GATHER(cached_v, rows, 0)
            x, (k, v), _ = block(x, (cross_k[i], cross_v[i]), mask, (cached_k, cached_v, write))
            new_k.append(k)
            new_v.append(v)
        # reshape rather than [:, 0]: a StridedSlice there is a slow CPU kernel.
        return self.logits(x, embedding_t).reshape(b, -1), tuple(new_k), tuple(new_v)

    def step_apart(
        self, tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=None, layers=None
    ):
        """`step` over caches it only reads, positions offset[i] on being empty or stale: returns
        logits (B, n_vocab) and the new positions' keys and values (n_layer, B, H, 1, Dh) each, for
        the caller to write in (kv_cache.HostKVCache). Eager attention only. `layers`: each block's
        parameters by name, to use instead of its own (Linear.construct)."""
        x, positions, offsets = self._step_input(tokens, offset, self_k[0].shape[2])
        b = x.shape[0]
        mask = ((positions >= offsets).astype(ms.float32) * MASKED).reshape(b, 1, 1, -1)
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            params = None if layers is None else layers[i]
            cache = (self_k[i], self_v[i], None)
            x, (k, v), _ = block(x, (cross_k[i], cross_v[i]), mask, cache, params)
            new_k.append(k)
            new_v.append(v)
        return self.logits(x, embedding_t).reshape(b, -1), _STACK(new_k), _STACK(new_v)

    def _step_input(self, tokens, offset, capacity):
        """A step's embedded tokens (B, 1, D) at their positions, and the positions of a cache of
        `capacity` (1, capacity) and each row's (B, 1), for its masks."""
        b = tokens.shape[0]
        x = self.token_embedding(tokens) + _GATHER(self.positional_embedding, offset, 0).reshape(
            b, 1, -1
        )
        return x, self.positions[:capacity].reshape(1, -1), offset.reshape(-1, 1)


class Whisper(nn.Cell):
    """The network. attn_implementation, conv and dtype are the runtime's kernel and precision
    choices (device.py)."""

    def __init__(
        self, dims: ModelDimensions, attn_implementation=EAGER, conv=MATMUL_TAPS, dtype=ms.float32
    ):
        super().__init__()
        self.dims = dims
        audio = (
            dims.n_mels,
            dims.n_audio_ctx,
            dims.n_audio_state,
            dims.n_audio_head,
            dims.n_audio_layer,
        )
        text = (
            dims.n_vocab,
            dims.n_text_ctx,
            dims.n_text_state,
            dims.n_text_head,
            dims.n_text_layer,
        )
        self.encoder = AudioEncoder(*audio, attn_implementation, conv, dtype)
        self.decoder = TextDecoder(*text, attn_implementation, dtype)

    def construct(self, mel, tokens):
        return self.decoder(tokens, self.encoder(mel))

    def embed_audio(self, mel):
        return self.encoder(mel)

    def logits(self, tokens, audio_features):
        return self.decoder(tokens, audio_features)

    @property
    def is_multilingual(self):
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self):
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)
