"""whisperms-bulk (whisperms/bulk.py): a corpus on a real local Ray cluster of two workers, tiny.en.
Every readable file's output is what the batched mode writes for it alone, at its path below the
corpus folder; an unreadable file is one line and exit 1; a second run skips what is done."""

import shutil
import subprocess
import sys

import pytest
from user_env import user_env

from whisperms.batched import BatchedTranscriber

from conftest import DATA

pytest.importorskip("ray", reason="bulk extra missing: pip install -e .[test]")

# (corpus path, dev clip): two files named one.wav in different folders
CORPUS = {
    "a/one.wav": "cmuarctic_aew_arctic_a0001.wav",
    "a/two.wav": "cmuarctic_aew_arctic_a0002.wav",
    "b/one.wav": "cmuarctic_aew_arctic_a0003.wav",
    "top.wav": "cmuarctic_unknown-speaker_arctic_a0010.wav",
}


def _bulk(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "whisperms.bulk", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=cwd,
        env=user_env(),
    )


def _errors(run):
    return [line for line in run.stderr.splitlines() if line.startswith("whisperms-bulk: error:")]


def test_a_corpus_on_two_workers(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    for name, clip in CORPUS.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / clip, corpus / name)
    (corpus / "b" / "broken.wav").write_text("not audio")
    options = ("--model", tiny_en_ct2_dir, "--workers", 2, "--cpus_per_worker", 1)
    # paths relative to the command's folder: the workers are started elsewhere
    run = _bulk("corpus", "-o", "out", *options, "--files_per_task", 2, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    (error,) = _errors(run)
    assert "broken.wav" in error
    assert "4 transcribed" in run.stderr and "1 failed" in run.stderr
    alone = BatchedTranscriber(tiny_en_model)
    for name, clip in CORPUS.items():
        result = alone.run(str(DATA / clip))
        expected = "".join(s.text.strip() + "\n" for s in result.segments)
        assert (out / name).with_suffix(".txt").read_text() == expected, name
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a/one.txt", "a/two.txt", "b/one.txt", "top.txt"]

    again = _bulk(corpus, "-o", out, *options)
    assert again.returncode == 1
    assert "0 transcribed" in again.stderr and "4 done before" in again.stderr
    assert len(_errors(again)) == 1


def test_bad_input_is_one_line(tmp_path, tiny_en_ct2_dir):
    run = _bulk(tmp_path / "missing", "-o", tmp_path / "out", "--model", tiny_en_ct2_dir)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"whisperms-bulk: error: no such file or folder: {tmp_path / 'missing'}"
    ]
    run = _bulk(DATA / CORPUS["top.wav"], "-o", tmp_path / "out", "--model", tmp_path / "none")
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1
    assert "neither a checkpoint folder nor a model name" in run.stderr
    assert not (tmp_path / "out").exists()
