#!/usr/bin/env python
"""VAD speed: whisperms' Silero VAD (MindSpore) against faster-whisper's (onnxruntime, the same ONNX weights) on a
long file built from dev speech separated by digital silence, white noise and hum.

    python benchmarks/bench_vad.py                      # 10 minutes of audio, 3 runs per engine
    python benchmarks/bench_vad.py --minutes 0.5 --repeats 1 --out /tmp/vad-check   # a quick check that it runs
"""

import argparse
import csv
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MARK = "@@BENCH_VAD@@"
ENGINES = ("whisperms", "faster-whisper")
SAMPLE_RATE = 16000
GAP_S = (3.0, 30.0)  # each gap between utterances: a uniform draw of this many seconds
SEED = 17


# --- The file ---------------------------------------------------------------------------------------------------


def build_audio(minutes: float):
    """Float32 16-kHz audio of exactly `minutes`: the English dev clips under 30 s (manifest order, repeated as
    needed), each followed by a gap of GAP_S seconds that cycles through digital silence, white noise (std 0.03) and
    a 50-Hz hum with faint noise. Returns the audio and the list of (clip, start s, end s) placed."""
    import numpy as np
    import soundfile
    import soxr

    with open(DATA / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = [
            r
            for r in csv.DictReader(f, delimiter="\t")
            if r["language"] == "en" and float(r["duration_s"]) < 30
        ]
    rng = np.random.default_rng(SEED)
    total = int(minutes * 60 * SAMPLE_RATE)
    parts, placed, at, i = [], [], 0, 0
    while at < total:
        data, rate = soundfile.read(
            DATA / rows[i % len(rows)]["file"], dtype="float32", always_2d=True
        )
        clip = data.mean(axis=1)
        if rate != SAMPLE_RATE:
            clip = soxr.resample(clip, rate, SAMPLE_RATE, "HQ").astype(np.float32)
        placed.append(
            (rows[i % len(rows)]["file"], at / SAMPLE_RATE, (at + len(clip)) / SAMPLE_RATE)
        )
        n = int(rng.uniform(*GAP_S) * SAMPLE_RATE)
        kind = i % 3
        if kind == 0:
            gap = np.zeros(n, np.float32)
        elif kind == 1:
            gap = 0.03 * rng.standard_normal(n)
        else:
            gap = 0.02 * np.sin(
                2 * np.pi * 50 * np.arange(n) / SAMPLE_RATE
            ) + 0.002 * rng.standard_normal(n)
        parts += [clip, gap.astype(np.float32)]
        at += len(clip) + n
        i += 1
    audio = np.concatenate(parts)[:total]
    return audio, [p for p in placed if p[1] < total / SAMPLE_RATE]


# --- Worker -----------------------------------------------------------------------------------------------------


def worker(engine, audio_path, warm_runs, threads):
    t0 = time.perf_counter()
    import numpy as np

    if engine == "whisperms":
        from whisperms import vad

        if threads:
            from whisperms.device import use_threads

            use_threads(threads)
        t1 = time.perf_counter()
        vad.get_vad_model()
        run = vad.get_speech_timestamps
    else:
        from faster_whisper import vad

        t1 = time.perf_counter()
        vad.get_vad_model()
        run = vad.get_speech_timestamps
    t2 = time.perf_counter()
    audio = np.load(audio_path)
    t3 = time.perf_counter()
    speech = run(audio)
    t4 = time.perf_counter()
    warm = []
    for _ in range(warm_runs):
        start = time.perf_counter()
        again = run(audio)
        warm.append(time.perf_counter() - start)
        assert again == speech
    result = {
        "engine": engine,
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "first_s": t4 - t3,
        "warm_s": warm,
        "segments": len(speech),
        "speech_s": sum(s["end"] - s["start"] for s in speech) / SAMPLE_RATE,
        "timestamps_sha1": hashlib.sha1(json.dumps(speech).encode()).hexdigest(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(MARK + json.dumps(result), flush=True)


# --- Parent -----------------------------------------------------------------------------------------------------


def lscpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    keep = (
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "Socket(s)",
        "Flags",
        "L2 cache",
        "L3 cache",
        "Hypervisor vendor",
    )
    return {key: fields[key].strip() for key in keep if key in fields}


def versions():
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("mindspore", "onnxruntime", "faster-whisper", "numpy", "whisperms"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    try:
        git = ["git", "-C", str(ROOT)]
        info["whisperms_commit"] = subprocess.run(
            git + ["rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        info["whisperms_worktree_dirty"] = bool(
            subprocess.run(
                git + ["status", "--porcelain", "whisperms"], capture_output=True, text=True
            ).stdout.strip()
        )
    except OSError:
        pass
    return info


def run_worker(engine, audio_path, args):
    env = dict(os.environ)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    command = [
        sys.executable,
        __file__,
        "--worker",
        engine,
        "--audio",
        str(audio_path),
        "--warm-runs",
        str(args.warm_runs),
    ] + (["--threads", str(args.threads)] if args.threads else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        raise SystemExit(
            f"{engine} worker failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    result = json.loads(lines[-1][len(MARK) :])
    # cold end-to-end: spawn to the end of the first run (the warm runs came after it)
    result["cold_e2e_s"] = wall - sum(result["warm_s"]) if result["warm_s"] else wall
    result["load_average"] = os.getloadavg()
    return result


def summarize(runs, engines, duration_s):
    table = {}
    for engine in engines:
        mine = [r for r in runs if r["engine"] == engine]
        warm = [min(r["warm_s"]) for r in mine if r["warm_s"]]
        table[engine] = {
            "runs": len(mine),
            "first_s_median": statistics.median(r["first_s"] for r in mine),
            "warm_s_median": statistics.median(warm) if warm else None,
            "cold_e2e_s_median": statistics.median(r["cold_e2e_s"] for r in mine),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine),
        }
        if warm:
            table[engine]["audio_s_per_s"] = duration_s / table[engine]["warm_s_median"]
    if all(table.get(e, {}).get("warm_s_median") for e in ENGINES):
        table["ratio_warm_whisperms_over_faster_whisper"] = (
            table["whisperms"]["warm_s_median"] / table["faster-whisper"]["warm_s_median"]
        )
    return table


def render(report):
    s = report["summary"]
    lines = [
        f"# VAD speed: {report['audio']['duration_s'] / 60:.1f} min of audio ({report['created']})",
        "",
        f"- Command: `{report['command']}`",
        f"- CPU: {report['machine'].get('Model name')} ({report['machine'].get('CPU(s)')} CPUs); "
        f"OMP_WAIT_POLICY={report['omp_wait_policy'] or 'unset'}; "
        f"whisperms threads: {report['threads'] or 'default'}",
        "- Versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in report["versions"].items()
            if k in ("mindspore", "onnxruntime", "faster-whisper", "numpy")
        ),
        f"- whisperms commit {report['versions'].get('whisperms_commit')}"
        f"{' (dirty worktree)' if report['versions'].get('whisperms_worktree_dirty') else ''}",
        f"- Same speech timestamps from both engines: {report['same_timestamps']}",
        "",
        "| engine | runs | first call s (median) | warm s (median of per-run best) | audio s per s | "
        "cold e2e s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in report["engines"]:
        e = s[engine]
        warm = f"{e['warm_s_median']:.3f}" if e["warm_s_median"] else "-"
        speed = f"{e['audio_s_per_s']:.0f}" if e.get("audio_s_per_s") else "-"
        lines.append(
            f"| {engine} | {e['runs']} | {e['first_s_median']:.3f} | {warm} | {speed} | "
            f"{e['cold_e2e_s_median']:.2f} | {e['peak_rss_mb_max']:.0f} |"
        )
    if "ratio_warm_whisperms_over_faster_whisper" in s:
        lines += [
            "",
            f"whisperms / faster-whisper warm time: {s['ratio_warm_whisperms_over_faster_whisper']:.2f}",
        ]
    lines += ["", f"CPU flags: {report['machine'].get('Flags', '')}"]
    return "\n".join(lines) + "\n"


def main():
    """Each measured run is its own worker process (this script with --worker ENGINE) that imports only its engine;
    runs alternate between engines (A B A B ...). Inside a worker: import, load the model, run
    get_speech_timestamps on the file once ("first": includes MindSpore's graph compilation), then `--warm-runs`
    more times ("warm"). The parent measures "cold end-to-end" (process spawn to the end of the first run) and
    checks both engines found the same speech. faster-whisper's VAD runs onnxruntime with one thread (its own
    setting); whisperms uses MindSpore's default CPU threading unless --threads is given (then the worker is pinned
    to that many cores, as whisperms' --threads). Results: printed, and written to `--out` (default
    benchmarks/results) as vad-<UTC timestamp>.json and .md, with the CPU (lscpu model and flags), versions,
    OMP_WAIT_POLICY and the exact command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the built file")
    parser.add_argument("--repeats", type=int, default=3, help="worker processes per engine")
    parser.add_argument(
        "--warm-runs", type=int, default=3, help="runs after the first inside each worker"
    )
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU cores for whisperms (default: MindSpore's)"
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=("PASSIVE", "ACTIVE"),
        default=None,
        help="set OMP_WAIT_POLICY for every worker (default: inherited)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--name", default=None, help="file stem of the results (default vad-<UTC timestamp>)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.audio, args.warm_runs, args.threads)

    import numpy as np

    created = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    audio, placed = build_audio(args.minutes)
    with tempfile.TemporaryDirectory(prefix="bench-vad-") as folder:
        audio_path = Path(folder) / "audio.npy"
        np.save(audio_path, audio)
        runs = []
        for repeat in range(args.repeats):
            for engine in args.engines:
                result = run_worker(engine, audio_path, args)
                result["repeat"] = repeat
                runs.append(result)
                warm = f"warm {min(result['warm_s']):.3f} s" if result["warm_s"] else "no warm runs"
                print(
                    f"[{repeat + 1}/{args.repeats}] {engine}: first {result['first_s']:.3f} s, {warm}, "
                    f"cold e2e {result['cold_e2e_s']:.2f} s, {result['segments']} segments",
                    flush=True,
                )
    duration_s = len(audio) / SAMPLE_RATE
    report = {
        "created": created,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
        "engines": args.engines,
        "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY"),
        "machine": {
            **lscpu(),
            "cpu_count": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
        },
        "versions": versions(),
        "audio": {"duration_s": duration_s, "seed": SEED, "gap_s": GAP_S, "placed": placed},
        "same_timestamps": len({r["timestamps_sha1"] for r in runs}) == 1,
        "runs": runs,
        "summary": summarize(runs, args.engines, duration_s),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"vad-{created}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    text = render(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"written: {args.out / stem}.json, .md")


if __name__ == "__main__":
    main()
