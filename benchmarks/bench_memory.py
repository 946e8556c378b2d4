#!/usr/bin/env python
"""Memory of the batched mode where it grows with the input, each figure from a fresh process:

- one long input (pauses-en laid end to end to at least --minutes): peak resident set (VmHWM) of
  whisperms' batched mode and of faster-whisper's BatchedInferencePipeline on the same weights,
  batch 8, greedy, with the resident set after the model load beside it;
- many inputs through one BatchedTranscriber, as the server and the bulk workers run them: the
  resident set after each of --inputs transcriptions of the first --input-seconds of pauses-en.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_memory.py [--model tiny.en] [--minutes 60] \
        [--inputs 30] [--whisperms-src HEAD] [--compare-src REV]

`--compare-src REV` measures whisperms at another commit too, in the same run (each case for
both commits in turn), for a before/after. Results go to
benchmarks/results/memory-<time>-<commit>.{md,json}.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent)]

from bench_transcribe import (  # noqa: E402
    CACHE,
    _memory_mb,
    model_folder,
    read_manifest,
    synthesize_pauses_en,
    whisperms_source,
    worker_env,
)
from machine import describe, machine_info  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SAMPLE_RATE = 16000
BATCH_SIZE = 8


def long_input(minutes):
    """pauses-en repeated to at least `minutes` (16-kHz PCM_16 WAV, cached), and its length in s."""
    import numpy as np
    import soundfile

    source = synthesize_pauses_en(read_manifest())["files"][0]
    audio, rate = soundfile.read(source, dtype="int16")
    assert rate == SAMPLE_RATE
    copies = max(1, -(-int(minutes * 60 * SAMPLE_RATE) // len(audio)))
    out = CACHE / f"{Path(source).stem}_x{copies}.wav"
    if not out.is_file():
        tmp = out.with_suffix(f".tmp{os.getpid()}.wav")
        soundfile.write(tmp, np.tile(audio, copies), SAMPLE_RATE, subtype="PCM_16")
        tmp.replace(out)
    return str(out), copies * len(audio) / SAMPLE_RATE


def worker(spec):
    """One measurement in this (fresh) process; prints its record as JSON on the last line."""
    out = {}
    if spec["engine"] == "faster-whisper":
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        model = WhisperModel(spec["folder"], device="cpu", compute_type="float32", cpu_threads=2)
        out["rss_after_load_mb"] = _memory_mb()["VmRSS"]
        pipeline = BatchedInferencePipeline(model)
        segments, _ = pipeline.transcribe(spec["path"], language="en", batch_size=BATCH_SIZE)
        out["words"] = sum(len(s.text.split()) for s in segments)
    else:
        import whisperms
        from whisperms.batched import BatchedTranscriber

        model = whisperms.load_model(spec["folder"])
        out["rss_after_load_mb"] = _memory_mb()["VmRSS"]
        transcriber = BatchedTranscriber(model, batch_size=BATCH_SIZE, language="en")
        if spec["case"] == "long":
            out["words"] = len(transcriber.run(spec["path"]).text.split())
        else:
            from whisperms.audio import load_audio

            audio = load_audio(spec["path"])[: int(spec["seconds"] * SAMPLE_RATE)]
            out["rss_after_each_mb"] = []
            for _ in range(spec["inputs"]):
                transcriber.run(audio)
                out["rss_after_each_mb"].append(_memory_mb()["VmRSS"])
    out["peak_rss_mb"] = _memory_mb()["VmHWM"]
    print(json.dumps(out))


def spawn(spec, env):
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {spec['engine']} failed:\n{proc.stderr[-2000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["seconds"] = round(time.perf_counter() - t, 1)
    return record


def render(report):
    m = report["machine"]
    lines = [
        f"# Batched-mode memory, {report['model']} ({report['time']})",
        "",
        f"- Machine: {describe(m)}",
        f"- Command: `{report['command']}`",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}",
        "- Each row a fresh process; RSS = VmRSS, peak = VmHWM, in MB. Greedy, batch "
        f"{BATCH_SIZE}, English given, every other option the engine's default.",
        "",
        f"## One long input: {report['long_input']} ({report['long_seconds'] / 60:.1f} min)",
        "",
        "| engine | RSS after load | peak RSS | peak - load | words |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["long"].items():
        lines.append(
            f"| {name} | {r['rss_after_load_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] - r['rss_after_load_mb']:.0f} | {r['words']} |"
        )
    lines += [
        "",
        f"## {report['inputs']} inputs of {report['input_seconds']:g} s through one "
        "BatchedTranscriber (a server's or bulk worker's life)",
        "",
        "| whisperms | RSS after 1st | after 2nd | max | after last | last - 2nd |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["stream"].items():
        each = r["rss_after_each_mb"]
        lines.append(
            f"| {name} | {each[0]:.0f} | {each[1]:.0f} | {max(each):.0f} | {each[-1]:.0f} | "
            f"{each[-1] - each[1]:+.0f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--inputs", type=int, default=30)
    parser.add_argument("--input-seconds", type=float, default=120.0)
    parser.add_argument("--whisperms-src", default="HEAD", help="a commit, or 'worktree'")
    parser.add_argument("--compare-src", help="another commit of whisperms to measure beside it")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.inputs < 2:
        parser.error("--inputs must be at least 2")
    folder = str(model_folder(args.model))
    path, seconds = long_input(args.minutes)
    sources = {}
    for rev in filter(None, [args.whisperms_src, args.compare_src]):
        commit, src = whisperms_source(rev)
        sources[f"whisperms {commit[:7]}"] = worker_env(src)
    report = {
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "versions": {
            p: metadata.version(p) for p in ("mindspore", "faster-whisper", "ctranslate2", "numpy")
        },
        "model": args.model,
        "long_input": Path(path).name,
        "long_seconds": seconds,
        "inputs": args.inputs,
        "input_seconds": args.input_seconds,
        "long": {},
        "stream": {},
    }
    base = {"folder": folder, "path": path}
    for name, env in sources.items():
        r = spawn({**base, "engine": "whisperms", "case": "long"}, env)
        report["long"][name + " batched"] = r
        print(name, "long", r, flush=True)
    r = spawn({**base, "engine": "faster-whisper", "case": "long"}, dict(os.environ))
    report["long"]["faster-whisper batched"] = r
    print("faster-whisper long", r, flush=True)
    for name, env in sources.items():
        spec = {**base, "engine": "whisperms", "case": "stream"}
        spec.update(inputs=args.inputs, seconds=args.input_seconds)
        r = spawn(spec, env)
        report["stream"][name] = r
        print(name, "stream", r["rss_after_each_mb"], flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M")
    first = next(iter(sources)).split()[1]
    stem = RESULTS / f"memory-{stamp}-{first}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(render(report))
    print(render(report))
    print(f"written: {stem}.md")


if __name__ == "__main__":
    main()
