#!/usr/bin/env python
"""Does compiling new graphs slow down the graphs a process already runs?

Each trial is a fresh process starting from a copy of the same warm graph and kernel caches. It
times the decoder's step graphs (one row greedy, five rows beam 5, loaded from the graph cache),
then decodes two windows together, a batch whose graphs are not in the caches, and times the same
step graphs again, with the process's CPU time over wall time beside each (about 2 while MindSpore's
two kernel threads share the work on a 2-core machine). In an "own" trial the batch runs through the
model's own Inference, as in any process meeting a new shape: its graphs compiled, fused, their
kernels generated and both saved to the caches. In an "unfused" trial it runs through a second
Inference without the graph cache and without fusion.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_compile_aftereffect.py --trials 4
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_batch_decode import english_windows  # noqa: E402
from bench_transcribe import model_folder  # noqa: E402
from machine import describe, machine_info  # noqa: E402
from result_files import short_commit, write_results  # noqa: E402

CALLS = 40  # step calls per timing
NEW_SHAPE_WINDOWS = 2  # windows decoded together to compile new shapes
MODES = ("own", "unfused")


def step_graphs(model, mel):
    """(graph, key, args) of every step graph a greedy and a beam-5 decode of `mel` run, each served
    by a graph loaded from the cache."""
    from whisperms import inference

    seen = {}
    original = inference._Graph._call

    def record(graph, key, *args):
        seen[(graph.name, key)] = (graph, args)
        return original(graph, key, *args)

    inference._Graph._call = record
    try:
        for beam in (None, 5):
            model.decode(mel, language="en", beam_size=beam)
    finally:
        inference._Graph._call = original
    return [
        (graph, key, args)
        for (name, key), (graph, args) in seen.items()
        if name.startswith("step") and key in graph.loaded
    ]


def timing(graph, key, args):
    """Median ms of CALLS calls of the step graph as decoding calls it (on compute_thread's thread,
    core_share adapting), and CPU time / wall time over them."""
    times = []
    cpu0, wall0 = os.times(), time.perf_counter()
    for _ in range(CALLS):
        start = time.perf_counter()
        graph(key, *args)[0].asnumpy()
        times.append(time.perf_counter() - start)
    cpu1, wall1 = os.times(), time.perf_counter()
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return {"ms": statistics.median(times) * 1e3, "cpu_per_wall": cpu / (wall1 - wall0)}


def trial(name, mode):
    """One trial in this process; its result as a dict."""
    from whisperms import load_model
    from whisperms.inference import Inference

    _, mels = english_windows(NEW_SHAPE_WINDOWS)
    model = load_model(str(model_folder(name)))
    graphs = step_graphs(model, mels[0])
    if not graphs:
        raise SystemExit("no step graph came from the graph cache: is it off or not writable?")
    labels = [f"{g.name} {key[0][0]} row(s)" for g, key, _ in graphs]
    before = [timing(*g) for g in graphs]
    start = time.perf_counter()
    if mode == "own":
        model.decode(mels, language="en")  # its graphs and kernels saved in this trial's caches
    else:
        own = model._inference
        model._inference = Inference(model, graph_cache=False, fuse=False)
        model.decode(mels, language="en")
        model._inference = own
    compile_s = time.perf_counter() - start
    after = [timing(*g) for g in graphs]
    return {
        "mode": mode,
        "labels": labels,
        "before": before,
        "after": after,
        "compile_s": compile_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--trials", type=int, default=4, help="per mode (own, unfused)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--trial", choices=(*MODES, "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial == "warm":
        from whisperms import load_model

        step_graphs(load_model(str(model_folder(args.model))), english_windows(1)[1][0])
        return
    if args.trial:
        print(json.dumps(trial(args.model, args.trial)))
        return

    def run(mode, caches):
        out = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--trial", mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "XDG_CACHE_HOME": caches},
        )
        return json.loads(out.stdout.strip().splitlines()[-1]) if mode != "warm" else None

    with tempfile.TemporaryDirectory(prefix="aftereffect-") as folder:
        # Every trial starts from a copy of the same caches, holding the step graphs only, so its
        # new shapes are compiled and their kernels generated in that trial.
        template = Path(folder) / "template"
        run("warm", str(template))
        run("warm", str(template))  # a process that loads every graph it runs, and compiles none
        trials = []
        for i in range(args.trials):
            for mode in MODES:
                caches = Path(folder) / f"{mode}-{i}"
                shutil.copytree(template, caches)
                trials.append({"trial": i + 1, **run(mode, str(caches))})
                shutil.rmtree(caches)
    started = datetime.now(timezone.utc)
    info = machine_info()
    command = "python benchmarks/bench_compile_aftereffect.py " + " ".join(sys.argv[1:])
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    lines = [
        "# Step graphs before and after an in-process compile of new shapes "
        f"({started:%Y-%m-%dT%H:%M}Z)",
        "",
        f"- Command: `{command}` at {short_commit()}; OMP_WAIT_POLICY={policy}",
        f"- Machine: {describe(info)}",
        f"- Versions: mindspore {metadata.version('mindspore')}, model {args.model}",
        f"- Each row one process: step graphs loaded from warm caches, timed ({CALLS} calls as "
        "decoding makes them, "
        f"median), then {NEW_SHAPE_WINDOWS} windows decoded together (new shapes; own = through "
        "the model's Inference: compiled, fused, kernels generated, saved; unfused = through a "
        "second Inference without graph cache or fusion), then the same step graphs timed again. "
        "cpu/wall: the process's CPU time over wall time during the timing.",
        "",
        "| trial | new compile | compile s | graph | before ms | after ms | after / before "
        "| cpu/wall before | cpu/wall after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        for label, b, a in zip(t["labels"], t["before"], t["after"]):
            lines.append(
                f"| {t['trial']} | {t['mode']} | {t['compile_s']:.1f} | {label} "
                f"| {b['ms']:.2f} | {a['ms']:.2f} | {a['ms'] / b['ms']:.2f} "
                f"| {b['cpu_per_wall']:.2f} | {a['cpu_per_wall']:.2f} |"
            )
    report = {"command": command, "machine": info, "omp_wait_policy": policy, "trials": trials}
    write_results(args.out, "compile-aftereffect", short_commit(), report, lines)


if __name__ == "__main__":
    main()
