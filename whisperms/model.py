"""The Whisper network as MindSpore Cells, parameter names equal to openai's state dict.

The decoder keeps no hidden state: `prefill` builds the self-attention cache for a prompt, `step` extends it by one
token at an explicit position, and both take the per-window cross-attention K/V from `cross_kv`. Shapes are static
(the cache is preallocated to n_text_ctx), so each entry point compiles once per batch size and prompt bucket.
"""
from dataclasses import dataclass, asdict

import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer

from .attention import EAGER, MASKED, attention, encoder_attention, merge_heads, split_heads
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


def _zeros(*shape):
    """A lazily initialized placeholder: load_model replaces every parameter, so zeros are never materialized
    (eager zeros cost ~150 MB of RSS for tiny.en that the allocator kept after loading)."""
    return initializer("zeros", shape, ms.float32)


_LAYER_NORM = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=LAYER_NORM_EPS)
_MATMUL_T = ops.MatMul(transpose_b=True)  # x @ W^T without a transposed copy of W
# BiasAdd, not a broadcasting `+`: on CPU the latter took 6.6 ms for a (1500, 1536) output, BiasAdd ~0 (same bits).
_BIAS_ADD = ops.BiasAdd()
# Primitives rather than their functional wrappers (ops.gather, ops.minimum, ...): the graph frontend parses a
# wrapper's Python body into every graph that calls it (ops.softmax: ~50 ms per graph). With these and the skipped
# no-op casts, a tiny.en process's first file spent 2.3-2.5 s instead of 2.8 s compiling (medians of 4-5 runs).
_GATHER = ops.Gather()
_MINIMUM = ops.Minimum()
_MAXIMUM = ops.Maximum()
_RECIPROCAL = ops.Reciprocal()
_MATMUL = ops.MatMul()
_CONCAT_SEQ = ops.Concat(2)
_CONCAT_TIME = ops.Concat(1)
_CONCAT_LAST = ops.Concat(-1)


def layer_norm(x, weight, bias):
    """LayerNorm computed in float32 (also for float16 weights)."""
    if x.dtype == ms.float32 and weight.dtype == ms.float32:  # no casts: each one parsed costs compile time
        return _LAYER_NORM(x, weight, bias)[0]
    y = _LAYER_NORM(x.astype(ms.float32), weight.astype(ms.float32), bias.astype(ms.float32))[0]
    return y.astype(x.dtype)


def linear(x, weight, bias=None):
    lead = x.shape[:-1]
    y = _MATMUL_T(x.reshape(-1, x.shape[-1]), weight)
    if bias is not None:
        y = _BIAS_ADD(y, bias)
    return y.reshape(lead + (y.shape[-1],))


# erf as Eigen's (and XLA's) float32 rational approximation, |error| < 5e-7 on every input (checked against
# math.erf in tests): elementwise multiply-adds that MindSpore's graph-kernel fusion turns into one loop. Its Erf
# kernel is not fusible and cost ~20 ms per (1500, 1536) tiny.en MLP activation on CPU; this fused, ~1.3 ms.
_ERF_CLIP = 4.0  # |erf(x)| rounds to 1 in float32 beyond this
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
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
    """Exact (erf) GELU, as openai's nn.GELU(). float32 (CPU) through `erf`; float16 (Ascend) through the native
    kernel, since the rational approximation's coefficients underflow in float16."""
    if x.dtype == ms.float32:
        return (0.5 * x) * (1.0 + erf(x * _SQRT_HALF))
    return ops.gelu(x, approximate="none")


class LayerNorm(nn.Cell):
    """openai's `weight`/`bias` names around `layer_norm`."""

    def __init__(self, n_state):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones(n_state, np.float32)), name="weight")
        self.bias = Parameter(_zeros(n_state), name="bias")

    def construct(self, x):
        return layer_norm(x, self.weight, self.bias)


class Linear(nn.Cell):
    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.weight = Parameter(_zeros(n_out, n_in), name="weight")
        self.bias = Parameter(_zeros(n_out), name="bias") if bias else None

    def construct(self, x):
        return linear(x, self.weight, self.bias)


class GELU(nn.Cell):
    def construct(self, x):
        return gelu(x)


class Conv1d(nn.Cell):
    """Kernel-3, padding-1 1-D convolution with openai's (out, in, k) weight.

    `conv_kernel` is set by device.py. MATMUL_TAPS (any device): the padded input's kernel taps stacked along the
    channels and multiplied by the weight laid out as (out, k * in), one MatMul, the kernel the rest of the network
    runs on; MindSpore's CPU Conv2D (what nn.Conv1d is built on) was slower than the whole encoder on some CPUs.
    NATIVE_CONV1D: `mint.nn.functional.conv1d`, Ascend only.
    """

    def __init__(self, n_in, n_out, kernel_size=3, stride=1, padding=1):
        super().__init__()
        if (kernel_size, padding) != (3, 1) or stride not in (1, 2):
            raise ValueError("Conv1d supports Whisper's stem only: kernel 3, padding 1, stride 1 or 2")
        self.weight = Parameter(_zeros(n_out, n_in, kernel_size), name="weight")
        self.bias = Parameter(_zeros(n_out), name="bias")
        self.stride = stride
        self.padding = padding
        self.conv_kernel = MATMUL_TAPS

    def construct(self, x):
        """(B, in, T) -> (B, out, T_out), as torch's Conv1d."""
        if self.conv_kernel == NATIVE_CONV1D:
            return CONV_KERNELS["conv1d"](x, self.weight, self.bias, self.stride, self.padding)
        return self.channels_last(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    def channels_last(self, x):
        """(B, T, in) -> (B, T_out, out) by one MatMul over the stacked taps (the stem runs time-major)."""
        b, t, c = x.shape
        pad = ops.zeros((b, self.padding, c), x.dtype)
        if self.stride == 1:
            padded = _CONCAT_TIME((pad, x, pad))  # (B, T + 2, in)
            taps = _CONCAT_LAST((padded[:, :t], padded[:, 1:t + 1], padded[:, 2:]))
        else:
            # Output frame i reads padded frames 2i, 2i+1, 2i+2: pairs of frames side by side make the first two
            # taps one contiguous slice and the third the next pair's first half, with no strided reads.
            t_out = (t + 1) // 2
            right = ops.zeros((b, 2 * t_out + 1 - t, c), x.dtype)  # the padding, and a frame to pair an odd T
            pairs = _CONCAT_TIME((pad, x, right)).reshape(b, t_out + 1, 2 * c)
            taps = _CONCAT_LAST((pairs[:, :t_out], pairs[:, 1:, :c]))
        n_out = self.weight.shape[0]
        weight = self.weight.transpose(0, 2, 1).reshape(n_out, -1)  # (out, k * in), tap-major like `taps`
        return linear(taps, weight.astype(x.dtype), self.bias.astype(x.dtype))


class Embedding(nn.Cell):
    def __init__(self, n_vocab, n_state):
        super().__init__()
        self.weight = Parameter(_zeros(n_vocab, n_state), name="weight")

    def construct(self, tokens):
        return _GATHER(self.weight, tokens, 0)


class MultiHeadAttention(nn.Cell):
    def __init__(self, n_state, n_head):
        super().__init__()
        self.n_head = n_head
        self.query = Linear(n_state, n_state)
        self.key = Linear(n_state, n_state, bias=False)
        self.value = Linear(n_state, n_state)
        self.out = Linear(n_state, n_state)
        self.attn_implementation = EAGER  # set by device.py, with the fused kernels' causal mask
        self.flash_causal_mask = None

    def kv_weights(self):
        """The key (no bias) and value projections, in `project_kv`'s order."""
        return self.key.weight, self.value.weight, self.value.bias

    def project_kv(self, x):
        """Keys and values of `x` split into heads: (B, H, T, Dh) each."""
        return project_kv(x, self.kv_weights(), self.n_head)

    def attend(self, x, k, v, mask=None):
        """Eager attention of the queries of `x` over given keys/values; returns (output, weights).

        Only for word timestamps, which need the weights the fused kernels do not return; the decoding paths go
        through `decoder_block` / `encoder_block` and the runtime's kernels.
        """
        q = split_heads(self.query(x), self.n_head)
        out, weights = attention(q, k, v, EAGER, mask)
        return self.out(merge_heads(out)), weights


class ResidualAttentionBlock(nn.Cell):
    def __init__(self, n_state, n_head, cross_attention=False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.SequentialCell([Linear(n_state, 4 * n_state), GELU(),
                                      Linear(4 * n_state, n_state)])
        self.mlp_ln = LayerNorm(n_state)

    def encoder_weights(self):
        """This block's parameters in `encoder_block`'s order."""
        a, mlp = self.attn, self.mlp
        return (self.attn_ln.weight, self.attn_ln.bias, a.query.weight, a.query.bias, a.key.weight, a.value.weight,
                a.value.bias, a.out.weight, a.out.bias, self.mlp_ln.weight, self.mlp_ln.bias, mlp[0].weight,
                mlp[0].bias, mlp[2].weight, mlp[2].bias)

    def encode(self, x):
        return encoder_block(x, self.encoder_weights(), self.attn.n_head, self.attn.attn_implementation)

    def decoder_weights(self):
        """This block's parameters in `decoder_block`'s order. The cross-attention key/value projections are not
        among them: `TextDecoder.cross_kv` applies those once per window."""
        a, c, mlp = self.attn, self.cross_attn, self.mlp
        return (self.attn_ln.weight, self.attn_ln.bias, a.query.weight, a.query.bias, a.key.weight, a.value.weight,
                a.value.bias, a.out.weight, a.out.bias, self.cross_attn_ln.weight, self.cross_attn_ln.bias,
                c.query.weight, c.query.bias, c.out.weight, c.out.bias, self.mlp_ln.weight, self.mlp_ln.bias,
                mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias)

    def decode(self, x, self_k, self_v, self_mask, cross_k, cross_v, causal=False, kv_length=None):
        """One decoder block over new positions `x`, given the full self-attention keys/values to attend to."""
        causal_mask = self.attn.flash_causal_mask if causal else None
        return decoder_block(x, self_k, self_v, cross_k, cross_v, self.decoder_weights(), self.attn.n_head,
                             self.attn.attn_implementation, self_mask, causal_mask, kv_length)


def _cross_attention(q, cross_k, cross_v, implementation):
    """Cross-attention; B one-token queries over one audio's K/V (beam search) attend as one sequence of B queries.

    Beams share their audio, so their cross K/V stays batch 1 instead of B copies: the step then reads the window's
    K/V once, not once per beam (a 5-beam tiny.en step spent 3.8 ms in these products with copies).
    """
    b, _, t, _ = q.shape
    if b > 1 and t == 1 and cross_k.shape[0] == 1:
        out = attention(q.transpose(2, 1, 0, 3), cross_k, cross_v, implementation)[0]
        return out.transpose(2, 1, 0, 3)
    return attention(q, cross_k, cross_v, implementation)[0]


def project_kv(x, weights, n_head):
    """Keys and values (B, H, T, Dh) of `x` with the weights passed in (`MultiHeadAttention.kv_weights()` order),
    so inference.py compiles one small cross K/V graph for every layer."""
    k_w, v_w, v_b = weights
    return split_heads(linear(x, k_w), n_head), split_heads(linear(x, v_w, v_b), n_head)


def self_kv(x, weights, n_head):
    """Self-attention keys and values (B, H, T, Dh) of new decoder positions `x` (`decoder_weights()` order)."""
    return project_kv(layer_norm(x, weights[0], weights[1]), (weights[4], weights[5], weights[6]), n_head)


def decoder_block(x, self_k, self_v, cross_k, cross_v, weights, n_head, implementation=EAGER, mask=None,
                  causal_mask=None, kv_length=None):
    """One decoder block with its weights passed in, so inference.py can compile one prompt graph for all layers.

    The masking arguments are those of attention.attention: `mask` for eager, `causal_mask` (a prompt) or
    `kv_length` (a one-token step) for the fused kernels.
    """
    (ln1_w, ln1_b, q_w, q_b, _, _, _, out_w, out_b, lnx_w, lnx_b, xq_w, xq_b, xout_w, xout_b, ln2_w, ln2_b, fc1_w,
     fc1_b, fc2_w, fc2_b) = weights
    q = split_heads(linear(layer_norm(x, ln1_w, ln1_b), q_w, q_b), n_head)
    out = attention(q, self_k, self_v, implementation, mask, causal_mask, kv_length)[0]
    x = x + linear(merge_heads(out), out_w, out_b)
    q = split_heads(linear(layer_norm(x, lnx_w, lnx_b), xq_w, xq_b), n_head)
    x = x + linear(merge_heads(_cross_attention(q, cross_k, cross_v, implementation)), xout_w, xout_b)
    h = layer_norm(x, ln2_w, ln2_b)
    return x + linear(gelu(linear(h, fc1_w, fc1_b)), fc2_w, fc2_b)


def encoder_block(x, weights, n_head, implementation=EAGER):
    """One encoder block with its weights passed in (`encoder_weights()` order).

    A function of its weights so inference.py compiles one graph and runs it for every layer: compiling the
    unrolled encoder took ~1.7 s and its graph kept every layer's activations (~130 MB per tiny.en layer) in memory.
    """
    (ln1_w, ln1_b, q_w, q_b, k_w, v_w, v_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b) = weights
    h = layer_norm(x, ln1_w, ln1_b)
    q = split_heads(linear(h, q_w, q_b), n_head)
    k = split_heads(linear(h, k_w), n_head)
    v = split_heads(linear(h, v_w, v_b), n_head)
    x = x + linear(merge_heads(encoder_attention(q, k, v, implementation)), out_w, out_b)
    h = layer_norm(x, ln2_w, ln2_b)
    return x + linear(gelu(linear(h, fc1_w, fc1_b)), fc2_w, fc2_b)


class AudioEncoder(nn.Cell):
    def __init__(self, n_mels, n_ctx, n_state, n_head, n_layer):
        super().__init__()
        self.conv1 = Conv1d(n_mels, n_state)
        self.conv2 = Conv1d(n_state, n_state, stride=2)
        self.positional_embedding = Parameter(Tensor(sinusoids(n_ctx, n_state)), name="positional_embedding",
                                              requires_grad=False)
        self.blocks = nn.CellList([ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)])
        self.ln_post = LayerNorm(n_state)

    def stem(self, mel):
        """mel (B, n_mels, 2 * n_audio_ctx) -> the first block's input (B, n_audio_ctx, n_state)."""
        x = mel.astype(self.conv1.weight.dtype)
        if self.conv1.conv_kernel == NATIVE_CONV1D:
            x = gelu(self.conv2(gelu(self.conv1(x)))).transpose(0, 2, 1)
        else:
            x = gelu(self.conv2.channels_last(gelu(self.conv1.channels_last(x.transpose(0, 2, 1)))))
        return x + self.positional_embedding.astype(x.dtype)

    def construct(self, mel):
        """mel (B, n_mels, 2 * n_audio_ctx) -> audio features (B, n_audio_ctx, n_state)."""
        x = self.stem(mel)
        for block in self.blocks:
            x = block.encode(x)
        return self.ln_post(x)


class TextDecoder(nn.Cell):
    def __init__(self, n_vocab, n_ctx, n_state, n_head, n_layer):
        super().__init__()
        self.n_ctx = n_ctx
        self.n_head = n_head
        self.token_embedding = Embedding(n_vocab, n_state)
        self.positional_embedding = Parameter(_zeros(n_ctx, n_state), name="positional_embedding")
        self.blocks = nn.CellList([ResidualAttentionBlock(n_state, n_head, cross_attention=True)
                                   for _ in range(n_layer)])
        self.ln = LayerNorm(n_state)
        causal = np.triu(np.full((n_ctx, n_ctx), MASKED, np.float32), 1)
        self.causal_mask = Tensor(causal)
        self.positions = Tensor(np.arange(n_ctx, dtype=np.int32))
        self.project = ops.MatMul(transpose_b=True)

    def cross_kv(self, audio_features):
        """Cross-attention keys and values, a tuple of (B, H, n_audio_ctx, Dh) per layer; once per window."""
        ks, vs = [], []
        for block in self.blocks:
            k, v = block.cross_attn.project_kv(audio_features)
            ks.append(k)
            vs.append(v)
        return tuple(ks), tuple(vs)

    def logits(self, x, embedding_t=None):
        """Tied output projection; (B, T, D) -> (B, T, n_vocab) float32.

        By default MatMul(transpose_b) on the (n_vocab, D) embedding, without a transposed copy. `embedding_t`, a
        (D, n_vocab) copy, serves single-row steps on CPU, where x @ E^T read E 1.6x slower (3.3 vs 2.1 ms, tiny.en).
        """
        x = self.ln(x)
        b, t, d = x.shape
        if embedding_t is None:
            y = self.project(x.reshape(b * t, d), self.token_embedding.weight.astype(x.dtype))
        else:
            y = _MATMUL(x.reshape(b * t, d), embedding_t)
        return y.astype(ms.float32).reshape(b, t, -1)

    def embed(self, tokens):
        """Token plus position embeddings of a prompt (B, T) starting at position 0."""
        t = tokens.shape[1]
        return self.token_embedding(tokens) + self.positional_embedding[:t].astype(self.token_embedding.weight.dtype)

    def prompt_block(self, x, weights, cross_k, cross_v, capacity=None):
        """One block over a prompt from position 0 (`weights` in decoder_weights() order).

        Returns the block's output and its self-attention cache, keys and values (B, H, capacity, Dh), by default
        n_ctx positions, whose positions past the prompt hold padding that later steps overwrite before it is
        attended to.
        """
        b, t, _ = x.shape
        capacity = capacity or self.n_ctx
        attn = self.blocks[0].attn
        k, v = self_kv(x, weights, self.n_head)
        x = decoder_block(x, k, v, cross_k, cross_v, weights, self.n_head, attn.attn_implementation,
                          self.causal_mask[:t, :t], attn.flash_causal_mask)
        if capacity == t:
            return x, k, v
        tail = ops.zeros((b, k.shape[1], capacity - t, k.shape[3]), k.dtype)
        return x, _CONCAT_SEQ((k, tail)), _CONCAT_SEQ((v, tail))

    def prefill(self, tokens, gather_at, cross_k, cross_v):
        """Run a (possibly right-padded) prompt `tokens` (B, T) from position 0.

        Returns the logits at the positions `gather_at` (B, len(gather_at), n_vocab) and a fresh self-attention
        cache, a tuple of (B, H, n_ctx, Dh) per layer for keys and for values. Tuples, not stacked tensors: indexing
        a stacked tensor inside a CPU graph costs ~14 ms per slice; callers pass the tuples as `mindspore.mutable`.
        """
        x = self.embed(tokens)
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = self.prompt_block(x, block.decoder_weights(), cross_k[i], cross_v[i])
            ks.append(k)
            vs.append(v)
        return self.logits(_GATHER(x, gather_at, 1)), tuple(ks), tuple(vs)

    def step(self, tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=None, rows=None):
        """Decode one token per row (B, 1) at position `offset`, writing its keys/values into the caches.

        The caches (B, H, capacity, Dh) may hold fewer than n_ctx positions (the runtime grows them as a window's
        text grows): each step reads and rewrites the whole cache, so its size is what a step's memory traffic
        scales with. `rows` (B,) reorders the self-attention caches first (beam search: row i continues row
        rows[i]); doing it inside the graph saved the eager gathers per layer that cost more than the reordering.
        """
        x = self.token_embedding(tokens) + _GATHER(self.positional_embedding, offset.reshape(1), 0).astype(
            self.token_embedding.weight.dtype)
        positions = self.positions[: self_k[0].shape[2]]
        # The new keys/values are blended in: cache * (1 - here) + new * here is exact for 0/1 `here` and fuses into
        # one loop; a Select was not fusible (fusion.py).
        here = (positions == offset).astype(x.dtype).reshape(1, 1, -1, 1)
        keep = 1 - here
        mask = ((positions > offset).astype(ms.float32) * MASKED).reshape(1, 1, 1, -1)
        kv_length = offset + 1
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            k, v = self_kv(x, block.decoder_weights(), self.n_head)
            cached_k, cached_v = self_k[i], self_v[i]
            if rows is not None:
                cached_k, cached_v = _GATHER(cached_k, rows, 0), _GATHER(cached_v, rows, 0)
            k = cached_k * keep + k * here
            v = cached_v * keep + v * here
            x = block.decode(x, k, v, mask, cross_k[i], cross_v[i], kv_length=kv_length)
            new_k.append(k)
            new_v.append(v)
        # reshape, not [:, 0]: that StridedSlice cost ~1.9 ms per step on CPU (profiled).
        return self.logits(x, embedding_t).reshape(x.shape[0], -1), tuple(new_k), tuple(new_v)

    def cross_attention_weights(self, tokens, cross_k, cross_v):
        """Logits (B, T, n_vocab) of a whole sequence from position 0, and every layer's cross-attention weights
        (B, H, T, n_audio_ctx), computed the eager way (fused kernels return no weights): for word timestamps."""
        t = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:t].astype(self.token_embedding.weight.dtype)
        mask = self.causal_mask[:t, :t]
        weights = []
        for i, block in enumerate(self.blocks):
            h = block.attn_ln(x)
            k, v = block.attn.project_kv(h)
            x = x + block.attn.attend(h, k, v, mask)[0]
            h, w = block.cross_attn.attend(block.cross_attn_ln(x), cross_k[i], cross_v[i])
            x = x + h
            x = x + block.mlp(block.mlp_ln(x))
            weights.append(w)
        return self.logits(x), tuple(weights)


class Whisper(nn.Cell):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.name = None            # set by load_model: "tiny.en", ...
        self.tokenizer_path = None  # set by load_model: the checkpoint's tokenizer.json
        self.alignment_heads = None
        self.runtime = None
        self._inference = None
        self.encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head,
                                    dims.n_audio_layer)
        self.decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head,
                                   dims.n_text_layer)

    @property
    def is_multilingual(self):
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self):
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)

    def embed_audio(self, mel):
        return self.encoder(mel)

    @property
    def inference(self):
        """Compiled entry points, built on first use (see inference.py)."""
        if self._inference is None:
            from .inference import Inference
            self._inference = Inference(self, compiled=self.runtime is None or self.runtime.jit)
        return self._inference

    def decode(self, mel, options=None, **kwargs):
        from .decoding import decode
        return decode(self, mel, options, **kwargs)

    def detect_language(self, mel):
        from .decoding import detect_language
        return detect_language(self, mel)

    def transcribe(self, audio, **kwargs):
        from .transcribe import transcribe
        return transcribe(self, audio, **kwargs)
