"""Compiled entry points of a loaded model: encoder, cross-attention K/V, prompt prefill and
one-token step.

Each is a `mindspore.jit` function over static shapes, so a transcription compiles a small, fixed
set of graphs and each decoded token costs one graph call and one host sync. The encoder, the prompt
and the cross K/V run layer by layer through one graph that takes the layer's parameters as inputs;
the step is one unrolled graph. Compiles are fused on CPU (fusion.py) and kept on disk
(graph_cache.py).
"""

import os
from collections import Counter

import mindspore as ms
import numpy as np
from mindspore import Tensor, mutable

from . import compute_thread, core_share
from .attention import EAGER
from .errors import check_same_process, out_of_memory, warn
from .fusion import compiler_available, drop_broken_kernels, fused_compile
from .graph_cache import GraphCache, graph_folder
from .internals import runner
from .kv_cache import HostKVCache, KVCache
from .lazy import InBackground

PROMPT_BUCKETS = (8, 32, 64, 128, 256)
# Prompts up to this long (a window without previous text) are fed through the step graph: no prompt
# graph to compile.
STEP_PROMPT_MAX = 8
# Sizes the self-attention cache grows through (then n_text_ctx): every step reads and rewrites the
# whole cache, and beam search also reorders it, so a cache sized to the text so far keeps that
# traffic small; each size is one more step graph.
CACHE_BUCKETS = (64, 128, 256)
# Rows of the output embedding transposed at a time (transposed): a block stays in the CPU's cache.
TRANSPOSE_BLOCK = 1024
# Steps of at least this many rows (beam search over several windows) run their decoder blocks'
# Linear layers on transposed copies of the weights (wide_layers): for that many rows a plain
# product was the faster CPU kernel than the transposed read of the (n_out, n_in) weight, and gave
# the same bits; for fewer rows, the other way round.
WIDE_STEP_ROWS = 16
# Steps of one row, or of at least this many (a batch of windows, their beams), project onto the
# vocabulary with the transposed copy of the output embedding (Inference.embedding_t): from 7 rows
# the plain product was the faster CPU kernel on an AVX2 EPYC and no slower elsewhere, with the same
# bits; for 2 to 6 rows (one window's beams) neither was faster.
TRANSPOSED_PROJECTION_ROWS = 7
# Linear layers a step never runs (the cross-attention K/V are made once per window): not copied.
NOT_IN_STEPS = ("cross_attn.key.", "cross_attn.value.")


class _Graph:
    """`fn` compiled (or run eagerly when not `compiled`); with `fuse`, the compile (the first call
    per key, the input shapes) fuses elementwise ops (fusion.py). With a graph `cache`, a graph
    saved by an earlier process is loaded instead of compiled, and a compiled one is saved; a
    failure of the cache only costs its benefit. With `on_graph_thread`, every call runs on
    compute_thread's thread (CPU: see there)."""

    def __init__(self, name, fn, compiled=True, fuse=False, cache=None, on_graph_thread=False):
        self.name = name
        self.on_graph_thread = on_graph_thread
        self.fn = fn
        self.compiled = ms.jit(fn) if compiled else None
        self.fuse = fuse and compiled
        self.cache = cache if compiled else None
        self.loaded = {}  # key -> runner() of the GraphCell loaded from the cache
        self.calls = Counter()
        self.pid = os.getpid()

    def __call__(self, key, *args):
        check_same_process(self.pid)
        return compute_thread.run_graph(self._run, key, *args, on_graph_thread=self.on_graph_thread)

    def _run(self, key, *args):
        try:
            return self._call(key, *args)
        except Exception as error:
            if out_of_memory(error):
                # a jit call that ran out of memory fails every later call of it (with another
                # error): the next call of this graph compiles it again
                if self.compiled is not None:
                    self.compiled = ms.jit(self.fn)
                self.calls.clear()
                self.loaded.clear()
            raise

    def _call(self, key, *args):
        if self.compiled is None:
            return self.fn(*args)
        self.calls[key] += 1
        if self.calls[key] > 1:
            run = self.loaded.get(key)
            return run(*args) if run is not None else self.compiled(*args)
        if self.cache is None:
            return self._compile(args)
        cell = self._cached(lambda: self.cache.load(self.name, args))
        # A saved graph that does not compile here warns and is compiled instead (`out` is never
        # None otherwise).
        out = self._cached(lambda: self._first_call(cell, args)) if cell is not None else None
        if out is not None:
            self.loaded[key] = runner(cell)
            return out
        before = self.cache.phases()
        out = self._compile(args)
        self._cached(lambda: self.cache.save(self.name, args, before))
        return out

    def _compile(self, args):
        """fn(*args) through `mindspore.jit`, which compiles it. MindSpore's kernel build server (a
        process) was busy on our cores while this one waited for it: no other process's use of them
        to give one up for, so core_share's next measurement starts after it."""
        out = self._first_call(self.compiled, args)
        core_share.restart()
        return out

    def _cached(self, action):
        """`action()` on the graph cache; on failure, a warning and None (the graph is compiled as
        without it)."""
        try:
            return action()
        except Exception as error:
            if out_of_memory(error):  # the graph's run, not the cache, failed
                raise
            _warn(f"graph cache: {self.name}: {_first_line(error)}")
            return None

    def _first_call(self, compiled, args):
        """The call that compiles: fused when asked; if kernel generation fails, unfused, as without
        fusion.py."""
        if not self.fuse:
            return compiled(*args)
        for attempt in range(2):
            try:
                with fused_compile():
                    return compiled(*args)
            except Exception as error:
                if out_of_memory(error):  # compiled, and ran out of memory
                    raise
                failure = error
            if compiled is self.compiled:  # a jit that failed to compile is not called again
                self.compiled = compiled = ms.jit(self.fn)
            # once more where a kernel the cache held cut short was removed, to be generated again
            if attempt or not drop_broken_kernels():
                break
        _warn(f"fused compile failed ({_first_line(failure)}); compiling without fusion")
        self.fuse = False
        return compiled(*args)


def layer_parameters(block):
    """A block's parameter names (relative to the block, as its Cells address them) and its
    parameters as graph inputs: plain tensors sharing their memory, in a `mutable` tuple (a compiled
    graph is keyed on a Parameter's identity, a plain tensor's shape and dtype only, so one graph
    serves every layer)."""
    named = list(block.parameters_and_names())
    return tuple(name for name, _ in named), mutable(
        tuple(Tensor.from_numpy(p.asnumpy()) for _, p in named)
    )


def step_parameters(block):
    """The parameters a one-token step reads of a decoder block, by name."""
    return [(n, p) for n, p in block.parameters_and_names() if not n.startswith(NOT_IN_STEPS)]


def wide_names(block):
    """The names `TextDecoder.step_apart(layers=...)` finds wide_layers' parameters under: each
    Linear weight's transposed copy as "...weight_t"."""
    return tuple(n + "_t" if p.ndim == 2 else n for n, p in step_parameters(block))


def wide_layers(blocks):
    """Per block, the parameters of wide_names: transposed copies of the Linear weights, the rest
    sharing the model's memory."""
    return tuple(
        mutable(
            tuple(
                Tensor.from_numpy(transposed(p.asnumpy()) if p.ndim == 2 else p.asnumpy())
                for _, p in step_parameters(block)
            )
        )
        for block in blocks
    )


def transposed(matrix, block=TRANSPOSE_BLOCK):
    """A C-contiguous copy of `matrix` (N, D) transposed, `block` rows at a time: a whole-array
    transposed copy walks the source a column at a time, far from the cache."""
    out = np.empty(matrix.shape[::-1], matrix.dtype)
    for start in range(0, matrix.shape[0], block):
        out[:, start : start + block] = matrix[start : start + block].T
    return out


def by_name(names, values):
    """A dict of `values` keyed by `names`, built inside a graph (`dict(zip(...))` there would run
    through Python)."""
    return {names[i]: values[i] for i in range(len(names))}


def _first_line(error):
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _joined(audio_features):
    """Audio features (A, n_audio_ctx, D) as given, or a list of A (1, n_audio_ctx, D) joined."""
    if isinstance(audio_features, (list, tuple)):
        return ms.ops.concat(list(audio_features), 0)
    return audio_features


def _warn(message):
    warn(f"whisperms: {message}", RuntimeWarning)


class Inference:
    """Entry points for `model` on `runtime` (default: the one it was loaded for). `compiled=False`
    runs every entry point eagerly: the reference the compiled path is tested against. `fuse`
    (default: on CPU) compiles with graph-kernel fusion (fusion.py). `graph_cache`: a folder for the
    graph cache (graph_cache.py), False for none; default from `$WHISPERMS_GRAPH_CACHE`.
    `host_cache` (default: on CPU, eager attention) keeps the self-attention cache in host arrays
    (kv_cache.HostKVCache); False keeps it in tensors the step graph rewrites (KVCache), as on
    Ascend."""

    def __init__(
        self, model, runtime=None, compiled=True, fuse=None, graph_cache=None, host_cache=None
    ):
        runtime = runtime or model.runtime
        self.model = model
        self.n_ctx = model.dims.n_text_ctx
        encoder, decoder = model.encoder, model.decoder
        # Fusion and the graph cache are what runs (and is tested) on CPU in float32 with eager
        # attention; the Ascend kernels' CPU stand-ins in the tests (float16 casts, int64 lengths)
        # came out as NaN when fused.
        tested = (
            runtime.device == "CPU"
            and runtime.attn_implementation == EAGER
            and runtime.dtype == "float32"
        )
        self.fuse = (compiled and tested and compiler_available()) if fuse is None else fuse
        # On CPU the self-attention cache lives in host arrays written in place (HostKVCache), read
        # by a step that attends to its own new position apart (TextDecoder.step_apart).
        on_host = runtime.device == "CPU" and runtime.attn_implementation == EAGER
        self.host_cache = on_host if host_cache is None else host_cache and on_host
        folder = graph_folder() if graph_cache is None else graph_cache
        cache = None
        if compiled and folder and tested:
            described = [runtime.dtype, runtime.attn_implementation, runtime.conv]
            cache = GraphCache(
                folder, [model.dims.to_dict(), runtime.device, described], model.parameters_dict()
            )
        self.graph_cache = cache

        # The per-layer graphs run the first block's code with a layer's parameters given by name:
        # one graph serves every layer. The others read the model's parameters, which a cached graph
        # binds by name.
        encoder_block, decoder_block = encoder.blocks[0], decoder.blocks[0]
        encoder_names, self._block_weights = zip(*(layer_parameters(b) for b in encoder.blocks))
        decoder_names, self._decoder_weights = zip(*(layer_parameters(b) for b in decoder.blocks))
        encoder_names, decoder_names = encoder_names[0], decoder_names[0]

        def stem(mel):
            return encoder.stem(mel)

        def block(x, weights):
            return encoder_block(x, None, None, None, by_name(encoder_names, weights))[0]

        def post(x):
            return encoder.ln_post(x)

        def cross_kv_layer(audio_features, weights):
            return decoder_block.cross_attn.key_value(
                audio_features, by_name(decoder_names, weights), "cross_attn."
            )

        # a cache of the padded prompt's size, grown after
        def prompt_block(x, weights, cross_k, cross_v):
            params = by_name(decoder_names, weights)
            x, (k, v), _ = decoder_block(
                x, (cross_k, cross_v), decoder.prompt_mask(x.shape[1]), None, params
            )
            return x, k, v

        def prompt_logits(x):
            return decoder.logits(x)

        # The step graphs read the model's parameters: passed as inputs they made every step slower.
        def step(tokens, offset, self_k, self_v, cross_k, cross_v):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v)

        def step_t(tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t):
            return decoder.step(
                tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=embedding_t
            )

        def step_rows(tokens, offset, self_k, self_v, cross_k, cross_v, rows):
            return decoder.step(tokens, offset, self_k, self_v, cross_k, cross_v, rows=rows)

        def step_apart(tokens, offset, self_k, self_v, cross_k, cross_v):
            return decoder.step_apart(tokens, offset, self_k, self_v, cross_k, cross_v)

        def step_apart_t(tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t):
            return decoder.step_apart(
                tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t=embedding_t
            )

        names_wide = wide_names(decoder_block)

        def step_apart_wide(tokens, offset, self_k, self_v, cross_k, cross_v, layers, embedding_t):
            params = tuple(by_name(names_wide, weights) for weights in layers)
            return decoder.step_apart(
                tokens, offset, self_k, self_v, cross_k, cross_v, embedding_t, params
            )

        def graph(fn):
            return _Graph(fn.__name__, fn, compiled, self.fuse, cache, runtime.device == "CPU")

        self._stem = graph(stem)
        self._block = graph(block)
        self._post = graph(post)
        self._cross_kv = graph(cross_kv_layer)
        self._prompt_block = graph(prompt_block)
        self._prompt_logits = graph(prompt_logits)
        self._step = graph(step)
        # One-row steps on CPU, and those of TRANSPOSED_PROJECTION_ROWS or more, project with a
        # transposed copy of the embedding (TextDecoder.logits); a window's beams keep transpose_b.
        self._step_t = graph(step_t)
        self._step_rows = graph(step_rows)
        self._step_apart = graph(step_apart)
        self._step_apart_t = graph(step_apart_t)
        self._step_apart_wide = graph(step_apart_wide)
        self._wide = None  # wide_layers(decoder.blocks), made at the first wide step
        self._embedding_t = None
        if runtime.device == "CPU":
            # made while the first window is encoded: the copy (and its first touch of fresh
            # memory) releases the GIL, and a cold process's first graph calls leave a core free
            weight = decoder.token_embedding.weight.asnumpy()
            self._embedding_t = InBackground(lambda: transposed(weight))

    @property
    def embedding_t(self):
        """The output embedding transposed (CPU's one-row steps), once made; None elsewhere."""
        if isinstance(self._embedding_t, InBackground):
            # from_numpy shares the copy's memory, where Tensor(array) would copy it again
            self._embedding_t = Tensor.from_numpy(self._embedding_t.get())
        return self._embedding_t

    def embed_audio(self, mel):
        """mel (B, n_mels, N_FRAMES) numpy -> audio features Tensor (B, n_audio_ctx,
        n_audio_state)."""
        x = self._stem(mel.shape, Tensor(np.ascontiguousarray(mel, np.float32)))
        for weights in self._block_weights:
            x = self._block(mel.shape, x, weights)
        return self._post(mel.shape, x)

    def cross_kv(self, audio_features):
        """Cross-attention keys and values of a window, a tuple of (B, H, n_audio_ctx, Dh) per
        layer."""
        keys, values = [], []
        for weights in self._decoder_weights:
            k, v = self._cross_kv(audio_features.shape, audio_features, weights)
            # Eager (PyNative) results can be strided views (split_heads' transpose); a graph fed a
            # view copies it to a contiguous tensor on every call. Copy once per window instead.
            keys.append(k.contiguous())
            values.append(v.contiguous())
        return tuple(keys), tuple(values)

    def bucket(self, length):
        for size in PROMPT_BUCKETS:
            if length <= size:
                return size
        return self.n_ctx

    def capacity(self, length):
        """The cache size for `length` positions and the next token's: the smallest of
        CACHE_BUCKETS, or n_ctx."""
        for size in CACHE_BUCKETS:
            if length < size <= self.n_ctx:
                return size
        return self.n_ctx

    def start(self, audio_features, tokens, gather_at):
        """Run the prompt `tokens` (B, T) int; return logits at positions `gather_at` (B, len, V)
        and the cache."""
        tokens = np.asarray(tokens, np.int32)
        b, t = tokens.shape
        if t >= self.n_ctx:
            raise ValueError(f"prompt of {t} tokens does not fit the {self.n_ctx}-token context")
        cross_k, cross_v = self.cross_kv(audio_features)
        if t <= STEP_PROMPT_MAX:
            return self._start_by_steps(tokens, gather_at, cross_k, cross_v)
        return self._prefill(tokens, gather_at, cross_k, cross_v)

    def start_batch(self, audio_features, prompts, gather_at, group=1):
        """One prompt per audio (audio_features (A, n_audio_ctx, D), or a list of A features
        (1, n_audio_ctx, D)), of any lengths, each run as `start` runs it; returns logits
        (A, len(gather_at[i]), V) and one cache whose rows are each audio's state repeated `group`
        times (its beams or samples, consecutive)."""
        audio_features = _joined(audio_features)
        if len({len(p) for p in prompts}) == 1 and all(g == gather_at[0] for g in gather_at):
            # prompts of one length (the common case: no prompt) run as one batch
            logits, cache = self.start(audio_features, [list(p) for p in prompts], gather_at[0])
            if group > 1:
                cache = cache.reorder(np.repeat(np.arange(len(prompts)), group))
            return logits, cache
        logits, caches = [], []
        for i, (prompt, gather) in enumerate(zip(prompts, gather_at)):
            out, cache = self.start(audio_features[i : i + 1], [list(prompt)], gather)
            logits.append(out[0])
            caches.append(cache)
        return np.stack(logits), type(caches[0]).stack(caches, group)

    def empty_start(self, audio_features, length, group=1):
        """For prompts of `length` tokens fed through the step graph one position at a time by
        the caller (window_slots: within a running batch's steps, as `start` feeds them alone): an
        empty host cache of `group` rows per audio (audio_features a list of (1, n_audio_ctx, D)
        or (A, n_audio_ctx, D)) with the audios' cross-attention K/V; None where `start` would not
        feed such a prompt by steps, or the cache is not on the host."""
        if not self.host_cache or length > STEP_PROMPT_MAX:
            return None
        audio_features = _joined(audio_features)
        cross_k, cross_v = self.cross_kv(audio_features)
        return self._empty_cache(audio_features.shape[0] * group, length, cross_k, cross_v)

    def _empty_cache(self, rows, length, cross_k, cross_v):
        """A cache of `rows` rows with nothing written, sized for `length` positions."""
        dims = self.model.dims
        head_dim = dims.n_text_state // dims.n_text_head
        shape = (rows, dims.n_text_head, self.capacity(length), head_dim)
        cross_k, cross_v = tuple(cross_k), tuple(cross_v)
        if self.host_cache:
            dtype = cross_k[0].asnumpy().dtype
            return HostKVCache.empty(dims.n_text_layer, *shape, cross_k, cross_v, dtype)
        empty = tuple(ms.ops.zeros(shape, cross_k[0].dtype) for _ in range(dims.n_text_layer))
        return KVCache(empty, empty, cross_k, cross_v, np.zeros(rows, np.int64))

    def _prefill(self, tokens, gather_at, cross_k, cross_v):
        """A prompt right-padded to its bucket, run block by block: one graph per bucket serves
        every layer."""
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
        # sized to the padded prompt
        cache = KVCache(tuple(self_k), tuple(self_v), cross_k, cross_v, np.full(b, t))
        if self.host_cache:
            cache = HostKVCache.of(cache)
        return logits.asnumpy(), cache.grown(self.capacity(t))

    def _start_by_steps(self, tokens, gather_at, cross_k, cross_v):
        """A short prompt fed one token at a time through the step graph (no prefill graph to
        compile)."""
        b, t = tokens.shape
        cache = self._empty_cache(b, t, cross_k, cross_v)
        picked = {}
        for position in range(t):
            logits, cache = self.step(tokens[:, position], cache)
            picked[position] = logits
        return np.stack([picked[int(i)] for i in gather_at], axis=1), cache

    def step(self, tokens, cache, rows=None, shared=0):
        """Feed one token per row (B,), row i at position cache.length[i]; return logits (B, V) and
        the next cache.

        With `rows`, the cache is first reordered as `cache.reorder(rows)` would: inside the same
        graph call, or for a HostKVCache in place (HostKVCache.follow, which leaves the `shared`
        first positions, the same in every row). A HostKVCache given is consumed: the one returned
        shares its arrays.
        """
        if rows is not None and np.array_equal(rows, np.arange(len(rows))):
            rows = None  # every row continues itself: no gather of the whole cache
        host = isinstance(cache, HostKVCache)
        if host and rows is not None:
            cache, rows = cache.follow(rows, shared), None
        length = cache.length if rows is None else cache.length[np.asarray(rows)]
        if length.max() >= self.n_ctx:
            raise ValueError(f"decoding ran past the {self.n_ctx}-token context")
        cache = cache.grown(self.capacity(int(length.max())))
        tokens = Tensor(np.asarray(tokens, np.int32).reshape(-1, 1))
        self_k, self_v = cache.tensors() if host else (cache.self_k, cache.self_v)
        args = (
            tokens,
            Tensor(length.astype(np.int32)),
            mutable(self_k),
            mutable(self_v),
            mutable(cache.cross_k),
            mutable(cache.cross_v),
        )
        key = (tokens.shape, cache.capacity, cache.cross_k[0].shape[0])
        n_rows = tokens.shape[0]
        one_row = n_rows == 1 and self._embedding_t is not None
        if host:
            # the graph reads the cache and returns the new position's keys and values (the host
            # cache is CPU's, where the transposed embedding exists)
            if n_rows >= WIDE_STEP_ROWS:
                if self._wide is None:
                    self._wide = mutable(wide_layers(self.model.decoder.blocks))
                logits, new_k, new_v = self._step_apart_wide(
                    key, *args, self._wide, self.embedding_t
                )
            elif one_row or n_rows >= TRANSPOSED_PROJECTION_ROWS:
                logits, new_k, new_v = self._step_apart_t(key, *args, self.embedding_t)
            else:
                logits, new_k, new_v = self._step_apart(key, *args)
            return logits.asnumpy(), cache.written(new_k.asnumpy(), new_v.asnumpy())
        if rows is not None:
            rows = Tensor(np.asarray(rows, np.int32))
            logits, self_k, self_v = self._step_rows(key, *args, rows)
        elif one_row:
            logits, self_k, self_v = self._step_t(key, *args, self.embedding_t)
        else:
            logits, self_k, self_v = self._step(key, *args)
        return logits.asnumpy(), KVCache(self_k, self_v, cache.cross_k, cache.cross_v, length + 1)

    def cross_attention(self, audio_features, tokens, heads):
        """Logits (T, V) and log cross-attention weights (len(heads), T, n_audio_ctx) of `tokens`
        for word timing.

        Runs once per window with weights requested, so it stays in PyNative (eager attention)
        rather than adding a graph per token count. Log weights equal the pre-softmax scores up to a
        per-row constant, which the softmax over a frame range in timing.py cancels.
        """
        tokens = Tensor(np.asarray([tokens], np.int32))
        cross_k, cross_v = self.cross_kv(audio_features)
        logits, weights = self.model.decoder.forward(tokens, (cross_k, cross_v), need_weights=True)
        picked = np.stack([weights[layer].asnumpy()[0, head] for layer, head in heads])
        return logits.asnumpy()[0], np.log(np.maximum(picked, np.finfo(np.float32).tiny))
