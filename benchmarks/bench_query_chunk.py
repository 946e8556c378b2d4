#!/usr/bin/env python
"""The encoder's time per 30-s window at several sizes of attention.QUERY_CHUNK (the query rows its
self-attention computes at a time), and whether the output is the same bits at every size.

One model is loaded per size (each compiles its encoder with that size), then the sizes are timed
in turn, round after round, in one process: a drift in the machine's speed falls on every size
alike. Run it on a CPU with other cache sizes to see whether the default still sits on the flat,
fast part of the curve.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_query_chunk.py
    python benchmarks/bench_query_chunk.py --models tiny.en --chunks 250 60 --rounds 3
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
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from bench_transcribe import model_folder  # noqa: E402
from machine import describe, machine_info  # noqa: E402
from result_files import short_commit, write_results  # noqa: E402

DEFAULT_CHUNKS = (1500, 250, 150, 100, 90, 75, 60, 30)


def encoder_times(name, chunks, rounds, threads):
    """{chunk: [seconds per window, one per round]} and whether every chunk's features equal the
    first chunk's bit for bit."""
    from whisperms import attention, load_model
    from whisperms.audio import N_FRAMES
    from whisperms.graph_cache import GRAPH_CACHE_ENV

    # a cached encoder graph is found by the sources' hash, not by the chunk size patched in here
    os.environ[GRAPH_CACHE_ENV] = "0"

    default = attention.QUERY_CHUNK
    models = {}
    try:
        for chunk in chunks:
            attention.QUERY_CHUNK = chunk
            model = load_model(model_folder(name), threads=threads)
            mel = np.random.default_rng(0).standard_normal((1, model.dims.n_mels, N_FRAMES))
            mel = mel.astype(np.float32)
            for _ in range(2):  # compile, then once warm
                model.inference.embed_audio(mel).asnumpy()
            models[chunk] = model
    finally:
        attention.QUERY_CHUNK = default
    times = {chunk: [] for chunk in chunks}
    features = {}
    for _ in range(rounds):
        for chunk, model in models.items():
            start = time.perf_counter()
            features[chunk] = model.inference.embed_audio(mel).asnumpy()
            times[chunk].append(time.perf_counter() - start)
    first = features[chunks[0]]
    same = all(np.array_equal(first, f) for f in features.values())
    return times, same


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--chunks", nargs="+", type=int, default=list(DEFAULT_CHUNKS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from whisperms import attention

    commit = short_commit()
    report = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": commit,
        "default_chunk": attention.QUERY_CHUNK,
        "machine": machine_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {p: metadata.version(p) for p in ("mindspore", "numpy")},
        "rows": [],
    }
    for name in args.models:
        times, same = encoder_times(name, args.chunks, args.rounds, args.threads)
        for chunk, seconds in times.items():
            row = {
                "model": name,
                "chunk": chunk,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "times_s": seconds,
                "same_bits": same,
            }
            report["rows"].append(row)
            print(f"{name} chunk {chunk}: {row['median_s']:.3f} s median", flush=True)

    lines = [
        f"# Encoder time per window by attention query chunk ({report['date_utc']})",
        "",
        f"- Command: `{report['command']}` at {commit}; OMP_WAIT_POLICY="
        f"{report['omp_wait_policy'] or 'unset'}; default QUERY_CHUNK {report['default_chunk']}",
        f"- Machine: {describe(report['machine'])}",
        f"- Versions: {report['versions']}",
        f"- One warm 30-s window (random mel), {args.rounds} rounds over the sizes in turn;"
        " relative = median / the default size's median.",
        "",
        "| model | query rows per chunk | median s | min s | relative | same bits as first |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.models:
        rows = [r for r in report["rows"] if r["model"] == name]
        base = {r["chunk"]: r["median_s"] for r in rows}.get(report["default_chunk"])
        for r in rows:
            relative = f"{r['median_s'] / base:.2f}" if base else "-"
            cells = [
                name,
                r["chunk"],
                f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}",
                relative,
                "yes" if r["same_bits"] else "NO",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    write_results(args.out, "query-chunk", commit, report, lines)


if __name__ == "__main__":
    main()
