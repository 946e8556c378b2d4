"""benchmarks/pool_pairs.py: which runs make a pair, and the figures of a pooled cell."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import pool_pairs  # noqa: E402

VERSIONS = {"cpu_model": "AMD EPYC", "cpu_family_model": "25/17", "caches": {"L2": "1024K"}}


def _run(engine, repeat, seconds, beam=1, status="ok"):
    return {
        "engine": engine,
        "model": "base",
        "clip": "pauses-en",
        "beam_size": beam,
        "repeat": repeat,
        "status": status,
        "passes": [{"pass": "cold", "wall_s": 99.0}, {"pass": "warm", "wall_s": seconds}],
        "load_before": [1.0 + repeat, 1.0, 1.0],
    }


def _report(path, runs, commit="abc", like=False):
    report = {
        "versions": VERSIONS,
        "whisperms_source": {"commit": commit},
        "date_utc": "2026-12-03T00:00:00+00:00",
        "batched_as_faster_whisper": like,
        "repeats": 2,
        "runs": runs,
    }
    path.write_text(json.dumps(report))
    return str(path)


def test_pairs_are_the_same_repeat_of_the_same_cell_across_runs(tmp_path):
    first = _report(
        tmp_path / "a.json",
        [
            _run("whisperms", 0, 40.0),
            _run("whisperms-batched", 0, 18.0),
            _run("faster-whisper-batched", 0, 20.0),
            _run("whisperms-batched", 1, 22.0),
            _run("faster-whisper-batched", 1, 20.0),
            # a repeat whose peer failed makes no pair
            _run("whisperms-batched", 2, 10.0),
            _run("faster-whisper-batched", 2, 10.0, status="timeout"),
            # another beam size is another cell
            _run("whisperms-batched", 0, 30.0, beam=5),
            _run("faster-whisper-batched", 0, 40.0, beam=5),
        ],
    )
    second = _report(
        tmp_path / "b.json",
        [_run("whisperms-batched", 0, 19.0), _run("faster-whisper-batched", 0, 20.0)],
        commit="def",
    )
    summary = pool_pairs.summarize([first, second])
    greedy, beam = summary["cells"]
    assert (greedy["beam_size"], beam["beam_size"]) == (1, 5)
    assert greedy["pairs"] == 3 and greedy["ratios"] == [0.9, 1.1, 0.95]
    assert greedy["ratio_median"] == pytest.approx(0.95)
    assert greedy["share_at_or_under_1"] == pytest.approx(2 / 3)
    low, high = greedy["ratio_interval"]
    assert 0.9 <= low <= greedy["ratio_median"] <= high <= 1.1
    # the sequential run was in repeat 0 of the first run only
    assert greedy["speed_up_pairs"] == 1 and greedy["speed_up_median"] == pytest.approx(40 / 18)
    assert beam["pairs"] == 1 and beam["ratio_median"] == pytest.approx(0.75)
    assert "speed_up_median" not in beam
    assert [r["whisperms_commit"] for r in summary["runs"]] == ["abc", "def"]
    # the first run's loads before its nine workers: 1, 1, 1, 2, 2, 3, 3, 1, 1 (median, not mean)
    assert [r["load_before_runs"] for r in summary["runs"]] == [1.0, 1.0]
    table = pool_pairs.render(summary)
    assert "| base | pauses-en | 1 | no | defaults | 3 | **0.95** |" in table


def test_like_for_like_runs_stay_apart(tmp_path):
    runs = [_run("whisperms-batched", 0, 18.0), _run("faster-whisper-batched", 0, 20.0)]
    summary = pool_pairs.summarize(
        [_report(tmp_path / "a.json", runs), _report(tmp_path / "b.json", runs, like=True)]
    )
    assert [(c["like_for_like"], c["pairs"]) for c in summary["cells"]] == [(False, 1), (True, 1)]


def test_runs_of_other_settings_are_not_pooled(tmp_path):
    """Two runs of one cell at batch sizes 8 and 16 (or other threads, or another OMP_WAIT_POLICY)
    were pooled into one cell, as if the same measurement."""
    pair = [_run("whisperms-batched", 0, 9.0), _run("faster-whisper-batched", 0, 10.0)]
    reports = []
    for i, extra in enumerate([{}, {"batch_size": 16}, {"omp_wait_policy": None}]):
        path = _report(tmp_path / f"{i}.json", pair)
        report = json.loads(Path(path).read_text())
        report.update({"batch_size": 8, "threads": 2, "omp_wait_policy": "PASSIVE", **extra})
        Path(path).write_text(json.dumps(report))
        reports.append(path)
    cells = pool_pairs.summarize(reports)["cells"]
    assert sorted((c["setting"], c["pairs"]) for c in cells) == [
        ("", 1),
        ("batch_size 16", 1),
        ("omp_wait_policy None", 1),
    ]
    text = pool_pairs.render(pool_pairs.summarize(reports[:2]))
    assert "| defaults |" in text and "| batch_size 16 |" in text
