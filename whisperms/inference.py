"""Compiled entry points of a loaded model: encoder, cross-attention K/V, prompt prefill and one-token step.

Each is a `mindspore.jit` function over static shapes: the encoder per batch size, the prefill per prompt bucket
(prompts are right-padded to the next bucket), the step per batch size. So a long transcription compiles a small,
fixed number of graphs, and each decoded token costs one graph call and one host sync. Tuples of per-layer tensors
are passed as `mutable`: without it, jit treats a new tuple as a new constant and recompiles on every step.

Compiling is paid per process (CPU, tiny.en: encoder ~1.7 s, a prefill bucket ~2 s, the step ~1.7 s, cross K/V
~0.4 s), so graphs are only built where they pay off. The step always runs compiled: it runs for every token. The
once-per-window entry points run eagerly (PyNative) for their first calls and are compiled when called again
(`EAGER_CALLS`): one 30-s window is decoded without compiling the encoder, and prompts of up to
`STEP_PROMPT_MAX` tokens (a window without previous text) are fed through the step graph instead of a prefill graph.
MindSpore's own compile cache is not used: its cached graphs are matched by compile order, not by shapes, so a
process that compiles in a different order runs the wrong graphs (seen here with two toy shapes).
"""
from collections import Counter

import numpy as np
import mindspore as ms
from mindspore import Tensor, mutable

from .kv_cache import KVCache

PROMPT_BUCKETS = (8, 32, 64, 128, 256)
STEP_PROMPT_MAX = 8
# Eager calls of each entry point (per input shape) before it is compiled. Measured on CPU, tiny.en: encoder eager
# 1.2 s vs compiled 0.56 s + 1.7 s compile; cross K/V 0.08 s vs 0.4 s compile; a prefill bucket 0.4-0.7 s vs
# 0.1 s + ~2 s compile.
EAGER_CALLS = {"encode": 1, "cross_kv": 4, "prefill": 2}


class _Graph:
    """`fn` run eagerly for its first `eager_calls` calls with a given key (shapes), compiled after that."""

    def __init__(self, fn, eager_calls=0):
        self.fn = fn
        self.compiled = ms.jit(fn)
        self.eager_calls = eager_calls
        self.calls = Counter()

    def __call__(self, key, *args):
        self.calls[key] += 1
        if self.calls[key] <= self.eager_calls:
            return self.fn(*args)
        return self.compiled(*args)


class Inference:
    """`compiled=False` runs every entry point eagerly: the reference the compiled path is tested against."""

    def __init__(self, model, compiled=True):
        self.model = model
        self.n_ctx = model.dims.n_text_ctx
        encoder, decoder = model.encoder, model.decoder
        eager = (lambda name: EAGER_CALLS[name]) if compiled else (lambda name: float("inf"))

        def encode(mel):
            return encoder(mel)

        def cross_kv(audio_features):
            return decoder.cross_kv(audio_features)

        def prefill(tokens, gather_at, cross_k, cross_v):
            return decoder.prefill(tokens, gather_at, cross_k, cross_v)

        def step(tokens, offset, self_k, self_v, cross_k, cross_v):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v)

        self._encode = _Graph(encode, eager("encode"))
        self._cross_kv = _Graph(cross_kv, eager("cross_kv"))
        self._prefill = _Graph(prefill, eager("prefill"))
        self._step = _Graph(step, 0 if compiled else float("inf"))

    def embed_audio(self, mel):
        """mel (B, n_mels, N_FRAMES) numpy -> audio features Tensor (B, n_audio_ctx, n_audio_state)."""
        return self._encode(mel.shape, Tensor(np.ascontiguousarray(mel, np.float32)))

    def bucket(self, length):
        for size in PROMPT_BUCKETS:
            if length <= size:
                return size
        return self.n_ctx

    def start(self, audio_features, tokens, gather_at):
        """Run the prompt `tokens` (B, T) int; return logits at positions `gather_at` (B, len, V) and the cache."""
        tokens = np.asarray(tokens, np.int32)
        b, t = tokens.shape
        if t >= self.n_ctx:
            raise ValueError(f"prompt of {t} tokens does not fit the {self.n_ctx}-token context")
        cross_k, cross_v = self._cross_kv(audio_features.shape, audio_features)
        # Eager (PyNative) results can be strided views (split_heads' transpose); a graph fed a view copies it to a
        # contiguous tensor on every call, which made each step 3x slower. Copy once per window instead.
        cross_k = tuple(k.contiguous() for k in cross_k)
        cross_v = tuple(v.contiguous() for v in cross_v)
        if t <= STEP_PROMPT_MAX:
            return self._start_by_steps(tokens, gather_at, cross_k, cross_v)
        bucket = self.bucket(t)
        padded = np.zeros((b, bucket), np.int32)
        padded[:, :t] = tokens
        gather_at = np.asarray(gather_at, np.int32)
        logits, self_k, self_v = self._prefill((b, bucket, gather_at.shape), Tensor(padded), Tensor(gather_at),
                                               mutable(cross_k), mutable(cross_v))
        return logits.asnumpy(), KVCache(self_k, self_v, cross_k, cross_v, t)

    def _start_by_steps(self, tokens, gather_at, cross_k, cross_v):
        """A short prompt fed one token at a time through the step graph (no prefill graph to compile)."""
        b, t = tokens.shape
        dims = self.model.dims
        head_dim = dims.n_text_state // dims.n_text_head
        dtype = cross_k[0].dtype
        empty = tuple(ms.ops.zeros((b, dims.n_text_head, self.n_ctx, head_dim), dtype)
                      for _ in range(dims.n_text_layer))
        cache = KVCache(empty, empty, tuple(cross_k), tuple(cross_v), 0)
        picked = {}
        for position in range(t):
            logits, cache = self.step(tokens[:, position], cache)
            picked[position] = logits
        return np.stack([picked[int(i)] for i in gather_at], axis=1), cache

    def step(self, tokens, cache):
        """Feed one token per row (B,) at position cache.length; return logits (B, V) and the next cache."""
        if cache.length >= self.n_ctx:
            raise ValueError(f"decoding ran past the {self.n_ctx}-token context")
        tokens = Tensor(np.asarray(tokens, np.int32).reshape(-1, 1))
        logits, self_k, self_v = self._step(tokens.shape, tokens, Tensor(np.int32(cache.length)), mutable(cache.self_k),
                                            mutable(cache.self_v), mutable(cache.cross_k), mutable(cache.cross_v))
        return logits.asnumpy(), KVCache(self_k, self_v, cache.cross_k, cache.cross_v, cache.length + 1)

    def cross_attention(self, audio_features, tokens, heads):
        """Logits (T, V) and log cross-attention weights (len(heads), T, n_audio_ctx) of `tokens` for word timing.

        Runs once per window with weights requested, so it stays in PyNative (eager attention) rather than adding
        a graph per token count. Log weights equal the pre-softmax scores up to a per-row constant, which the
        softmax over a frame range in timing.py cancels.
        """
        tokens = Tensor(np.asarray([tokens], np.int32))
        cross_k, cross_v = self._cross_kv(audio_features.shape, audio_features)
        logits, weights = self.model.decoder.cross_attention_weights(tokens, cross_k, cross_v)
        picked = np.stack([weights[layer].asnumpy()[0, head] for layer, head in heads])
        return logits.asnumpy()[0], np.log(np.maximum(picked, np.finfo(np.float32).tiny))
