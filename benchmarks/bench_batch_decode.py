#!/usr/bin/env python
"""Batched decode(): 8 dev windows decoded as one batch against one at a time, whisperms and
CTranslate2 (faster-whisper's engine, `generate` on the same mels and weights), warm, same process.

It also splits whisperms' decoding step loop into the step call (the compiled step graph, its
argument tensors and the logits copied back to numpy) and the host work around it (logit filters,
token selection, beam bookkeeping, array building), for 1 row (a window alone, greedy), 5 rows (a
window alone, beam 5), 8 rows (the 8 windows together, greedy) and 40 rows (together, beam 5).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_batch_decode.py
    python benchmarks/bench_batch_decode.py --models tiny.en --beams 1 --repeats 1   # a quick check
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_transcribe import model_folder  # noqa: E402
from machine import describe, machine_info  # noqa: E402
from result_files import short_commit, write_results  # noqa: E402

DATA = ROOT / "tests" / "data"
N_WINDOWS = 8


def english_windows(n):
    from conftest import read_manifest, window_mel

    rows = [r for r in read_manifest() if r["language"] == "en" and float(r["duration_s"]) < 30]
    return [r["file"] for r in rows[:n]], np.stack([window_mel(DATA / r["file"]) for r in rows[:n]])


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


class StepSplit:
    """Records the top-level calls of `inference`'s entry points made during decode() calls.

    Each entry point is shadowed by an instance attribute that times it (removed on exit, so the
    class's method is seen again). Calls made inside another timed call (the prompt's own steps in
    `start`, `start` inside `start_batch`) count towards the outer call only.
    """

    # empty_start: windows whose prompt runs through the batch's own steps (their cross-attention
    # K/V and an empty cache); it counts as prompt time, those steps as steps
    ENTRY_POINTS = ("embed_audio", "start_batch", "start", "empty_start", "step")

    def __init__(self, inference):
        self.inference = inference
        self.depth = 0
        self.calls = []  # (entry point, begin, end, rows) of the top-level calls
        self.decodes = []  # (begin, end, first call, end of calls) of each decode() call

    def __enter__(self):
        for name in self.ENTRY_POINTS:
            setattr(self.inference, name, self._timed(name, getattr(self.inference, name)))
        return self

    def __exit__(self, *exc):
        for name in self.ENTRY_POINTS:
            delattr(self.inference, name)

    def _timed(self, name, method):
        def call(*args, **kwargs):
            if self.depth:
                return method(*args, **kwargs)
            self.depth += 1
            begin = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.depth -= 1
                rows = np.asarray(args[0]).size if name == "step" else None
                self.calls.append((name, begin, end, rows))

        return call

    def decode(self, fn):
        first = len(self.calls)
        begin = time.perf_counter()
        fn()
        self.decodes.append((begin, time.perf_counter(), first, len(self.calls)))

    def summary(self, repeats):
        """Per-step figures in ms: the step call, the host time between one step call and the
        previous call (the loop's own work), and all of decode()'s time outside the entry points
        (that work plus task setup, the last selection and the results) over the steps."""
        step, gaps, rows = [], [], set()
        encoder = prompt = outside = 0.0
        for begin, end, first, last in self.decodes:
            inside, previous = 0.0, begin
            for name, start, stop, n in self.calls[first:last]:
                inside += stop - start
                if name == "step":
                    step.append(stop - start)
                    gaps.append(start - previous)
                    rows.add(n)
                elif name == "embed_audio":
                    encoder += stop - start
                else:
                    prompt += stop - start
                previous = stop
            outside += end - begin - inside
        ms = 1000.0
        n_decodes = len(self.decodes)
        return {
            "rows_per_step": sorted(rows),
            "decode_calls_per_run": n_decodes // repeats,
            "steps_per_run": len(step) / repeats,
            "step_call_ms_median": statistics.median(step) * ms,
            "step_call_ms_mean": statistics.fmean(step) * ms,
            "host_ms_per_step_median": statistics.median(gaps) * ms,
            "host_ms_per_step_mean": statistics.fmean(gaps) * ms,
            "host_all_ms_per_step": outside / len(step) * ms,
            "encoder_ms_per_decode": encoder / n_decodes * ms,
            "prompt_ms_per_decode": prompt / n_decodes * ms,
        }


def step_split(model, decodes, repeats):
    """StepSplit.summary of `repeats` runs of the zero-argument decode() calls `decodes`."""
    with StepSplit(model.inference) as split:
        for _ in range(repeats):
            for fn in decodes:
                split.decode(fn)
    return split.summary(repeats)


def whisperms_rows(name, mels, beam, repeats, threads):
    from whisperms import load_model

    model = load_model(str(model_folder(name)), threads=threads)
    options = {"language": "en", "beam_size": beam if beam > 1 else None}
    alone = lambda: [model.decode(mel, **options) for mel in mels]  # noqa: E731
    together = lambda: model.decode(mels, **options)  # noqa: E731
    alone(), together()  # compiles every graph both paths use
    seq, seq_all, seq_out = timed(alone, repeats)
    bat, bat_all, bat_out = timed(together, repeats)
    same = [a.tokens == b.tokens for a, b in zip(seq_out, bat_out)]
    tokens = sum(len(r.tokens) + 1 for r in bat_out)
    # separate runs, so the timers' small cost stays out of the times above
    one_by_one = [lambda mel=mel: model.decode(mel, **options) for mel in mels]
    split = {
        "sequential": step_split(model, one_by_one, repeats),
        "batched": step_split(model, [together], repeats),
    }
    return {
        "sequential_s": seq,
        "batched_s": bat,
        "sequential_runs": seq_all,
        "batched_runs": bat_all,
        "rows_identical": sum(same),
        "tokens": tokens,
        "split": split,
    }


def ctranslate2_rows(name, mels, beam, repeats, threads):
    import ctranslate2

    model = ctranslate2.models.Whisper(str(model_folder(name)), device="cpu", intra_threads=threads)
    sot = [50257] if name.endswith(".en") else [50258, 50259, 50359]
    # max_length as faster-whisper passes it: CTranslate2 decodes at most half of it (224 new
    # tokens), whisperms' sample_len; the scores and no-speech probability as faster-whisper asks
    # for them, as whisperms computes its own every step
    kwargs = {
        "beam_size": beam,
        "max_length": 448,
        "suppress_blank": True,
        "suppress_tokens": [-1],
        "return_scores": True,
        "return_no_speech_prob": True,
    }

    def run(batch):
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(batch, np.float32))
        return model.generate(features, [sot] * len(batch), **kwargs)

    alone = lambda: [run(mels[i : i + 1])[0] for i in range(len(mels))]  # noqa: E731
    together = lambda: run(mels)  # noqa: E731
    alone(), together()
    seq, seq_all, _ = timed(alone, repeats)
    bat, bat_all, out = timed(together, repeats)
    tokens = sum(len(r.sequences_ids[0]) + 1 for r in out)
    return {
        "sequential_s": seq,
        "batched_s": bat,
        "sequential_runs": seq_all,
        "batched_runs": bat_all,
        "tokens": tokens,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--repeats", type=int, default=3)
    # the cores this process may use, not the machine's
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--threads", type=int, default=usable)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    files, mels = english_windows(N_WINDOWS)
    commit = short_commit()
    report = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": commit,
        "machine": machine_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {p: metadata.version(p) for p in ("mindspore", "ctranslate2", "numpy")},
        "windows": files,
        "rows": [],
    }
    for name in args.models:
        for beam in args.beams:
            # both engines share this process: each cell starts with the other engine than the last
            # did, so that neither always runs first
            runs = [
                lambda: ("whisperms", whisperms_rows(name, mels, beam, args.repeats, args.threads)),
                lambda: (
                    "ctranslate2",
                    ctranslate2_rows(name, mels, beam, args.repeats, args.threads),
                ),
            ]
            if len(report["rows"]) % 2:
                runs.reverse()
            row = {"model": name, "beam": beam, "first": None}
            for run in runs:
                engine, figures = run()
                row["first"] = row["first"] or engine
                row[engine] = figures
            ours, peer = row["whisperms"], row["ctranslate2"]
            if ours["tokens"] != peer["tokens"]:
                print(
                    f"warning: {name} beam {beam}: whisperms decoded {ours['tokens']} tokens, "
                    f"CTranslate2 {peer['tokens']}: the times are not of the same work",
                    flush=True,
                )
            report["rows"].append(row)
            print(
                f"{name} beam {beam}: whisperms {ours['sequential_s']:.2f} -> "
                f"{ours['batched_s']:.2f} s, ctranslate2 {peer['sequential_s']:.2f} -> "
                f"{peer['batched_s']:.2f} s, rows identical {ours['rows_identical']}/{len(files)}",
                flush=True,
            )

    lines = [
        f"# Batched decode, {len(files)} English dev windows ({report['date_utc']})",
        "",
        f"- Command: `{report['command']}` at {commit}; OMP_WAIT_POLICY="
        f"{report['omp_wait_policy'] or 'unset'}",
        f"- Machine: {describe(report['machine'])}",
        f"- Versions: {report['versions']}",
        "- Warm (every graph compiled first), median of the repeats; sequential = decode() of"
        " each window in turn (encoder included), batched = one decode() of all of them;"
        " CTranslate2 = Whisper.generate on the same mels (batch 1 in turn, then batch 8),"
        " max_length 448 (at most 224 new tokens, as whisperms), with scores and no-speech"
        " probabilities as faster-whisper asks; both apply the timestamp rules (no"
        " <|notimestamps|> in the prompt). Both engines run in this one process, each cell"
        " starting with the other engine than the cell before; tokens = each engine's, EOT"
        " included (a difference means different work).",
        "",
        "| model | beam | whisperms seq s | whisperms batch s | speed-up | CT2 seq s |"
        " CT2 batch s | CT2 speed-up | whisperms batch / CT2 batch | rows identical |"
        " tokens whisperms / CT2 | first |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        ours, peer = row["whisperms"], row["ctranslate2"]
        cells = [
            row["model"],
            row["beam"],
            f"{ours['sequential_s']:.2f}",
            f"{ours['batched_s']:.2f}",
            f"{ours['sequential_s'] / ours['batched_s']:.2f}x",
            f"{peer['sequential_s']:.2f}",
            f"{peer['batched_s']:.2f}",
            f"{peer['sequential_s'] / peer['batched_s']:.2f}x",
            f"{ours['batched_s'] / peer['batched_s']:.2f}",
            f"{ours['rows_identical']}/{len(files)}",
            f"{ours['tokens']} / {peer['tokens']}",
            row.get("first", "whisperms"),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "## Per-step split (whisperms)",
        "",
        "- Same warm model, separate runs with timers around the inference entry points (medians"
        " and means over every step of every repeat). Step call = `Inference.step`: the compiled"
        " step graph, its argument tensors, the cache growing to its next bucket, the logits"
        " copied to numpy. Host = the time from the previous entry point's return to the step"
        " call (logit filters, selection, beam bookkeeping, array building); host all = decode()'s"
        " whole time outside the encoder, prompt and step calls (adds task setup, the final"
        " selection and the results) over the steps. Encoder and prompt (start / start_batch,"
        " the prompt's own steps included; empty_start, the cross-attention K/V of windows whose"
        " prompt runs through the batch's own steps, which then count as steps) per decode() call.",
        "",
        "| model | beam | mode | windows per decode() | rows per step | steps per run |"
        " step call ms median | step call ms mean | host ms/step median | host ms/step mean |"
        " host all ms/step | encoder ms per decode() | prompt ms per decode() |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for mode, split in row["whisperms"]["split"].items():
            windows = 1 if mode == "sequential" else len(files)
            cells = [
                row["model"],
                row["beam"],
                mode,
                windows,
                ", ".join(str(n) for n in split["rows_per_step"]),
                f"{split['steps_per_run']:.0f}",
                f"{split['step_call_ms_median']:.2f}",
                f"{split['step_call_ms_mean']:.2f}",
                f"{split['host_ms_per_step_median']:.2f}",
                f"{split['host_ms_per_step_mean']:.2f}",
                f"{split['host_all_ms_per_step']:.2f}",
                f"{split['encoder_ms_per_decode']:.1f}",
                f"{split['prompt_ms_per_decode']:.1f}",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    write_results(args.out, "batch-decode", commit, report, lines)


if __name__ == "__main__":
    main()
