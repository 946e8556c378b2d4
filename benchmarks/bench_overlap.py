#!/usr/bin/env python
"""Whether the batched mode's two kinds of work would gain from running at once in two processes:
the encoder (compute-bound) and the decoding steps of a batch of windows (memory-bound).

Two worker processes, each with the model loaded: one encodes one 30-s window after another, the
other decodes 8 dev windows together (greedy, from their audio features: the steps and their host
work, no encoder). Each is timed alone, then both at once, for the same wall time. A work's rate
together divided by its rate alone is its share of the machine; the two shares added are the
throughput of both at once against one after the other: 1.0 = nothing gained (running them in
turn is as fast), 2.0 = each ran as if alone. Rounds alternate alone and together, so a drift in
the machine's speed falls on both.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_overlap.py
    python benchmarks/bench_overlap.py --model base --seconds 30 --rounds 3 --threads 1
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).parent), str(ROOT / "tests")]

from bench_transcribe import model_folder  # noqa: E402
from machine import describe, machine_info  # noqa: E402
from result_files import short_commit, write_results  # noqa: E402

WORKS = ("encoder", "steps")
WINDOWS = 8  # the batch of the steps' work, as the batched mode's default


def worker(work, model_name, threads, seconds):
    """Load, warm up, say "ready", wait for "go" on stdin, then do `work` over and over for
    `seconds`; print the duration of each call as one JSON line."""
    import numpy as np
    from bench_batch_decode import english_windows

    from whisperms import load_model
    from whisperms.decoding import BatchDecodingTask, DecodingOptions, DecodingTask

    model = load_model(model_folder(model_name), threads=threads)
    _, mel = english_windows(WINDOWS)
    inference = model.inference
    if work == "encoder":
        window = np.ascontiguousarray(mel[:1])

        def call():
            inference.embed_audio(window).asnumpy()

    else:
        features = inference.embed_audio(mel)
        task = DecodingTask(model, DecodingOptions(language="en"))

        def call():
            BatchDecodingTask([task] * WINDOWS).run(features)

    for _ in range(2):  # compile, then once warm
        call()
    print("ready", flush=True)
    sys.stdin.readline()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    print(json.dumps(times), flush=True)


def run_together(works, args):
    """Start a worker per work, let them all go at once once every one is ready; {work: [s]}."""
    command = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads)]
    command += ["--seconds", str(args.seconds), "--worker"]
    procs = {
        w: subprocess.Popen(
            command + [w],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for w in works
    }
    for w, proc in procs.items():
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the {w} worker failed before it was ready (exit {proc.wait()})")
    for proc in procs.values():
        proc.stdin.write("go\n")
        proc.stdin.flush()
    out = {}
    for w, proc in procs.items():
        out[w] = json.loads(proc.stdout.readline())
        proc.wait()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="per process")
    parser.add_argument("--seconds", type=float, default=25.0, help="of work per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", choices=WORKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.threads, args.seconds)
        return

    commit = short_commit()
    runs = {"alone": {w: [] for w in WORKS}, "together": {w: [] for w in WORKS}}
    for round_ in range(args.rounds):
        for w in WORKS:
            runs["alone"][w] += run_together([w], args)[w]
        for w, times in run_together(WORKS, args).items():
            runs["together"][w] += times
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    medians = {mode: {w: statistics.median(t) for w, t in by.items()} for mode, by in runs.items()}
    shares = {w: medians["alone"][w] / medians["together"][w] for w in WORKS}
    report = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": commit,
        "model": args.model,
        "threads_per_process": args.threads,
        "machine": machine_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {p: metadata.version(p) for p in ("mindspore", "numpy")},
        "times_s": runs,
        "median_s": medians,
        "share": shares,
        "throughput_together": sum(shares.values()),
    }
    lines = [
        f"# Encoder and batched steps in two processes at once ({report['date_utc']})",
        "",
        f"- Command: `{report['command']}` at {commit}; OMP_WAIT_POLICY="
        f"{report['omp_wait_policy'] or 'unset'}; {args.threads} threads per process",
        f"- Machine: {describe(report['machine'])}",
        f"- Versions: {report['versions']}",
        f"- {args.model}: `encoder` = one 30-s window encoded; `steps` = {WINDOWS} dev windows"
        f" decoded together from their features (greedy). {args.rounds} rounds of"
        f" {args.seconds:g} s each alone and together; medians of every call.",
        "",
        "| work | alone s | together s | share of its alone rate |",
        "|---|---|---|---|",
    ]
    for w in WORKS:
        cells = [w, f"{medians['alone'][w]:.3f}", f"{medians['together'][w]:.3f}"]
        lines.append("| " + " | ".join(cells + [f"{shares[w]:.2f}"]) + " |")
    lines += [
        "",
        f"Throughput of both at once against one after the other: "
        f"**{report['throughput_together']:.2f}** (1.00 = nothing gained).",
    ]
    write_results(args.out, "overlap", commit, report, lines)


if __name__ == "__main__":
    main()
