"""Each script in examples/ run for real in a subprocess, on real weights and audio, and its output
checked."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

from test_convert import hf_real_folder
from user_env import user_env

from whisperms.convert import read_ctranslate2

from conftest import DATA

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
JFK = DATA / "jfk_inaugural_1961.flac"
SHORT = DATA / "ljspeech_LJ001-0002.wav"
SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")


def run_example(name, *args, cwd=None):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=user_env(),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def test_every_example_is_tested_and_documented():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == [
        "convert_and_load.py",
        "profile_run.py",
        "transcribe_to_srt.py",
        "word_timestamps.py",
    ]
    for script in scripts:
        doc = (EXAMPLES / script).read_text().split('"""')[1]
        assert f"python examples/{script}" in doc, script  # says how to run it


def test_transcribe_to_srt(tmp_path, tiny_en_ct2_dir):
    out = run_example(
        "transcribe_to_srt.py", JFK, "--model", tiny_en_ct2_dir, "--output_dir", tmp_path
    )
    srt = tmp_path / "jfk_inaugural_1961.srt"
    assert out.strip() == str(srt)
    cues = srt.read_text(encoding="utf-8").strip().split("\n\n")
    times, text = [], []
    for number, cue in enumerate(cues, start=1):
        lines = cue.splitlines()
        assert lines[0] == str(number) and len(lines) >= 3, cue
        match = SRT_TIME.match(lines[1])
        assert match, lines[1]
        times += [seconds(*match.groups()[:4]), seconds(*match.groups()[4:])]
        text += lines[2:]
    assert times == sorted(times) and times[-1] <= 11.0
    words = " ".join(text).lower()
    assert "ask not what your country can do for you" in words and "for your country" in words


def test_word_timestamps(tiny_en_ct2_dir):
    lines = run_example("word_timestamps.py", JFK, "--model", tiny_en_ct2_dir).splitlines()
    assert lines[0].split() == ["start", "end", "prob", "word"]
    words = []
    for line in lines[1:-1]:
        start, end, probability, word = line.split(maxsplit=3)
        words.append((float(start), float(end), float(probability), word))
    assert len(words) >= 20
    for start, end, probability, _ in words:
        assert 0.0 <= start <= end <= 11.0 and 0.0 <= probability <= 1.0
    assert [w[0] for w in words] == sorted(w[0] for w in words)
    assert " ".join(w[3] for w in words) == lines[-1]  # the words make up the text
    country = [w for w in words if w[3].strip(",.") == "country"]
    # "... for you, ask what ... your country."
    assert len(country) == 2 and country[0][0] < 7.0 < country[1][0]


def test_convert_and_load_a_huggingface_folder(tmp_path, tiny_en_ct2_dir, tiny_en_model):
    ct2_config = json.loads((tiny_en_ct2_dir / "config.json").read_text())
    # as HF lays it out
    source = hf_real_folder(tmp_path / "hf", read_ctranslate2(tiny_en_ct2_dir), ct2_config)
    out = run_example(
        "convert_and_load.py", source, "--out", tmp_path / "converted", "--audio", SHORT
    )
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert config["name"] == "tiny.en" and config["source"]["format"] == "huggingface"
    # the CTranslate2 original, in this process
    expected = tiny_en_model.transcribe(str(SHORT)).text.strip()
    assert expected
    assert f"converted folder: {expected}\n" in out and f"source folder:    {expected}\n" in out
    assert out.strip().endswith("same text")
    # as its docstring runs it, after the README's setup made weights/tiny.en: the default
    # destination is a new folder (it was weights/NAME: "already exists and is not empty")
    out = run_example("convert_and_load.py", source, "--audio", SHORT)
    assert out.strip().endswith("same text") and "weights" not in out.splitlines()[0]


def test_profile_run(tmp_path, tiny_en_ct2_dir):
    out = run_example(
        "profile_run.py",
        SHORT,
        "--model",
        tiny_en_ct2_dir,
        "--output_dir",
        tmp_path / "profile",
        "--top",
        "5",
    )
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("operator type"))
    rows = [line.split() for line in lines[header + 1 : header + 6]]
    assert len(rows) == 5
    times = [float(row[2]) for row in rows]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert "MatMul" in {row[0] for row in rows}  # a transformer's time goes to matrix products
    assert "text: in being comparatively modern." in out
    table = next((tmp_path / "profile").rglob("cpu_op_type_info_0.csv"))
    with open(table, newline="") as f:
        by_type = {row["op_type"]: float(row["total_compute_time"]) for row in csv.DictReader(f)}
    assert [by_type[row[0]] for row in rows] == sorted(by_type.values(), reverse=True)[:5]


def test_readme_python_api(tmp_path, monkeypatch, capsys, tiny_en_ct2_dir):
    """README's Python block, run as written: only the audio file names are replaced by real
    clips."""
    from whisperms.convert import convert

    convert(tiny_en_ct2_dir, tmp_path / "tiny.en")
    monkeypatch.setenv("WHISPERMS_WEIGHTS", str(tmp_path))  # so that load_model("tiny.en") finds it
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    code = readme.split("## Python API\n```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"talk.mp3"', repr(str(JFK))).replace('"clip.wav"', repr(str(SHORT)))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert "fellow Americans" in out[0] and out[0].endswith(" en")  # result.text, result.language
    assert out[1] == out[0][: -len("en")] + "0.0"  # result["text"], result["segments"][0]["start"]
    segments = [line for line in out if re.match(r"^\[\d+\.\d\d --> \d+\.\d\d\] ", line)]
    words = [
        line.split(maxsplit=2) for line in out if re.match(r"^ *\d+\.\d\d +\d+\.\d\d  \S", line)
    ]
    assert len(segments) >= 2 and out[2 : 2 + len(segments)] == segments
    assert len(words) >= 5 and all(float(start) <= float(end) for start, end, _ in words)
    assert out[-1].strip() == "in being comparatively modern."
