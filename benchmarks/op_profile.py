"""Per-operator-type time of whisperms on a warm model, from MindSpore's profiler (CPU: its
per-op-type summary).

Two tables: one 30-s encoder window, and the decoding of one window (prompt plus every token step),
greedy or beam; an operator whose kernel is slow on this CPU shows at the top of the first table at
once.

    python benchmarks/op_profile.py MODEL_FOLDER [AUDIO] [--beam-size 5]
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

OP_TYPE_TABLE = "cpu_op_type_info_0.csv"


def _profiled(fn, output_dir):
    """Run `fn()` once under mindspore.profiler; return (its result, the per-op-type rows, longest
    first)."""
    import mindspore.profiler as profiler
    from mindspore.profiler import ProfilerActivity

    before = set(Path(output_dir).glob("*"))
    once = profiler.schedule(wait=0, warmup=0, active=1, repeat=1)
    with profiler.profile(
        activities=[ProfilerActivity.CPU],
        schedule=once,
        on_trace_ready=profiler.tensorboard_trace_handler(str(output_dir)),
    ) as prof:
        result = fn()
        prof.step()
    runs = [p for p in Path(output_dir).glob("*") if p.is_dir() and p not in before]
    tables = [t for run in runs for t in run.rglob(OP_TYPE_TABLE)]
    if not tables:
        return result, []
    with open(tables[0], newline="") as f:
        rows = [
            {
                "op_type": r["op_type"],
                "calls": int(r["type_occurrences"]),
                "total_ms": float(r["total_compute_time"]),
            }
            for r in csv.DictReader(f)
        ]
    total = sum(r["total_ms"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["total_ms"] / total
    return result, sorted(rows, key=lambda r: r["total_ms"], reverse=True)


def profile_model(folder, audio, beam_size=None, language="en"):
    """{'encoder': rows, 'decode': rows, 'decode_steps': n} for one window of `audio`, after warm-up
    calls."""
    import numpy as np

    from whisperms import load_model
    from whisperms.audio import load_audio, log_mel_spectrogram, pad_or_trim
    from whisperms.decoding import DecodingOptions, DecodingTask

    model = load_model(folder)
    mel = log_mel_spectrogram(pad_or_trim(load_audio(str(audio))), model.dims.n_mels)[None]
    inference = model.inference
    task = DecodingTask(model, DecodingOptions(language=language, beam_size=beam_size))
    features = inference.embed_audio(mel)
    for _ in range(2):  # compile, then once warm
        features = inference.embed_audio(mel)
        result = task.run(features, language)
    steps = len(result.tokens) + 1
    with tempfile.TemporaryDirectory(prefix="whisperms-profile-") as out:
        _, encoder = _profiled(lambda: inference.embed_audio(mel).asnumpy(), out)
        _, decode = _profiled(lambda: task.run(features, language), out)
    return {
        "encoder": encoder,
        "decode": decode,
        "decode_steps": steps,
        "beam_size": beam_size,
        "audio": str(audio),
        "numpy": np.__version__,
    }


def _short(op_type, width=48):
    """Fused kernels are named after every op they hold; keep the start and the count."""
    if len(op_type) <= width:
        return op_type
    return f"{op_type[:width]}... ({op_type.count('_')} parts)"


def render(profile, top=8):
    """Markdown lines: the two tables side by side in one list, top rows only."""
    lines = []
    for part, title in (
        ("encoder", "one warm 30-s encoder window"),
        (
            "decode",
            f"decoding one window ({profile['decode_steps']} token steps, "
            f"beam {profile.get('beam_size') or 1})",
        ),
    ):
        rows = profile.get(part) or []
        total = sum(r["total_ms"] for r in rows)
        lines += [
            f"{title}: {total:.1f} ms of operator time",
            "",
            "| operator type | calls | total ms | share |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {_short(r['op_type'])} | {r['calls']} | {r['total_ms']:.1f} | {r['share']:.0%} |"
            for r in rows[:top]
        ]
        lines.append("")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a whisperms, Hugging Face or CTranslate2 folder")
    parser.add_argument(
        "audio",
        nargs="?",
        default=str(
            Path(__file__).resolve().parent.parent / "tests" / "data" / "jfk_inaugural_1961.flac"
        ),
    )
    parser.add_argument("--beam-size", type=int)
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    args = parser.parse_args()
    profile = profile_model(args.model, args.audio, args.beam_size)
    print(json.dumps(profile) if args.json else "\n".join(render(profile)))


if __name__ == "__main__":
    sys.exit(main())
