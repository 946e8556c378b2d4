"""Profile a transcription with MindSpore's profiler (`mindspore.profiler`) and print the operators
that took longest.

    python examples/profile_run.py [AUDIO] [--model tiny.en] [--output_dir profile] [--top 15]
    [--no-warmup]

AUDIO defaults to the JFK clip in tests/data; --model is a name or a checkpoint folder. One
transcription runs first unprofiled, so that graph compilation is not in the profile (--no-warmup
profiles the cold run), then one runs under `mindspore.profiler.profile`. The trace goes to
--output_dir (open it with MindStudio Insight, or ASCEND_PROFILER_OUTPUT/trace_view.json with
chrome://tracing or Perfetto); the table printed is the per-operator-type summary MindSpore writes
on CPU, FRAMEWORK/cpu_op_type_info_0.csv (times in ms).

MindSpore logs that the profiler "won't be using warmup": the warm-up run happens outside the
profiler because on CPU the schedule's warmup step is recorded as well. On Ascend the NPU activity
is profiled too and the device kernels' statistics land under ASCEND_PROFILER_OUTPUT/ (this script
has only been run on CPU).
"""

import argparse
import csv
import time
from pathlib import Path

import mindspore.profiler as profiler
from mindspore.profiler import ProfilerActivity

from whisperms import load_model

DEFAULT_AUDIO = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "jfk_inaugural_1961.flac"
)
OP_TYPE_TABLE = "cpu_op_type_info_0.csv"


def profile_transcription(model, audio, output_dir):
    """Run one transcription under the profiler; returns the folder MindSpore wrote for this run."""
    activities = [ProfilerActivity.CPU]
    if model.runtime.device == "Ascend":
        activities.append(ProfilerActivity.NPU)
    before = set(Path(output_dir).glob("*")) if Path(output_dir).is_dir() else set()
    # the step is the whole transcription
    one_step = profiler.schedule(wait=0, warmup=0, active=1, repeat=1)
    with profiler.profile(
        activities=activities,
        schedule=one_step,
        on_trace_ready=profiler.tensorboard_trace_handler(str(output_dir)),
    ) as prof:
        result = model.transcribe(audio)
        prof.step()
    runs = [p for p in Path(output_dir).glob("*") if p.is_dir() and p not in before]
    if not runs:
        raise SystemExit(f"the profiler wrote nothing under {output_dir}")
    return max(runs, key=lambda p: p.stat().st_mtime), result


def top_op_types(run_dir, n):
    """Rows of the per-operator-type table, longest total time first."""
    tables = list(Path(run_dir).rglob(OP_TYPE_TABLE))
    if not tables:
        raise SystemExit(f"no {OP_TYPE_TABLE} under {run_dir}")
    with open(tables[0], newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda row: float(row["total_compute_time"]), reverse=True)
    return rows[:n], sum(float(row["total_compute_time"]) for row in rows)


def main():
    parser = argparse.ArgumentParser(description="Profile a transcription with mindspore.profiler.")
    parser.add_argument("audio", nargs="?", default=str(DEFAULT_AUDIO))
    parser.add_argument("--model", default="tiny.en", help="model name or checkpoint folder")
    parser.add_argument("--output_dir", default="profile")
    parser.add_argument("--top", type=int, default=15, help="how many operator types to print")
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="profile the first (compiling) run"
    )
    args = parser.parse_args()

    model = load_model(args.model)
    if args.warmup:
        start = time.perf_counter()
        model.transcribe(args.audio)
        print(f"warm-up run (compiles the graphs): {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    run_dir, result = profile_transcription(model, args.audio, args.output_dir)
    print(
        "profiled run, with the profiler's overhead and parsing: "
        f"{time.perf_counter() - start:.1f} s -> {run_dir}"
    )
    print(f"text: {result.text.strip()}")

    rows, total = top_op_types(run_dir, args.top)
    print(f"{'operator type':32s} {'calls':>8s} {'total ms':>10s} {'avg ms':>9s} {'share':>6s}")
    for row in rows:
        print(
            f"{row['op_type']:32s} {int(row['type_occurrences']):8d} "
            f"{float(row['total_compute_time']):10.2f} "
            f"{float(row['avg_time(ms)']):9.4f} {float(row['total_compute_time']) / total:6.1%}"
        )
    print(f"{'all operator types':32s} {'':8s} {total:10.2f}")


if __name__ == "__main__":
    main()
