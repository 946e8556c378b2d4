"""The `whisperms` command run for real in a subprocess: output files parsed back, exit codes, one-line errors."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import DATA

JFK = DATA / "jfk_inaugural_1961.flac"
SHORT = DATA / "ljspeech_LJ001-0002.wav"
SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")


def run(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "whisperms", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def assert_clean_error(proc, status, *fragments):
    assert proc.returncode == status, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("whisperms: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory, tiny_en_ct2_dir):
    out = tmp_path_factory.mktemp("cli")
    proc = run(JFK, SHORT, "--model", tiny_en_ct2_dir, "--output_dir", out, "--output_format", "all",
               "--verbose", "False")
    assert proc.returncode == 0, proc.stderr
    return out


def test_all_formats_for_several_files(all_formats):
    for stem in ("jfk_inaugural_1961", "ljspeech_LJ001-0002"):
        assert sorted(p.name for p in all_formats.glob(stem + ".*")) == [
            f"{stem}.{ext}" for ext in ("json", "srt", "tsv", "txt", "vtt")]
    assert not list(all_formats.glob(".*partial"))


def test_srt_and_vtt_timestamps(all_formats):
    srt = (all_formats / "jfk_inaugural_1961.srt").read_text().strip().split("\n\n")
    times = []
    for number, cue in enumerate(srt, start=1):
        lines = cue.splitlines()
        assert lines[0] == str(number)
        match = SRT_TIME.match(lines[1])
        assert match, lines[1]
        start, end = seconds(*match.groups()[:4]), seconds(*match.groups()[4:])
        assert start <= end <= 11.0
        times += [start, end]
    assert times == sorted(times)
    vtt = (all_formats / "jfk_inaugural_1961.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}\.\d{3}", vtt)


def test_json_matches_python_api(all_formats, tiny_en_model):
    written = json.loads((all_formats / "jfk_inaugural_1961.json").read_text())
    # the CLI's defaults are openai's CLI defaults (beam 5, best_of 5), not transcribe()'s greedy default
    expected = tiny_en_model.transcribe(str(JFK), beam_size=5, best_of=5).to_dict()
    assert written["text"] == expected["text"] and written["language"] == "en"
    assert [s["tokens"] for s in written["segments"]] == [s["tokens"] for s in expected["segments"]]


def test_tsv_integer_milliseconds(all_formats):
    lines = (all_formats / "jfk_inaugural_1961.tsv").read_text().splitlines()
    assert lines[0] == "start\tend\ttext"
    for line in lines[1:]:
        start, end, text = line.split("\t")
        assert start.isdigit() and end.isdigit() and int(start) <= int(end) and text


def test_missing_file_fails_alone(tmp_path, tiny_en_ct2_dir):
    proc = run(tmp_path / "missing.wav", SHORT, "--model", tiny_en_ct2_dir, "-o", tmp_path, "-f", "txt")
    assert_clean_error(proc, 1, "missing.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ljspeech_LJ001-0002.txt"]


def test_undecodable_file(tmp_path, tiny_en_ct2_dir):
    bad = tmp_path / "garbage.mp3"
    bad.write_text("not audio at all\n" * 50)
    out = tmp_path / "out"
    proc = run(bad, "--model", tiny_en_ct2_dir, "-o", out, "-f", "srt")
    assert_clean_error(proc, 1, "garbage.mp3")
    assert not out.exists() or not list(out.iterdir())


def test_usage_errors(tmp_path, tiny_en_ct2_dir):
    assert_clean_error(run(SHORT, "--model", tiny_en_ct2_dir, "--language", "xx", "-o", tmp_path), 2, "xx")
    assert_clean_error(run(SHORT, "--model", "no-such-model", "-o", tmp_path), 1, "no-such-model")
    assert not list(tmp_path.iterdir())


def test_convert_subcommand(tmp_path, tiny_en_ct2_dir):
    proc = run("convert", tiny_en_ct2_dir, tmp_path / "tiny.en", "--dtype", "float16")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "tiny.en" / "config.json").read_text())["name"] == "tiny.en"
    assert_clean_error(run("convert", tmp_path / "nowhere", tmp_path / "x"), 1, "nowhere")
