"""Compiled entry points of a loaded model: encoder, cross-attention K/V, prompt prefill and one-token step.

Each is a `mindspore.jit` function over static shapes, so a long transcription compiles a small, fixed number of
graphs (at most: encoder stem, encoder block, ln_post, a layer's cross K/V, a prompt block per bucket used, prompt
logits, and one step graph per batch size), and each decoded token costs one graph call and one host sync. Tuples of
per-layer tensors are passed as `mutable`: without it, jit treats a new tuple as a new constant and recompiles every
step.

Compiling is paid once per process and costs more than running (CPU, tiny.en, kernels cached: ~1.2 s for the step
graph, ~0.4-0.6 s for an encoder block, ~0.4 s for the stem, ~0.17 s for a layer's cross K/V; mostly MindSpore's
frontend, a few ms per op), so:
- the encoder, the prompt and the cross K/V run layer by layer, one graph for all layers with the weights as inputs
  (the unrolled encoder compiled in ~1.7 s and kept every layer's activations in memory; an unrolled prompt graph
  ~2 s per bucket; the unrolled cross K/V 0.34 s, so it ran eagerly, 2-3x slower, for a process's first windows);
- prompts of up to `STEP_PROMPT_MAX` tokens (a window without previous text) go through the step graph.
The step is one unrolled graph: it runs for every token, where per-layer calls would add their dispatch cost.
On CPU every graph is compiled with graph-kernel fusion (fusion.py).
MindSpore's own compile cache is not used: its cached graphs are matched by compile order, not by shapes, so a
process that compiles in a different order runs the wrong graphs (reproduced with two toy shapes), and graphs of
free functions came back with garbage parameters (NaN logits). whisperms keeps its own (graph_cache.py): each entry
point's graph is saved as MindIR after its first compile, under a name hashed from everything it depends on, and
later processes load it, skipping the frontend (CPU float32 with eager attention, the tested case; elsewhere graphs
compile as above).
"""
import warnings
from collections import Counter

import numpy as np
import mindspore as ms
from mindspore import Tensor, mutable
from mindspore.graph.api import _cell_graph_executor

from .attention import EAGER
from .fusion import fused_compile
from .graph_cache import GraphCache, graph_folder
from .kv_cache import KVCache

PROMPT_BUCKETS = (8, 32, 64, 128, 256)
STEP_PROMPT_MAX = 8
# Sizes the self-attention cache grows through (then n_text_ctx): every step reads and rewrites the whole cache,
# and beam search also reorders it, so a cache sized to the text so far keeps that traffic small; each size is one
# more step graph.
CACHE_BUCKETS = (64, 128, 256)


class _Graph:
    """`fn` compiled (or run eagerly when not `compiled`); with `fuse`, the compile (the first call per key, the
    input shapes) fuses elementwise ops (fusion.py). With a graph `cache`, a graph saved by an earlier process is
    loaded instead of compiled, and a compiled one is saved; a failure of the cache only costs its benefit."""

    def __init__(self, name, fn, compiled=True, fuse=False, cache=None):
        self.name = name
        self.fn = fn
        self.compiled = ms.jit(fn) if compiled else None
        self.fuse = fuse and compiled
        self.cache = cache if compiled else None
        self.loaded = {}  # key -> runner() of the GraphCell loaded from the cache
        self.calls = Counter()

    def __call__(self, key, *args):
        if self.compiled is None:
            return self.fn(*args)
        self.calls[key] += 1
        if self.calls[key] > 1:
            run = self.loaded.get(key)
            return run(*args) if run is not None else self.compiled(*args)
        if self.cache is None:
            return self._first_call(self.compiled, args)
        cell = self._cached(lambda: self.cache.load(self.name, args))
        # A saved graph that does not compile here warns and is compiled instead (`out` is never None otherwise).
        out = self._cached(lambda: self._first_call(cell, args)) if cell is not None else None
        if out is not None:
            self.loaded[key] = runner(cell)
            return out
        before = self.cache.phases()
        out = self._first_call(self.compiled, args)
        self._cached(lambda: self.cache.save(self.name, args, before))
        return out

    def _cached(self, action):
        """`action()` on the graph cache; on failure, a warning and None (the graph is compiled as without it)."""
        try:
            return action()
        except Exception as error:
            _warn(f"graph cache: {self.name}: {_first_line(error)}")
            return None

    def _first_call(self, compiled, args):
        """The call that compiles: fused when asked; if kernel generation fails, unfused, as without fusion.py."""
        if not self.fuse:
            return compiled(*args)
        try:
            with fused_compile():
                return compiled(*args)
        except Exception as error:
            _warn(f"fused compile failed ({_first_line(error)}); compiling without fusion")
            self.fuse = False
            if compiled is self.compiled:
                self.compiled = compiled = ms.jit(self.fn)
            return compiled(*args)


def runner(cell):
    """Calls of a GraphCell that already compiled: its `__call__` regenerates the compile key from every input on
    each call (~1 ms of a 12-ms tiny.en step, measured when the step took its weights as inputs); this runs the
    compiled graph directly."""
    flags = list(cell._has_mutable_args_list or [])
    modified = cell.sequence_modified or []

    def run(*args):
        inputs = _cell_graph_executor._graph_executor.get_args_for_run(cell, args, {}, flags, modified, False, False)
        return _cell_graph_executor(cell, *inputs, phase=cell.phase)

    return run


def _inputs(weights):
    """Parameters as graph inputs: plain tensors sharing their memory, in `mutable` tuples. A GraphCell keys its
    compiled graph on Parameter identity (each layer's weights compiled again, ~0.1-0.2 s per layer), a plain
    tensor on shape and dtype only."""
    if isinstance(weights, tuple):
        return mutable(tuple(_inputs(w) for w in weights))
    return Tensor.from_numpy(weights.asnumpy())


def _first_line(error):
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _warn(message):
    warnings.warn(f"whisperms: {message}", RuntimeWarning, stacklevel=4)


class Inference:
    """`compiled=False` runs every entry point eagerly: the reference the compiled path is tested against.
    `fuse` (default: on CPU) compiles with graph-kernel fusion (fusion.py). `graph_cache`: a folder for the
    graph cache (graph_cache.py), False for none; default from `$WHISPERMS_GRAPH_CACHE`."""

    def __init__(self, model, compiled=True, fuse=None, graph_cache=None):
        self.model = model
        self.n_ctx = model.dims.n_text_ctx
        encoder, decoder = model.encoder, model.decoder
        runtime = model.runtime
        device = runtime.device if runtime is not None else ms.get_context("device_target")
        tested = runtime is None or (runtime.attn_implementation == EAGER and runtime.dtype == "float32")
        # Fusion is what runs (and is tested) on CPU in float32 with eager attention; the Ascend kernels' CPU
        # stand-ins in the tests (float16 casts, int64 lengths) came out as NaN when fused, so anything else
        # compiles unfused. The graph cache is verified for the same case only (graph_cache.py).
        self.fuse = (compiled and device == "CPU" and tested) if fuse is None else fuse
        folder = graph_folder() if graph_cache is None else graph_cache
        cache = None
        if compiled and folder and device == "CPU" and tested:
            described = runtime and [runtime.dtype, runtime.attn_implementation, runtime.conv]
            cache = GraphCache(folder, [model.dims.to_dict(), device, described], model.parameters_dict())
        self.graph_cache = cache

        from .model import encoder_block, project_kv

        n_head, implementation = encoder.blocks[0].attn.n_head, encoder.blocks[0].attn.attn_implementation

        # The per-layer graphs take their layer's weights as inputs: one graph serves every layer. The others read
        # the model's parameters, which a cached graph binds by name (graph_cache.py).
        def stem(mel):
            return encoder.stem(mel)

        def block(x, weights):
            return encoder_block(x, weights, n_head, implementation)

        def post(x):
            return encoder.ln_post(x)

        def cross_kv_layer(audio_features, weights):
            return project_kv(audio_features, weights, decoder.n_head)

        def prompt_block(x, weights, cross_k, cross_v):  # a cache of the padded prompt's size, grown after
            return decoder.prompt_block(x, weights, cross_k, cross_v, capacity=x.shape[1])

        def prompt_logits(x):
            return decoder.logits(x)

        # The step graphs read the model's parameters: each passed as an input cost ~2.6 ms more per tiny.en step
        # (10.1 vs 12.7 ms, same process); a cached step graph's parameters are bound to the model's by name.
        def step(tokens, offset, self_k, self_v, cross_k, cross_v):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v)

        def step_t(tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=embedding_t)

        def step_rows(tokens, offset, self_k, self_v, cross_k, cross_v, rows):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v, rows=rows)

        def graph(fn):
            return _Graph(fn.__name__, fn, compiled, self.fuse, cache)

        self._stem = graph(stem)
        self._block = graph(block)
        self._block_weights = [_inputs(b.encoder_weights()) for b in encoder.blocks]
        self._post = graph(post)
        self._cross_kv = graph(cross_kv_layer)
        self._cross_kv_weights = [_inputs(b.cross_attn.kv_weights()) for b in decoder.blocks]
        self._prompt_block = graph(prompt_block)
        self._prompt_logits = graph(prompt_logits)
        self._decoder_weights = [_inputs(b.decoder_weights()) for b in decoder.blocks]
        self._step = graph(step)
        # Greedy steps (one row) on CPU project with a transposed copy of the embedding (+n_vocab x D floats): see
        # TextDecoder.logits. Batches (beams) keep transpose_b, which was faster for 5 rows (7.7 vs 10.4 ms).
        self._step_t = graph(step_t)
        self._step_rows = graph(step_rows)
        self._embedding_t = None
        if model.runtime is not None and model.runtime.device == "CPU":
            weight = decoder.token_embedding.weight
            # from_numpy shares the copy's memory: Tensor(array) copied it again (+80 MB, transient, for tiny.en)
            self._embedding_t = Tensor.from_numpy(np.ascontiguousarray(weight.asnumpy().T))

    def embed_audio(self, mel):
        """mel (B, n_mels, N_FRAMES) numpy -> audio features Tensor (B, n_audio_ctx, n_audio_state)."""
        x = self._stem(mel.shape, Tensor(np.ascontiguousarray(mel, np.float32)))
        for weights in self._block_weights:
            x = self._block(mel.shape, x, weights)
        return self._post(mel.shape, x)

    def cross_kv(self, audio_features):
        """Cross-attention keys and values of a window, a tuple of (B, H, n_audio_ctx, Dh) per layer."""
        keys, values = [], []
        for weights in self._cross_kv_weights:
            k, v = self._cross_kv(audio_features.shape, audio_features, weights)
            # Eager (PyNative) results can be strided views (split_heads' transpose); a graph fed a view copies it to
            # a contiguous tensor on every call, which made each step 3x slower. Copy once per window instead.
            keys.append(k.contiguous())
            values.append(v.contiguous())
        return tuple(keys), tuple(values)

    def bucket(self, length):
        for size in PROMPT_BUCKETS:
            if length <= size:
                return size
        return self.n_ctx

    def capacity(self, length):
        """The cache size for `length` positions and the next token's: the smallest of CACHE_BUCKETS, or n_ctx."""
        for size in CACHE_BUCKETS:
            if length < size <= self.n_ctx:
                return size
        return self.n_ctx

    def start(self, audio_features, tokens, gather_at):
        """Run the prompt `tokens` (B, T) int; return logits at positions `gather_at` (B, len, V) and the cache."""
        tokens = np.asarray(tokens, np.int32)
        b, t = tokens.shape
        if t >= self.n_ctx:
            raise ValueError(f"prompt of {t} tokens does not fit the {self.n_ctx}-token context")
        cross_k, cross_v = self.cross_kv(audio_features)
        if t <= STEP_PROMPT_MAX:
            return self._start_by_steps(tokens, gather_at, cross_k, cross_v)
        return self._prefill(tokens, gather_at, cross_k, cross_v)

    def _prefill(self, tokens, gather_at, cross_k, cross_v):
        """A prompt right-padded to its bucket, run block by block: one graph per bucket serves every layer (the
        weights are inputs), where the unrolled prefill compiled for ~2 s per bucket."""
        b, t = tokens.shape
        bucket = self.bucket(t)
        padded = np.zeros((b, bucket), np.int32)
        padded[:, :t] = tokens
        x = self.model.decoder.embed(Tensor(padded))
        self_k, self_v = [], []
        for weights, k_cross, v_cross in zip(self._decoder_weights, cross_k, cross_v):
            x, k, v = self._prompt_block((b, bucket), x, weights, k_cross, v_cross)
            self_k.append(k)
            self_v.append(v)
        picked = ms.ops.gather(x, Tensor(np.asarray(gather_at, np.int32)), 1)
        logits = self._prompt_logits(picked.shape, picked)
        cache = KVCache(tuple(self_k), tuple(self_v), cross_k, cross_v, t)  # sized to the padded prompt
        return logits.asnumpy(), cache.grown(self.capacity(t))

    def _start_by_steps(self, tokens, gather_at, cross_k, cross_v):
        """A short prompt fed one token at a time through the step graph (no prefill graph to compile)."""
        b, t = tokens.shape
        dims = self.model.dims
        head_dim = dims.n_text_state // dims.n_text_head
        dtype = cross_k[0].dtype
        empty = tuple(ms.ops.zeros((b, dims.n_text_head, self.capacity(t), head_dim), dtype)
                      for _ in range(dims.n_text_layer))
        cache = KVCache(empty, empty, tuple(cross_k), tuple(cross_v), 0)
        picked = {}
        for position in range(t):
            logits, cache = self.step(tokens[:, position], cache)
            picked[position] = logits
        return np.stack([picked[int(i)] for i in gather_at], axis=1), cache

    def step(self, tokens, cache, rows=None):
        """Feed one token per row (B,) at position cache.length; return logits (B, V) and the next cache.

        With `rows`, the cache is first reordered as `cache.reorder(rows)` would, inside the same graph call.
        """
        if cache.length >= self.n_ctx:
            raise ValueError(f"decoding ran past the {self.n_ctx}-token context")
        cache = cache.grown(self.capacity(cache.length))
        tokens = Tensor(np.asarray(tokens, np.int32).reshape(-1, 1))
        args = (tokens, Tensor(np.int32(cache.length)), mutable(cache.self_k), mutable(cache.self_v),
                mutable(cache.cross_k), mutable(cache.cross_v))
        key = (tokens.shape, cache.capacity)
        if rows is not None:
            rows = Tensor(np.asarray(rows, np.int32))
            logits, self_k, self_v = self._step_rows(key, *args, rows)
        elif tokens.shape[0] == 1 and self._embedding_t is not None:
            logits, self_k, self_v = self._step_t(key, *args, self._embedding_t)
        else:
            logits, self_k, self_v = self._step(key, *args)
        return logits.asnumpy(), KVCache(self_k, self_v, cache.cross_k, cache.cross_v, cache.length + 1)

    def cross_attention(self, audio_features, tokens, heads):
        """Logits (T, V) and log cross-attention weights (len(heads), T, n_audio_ctx) of `tokens` for word timing.

        Runs once per window with weights requested, so it stays in PyNative (eager attention) rather than adding
        a graph per token count. Log weights equal the pre-softmax scores up to a per-row constant, which the
        softmax over a frame range in timing.py cancels.
        """
        tokens = Tensor(np.asarray([tokens], np.int32))
        cross_k, cross_v = self.cross_kv(audio_features)
        logits, weights = self.model.decoder.cross_attention_weights(tokens, cross_k, cross_v)
        picked = np.stack([weights[layer].asnumpy()[0, head] for layer, head in heads])
        return logits.asnumpy()[0], np.log(np.maximum(picked, np.finfo(np.float32).tiny))
