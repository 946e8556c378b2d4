"""The batched modes' paired repeats of several bench_transcribe runs, pooled per cell.

In each repeat of a bench_transcribe run, whisperms' batched mode and faster-whisper's
BatchedInferencePipeline ran one after the other, each in a fresh process, on the same clip: one
pair, one ratio of warm times. On a machine shared with other work a single pair's ratio moves by a
fifth or more with the neighbours' load, so a run of three or five repeats can land on either side
of 1.0 while the engines' typical ratio stays put. This pools the pairs of the given runs per cell
(machine, model, clip, beam size, like-for-like or not, and the run's settings where they are not
those of README's pauses-en command: threads, batch size, OMP_WAIT_POLICY, busy cores, CPU quota,
caches, engine order, prompt carry; a key an older report lacks counts as that command's): the
median ratio with a bootstrap confidence interval, the share of pairs at or under 1.0, and in the
same repeats the batched mode's speed-up over whisperms' sequential mode. Give it runs of the same
decoding code; each run's whisperms commit is listed.

    python benchmarks/pool_pairs.py benchmarks/results/A.json benchmarks/results/B.json \\
        --name pooled-batched-genoa
"""

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).parent)]

from machine import describe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCHED, PEER, SEQUENTIAL = "whisperms-batched", "faster-whisper-batched", "whisperms"
BOOTSTRAP_SAMPLES = 10000
CONFIDENCE = 0.90


def warm_seconds(run):
    """The run's last warm pass, in seconds; None if it did not finish."""
    if run.get("status") != "ok":
        return None
    warm = [p["wall_s"] for p in run.get("passes", ()) if p.get("pass") == "warm"]
    return warm[-1] if warm else None


def machine_of(report):
    """The run's machine as bench_transcribe's report describes it (its versions hold
    machine_info's fields)."""
    return describe(report.get("versions", {}))


# the run settings besides the cell's own that make pairs not comparable, as README's pauses-en
# command has them
SETTING_KEYS = {
    "threads": 2,
    "batch_size": 8,
    "omp_wait_policy": "PASSIVE",
    "busy_cores": 0,
    "cpu_quota": None,
    "kernel_cache": "shared",
    "graph_cache": "shared",
    "engine_order": "as given, every repeat",
}


def _setting(report):
    """The run's settings that differ from SETTING_KEYS' values, as text ("" for none)."""
    condition = report.get("settings", {}).get("condition_on_previous_text", True)
    found = [f"{k} {report.get(k)}" for k, v in SETTING_KEYS.items() if report.get(k, v) != v]
    return ", ".join(found + ([] if condition else ["no prompt carry"]))


def pairs_of(report):
    """{cell: [(ratio to the peer, speed-up over sequential or None), ...]} of one run."""
    times = defaultdict(dict)
    like = bool(report.get("batched_as_faster_whisper"))
    for run in report["runs"]:
        seconds = warm_seconds(run)
        if seconds is not None:
            cell = (
                machine_of(report),
                run["model"],
                run["clip"],
                run["beam_size"],
                like,
                _setting(report),
            )
            times[(cell, run["repeat"])][run["engine"]] = seconds
    pooled = defaultdict(list)
    for (cell, _), engines in sorted(times.items()):
        if BATCHED in engines and PEER in engines:
            sequential = engines.get(SEQUENTIAL)
            speed_up = sequential / engines[BATCHED] if sequential else None
            pooled[cell].append((engines[BATCHED] / engines[PEER], speed_up))
    return pooled


def _median_load(report):
    loads = [r["load_before"][0] for r in report["runs"] if r.get("load_before")]
    return float(np.median(loads)) if loads else None


def median_interval(values, rng):
    """The median of `values` and its bootstrap CONFIDENCE interval (pairs resampled)."""
    values = np.asarray(values, float)
    draws = rng.choice(values, size=(BOOTSTRAP_SAMPLES, len(values)), replace=True)
    medians = np.median(draws, axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(np.median(values)), float(low), float(high)


def summarize(paths):
    rng = np.random.default_rng(0)
    runs, cells = [], defaultdict(list)
    for path in paths:
        report = json.loads(Path(path).read_text())
        source = report.get("whisperms_source") or {}
        runs.append(
            {
                "file": Path(path).name,
                "date_utc": report.get("date_utc"),
                "whisperms_commit": (source.get("commit") or "?")[:10],
                "machine": machine_of(report),
                "like_for_like": bool(report.get("batched_as_faster_whisper")),
                "setting": _setting(report),
                # the median 1-minute load average before its workers started
                "load_before_runs": _median_load(report),
                "repeats": report.get("repeats"),
            }
        )
        for cell, pairs in pairs_of(report).items():
            cells[cell].extend(pairs)
    rows = []
    for (machine, model, clip, beam, like, setting), pairs in sorted(cells.items()):
        ratios = [r for r, _ in pairs]
        speed_ups = [s for _, s in pairs if s is not None]
        median, low, high = median_interval(ratios, rng)
        row = {
            "machine": machine,
            "model": model,
            "clip": clip,
            "beam_size": beam,
            "like_for_like": like,
            "setting": setting,
            "pairs": len(ratios),
            "ratio_median": median,
            "ratio_interval": [low, high],
            "ratio_range": [min(ratios), max(ratios)],
            "share_at_or_under_1": sum(r <= 1.0 for r in ratios) / len(ratios),
            "ratios": ratios,
        }
        if speed_ups:
            s_median, s_low, s_high = median_interval(speed_ups, rng)
            row.update(
                speed_up_pairs=len(speed_ups),
                speed_up_median=s_median,
                speed_up_interval=[s_low, s_high],
                speed_up_range=[min(speed_ups), max(speed_ups)],
            )
        rows.append(row)
    return {
        "command": "python benchmarks/pool_pairs.py " + " ".join(sys.argv[1:]),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "confidence": CONFIDENCE, "seed": 0},
        "runs": runs,
        "cells": rows,
    }


def _load(value):
    return "?" if value is None else f"{value:.2f}"


def render(summary):
    level = round(summary["bootstrap"]["confidence"] * 100)
    lines = [
        "# Batched modes: paired repeats pooled over runs",
        "",
        f"- Command: `{summary['command']}`",
        f"- Date (UTC): {summary['date_utc']}",
        "- A pair = one repeat of one cell in one run: whisperms' batched mode and "
        "faster-whisper's BatchedInferencePipeline, each warm, each in its own fresh process, one "
        "after the other. ratio = whisperms batched / faster-whisper batched (under 1: whisperms "
        "faster); speed-up = whisperms sequential / whisperms batched in the same repeat.",
        f"- Interval: {level}% bootstrap interval of the median "
        f"({summary['bootstrap']['samples']} resamples of the pairs, seed 0).",
        "",
        "| run file | date (UTC) | whisperms commit | machine | like for like | load before runs "
        "(median) | repeats |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in summary["runs"]:
        like = "yes" if run["like_for_like"] else "no"
        lines.append(
            f"| {run['file']} | {run['date_utc']} | {run['whisperms_commit']} | "
            f"{run['machine']} | {like} | {_load(run['load_before_runs'])} | {run['repeats']} |"
        )
    lines += [
        "",
        "| machine | model | clip | beam | like for like | other settings | pairs | ratio median "
        f"| {level}% interval | range | pairs <= 1.0 | speed-up median | {level}% interval "
        "| range |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["cells"]:
        speed = "- | - | -"
        if "speed_up_median" in row:
            s_low, s_high = row["speed_up_interval"]
            s_min, s_max = row["speed_up_range"]
            speed = (
                f"{row['speed_up_median']:.2f}x | {s_low:.2f}-{s_high:.2f}x | "
                f"{s_min:.2f}-{s_max:.2f}x"
            )
        low, high = row["ratio_interval"]
        r_min, r_max = row["ratio_range"]
        lines.append(
            f"| {row['machine']} | {row['model']} | {row['clip']} | {row['beam_size']} | "
            f"{'yes' if row['like_for_like'] else 'no'} | {row['setting'] or 'defaults'} | "
            f"{row['pairs']} | "
            f"**{row['ratio_median']:.2f}** | {low:.2f}-{high:.2f} | {r_min:.2f}-{r_max:.2f} | "
            f"{row['share_at_or_under_1']:.0%} | {speed} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="bench_transcribe result JSON files")
    parser.add_argument(
        "--name", help="also write results/<name>.md and .json (default: print only)"
    )
    args = parser.parse_args()
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        parser.error(f"no such result file: {missing[0]}")
    summary = summarize(args.results)
    if not summary["cells"]:
        parser.error("no cell has both whisperms-batched and faster-whisper-batched runs")
    text = render(summary)
    print(text, end="")
    if args.name:
        (RESULTS / f"{args.name}.md").write_text(text)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {RESULTS / args.name}.md and .json")


if __name__ == "__main__":
    sys.exit(main())
