#!/usr/bin/env python
"""The OpenAI-compatible server under concurrent requests: whisperms-server batching them (batch 8)
against the same server decoding one request at a time (batch 1), and faster-whisper transcribing
the same files one after another in one process (no server: what a single-user script does).

Clients are threads with OpenAI's `openai` client, each sending its share of the English dev clips
under 30 s; the server runs in this process (uvicorn in a thread) on 127.0.0.1. Warm: the same
round of requests once before the timed one.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_server.py [--model tiny.en] [--clients 8]
"""

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from bench_transcribe import model_folder  # noqa: E402
from machine import describe, machine_info  # noqa: E402
from result_files import short_commit, write_results  # noqa: E402

DATA = ROOT / "tests" / "data"


def english_clips(n):
    from conftest import read_manifest

    rows = [r for r in read_manifest() if r["language"] == "en" and float(r["duration_s"]) < 30]
    return [(str(DATA / r["file"]), float(r["duration_s"])) for r in rows[:n]]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model, batch_size):
    import uvicorn

    from whisperms.server import create_app

    port = _free_port()
    app = create_app(model, batch_size=batch_size)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, app, port


def run_clients(port, clips, clients):
    """Wall seconds for every clip sent by `clients` threads at once, and each request's latency."""
    import openai

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=3600
    )

    def one(path):
        start = time.perf_counter()
        with open(path, "rb") as f:
            text = client.audio.transcriptions.create(model="whisper-1", file=(Path(path).name, f))
        return time.perf_counter() - start, text.text

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(one, [path for path, _ in clips]))
    return time.perf_counter() - start, [d[0] for d in done], [d[1] for d in done]


def faster_whisper_one_by_one(folder, clips, threads):
    from faster_whisper import WhisperModel

    model = WhisperModel(folder, device="cpu", compute_type="float32", cpu_threads=threads)
    list(model.transcribe(clips[0][0], language="en")[0])  # warm
    start = time.perf_counter()
    texts = []
    for path, _ in clips:
        segments, _ = model.transcribe(path, language="en")
        texts.append("".join(s.text for s in segments).strip())
    return time.perf_counter() - start, texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 1])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from whisperms import load_model

    folder = model_folder(args.model)
    clips = english_clips(args.clips)
    audio_s = sum(d for _, d in clips)
    model = load_model(str(folder))
    commit = short_commit()
    report = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": commit,
        "machine": machine_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": {
            p: metadata.version(p)
            for p in ("mindspore", "faster-whisper", "ctranslate2", "fastapi", "uvicorn", "openai")
        },
        "clips": [Path(p).name for p, _ in clips],
        "audio_s": audio_s,
        "rows": [],
    }
    texts = {}
    for batch_size in args.batch_sizes:
        server, thread, app, port = serve(model, batch_size)
        # the first round warms (every graph shape its batches need compiled); the second is timed
        run_clients(port, clips, args.clients)
        (group,) = [g for g in app.state.worker._groups.values() if g.transcriber.batches]
        before = group.transcriber.batches
        group.transcriber.largest_batch = 0
        wall, latencies, texts[batch_size] = run_clients(port, clips, args.clients)
        server.should_exit = True
        thread.join(30)
        app.state.worker.stop()
        report["rows"].append(
            {
                "engine": f"whisperms-server batch {batch_size}",
                "wall_s": wall,
                "latency_median_s": statistics.median(latencies),
                "latency_max_s": max(latencies),
                "batches": group.transcriber.batches - before,
                "largest_batch": group.transcriber.largest_batch,
            }
        )
        print(f"batch {batch_size}: {wall:.2f} s", flush=True)
    fw_wall, fw_texts = faster_whisper_one_by_one(str(folder), clips, args.threads)
    report["rows"].append(
        {"engine": "faster-whisper fp32, one file after another", "wall_s": fw_wall}
    )
    print(f"faster-whisper one by one: {fw_wall:.2f} s", flush=True)
    first = texts[args.batch_sizes[0]]
    report["same_text_as_batch_1"] = (
        sum(a == b for a, b in zip(first, texts.get(1, first))) if 1 in texts else None
    )
    report["same_text_as_faster_whisper"] = sum(a == b for a, b in zip(first, fw_texts))

    peer = fw_wall
    lines = [
        f"# whisperms-server under {args.clients} concurrent clients ({report['date_utc']})",
        "",
        f"- Command: `{report['command']}` at {commit}; OMP_WAIT_POLICY="
        f"{report['omp_wait_policy'] or 'unset'}",
        f"- Machine: {describe(report['machine'])}",
        f"- Versions: {report['versions']}",
        f"- {len(clips)} English dev clips under 30 s ({audio_s:.1f} s of audio), model "
        f"{args.model} (the same CTranslate2 weights for both engines; English given to"
        " faster-whisper), warm (a first round of the same requests untimed), one run. Server"
        f" rows: {args.clients} client threads send every clip at once; faster-whisper: the"
        " clips one after another in one process, no server.",
        f"- Texts of the first server row equal to batch 1's: {report['same_text_as_batch_1']}"
        f"/{len(clips)}; to faster-whisper's (sequential mode, no VAD): "
        f"{report['same_text_as_faster_whisper']}/{len(clips)}",
        "",
        "| engine | wall s | audio s / wall s | vs faster-whisper one by one | median latency s |"
        " max latency s | batches (largest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        cells = [
            row["engine"],
            f"{row['wall_s']:.2f}",
            f"{audio_s / row['wall_s']:.1f}",
            f"{row['wall_s'] / peer:.2f}",
            f"{row['latency_median_s']:.2f}" if "latency_median_s" in row else "-",
            f"{row['latency_max_s']:.2f}" if "latency_max_s" in row else "-",
            f"{row['batches']} ({row['largest_batch']})" if "batches" in row else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    write_results(args.out, "server", commit, report, lines)


if __name__ == "__main__":
    main()
