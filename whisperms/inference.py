"""Compiled entry points of a loaded model: encoder, cross-attention K/V, prompt prefill and one-token step.

Each is a `mindspore.jit` function over static shapes: the encoder per batch size, the prefill per prompt bucket
(prompts are right-padded to the next bucket), the step per batch size. So a long transcription compiles a small,
fixed number of graphs, and each decoded token costs one graph call and one host sync. Tuples of per-layer tensors
are passed as `mutable`: without it, jit treats a new tuple as a new constant and recompiles on every step.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, mutable

from .kv_cache import KVCache

PROMPT_BUCKETS = (8, 32, 64, 128, 256)


class Inference:
    def __init__(self, model):
        self.model = model
        self.n_ctx = model.dims.n_text_ctx
        encoder, decoder = model.encoder, model.decoder

        def encode(mel):
            return encoder(mel)

        def cross_kv(audio_features):
            return decoder.cross_kv(audio_features)

        def prefill(tokens, gather_at, cross_k, cross_v):
            return decoder.prefill(tokens, gather_at, cross_k, cross_v)

        def step(tokens, offset, self_k, self_v, cross_k, cross_v):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v)

        self._encode = ms.jit(encode)
        self._cross_kv = ms.jit(cross_kv)
        self._prefill = ms.jit(prefill)
        self._step = ms.jit(step)

    def embed_audio(self, mel):
        """mel (B, n_mels, N_FRAMES) numpy -> audio features Tensor (B, n_audio_ctx, n_audio_state)."""
        return self._encode(Tensor(np.ascontiguousarray(mel, np.float32)))

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
        padded = np.zeros((b, self.bucket(t)), np.int32)
        padded[:, :t] = tokens
        cross_k, cross_v = self._cross_kv(audio_features)
        logits, self_k, self_v = self._prefill(Tensor(padded), Tensor(np.asarray(gather_at, np.int32)),
                                               mutable(cross_k), mutable(cross_v))
        return logits.asnumpy(), KVCache(self_k, self_v, cross_k, cross_v, t)

    def step(self, tokens, cache):
        """Feed one token per row (B,) at position cache.length; return logits (B, V) and the next cache."""
        if cache.length >= self.n_ctx:
            raise ValueError(f"decoding ran past the {self.n_ctx}-token context")
        tokens = Tensor(np.asarray(tokens, np.int32).reshape(-1, 1))
        logits, self_k, self_v = self._step(tokens, Tensor(np.int32(cache.length)), mutable(cache.self_k),
                                            mutable(cache.self_v), mutable(cache.cross_k), mutable(cache.cross_v))
        return logits.asnumpy(), KVCache(self_k, self_v, cache.cross_k, cache.cross_v, cache.length + 1)

    def cross_attention(self, audio_features, tokens, heads):
        """Logits (T, V) and log cross-attention weights (len(heads), T, n_audio_ctx) of `tokens` for word timing.

        Runs once per window with weights requested, so it stays in PyNative (eager attention) rather than adding
        a graph per token count. Log weights equal the pre-softmax scores up to a per-row constant, which the
        softmax over a frame range in timing.py cancels.
        """
        tokens = Tensor(np.asarray([tokens], np.int32))
        cross_k, cross_v = self._cross_kv(audio_features)
        logits, weights = self.model.decoder.cross_attention_weights(tokens, cross_k, cross_v)
        picked = np.stack([weights[layer].asnumpy()[0, head] for layer, head in heads])
        return logits.asnumpy()[0], np.log(np.maximum(picked, np.finfo(np.float32).tiny))
